//! XML-RPC documents ↔ JSON values: a `<methodCall>` read into a method
//! name and positional params ([`parse_call`]), and a result or a fault
//! written as a `<methodResponse>` ([`write_response`], [`write_fault`]).
//!
//! | XML-RPC | JSON |
//! |---|---|
//! | `<int>`, `<i4>` (32-bit), `<i8>` (64-bit) | integer |
//! | `<double>` (finite only) | number |
//! | `<boolean>` `0`/`1` | `false`/`true` |
//! | `<string>`, or text with no type element | string |
//! | `<dateTime.iso8601>` | string, the text as sent (trimmed) |
//! | `<base64>` | string, the base64 text without whitespace |
//! | `<array>` | array |
//! | `<struct>` | object (a repeated member name: the last wins) |
//! | `<nil/>` (also `<ex:nil/>`) | `null` |
//!
//! Back: an integer in the 32-bit range is an `<int>`, a wider one an `<i8>`
//! (an unsigned one beyond 64-bit signed, a `<double>`); a number with a
//! fraction (or written as a float, as `5.0`) a `<double>`; `null` a
//! `<nil/>`. Strings, booleans, arrays and objects map as above.
//!
//! The reader is strict where strictness costs a client nothing: no
//! `<!DOCTYPE` (so no entity declarations, so no entity expansion), only
//! the five predefined entities and character references, values nested at
//! most [`MAX_DEPTH`] arrays and structs deep, one root element. It never
//! panics: every other input is a [`ParseError`].

use quick_xml::events::Event;
use quick_xml::reader::Reader;
use serde_json::{Map, Number, Value};

use crate::message::code;

/// How deep arrays and structs may nest inside one param.
pub(crate) const MAX_DEPTH: usize = 64;

/// Why a body is not an XML-RPC call this server can run. Each has the
/// JSON-RPC code its fault carries ([`ParseError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// Not well-formed XML (or not UTF-8); `-32700`.
    #[error("the body is not well-formed XML: {0}")]
    Malformed(String),
    /// A `<!DOCTYPE`: refused, since XML-RPC needs none and a DTD could
    /// declare entities; `-32700`.
    #[error(
        "document type declarations (`<!DOCTYPE`) are refused: XML-RPC needs none, and this server expands no entities"
    )]
    Doctype,
    /// Arrays and structs nested deeper than [`MAX_DEPTH`]; `-32700`.
    #[error("values nest deeper than {MAX_DEPTH} arrays and structs")]
    TooDeep,
    /// A value whose text does not fit its type (`<int>x</int>`), or an
    /// unknown type element; `-32700`.
    #[error("{0}")]
    BadValue(String),
    /// Well-formed XML, but not a `<methodCall>` as XML-RPC defines it;
    /// `-32600`.
    #[error("not an XML-RPC call: {0}")]
    NotACall(String),
    /// A `<double>` that is infinite or not a number: JSON cannot carry it;
    /// `-32602`.
    #[error("a double that is not a finite number (`{0}`) has no JSON form; send a finite number")]
    NotFinite(String),
}

impl ParseError {
    /// The JSON-RPC code of the fault that answers this error.
    pub(crate) fn code(&self) -> i64 {
        match self {
            Self::Malformed(_) | Self::Doctype | Self::TooDeep | Self::BadValue(_) => {
                code::PARSE_ERROR
            }
            Self::NotACall(_) => code::INVALID_REQUEST,
            Self::NotFinite(_) => code::INVALID_PARAMS,
        }
    }
}

/// A JSON value that has no XML-RPC form: a string holding a character XML
/// 1.0 cannot carry (most control characters), or a member name that does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the answer holds the character U+{0:04X}, which XML 1.0 cannot carry; call the method over JSON-RPC (`POST /rpc`) instead"
)]
pub(crate) struct Unrepresentable(pub(crate) u32);

/// One XML-RPC call: the method name and its params, by position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    /// The `<methodName>`, trimmed.
    pub(crate) method: String,
    /// The `<param>` values in order, as JSON.
    pub(crate) params: Vec<Value>,
}

