//! XML-RPC on the same port (feature `xmlrpc`; PROTOCOL.md, "XML-RPC"):
//! `POST /RPC2`, the path Python's `xmlrpc.client.ServerProxy` posts to.
//!
//! An adapter, as REST is: the body becomes a JSON-RPC request (XML values
//! to JSON, [`codec`]), the request goes through the connection's session
//! like a `POST /rpc` body (so admission, the token, the in-flight limit,
//! draining, deadlines and middleware all apply unchanged), and the JSON
//! answer comes back as XML: a result as a `<methodResponse>`, an error as
//! a `<fault>` with the same code and the message (and `data`, as JSON)
//! in `faultString`. Faults travel with status `200`, as XML-RPC wants;
//! refusals below XML-RPC (`401`, `403`, `405`, `413`, `415`, `503`) keep
//! the statuses of `POST /rpc`, with a fault as the body.
//!
//! `system.listMethods`, `system.methodHelp` and `system.methodSignature`
//! are answered here from the server's `rpc.discover` document (asked of
//! the session like any call, so they need what it needs); `system.multicall`
//! becomes one JSON-RPC batch.
//!
//! Why hand-written on quick-xml rather than an XML-RPC crate: `xmlrpc` is a
//! client only (on xml-rs, unchanged for years); `dxr` is maintained, but
//! its server is built on axum with its own routing and typed handlers,
//! while here every method already exists as JSON-RPC behind one
//! dispatcher and only the value mapping is needed (about 300 lines), with
//! control over what is refused (`<!DOCTYPE`, depth, size). XML-RPC is not
//! the hot path: values go through `serde_json::Value`.

use serde_json::{Value, json};

use super::*;

mod codec;

/// The one path XML-RPC is served on.
pub(super) const PATH: &str = "/RPC2";

/// The methods this adapter answers itself.
const LIST_METHODS: &str = "system.listMethods";
const METHOD_HELP: &str = "system.methodHelp";
const METHOD_SIGNATURE: &str = "system.methodSignature";
const MULTICALL: &str = "system.multicall";

/// Each of the above, its help, and its signature (result type first).
const SYSTEM: [(&str, &str, &[&str]); 4] = [
    (
        LIST_METHODS,
        "Returns the name of every method this server offers over XML-RPC, aliases included.",
        &["array"],
    ),
    (
        METHOD_HELP,
        "Returns the documentation of the method named by the string param.",
        &["string", "string"],
    ),
    (
        METHOD_SIGNATURE,
        "Returns the signatures of the method named by the string param: an array of arrays of type names, the result's first.",
        &["array", "string"],
    ),
    (
        MULTICALL,
        "Runs an array of {methodName, params} structs; returns, in order, [result] for each call that succeeded and a {faultCode, faultString} struct for each that failed.",
        &["array", "array"],
    ),
];

/// What one call came to: its result, or its JSON-RPC error.
type Outcome = Result<Value, ErrorObject>;

/// The session is gone (the server is stopping): answered with `503`.
struct Gone;

