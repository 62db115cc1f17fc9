//! Decoding a call's `params` into the method's arguments.
//!
//! JSON-RPC 2.0 lets a caller pass params by position (`[2, 3]`) or by name
//! (`{"a": 2, "b": 3}`). Generated dispatchers hand this module the raw params
//! and the parameter names, then pull each argument out by index; every
//! failure names the parameter it concerns, so a caller in any language can
//! see what to fix.

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::message::{ErrorObject, code, quote};

/// The arguments of one call, indexed for lookup by position or by name.
///
/// Used by the code that `#[service]` generates; you rarely need it directly.
///
/// ```
/// use rpc_core::__private::ParamReader;
/// use serde_json::value::RawValue;
///
/// let raw = RawValue::from_string(r#"{"b": 3, "a": 2}"#.to_owned()).unwrap();
/// let mut params = ParamReader::new(Some(&raw), &["a", "b"]).unwrap();
/// let a: f64 = params.arg(0).unwrap();
/// let b: f64 = params.arg(1).unwrap();
/// assert_eq!((a, b), (2.0, 3.0));
/// ```
#[derive(Debug)]
pub struct ParamReader<'a> {
    names: &'static [&'static str],
    values: Values<'a>,
}

#[derive(Debug)]
enum Values<'a> {
    /// The elements' JSON text, in order.
    ByPosition(Vec<&'a str>),
    /// Slot `i` holds the value given for `names[i]`, if any.
    ByName(Vec<Option<&'a RawValue>>),
}

impl<'a> ParamReader<'a> {
    /// Indexes `params` (absent, an array or an object) for a method whose
    /// parameters are called `names`, rejecting too many positional values,
    /// unknown names and repeated names.
    pub fn new(
        params: Option<&'a RawValue>,
        names: &'static [&'static str],
    ) -> Result<Self, ErrorObject> {
        let values = match params {
            None => Values::ByPosition(Vec::new()),
            Some(raw) if raw.get().starts_with('[') => {
                let list = match split_array(raw.get()) {
                    Some(list) => list,
                    None => serde_json::from_str::<Vec<&RawValue>>(raw.get())
                        .map_err(invalid)?
                        .into_iter()
                        .map(RawValue::get)
                        .collect(),
                };
                if list.len() > names.len() {
                    return Err(invalid(if names.is_empty() {
                        format!("this method takes no parameters, got {}", list.len())
                    } else {
                        format!(
                            "expected at most {} positional parameter{} ({}), got {}",
                            names.len(),
                            if names.len() == 1 { "" } else { "s" },
                            list_names(names),
                            list.len()
                        )
                    }));
                }
                Values::ByPosition(list)
            }
            Some(raw) => {
                let map: Vec<(std::borrow::Cow<'a, str>, &'a RawValue)> =
                    serde_json::from_str::<NamedParams<'a>>(raw.get())
                        .map_err(|e| invalid(quote(&e.to_string())))?
                        .0;
                let mut slots = vec![None; names.len()];
                for (key, value) in map {
                    let Some(index) = names.iter().position(|n| *n == key) else {
                        return Err(invalid(format_args!(
                            "unknown parameter `{}`; expected {}",
                            quote(&key),
                            list_names(names)
                        )));
                    };
                    if slots[index].replace(value).is_some() {
                        return Err(invalid(format_args!(
                            "parameter `{}` is given twice",
                            quote(&key)
                        )));
                    }
                }
                Values::ByName(slots)
            }
        };
        Ok(Self { names, values })
    }

    /// Decodes parameter number `index` into `T`.
    ///
    /// A missing parameter decodes as JSON `null`, so `Option<T>` parameters
    /// may be left out; for any other type it is an error naming the parameter.
    pub fn arg<T: DeserializeOwned>(&mut self, index: usize) -> Result<T, ErrorObject> {
        let raw = match &self.values {
            Values::ByPosition(list) => list.get(index).copied(),
            Values::ByName(slots) => slots.get(index).copied().flatten().map(RawValue::get),
        };
        let name = self.names.get(index).copied().unwrap_or("?");
        match raw {
            Some(raw) => crate::json::from_valid(raw).map_err(|e| {
                invalid(format_args!(
                    "parameter `{name}` (position {index}) has the wrong type: {}",
                    quote(without_position(&e.to_string()))
                ))
            }),
            None => serde_json::from_str("null").map_err(|_| {
                invalid(format_args!(
                    "missing parameter `{name}` (position {index}); this method takes {}",
                    list_names(self.names)
                ))
            }),
        }
    }
}