/// Reads a `<methodCall>` document.
pub(crate) fn parse_call(body: &[u8]) -> Result<Call, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ParseError::Malformed(format!(
            "the body is not UTF-8 ({e}); this server reads XML-RPC in UTF-8 only"
        ))
    })?;
    let mut p = Parser::new(text);
    p.open("methodCall")?;
    p.open("methodName")?;
    let method = p.text_until("methodName")?.trim().to_owned();
    if method.is_empty() {
        return Err(ParseError::NotACall("the <methodName> is empty".into()));
    }
    let mut params = Vec::new();
    match p.structural()? {
        Token::Start { name, empty } if name == "params" => {
            if !empty {
                loop {
                    match p.structural()? {
                        Token::Start { name, empty } if name == "param" && !empty => {
                            match p.structural()? {
                                Token::Start { name, empty } if name == "value" => {
                                    params.push(p.value_after_open(empty, 0)?);
                                }
                                other => return Err(p.unexpected(other, "<value>")),
                            }
                            p.close("param")?;
                        }
                        Token::End(name) if name == "params" => break,
                        other => return Err(p.unexpected(other, "<param> or </params>")),
                    }
                }
            }
            p.close("methodCall")?;
        }
        Token::End(name) if name == "methodCall" => {}
        other => return Err(p.unexpected(other, "<params> or </methodCall>")),
    }
    match p.structural()? {
        Token::Eof => Ok(Call { method, params }),
        other => Err(p.unexpected(other, "the end of the document")),
    }
}