impl Post {
    /// Answers `POST /RPC2`: checks the request as `POST /rpc` is checked,
    /// reads the body within the message limit, and answers the call.
    pub(super) async fn xmlrpc(self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(refused) = self.xml_refusal_of(&request) {
            // As for `/rpc`: read the body away so the connection can carry
            // the next request, or close it.
            if announced_length(request.headers()).is_some_and(|len| len > self.max_body as u64) {
                return closing(refused);
            }
            let drain = Limited::new(request.into_body(), self.max_body).collect();
            let drained = tokio::time::timeout(self.endpoint.config.frame_timeout, drain).await;
            return if matches!(drained, Ok(Ok(_))) {
                refused
            } else {
                closing(refused)
            };
        }
        let too_large = || {
            closing(xml_refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                code::FRAME_TOO_LARGE,
                &format!(
                    "the request body exceeds the maximum of {} bytes; send smaller requests",
                    self.max_body
                ),
            ))
        };
        if announced_length(request.headers()).is_some_and(|len| len > self.max_body as u64) {
            return too_large();
        }
        let body = match Limited::new(request.into_body(), self.max_body)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
            Err(e) => {
                return closing(xml_refusal(
                    StatusCode::BAD_REQUEST,
                    code::PARSE_ERROR,
                    &format!("the request body could not be read: {e}"),
                ));
            }
        };
        let outcome = match codec::parse_call(&body) {
            Ok(call) => match self.xml_call(call).await {
                Ok(outcome) => outcome,
                Err(Gone) => return gone(),
            },
            Err(e) => Err(ErrorObject::new(e.code(), e.to_string())),
        };
        let answer = match outcome {
            Ok(result) => codec::write_response(&result)
                .unwrap_or_else(|e| codec::write_fault(code::INTERNAL_ERROR, &e.to_string())),
            Err(error) => codec::write_fault(error.code, &fault_string(&error)),
        };
        let answer = if answer.len() > self.max_answer {
            codec::write_fault(
                code::INTERNAL_ERROR,
                &format!(
                    "the answer is {} bytes as XML, over the maximum of {} bytes",
                    answer.len(),
                    self.max_answer
                ),
            )
        } else {
            answer
        };
        xml_response(StatusCode::OK, answer)
    }

    /// The refusal a `/RPC2` request gets before its body is read, if any:
    /// the host and origin, the method, the content type, the token.
    fn xml_refusal_of(&self, request: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
        if let Some(why) = self.foreign_reason(request.headers()) {
            return Some(xml_refusal(StatusCode::FORBIDDEN, code::UNAUTHORIZED, why));
        }
        self.post_refusal(
            request,
            "`/RPC2` takes XML-RPC calls by `POST`",
            xml_content_type,
            "send the body as `Content-Type: text/xml` (UTF-8)",
            xml_refusal,
        )
    }

    /// One XML-RPC call: a `system.*` method of this adapter, or any other
    /// method through the session.
    async fn xml_call(&self, call: codec::Call) -> Result<Outcome, Gone> {
        match call.method.as_str() {
            MULTICALL => self.multicall(call.params).await,
            LIST_METHODS | METHOD_HELP | METHOD_SIGNATURE => Ok(match self.discover().await? {
                Ok(doc) => introspect(&call.method, &call.params, &doc),
                Err(e) => Err(e),
            }),
            _ => Ok(self
                .run(vec![(call.method, call.params)])
                .await?
                .pop()
                .unwrap_or_else(|| Err(ErrorObject::internal("no answer")))),
        }
    }

    /// `system.multicall`: one array of `{methodName, params}` structs,
    /// run as one JSON-RPC batch (`system.*` entries here); `[result]` or
    /// a fault struct per entry, in order.
    async fn multicall(&self, params: Vec<Value>) -> Result<Outcome, Gone> {
        let Ok([Value::Array(entries)]) = <[Value; 1]>::try_from(params) else {
            return Ok(Err(ErrorObject::new(
                code::INVALID_PARAMS,
                "system.multicall takes one param: an array of {methodName, params} structs",
            )));
        };
        /// Where an entry's outcome comes from.
        enum Entry {
            Remote(usize),
            Introspect(String, Vec<Value>),
            Done(Outcome),
        }
        let mut remote = Vec::new();
        let mut plan = Vec::with_capacity(entries.len());
        for entry in entries {
            let (method, params) = match entry {
                Value::Object(mut fields) => (fields.remove("methodName"), fields.remove("params")),
                _ => (None, None),
            };
            let params = match params {
                Some(Value::Array(params)) => Some(params),
                None => Some(Vec::new()),
                Some(_) => None,
            };
            plan.push(match (method, params) {
                (Some(Value::String(method)), Some(params)) => match method.as_str() {
                    MULTICALL => Entry::Done(Err(ErrorObject::new(
                        code::INVALID_REQUEST,
                        "system.multicall cannot be called inside system.multicall",
                    ))),
                    LIST_METHODS | METHOD_HELP | METHOD_SIGNATURE => {
                        Entry::Introspect(method, params)
                    }
                    _ => {
                        remote.push((method, params));
                        Entry::Remote(remote.len() - 1)
                    }
                },
                _ => Entry::Done(Err(ErrorObject::new(
                    code::INVALID_REQUEST,
                    "each system.multicall entry is a struct with a string `methodName` and an array `params`",
                ))),
            });
        }
        let doc = if plan.iter().any(|e| matches!(e, Entry::Introspect(..))) {
            Some(self.discover().await?)
        } else {
            None
        };
        let mut outcomes = self
            .run(remote)
            .await?
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>();
        let results = plan
            .into_iter()
            .map(|entry| {
                let outcome = match entry {
                    Entry::Remote(i) => outcomes
                        .get_mut(i)
                        .and_then(Option::take)
                        .unwrap_or_else(|| Err(ErrorObject::internal("no answer"))),
                    Entry::Introspect(method, params) => match &doc {
                        Some(Ok(doc)) => introspect(&method, &params, doc),
                        Some(Err(e)) => Err(e.clone()),
                        None => Err(ErrorObject::internal("no service description")),
                    },
                    Entry::Done(outcome) => outcome,
                };
                match outcome {
                    Ok(result) => Value::Array(vec![result]),
                    Err(error) => codec::fault_struct(error.code, &fault_string(&error)),
                }
            })
            .collect();
        Ok(Ok(Value::Array(results)))
    }

    /// The server's `rpc.discover` document, asked of the session.
    async fn discover(&self) -> Result<Outcome, Gone> {
        Ok(self
            .run(vec![("rpc.discover".to_owned(), Vec::new())])
            .await?
            .pop()
            .unwrap_or_else(|| Err(ErrorObject::internal("no answer"))))
    }

    /// Runs calls through the session, as one JSON-RPC request (or batch
    /// of them): their outcomes, in order.
    async fn run(&self, calls: Vec<(String, Vec<Value>)>) -> Result<Vec<Outcome>, Gone> {
        let count = calls.len();
        let mut requests: Vec<Value> = calls
            .into_iter()
            .enumerate()
            .map(|(id, (method, params))| {
                json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id})
            })
            .collect();
        let body = match count {
            0 => return Ok(Vec::new()),
            1 => requests.pop().unwrap_or_default(),
            _ => Value::Array(requests),
        };
        let authenticated = self.token.is_some();
        let answer = match self
            .exchange(Bytes::from(body.to_string()), authenticated)
            .await
        {
            Ok(Some(answer)) => serde_json::from_slice::<Value>(&answer).unwrap_or_default(),
            Ok(None) => Value::Null,
            Err(_) => return Err(Gone),
        };
        let mut outcomes: Vec<Option<Outcome>> = (0..count).map(|_| None).collect();
        let responses = match answer {
            Value::Array(responses) => responses,
            single => vec![single],
        };
        for response in responses {
            let id = response.get("id").and_then(Value::as_u64);
            let outcome = outcome_of(&response);
            match id.and_then(|id| outcomes.get_mut(usize::try_from(id).ok()?)) {
                Some(slot) => *slot = Some(outcome),
                // An error for no request in particular (`"id": null`, a
                // batch refused whole) is every call's.
                None => {
                    for slot in outcomes.iter_mut().filter(|s| s.is_none()) {
                        *slot = Some(outcome.clone());
                    }
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(ErrorObject::internal("no answer"))))
            .collect())
    }
}