/// An object's members in order, keeping duplicates (a map would hide them).
/// The elements of `text`, a JSON array that has already been validated
/// (the text of a `RawValue`), each without the whitespace around it: what
/// `serde_json::from_str::<Vec<&RawValue>>` returns, found without a second
/// validation. Strings are skipped with `memchr2` to their closing quote;
/// outside them only brackets, braces and commas matter. `None` if `text`
/// is not shaped like an array after all (the caller then asks serde_json).
fn split_array(text: &str) -> Option<Vec<&str>> {
    const WS: [char; 4] = [' ', '\t', '\n', '\r'];
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    let bytes = inner.as_bytes();
    let mut out = Vec::new();
    let (mut depth, mut start, mut i) = (0usize, 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => loop {
                i += 1;
                i += memchr::memchr2(b'"', b'\\', bytes.get(i..)?)?;
                if bytes[i] == b'"' {
                    break;
                }
                i += 1; // the escaped byte
            },
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.checked_sub(1)?,
            b',' if depth == 0 => {
                out.push(inner[start..i].trim_matches(WS));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    let last = inner[start..].trim_matches(WS);
    if !last.is_empty() || !out.is_empty() {
        out.push(last);
    }
    (depth == 0).then_some(out)
}

struct NamedParams<'a>(Vec<(std::borrow::Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for NamedParams<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = NamedParams<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of named parameters")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) =
                    map.next_entry::<std::borrow::Cow<'de, str>, &'de RawValue>()?
                {
                    out.push(entry);
                }
                Ok(NamedParams(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// serde_json's message without its ` at line 1 column 5` tail: the
/// position is inside the one parameter's JSON, which tells the caller
/// nothing the parameter's name does not.
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    }
}

fn list_names(names: &[&str]) -> String {
    if names.is_empty() {
        "no parameters".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cold]
fn invalid(detail: impl std::fmt::Display) -> ErrorObject {
    ErrorObject::new(code::INVALID_PARAMS, format!("invalid params: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_array_finds_what_serde_json_finds() {
        for text in [
            "[]",
            "[ ]",
            "[1]",
            " [1] ",
            "[ 1 , \"a,]\\\"[\" ,\n[1,[2,{\"k\":[3]}]], {\"a,b\": \"}\"}\t, null ]",
            r#"["\\", "\"", ""]"#,
            "[[],{},[[]]]",
        ] {
            let raw = raw(text.trim());
            let theirs: Vec<&str> = serde_json::from_str::<Vec<&RawValue>>(raw.get())
                .unwrap()
                .into_iter()
                .map(RawValue::get)
                .collect();
            assert_eq!(split_array(raw.get()), Some(theirs), "{text}");
        }
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    const AB: &[&str] = &["a", "b"];

    #[test]
    fn by_position_and_by_name_agree() {
        for text in ["[2, 3]", r#"{"a": 2, "b": 3}"#, r#"{"b": 3, "a": 2}"#] {
            let r = raw(text);
            let mut p = ParamReader::new(Some(&r), AB).unwrap();
            assert_eq!((p.arg::<i32>(0).unwrap(), p.arg::<i32>(1).unwrap()), (2, 3));
        }
    }

    #[test]
    fn errors_name_the_parameter() {
        let r = raw("[2]");
        let e = ParamReader::new(Some(&r), AB)
            .unwrap()
            .arg::<i32>(1)
            .unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMS);
        assert!(e.message.contains("missing parameter `b`"), "{}", e.message);

        let r = raw(r#"{"a": 1, "b": "x"}"#);
        let e = ParamReader::new(Some(&r), AB)
            .unwrap()
            .arg::<i32>(1)
            .unwrap_err();
        assert!(
            e.message.contains("`b`")
                && e.message.contains("wrong type")
                && !e.message.contains("at line"),
            "{}",
            e.message
        );

        let r = raw(r#"{"a": 1, "c": 2}"#);
        let e = ParamReader::new(Some(&r), AB).unwrap_err();
        assert!(e.message.contains("unknown parameter `c`"), "{}", e.message);

        let r = raw(r#"{"a": 1, "a": 2}"#);
        let e = ParamReader::new(Some(&r), AB).unwrap_err();
        assert!(e.message.contains("given twice"), "{}", e.message);

        let r = raw("[1, 2, 3]");
        let e = ParamReader::new(Some(&r), AB).unwrap_err();
        assert!(e.message.contains("at most 2"), "{}", e.message);
    }

    #[test]
    fn missing_optional_parameter_is_none() {
        let mut p = ParamReader::new(None, &["x"]).unwrap();
        assert_eq!(p.arg::<Option<u8>>(0).unwrap(), None);
    }
}