/// What the parser works with: events reduced to elements and text.
#[derive(Debug)]
enum Token {
    Start {
        name: String,
        empty: bool,
    },
    End(String),
    /// Character data, entities and references resolved, CDATA included.
    Text(String),
    Eof,
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.expand_empty_elements = false;
        Self { reader }
    }

    /// The next token; comments, processing instructions and the XML
    /// declaration are skipped.
    fn token(&mut self) -> Result<Token, ParseError> {
        loop {
            let event = self.reader.read_event().map_err(|e| {
                ParseError::Malformed(format!("{e} (at byte {})", self.reader.error_position()))
            })?;
            let name = |raw: &[u8]| {
                std::str::from_utf8(raw)
                    .map(str::to_owned)
                    .map_err(|_| ParseError::Malformed("an element name is not UTF-8".into()))
            };
            return Ok(match event {
                Event::Start(e) => Token::Start {
                    name: name(e.local_name().as_ref())?,
                    empty: false,
                },
                Event::Empty(e) => Token::Start {
                    name: name(e.local_name().as_ref())?,
                    empty: true,
                },
                Event::End(e) => Token::End(name(e.local_name().as_ref())?),
                Event::Text(t) => Token::Text(
                    t.xml10_content()
                        .map_err(|e| ParseError::Malformed(e.to_string()))?
                        .into_owned(),
                ),
                Event::CData(c) => Token::Text(
                    c.decode()
                        .map_err(|e| ParseError::Malformed(e.to_string()))?
                        .into_owned(),
                ),
                Event::GeneralRef(r) => {
                    let resolved = r
                        .resolve_char_ref()
                        .map_err(|e| ParseError::Malformed(e.to_string()))?;
                    let c = match resolved {
                        Some(c) if xml_char(c) => c,
                        Some(c) => {
                            return Err(ParseError::Malformed(format!(
                                "the character reference U+{:04X} is not a character XML allows",
                                c as u32
                            )));
                        }
                        None => match r.as_ref() {
                            b"lt" => '<',
                            b"gt" => '>',
                            b"amp" => '&',
                            b"apos" => '\'',
                            b"quot" => '"',
                            other => {
                                return Err(ParseError::Malformed(format!(
                                    "unknown entity `&{};`: only the five XML entities and character references are read",
                                    String::from_utf8_lossy(other)
                                )));
                            }
                        },
                    };
                    Token::Text(c.to_string())
                }
                Event::DocType(_) => return Err(ParseError::Doctype),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => continue,
                Event::Eof => Token::Eof,
            });
        }
    }

    /// The next token that is not whitespace between elements; other text
    /// is an error there.
    fn structural(&mut self) -> Result<Token, ParseError> {
        loop {
            match self.token()? {
                Token::Text(t) if is_space(&t) => continue,
                Token::Text(t) => {
                    return Err(ParseError::NotACall(format!(
                        "unexpected text `{}` between elements",
                        snippet(&t)
                    )));
                }
                other => return Ok(other),
            }
        }
    }

    /// Expects `<name>` (not empty).
    fn open(&mut self, expected: &str) -> Result<(), ParseError> {
        match self.structural()? {
            Token::Start { name, empty: false } if name == expected => Ok(()),
            other => Err(self.unexpected(other, &format!("<{expected}>"))),
        }
    }

    /// Expects `</name>`.
    fn close(&mut self, expected: &str) -> Result<(), ParseError> {
        match self.structural()? {
            Token::End(name) if name == expected => Ok(()),
            other => Err(self.unexpected(other, &format!("</{expected}>"))),
        }
    }

    fn unexpected(&self, found: Token, expected: &str) -> ParseError {
        let found = match found {
            Token::Start { name, .. } => format!("<{name}>"),
            Token::End(name) => format!("</{name}>"),
            Token::Text(t) => format!("the text `{}`", snippet(&t)),
            Token::Eof => "the end of the document".to_owned(),
        };
        ParseError::NotACall(format!(
            "expected {expected}, found {found} (at byte {})",
            self.reader.buffer_position()
        ))
    }

    /// The text of an element whose start was read, up to its end.
    fn text_until(&mut self, element: &str) -> Result<String, ParseError> {
        let mut text = String::new();
        loop {
            match self.token()? {
                Token::Text(t) => text.push_str(&t),
                Token::End(name) if name == element => return Ok(text),
                other => {
                    return Err(self.unexpected(other, &format!("text or </{element}>")));
                }
            }
        }
    }

    /// The text of a typed element (`<int>`…), empty if it was `<int/>`.
    fn typed_text(&mut self, element: &str, empty: bool) -> Result<String, ParseError> {
        if empty {
            Ok(String::new())
        } else {
            self.text_until(element)
        }
    }

    /// A value whose `<value>` was read (`empty` for `<value/>`), up to and
    /// including its `</value>`. `depth` counts the arrays and structs
    /// around it.
    fn value_after_open(&mut self, empty: bool, depth: usize) -> Result<Value, ParseError> {
        if empty {
            return Ok(Value::String(String::new()));
        }
        // Text first: the whole value if `</value>` follows (a string with
        // no type), whitespace if a type element does.
        let mut text = String::new();
        let (name, empty) = loop {
            match self.token()? {
                Token::Text(t) => text.push_str(&t),
                Token::End(name) if name == "value" => return Ok(Value::String(text)),
                Token::Start { name, empty } => break (name, empty),
                other => return Err(self.unexpected(other, "a value or </value>")),
            }
        };
        if !is_space(&text) {
            return Err(ParseError::NotACall(format!(
                "text `{}` beside the <{name}> element of a value",
                snippet(&text)
            )));
        }
        let value = self.typed(&name, empty, depth)?;
        self.close("value")?;
        Ok(value)
    }

    /// The value of a type element whose start was read, up to its end.
    fn typed(&mut self, name: &str, empty: bool, depth: usize) -> Result<Value, ParseError> {
        let bad = |what: &str, text: &str| {
            ParseError::BadValue(format!(
                "<{name}> holds `{}`, which is not {what}",
                snippet(text)
            ))
        };
        Ok(match name {
            "string" => Value::String(self.typed_text(name, empty)?),
            "int" | "i4" => {
                let text = self.typed_text(name, empty)?;
                let n: i32 = text
                    .trim()
                    .parse()
                    .map_err(|_| bad("a 32-bit integer", &text))?;
                Value::from(n)
            }
            "i8" => {
                let text = self.typed_text(name, empty)?;
                let n: i64 = text
                    .trim()
                    .parse()
                    .map_err(|_| bad("a 64-bit integer", &text))?;
                Value::from(n)
            }
            "boolean" => {
                let text = self.typed_text(name, empty)?;
                match text.trim() {
                    "0" => Value::Bool(false),
                    "1" => Value::Bool(true),
                    _ => return Err(bad("0 or 1", &text)),
                }
            }
            "double" => {
                let text = self.typed_text(name, empty)?;
                let trimmed = text.trim();
                // Rust also reads `inf`, `NaN` and `infinity`: refused below.
                let n: f64 = trimmed.parse().map_err(|_| bad("a number", &text))?;
                match Number::from_f64(n) {
                    Some(n) => Value::Number(n),
                    None => return Err(ParseError::NotFinite(snippet(trimmed))),
                }
            }
            "dateTime.iso8601" => Value::String(self.typed_text(name, empty)?.trim().to_owned()),
            "base64" => {
                let text = self.typed_text(name, empty)?;
                let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                if !compact
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                {
                    return Err(bad("base64", &text));
                }
                Value::String(compact)
            }
            "nil" => {
                if !empty {
                    let text = self.text_until(name)?;
                    if !is_space(&text) {
                        return Err(bad("empty", &text));
                    }
                }
                Value::Null
            }
            "array" => {
                let depth = deeper(depth)?;
                if empty {
                    return Ok(Value::Array(Vec::new()));
                }
                let mut items = Vec::new();
                match self.structural()? {
                    Token::Start { name, empty } if name == "data" => {
                        if !empty {
                            loop {
                                match self.structural()? {
                                    Token::Start { name, empty } if name == "value" => {
                                        items.push(self.value_after_open(empty, depth)?);
                                    }
                                    Token::End(name) if name == "data" => break,
                                    other => {
                                        return Err(self.unexpected(other, "<value> or </data>"));
                                    }
                                }
                            }
                        }
                        self.close("array")?;
                    }
                    other => return Err(self.unexpected(other, "<data>")),
                }
                Value::Array(items)
            }
            "struct" => {
                let depth = deeper(depth)?;
                let mut members = Map::new();
                if empty {
                    return Ok(Value::Object(members));
                }
                loop {
                    match self.structural()? {
                        Token::Start { name, empty: false } if name == "member" => {
                            // `<name>` then `<value>`; some clients write
                            // them the other way round, which is read too.
                            let mut key = None;
                            let mut value = None;
                            while key.is_none() || value.is_none() {
                                match self.structural()? {
                                    Token::Start { name, empty }
                                        if name == "name" && key.is_none() =>
                                    {
                                        key = Some(self.typed_text("name", empty)?);
                                    }
                                    Token::Start { name, empty }
                                        if name == "value" && value.is_none() =>
                                    {
                                        value = Some(self.value_after_open(empty, depth)?);
                                    }
                                    other => {
                                        return Err(self.unexpected(
                                            other,
                                            "<name> and <value> in a <member>",
                                        ));
                                    }
                                }
                            }
                            self.close("member")?;
                            if let (Some(key), Some(value)) = (key, value) {
                                members.insert(key, value);
                            }
                        }
                        Token::End(name) if name == "struct" => break,
                        other => return Err(self.unexpected(other, "<member> or </struct>")),
                    }
                }
                Value::Object(members)
            }
            other => {
                return Err(ParseError::BadValue(format!(
                    "unknown value type <{other}>; XML-RPC has int, i4, i8, double, boolean, string, dateTime.iso8601, base64, array, struct and nil"
                )));
            }
        })
    }
}