/// The result or the error of one JSON-RPC response object.
fn outcome_of(response: &Value) -> Outcome {
    if let Some(result) = response.get("result") {
        return Ok(result.clone());
    }
    response
        .get("error")
        .and_then(|e| serde_json::from_value::<ErrorObject>(e.clone()).ok())
        .map_or_else(
            || Err(ErrorObject::internal("an answer without result or error")),
            Err,
        )
}

/// A fault's string: the error's message, then its `data` (if any) as
/// JSON after `"; data: "`.
fn fault_string(error: &ErrorObject) -> String {
    match &error.data {
        Some(data) => format!("{}; data: {data}", error.message),
        None => error.message.clone(),
    }
}

/// `system.listMethods`, `system.methodHelp` or `system.methodSignature`,
/// from the `rpc.discover` document `doc`.
fn introspect(method: &str, params: &[Value], doc: &Value) -> Outcome {
    let methods = doc
        .get("methods")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let names = |m: &Value| -> Vec<String> {
        std::iter::once(m.get("name"))
            .chain(
                m.get("x-aliases")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(Some),
            )
            .filter_map(|n| n.and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    if method == LIST_METHODS {
        if !params.is_empty() {
            return Err(ErrorObject::new(
                code::INVALID_PARAMS,
                "system.listMethods takes no params",
            ));
        }
        let mut all: Vec<String> = methods.iter().flat_map(names).collect();
        all.extend(SYSTEM.iter().map(|(name, ..)| (*name).to_owned()));
        return Ok(json!(all));
    }
    let [Value::String(name)] = params else {
        return Err(ErrorObject::new(
            code::INVALID_PARAMS,
            format!("{method} takes one param: a method name (a string)"),
        ));
    };
    if let Some((_, help, signature)) = SYSTEM.iter().find(|(n, ..)| n == name) {
        return Ok(if method == METHOD_HELP {
            json!(help)
        } else {
            json!([signature])
        });
    }
    let Some(found) = methods.iter().find(|m| names(m).iter().any(|n| n == name)) else {
        return Err(ErrorObject::new(
            code::METHOD_NOT_FOUND,
            format!(
                "method `{}` not found; call system.listMethods for the list",
                crate::message::quote(name)
            ),
        ));
    };
    if method == METHOD_HELP {
        let help = found
            .get("description")
            .or_else(|| found.get("summary"))
            .and_then(Value::as_str)
            .unwrap_or("");
        return Ok(json!(help));
    }
    let mut signature = vec![xml_type(&found["result"]["schema"], doc)];
    if let Some(params) = found.get("params").and_then(Value::as_array) {
        signature.extend(params.iter().map(|p| xml_type(&p["schema"], doc)));
    }
    Ok(json!([signature]))
}

/// The XML-RPC type name for a JSON Schema: its `type` (through one
/// `$ref`, the non-null one of a nullable type), or `undef` where the
/// schema names none.
fn xml_type(schema: &Value, doc: &Value) -> &'static str {
    let schema = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .and_then(|name| doc["components"]["schemas"].get(name))
        .unwrap_or(schema);
    let ty = match schema.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    };
    match ty {
        Some("integer") => "int",
        Some("number") => "double",
        Some("string") => "string",
        Some("boolean") => "boolean",
        Some("array") => "array",
        Some("object") => "struct",
        Some("null") => "nil",
        _ => "undef",
    }
}