/// One level deeper, or [`ParseError::TooDeep`].
fn deeper(depth: usize) -> Result<usize, ParseError> {
    if depth >= MAX_DEPTH {
        Err(ParseError::TooDeep)
    } else {
        Ok(depth + 1)
    }
}

/// XML whitespace only (or nothing).
fn is_space(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// At most 40 characters of `text`, for messages.
fn snippet(text: &str) -> String {
    let mut out: String = text.chars().take(40).collect();
    if text.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

/// Whether XML 1.0 allows `c` in a document (its `Char` production).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

const HEAD: &str = "<?xml version=\"1.0\"?>\n<methodResponse>";

/// `<methodResponse>` with one param, `result`.
pub(crate) fn write_response(result: &Value) -> Result<String, Unrepresentable> {
    let mut out = String::from(HEAD);
    out.push_str("<params><param>");
    write_value(&mut out, result)?;
    out.push_str("</param></params></methodResponse>\n");
    Ok(out)
}

/// `<methodResponse>` with a fault: `faultCode` and `faultString`. A string
/// XML cannot carry is written with its unrepresentable characters replaced
/// by U+FFFD (a fault must always be sendable).
pub(crate) fn write_fault(code: i64, message: &str) -> String {
    let mut out = String::from(HEAD);
    out.push_str("<fault>");
    let message: String = message
        .chars()
        .map(|c| if xml_char(c) { c } else { '\u{FFFD}' })
        .collect();
    // Only unrepresentable characters can fail, and none are left.
    let _ = write_value(&mut out, &fault_struct(code, &message));
    out.push_str("</fault></methodResponse>\n");
    out
}

/// The `{faultCode, faultString}` struct, as JSON (a `system.multicall`
/// entry that failed is one).
pub(crate) fn fault_struct(code: i64, message: &str) -> Value {
    serde_json::json!({"faultCode": code, "faultString": message})
}

/// One `<value>`.
pub(crate) fn write_value(out: &mut String, value: &Value) -> Result<(), Unrepresentable> {
    out.push_str("<value>");
    match value {
        Value::Null => out.push_str("<nil/>"),
        Value::Bool(b) => {
            out.push_str(if *b {
                "<boolean>1</boolean>"
            } else {
                "<boolean>0</boolean>"
            });
        }
        Value::Number(n) => write_number(out, n),
        Value::String(s) => {
            out.push_str("<string>");
            escape(out, s)?;
            out.push_str("</string>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for item in items {
                write_value(out, item)?;
            }
            out.push_str("</data></array>");
        }
        Value::Object(members) => {
            out.push_str("<struct>");
            for (name, value) in members {
                out.push_str("<member><name>");
                escape(out, name)?;
                out.push_str("</name>");
                write_value(out, value)?;
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
    }
    out.push_str("</value>");
    Ok(())
}

fn write_number(out: &mut String, n: &Number) {
    use std::fmt::Write;
    if let Some(i) = n.as_i64() {
        if let Ok(small) = i32::try_from(i) {
            let _ = write!(out, "<int>{small}</int>");
        } else {
            let _ = write!(out, "<i8>{i}</i8>");
        }
    } else if let Some(f) = n.as_f64() {
        // A `u64` beyond `i64::MAX` lands here too, as the nearest double.
        // `Display` for `f64` writes the shortest text that reads back as
        // the same number, without an exponent, as XML-RPC's grammar wants
        // (a `Number` is always finite). `5` gets its fraction back, as
        // serde_json writes `5.0`, so a double stays one.
        let text = f.to_string();
        let fraction = if text.contains('.') { "" } else { ".0" };
        let _ = write!(out, "<double>{text}{fraction}</double>");
    }
}

/// Text escaped for element content: `<`, `>`, `&`, and `\r` (which XML
/// would otherwise turn into `\n`).
fn escape(out: &mut String, text: &str) -> Result<(), Unrepresentable> {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => out.push_str("&#13;"),
            c if xml_char(c) => out.push(c),
            c => return Err(Unrepresentable(c as u32)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A `<methodCall>` of `m` with `params` written by [`write_value`].
    fn call_of(params: &[Value]) -> String {
        let mut doc =
            String::from("<?xml version=\"1.0\"?><methodCall><methodName>m</methodName><params>");
        for p in params {
            doc.push_str("<param>");
            write_value(&mut doc, p).expect("representable");
            doc.push_str("</param>");
        }
        doc.push_str("</params></methodCall>");
        doc
    }

    fn one(value_xml: &str) -> Result<Value, ParseError> {
        let doc = format!(
            "<methodCall><methodName>m</methodName><params><param>{value_xml}</param></params></methodCall>"
        );
        parse_call(doc.as_bytes()).map(|mut c| c.params.remove(0))
    }

    #[test]
    fn a_python_call_is_read() {
        // What `xmlrpc.client` sends for `s.add(15, 10)`.
        let body = "<?xml version='1.0'?>\n<methodCall>\n<methodName>add</methodName>\n<params>\n<param>\n<value><int>15</int></value>\n</param>\n<param>\n<value><int>10</int></value>\n</param>\n</params>\n</methodCall>\n";
        let call = parse_call(body.as_bytes()).unwrap();
        assert_eq!(call.method, "add");
        assert_eq!(call.params, vec![json!(15), json!(10)]);
        let none =
            parse_call(b"<methodCall><methodName> system.listMethods </methodName></methodCall>")
                .unwrap();
        assert_eq!(none.method, "system.listMethods");
        assert!(none.params.is_empty());
        let empty =
            parse_call(b"<methodCall><methodName>x</methodName><params/></methodCall>").unwrap();
        assert!(empty.params.is_empty());
    }

    #[test]
    fn every_type_maps_to_json() {
        assert_eq!(one("<value><i4>-7</i4></value>"), Ok(json!(-7)));
        assert_eq!(one("<value><int> +7 </int></value>"), Ok(json!(7)));
        assert_eq!(
            one("<value><i8>9007199254740993</i8></value>"),
            Ok(json!(9_007_199_254_740_993_i64))
        );
        assert_eq!(
            one("<value><double>1e+100</double></value>"),
            Ok(json!(1e100))
        );
        assert_eq!(one("<value><double>-0.5</double></value>"), Ok(json!(-0.5)));
        assert_eq!(one("<value><boolean>1</boolean></value>"), Ok(json!(true)));
        assert_eq!(one("<value><boolean>0</boolean></value>"), Ok(json!(false)));
        assert_eq!(one("<value>bare text </value>"), Ok(json!("bare text ")));
        assert_eq!(one("<value/>"), Ok(json!("")));
        assert_eq!(one("<value><string/></value>"), Ok(json!("")));
        assert_eq!(one("<value><nil/></value>"), Ok(Value::Null));
        assert_eq!(
            one("<value><ex:nil xmlns:ex='x'/></value>"),
            Ok(Value::Null)
        );
        assert_eq!(
            one("<value><dateTime.iso8601> 19980717T14:08:55 </dateTime.iso8601></value>"),
            Ok(json!("19980717T14:08:55"))
        );
        assert_eq!(
            one("<value><base64>aGVs\n bG8=</base64></value>"),
            Ok(json!("aGVsbG8="))
        );
        assert_eq!(
            one(
                "<value><array><data><value><int>1</int></value><value>a</value></data></array></value>"
            ),
            Ok(json!([1, "a"]))
        );
        assert_eq!(one("<value><array><data/></array></value>"), Ok(json!([])));
        assert_eq!(
            one(
                "<value><struct><member><name>a</name><value><struct/></value></member><member><value><nil/></value><name>b</name></member></struct></value>"
            ),
            Ok(json!({"a": {}, "b": null}))
        );
    }

    #[test]
    fn text_is_unescaped() {
        assert_eq!(
            one(
                "<value><string>&lt;&gt;&amp;&apos;&quot; &#233;&#x1F600; <![CDATA[<raw>&amp;]]></string></value>"
            ),
            Ok(json!("<>&'\" é😀 <raw>&amp;"))
        );
        assert_eq!(one("<value>a&#13;\r\nb</value>"), Ok(json!("a\r\nb")));
    }

    #[test]
    fn bad_values_are_refused_with_their_code() {
        let code_of = |xml: &str| one(xml).unwrap_err().code();
        assert_eq!(
            code_of("<value><int>2147483648</int></value>"),
            code::PARSE_ERROR
        );
        assert_eq!(code_of("<value><int>x</int></value>"), code::PARSE_ERROR);
        assert_eq!(code_of("<value><int/></value>"), code::PARSE_ERROR);
        assert_eq!(
            code_of("<value><boolean>true</boolean></value>"),
            code::PARSE_ERROR
        );
        assert_eq!(
            code_of("<value><base64>a*b</base64></value>"),
            code::PARSE_ERROR
        );
        assert_eq!(
            code_of("<value><float>1</float></value>"),
            code::PARSE_ERROR
        );
        assert_eq!(
            code_of("<value><string>a<b/></string></value>"),
            code::INVALID_REQUEST
        );
        assert_eq!(
            code_of("<value>x<int>1</int></value>"),
            code::INVALID_REQUEST
        );
        for non_finite in ["inf", "-inf", "nan", "NaN", "infinity", "1e999"] {
            let error = one(&format!("<value><double>{non_finite}</double></value>")).unwrap_err();
            assert_eq!(error.code(), code::INVALID_PARAMS, "{non_finite}");
            assert!(matches!(error, ParseError::NotFinite(_)), "{error}");
        }
        assert!(matches!(
            one("<value><string>&custom;</string></value>"),
            Err(ParseError::Malformed(m)) if m.contains("unknown entity")
        ));
        assert!(matches!(
            one("<value><string>&#1;</string></value>"),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn documents_that_are_not_calls_are_refused() {
        let err = |doc: &str| parse_call(doc.as_bytes()).unwrap_err();
        assert_eq!(
            err("<methodCall><methodName>m</methodName>"),
            ParseError::NotACall(
                "expected <params> or </methodCall>, found the end of the document (at byte 38)"
                    .into()
            )
        );
        assert!(matches!(
            err("<methodCall><methodName>m</b>"),
            ParseError::Malformed(_)
        ));
        assert!(matches!(err("not xml at all"), ParseError::NotACall(_)));
        assert!(matches!(err(""), ParseError::NotACall(_)));
        assert!(matches!(err("<methodResponse/>"), ParseError::NotACall(_)));
        assert!(matches!(
            err("<methodCall><methodName/></methodCall>"),
            ParseError::NotACall(_)
        ));
        assert!(matches!(
            err("<methodCall><methodName> </methodName></methodCall>"),
            ParseError::NotACall(_)
        ));
        assert!(matches!(
            err("<methodCall><methodName>m</methodName></methodCall><methodCall/>"),
            ParseError::NotACall(_)
        ));
        assert!(matches!(
            err("<methodCall><methodName>m</methodName></methodCall>junk"),
            ParseError::NotACall(_)
        ));
        assert!(matches!(
            parse_call(b"<methodCall><methodName>\xff</methodName></methodCall>"),
            Err(ParseError::Malformed(m)) if m.contains("UTF-8")
        ));
        assert_eq!(err("<methodCall>").code(), code::INVALID_REQUEST);
    }

    #[test]
    fn a_doctype_is_refused_before_any_entity_is_read() {
        let billion_laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><methodCall><methodName>&lol2;</methodName></methodCall>"#;
        let error = parse_call(billion_laughs.as_bytes()).unwrap_err();
        assert_eq!(error, ParseError::Doctype);
        assert_eq!(error.code(), code::PARSE_ERROR);
    }

    #[test]
    fn nesting_is_limited() {
        let nested = |depth: usize| {
            format!(
                "{}<value><int>1</int></value>{}",
                "<value><array><data>".repeat(depth),
                "</data></array></value>".repeat(depth)
            )
        };
        assert!(one(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(one(&nested(MAX_DEPTH + 1)), Err(ParseError::TooDeep));
        let mut structs = String::from("<value/>");
        for _ in 0..=MAX_DEPTH {
            structs =
                format!("<value><struct><member><name>a</name>{structs}</member></struct></value>");
        }
        assert_eq!(one(&structs), Err(ParseError::TooDeep));
        // Far deeper than the limit: refused without recursing that deep.
        assert_eq!(one(&nested(100_000)), Err(ParseError::TooDeep));
    }

    #[test]
    fn numbers_are_written_by_their_width() {
        let xml = |v: Value| {
            let mut out = String::new();
            write_value(&mut out, &v).unwrap();
            out
        };
        assert_eq!(xml(json!(5)), "<value><int>5</int></value>");
        assert_eq!(
            xml(json!(-2147483648_i64)),
            "<value><int>-2147483648</int></value>"
        );
        assert_eq!(
            xml(json!(2147483648_i64)),
            "<value><i8>2147483648</i8></value>"
        );
        assert_eq!(
            xml(json!(u64::MAX)),
            "<value><double>18446744073709552000.0</double></value>"
        );
        assert_eq!(xml(json!(5.0)), "<value><double>5.0</double></value>");
        assert_eq!(xml(json!(0.1)), "<value><double>0.1</double></value>");
        let big = xml(json!(1e300));
        let digits = &big["<value><double>".len()..big.len() - "</double></value>".len()];
        assert!(
            digits.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
            "{big}"
        );
        assert_eq!(xml(Value::Null), "<value><nil/></value>");
        assert_eq!(xml(json!(true)), "<value><boolean>1</boolean></value>");
        assert_eq!(
            xml(json!("a<b&c>\r")),
            "<value><string>a&lt;b&amp;c&gt;&#13;</string></value>"
        );
        assert_eq!(
            xml(json!({"k<": []})),
            "<value><struct><member><name>k&lt;</name><value><array><data></data></array></value></member></struct></value>"
        );
    }

    #[test]
    fn characters_xml_cannot_carry_are_refused_in_answers_and_replaced_in_faults() {
        assert_eq!(
            write_response(&json!(["ok", "\u{1}"])),
            Err(Unrepresentable(1))
        );
        assert_eq!(
            write_response(&json!({"\u{FFFF}": 1})),
            Err(Unrepresentable(0xFFFF))
        );
        let fault = write_fault(-32603, "bad \u{0} byte");
        assert!(fault.contains("bad \u{FFFD} byte"), "{fault}");
    }

    #[test]
    fn a_fault_is_a_struct_of_code_and_string() {
        assert_eq!(
            write_fault(1000, "division by zero; data: \"DivisionByZero\""),
            "<?xml version=\"1.0\"?>\n<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>1000</int></value></member><member><name>faultString</name><value><string>division by zero; data: \"DivisionByZero\"</string></value></member></struct></value></fault></methodResponse>\n"
        );
    }

    /// Any JSON value XML can carry (finite numbers, XML characters).
    fn json_value() -> impl Strategy<Value = Value> {
        let text = proptest::collection::vec(
            any::<char>().prop_filter("an XML char", |c| xml_char(*c)),
            0..12,
        )
        .prop_map(|chars| chars.into_iter().collect::<String>());
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            text.clone().prop_map(Value::String),
            Just(json!("<&>\r\n\t ]]> é 😀")),
        ];
        leaf.prop_recursive(6, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(text.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn values_round_trip_through_xml(params in proptest::collection::vec(json_value(), 0..4)) {
            let call = parse_call(call_of(&params).as_bytes()).expect("what we write, we read");
            prop_assert_eq!(call.params, params);
        }

        #[test]
        fn no_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_call(&bytes);
        }

        #[test]
        fn no_xml_shaped_input_panics(parts in proptest::collection::vec(prop_oneof![
            Just("<methodCall>"), Just("</methodCall>"), Just("<methodName>"), Just("</methodName>"),
            Just("<params>"), Just("</params>"), Just("<param>"), Just("</param>"), Just("<value>"),
            Just("</value>"), Just("<array>"), Just("<data>"), Just("</data>"), Just("</array>"),
            Just("<struct>"), Just("<member>"), Just("<name>"), Just("</name>"), Just("</member>"),
            Just("</struct>"), Just("<int>"), Just("</int>"), Just("<double>"), Just("</double>"),
            Just("<nil/>"), Just("1"), Just("x"), Just("&amp;"), Just("&#0;"), Just("&#xD800;"),
            Just("<![CDATA["), Just("]]>"), Just("<!--"), Just("-->"), Just("<?pi?>"), Just(" "),
        ], 0..40)) {
            let _ = parse_call(parts.concat().as_bytes());
        }
    }
}