/// Whether a `Content-Type` is XML: `text/xml` or `application/xml`, with
/// no charset or `utf-8` (or `us-ascii`, a subset), or no header at all.
fn xml_content_type(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value else { return true };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mut parts = value.split(';').map(str::trim);
    if !parts.next().is_some_and(|t| {
        t.eq_ignore_ascii_case("text/xml") || t.eq_ignore_ascii_case("application/xml")
    }) {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let charset = value.trim().trim_matches('"');
            charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("us-ascii")
        }
        _ => p.is_empty(),
    })
}

/// `503`: the session is gone.
fn gone() -> Response<Full<Bytes>> {
    xml_refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        code::SHUTTING_DOWN,
        "the server is shutting down; retry later or on another server",
    )
}

/// A refusal below XML-RPC: its status, and a fault as the body.
fn xml_refusal(status: StatusCode, code: i64, message: &str) -> Response<Full<Bytes>> {
    xml_response(status, codec::write_fault(code, message))
}

fn xml_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({
            "methods": [
                {
                    "name": "add",
                    "description": "Returns `a + b`.",
                    "params": [
                        {"name": "a", "schema": {"type": "number"}},
                        {"name": "b", "schema": {"$ref": "#/components/schemas/B"}}
                    ],
                    "result": {"name": "result", "schema": {"type": ["integer", "null"]}},
                    "x-aliases": ["soma"]
                },
                {"name": "any", "params": [], "result": {"name": "result", "schema": {}}}
            ],
            "components": {"schemas": {"B": {"type": "object"}}}
        })
    }

    #[test]
    fn methods_are_listed_with_their_aliases_and_the_system_ones() {
        let listed = introspect(LIST_METHODS, &[], &doc()).unwrap();
        assert_eq!(
            listed,
            json!([
                "add",
                "soma",
                "any",
                LIST_METHODS,
                METHOD_HELP,
                METHOD_SIGNATURE,
                MULTICALL
            ])
        );
        let error = introspect(LIST_METHODS, &[json!(1)], &doc()).unwrap_err();
        assert_eq!(error.code, code::INVALID_PARAMS);
    }

    #[test]
    fn help_and_signatures_come_from_the_description() {
        let d = doc();
        assert_eq!(
            introspect(METHOD_HELP, &[json!("soma")], &d),
            Ok(json!("Returns `a + b`."))
        );
        assert_eq!(introspect(METHOD_HELP, &[json!("any")], &d), Ok(json!("")));
        assert_eq!(
            introspect(METHOD_SIGNATURE, &[json!("add")], &d),
            Ok(json!([["int", "double", "struct"]]))
        );
        assert_eq!(
            introspect(METHOD_SIGNATURE, &[json!("any")], &d),
            Ok(json!([["undef"]]))
        );
        assert_eq!(
            introspect(METHOD_SIGNATURE, &[json!(MULTICALL)], &d),
            Ok(json!([["array", "array"]]))
        );
        let missing = introspect(METHOD_HELP, &[json!("nope")], &d).unwrap_err();
        assert_eq!(missing.code, code::METHOD_NOT_FOUND);
        let wrong = introspect(METHOD_SIGNATURE, &[json!(1)], &d).unwrap_err();
        assert_eq!(wrong.code, code::INVALID_PARAMS);
    }

    #[test]
    fn a_fault_string_carries_the_data_as_json() {
        let mut error = ErrorObject::new(1000, "division by zero");
        assert_eq!(fault_string(&error), "division by zero");
        error.data = Some(json!("DivisionByZero"));
        assert_eq!(
            fault_string(&error),
            "division by zero; data: \"DivisionByZero\""
        );
    }

    #[test]
    fn answers_are_matched_to_calls_by_id() {
        assert_eq!(
            outcome_of(&json!({"result": null, "id": 0})),
            Ok(Value::Null)
        );
        let error = outcome_of(&json!({"error": {"code": -32601, "message": "m"}, "id": 0}));
        assert_eq!(error.unwrap_err().code, code::METHOD_NOT_FOUND);
        assert_eq!(
            outcome_of(&json!({"id": 0})).unwrap_err().code,
            code::INTERNAL_ERROR
        );
    }

    #[test]
    fn xml_content_types_are_recognised() {
        let ok = |v: &str| xml_content_type(Some(&HeaderValue::from_str(v).unwrap()));
        assert!(xml_content_type(None));
        assert!(ok("text/xml"));
        assert!(ok("Text/XML; charset=UTF-8"));
        assert!(ok("application/xml;charset=\"us-ascii\""));
        assert!(!ok("application/json"));
        assert!(!ok("text/xml; charset=iso-8859-1"));
    }
}
