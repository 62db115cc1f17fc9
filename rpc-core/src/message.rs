//! JSON-RPC 2.0 envelopes: parsing what arrives, writing what leaves.
//!
//! Every envelope this crate writes is written here, and every message it
//! reads is parsed here. Incoming messages are parsed *borrowing* from the
//! received bytes: the method name, the params and the id stay slices of
//! them until a handler decodes its arguments. Outgoing envelopes are
//! written straight into the session's outbox; a request's params are
//! serialized there directly, a response's result is copied in from the
//! handler's JSON.
//!
//! The error codes are those of the JSON-RPC 2.0 specification plus the ones
//! this implementation defines; see [`code`] and `PROTOCOL.md`.

pub(crate) mod streams;

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// JSON-RPC error codes used by this library.
///
/// `-32768..=-32000` is reserved by the specification; the server-defined
/// codes live in `-32099..=-32000`. Errors returned by a method's own
/// `Result<T, E>` use [`APPLICATION_ERROR`](code::APPLICATION_ERROR), outside
/// the reserved range.
pub mod code {
    /// The frame is not valid JSON (or not valid UTF-8). The response id is `null`.
    pub const PARSE_ERROR: i64 = -32700;
    /// Valid JSON, but not a valid request object (or an empty batch).
    pub const INVALID_REQUEST: i64 = -32600;
    /// No service on this server offers the method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params do not fit the method: missing, unknown or mistyped.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The server failed while handling the call (a handler panicked, or its
    /// result could not be serialized).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The connection already has the maximum number of calls in flight; try
    /// again when some have completed. The connection stays open.
    pub const SERVER_BUSY: i64 = -32000;
    /// The frame announced a length above the receiver's maximum. The
    /// connection is closed after this error, because the rest of the stream
    /// can no longer be framed.
    pub const FRAME_TOO_LARGE: i64 = -32001;
    /// The call's time budget (`timeout_ms`) ran out before the handler
    /// finished; the server stopped working on it.
    pub const DEADLINE_EXCEEDED: i64 = -32002;
    /// The server requires a token and this connection has not presented a
    /// valid one with `rpc.auth`. No handler ran.
    pub const UNAUTHORIZED: i64 = -32003;
    /// The server already has its maximum number of connections; sent once,
    /// then the connection is closed.
    pub const TOO_MANY_CONNECTIONS: i64 = -32004;
    /// The server is shutting down and accepts no new calls; calls already in
    /// flight still complete.
    pub const SHUTTING_DOWN: i64 = -32005;
    /// The method itself returned an error; `data` holds the serialized error
    /// value of the method's `Result<T, E>`.
    pub const APPLICATION_ERROR: i64 = 1000;
}

/// A JSON-RPC error object, as sent in the `error` member of a response.
///
/// ```
/// use rpc_core::{ErrorObject, code};
/// let e = ErrorObject::new(code::INVALID_PARAMS, "missing parameter `b`");
/// assert_eq!(
///     serde_json::to_string(&e).unwrap(),
///     r#"{"code":-32602,"message":"missing parameter `b`"}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (JSON-RPC error {code})")]
pub struct ErrorObject {
    /// A number that says which kind of error this is; see [`code`].
    pub code: i64,
    /// A short human-readable description.
    pub message: String,
    /// Additional structured information, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl ErrorObject {
    /// An error with a code and message and no data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with `data` attached.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    #[cold]
    pub(crate) fn parse_error(detail: impl std::fmt::Display) -> Self {
        Self::new(code::PARSE_ERROR, format!("parse error: {detail}"))
    }

    #[cold]
    pub(crate) fn invalid_request(detail: impl std::fmt::Display) -> Self {
        Self::new(code::INVALID_REQUEST, format!("invalid request: {detail}"))
    }

    #[cold]
    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(code::INTERNAL_ERROR, format!("internal error: {detail}"))
    }
}

/// One request or notification, borrowed from the message it arrived in.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    /// The wire method name.
    pub method: Cow<'a, str>,
    /// The raw `params` member; `None` when absent or `null`.
    pub params: Option<&'a RawValue>,
    /// The raw `id`; `None` for a notification.
    pub id: Option<&'a RawValue>,
    /// The caller's remaining time budget in milliseconds, if it sent one.
    pub timeout_ms: Option<u64>,
    /// For a streaming method: the stream's initial window in bytes (the
    /// `credit` member), if the caller sent one.
    pub credit: Option<u64>,
    /// On a notification pushed by a handler: the id of the request it
    /// belongs to (the `in_reply_to` member).
    pub in_reply_to: Option<&'a RawValue>,
    /// The W3C trace context of the caller (the `traceparent` member).
    pub traceparent: Option<Cow<'a, str>>,
}

/// One response, borrowed from the message it arrived in.
#[derive(Debug)]
pub(crate) struct Response<'a> {
    /// The raw `id` (`null` when the peer could not tell which call).
    pub id: Option<&'a RawValue>,
    /// Exactly one of `result` and `error` is present in a valid response.
    pub result: Option<&'a RawValue>,
    /// The raw `error` object.
    pub error: Option<&'a RawValue>,
}

impl Response<'_> {
    /// The error object, decoded (a cold path: only for error responses).
    #[cold]
    pub(crate) fn error_object(&self) -> Option<Result<ErrorObject, serde_json::Error>> {
        self.error.map(|raw| serde_json::from_str(raw.get()))
    }
}

/// What one JSON-RPC message is: a request or notification for this side
/// to serve, or a response to one of this side's calls.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    /// A request (with an id) or a notification (without).
    Request(Request<'a>),
    /// A response: `result` or `error`, and no `method`.
    Response(Response<'a>),
}

/// What a message holds, once parsed.
#[derive(Debug)]
pub(crate) enum Incoming<'a> {
    /// A single message, or the error to answer it with and the id to use.
    Single(Result<Parsed<'a>, Rejected<'a>>),
    /// A non-empty batch: each member is parsed with [`parse_message`].
    Batch(Vec<&'a RawValue>),
}

/// A request that could not be accepted: the id to answer with (`None`
/// answers `null`) and the error.
#[derive(Debug)]
pub(crate) struct Rejected<'a> {
    pub id: Option<&'a RawValue>,
    pub error: ErrorObject,
}

impl<'a> Rejected<'a> {
    fn anonymous(error: ErrorObject) -> Self {
        Self { id: None, error }
    }
}

/// Parses the body of one inbound message (a single message or a batch),
/// whatever transport it came on.
pub(crate) fn parse_body(body: &[u8]) -> Incoming<'_> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => {
            return Incoming::Single(Err(Rejected::anonymous(ErrorObject::parse_error(
                format_args!("the frame is not valid UTF-8 (byte {})", e.valid_up_to()),
            ))));
        }
    };
    if text.trim_start().starts_with('[') {
        return match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(members) if members.is_empty() => Incoming::Single(Err(Rejected::anonymous(
                ErrorObject::invalid_request("a batch must contain at least one request"),
            ))),
            Ok(members) => Incoming::Batch(members),
            Err(e) => Incoming::Single(Err(Rejected::anonymous(ErrorObject::parse_error(e)))),
        };
    }
    Incoming::Single(parse_message(text))
}

/// The shape a message object is read into before it is classified and
/// validated: the members of a request and of a response together, so one
/// pass reads either. Every member is kept raw and decoded afterwards, one
/// by one: valid JSON whose member has the wrong type (a string with a lone
/// surrogate escape, a number where a string goes) is then an invalid
/// request that keeps its id and names the member, never a parse error.
#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    timeout_ms: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    credit: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    in_reply_to: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    traceparent: Option<&'a RawValue>,
}

/// A raw JSON string as text: borrowed when it has no escapes (the usual
/// case), decoded otherwise. `None` if it is not a string, or not one a
/// Rust `String` can hold (a lone surrogate escape such as `"\udc00"`,
/// which Python's `json.dumps` writes).
fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// Quotes at most [`MAX_QUOTE`] bytes of `text` (then `…`): error messages
/// that repeat what a client sent stay small, whatever it sent.
pub(crate) fn quote(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_QUOTE {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_QUOTE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

/// The most bytes of client input an error message repeats.
pub(crate) const MAX_QUOTE: usize = 256;

/// The answer to a message that failed to parse: `-32700` if it is not
/// JSON; if it is (RFC 8259 allows a member name with a lone surrogate
/// escape, which no Rust string can hold), an invalid request that keeps
/// its id.
#[cold]
fn undecodable_or_not_json(text: &str, e: serde_json::Error) -> Rejected<'_> {
    if serde_json::from_str::<&RawValue>(text).is_err() {
        return Rejected::anonymous(ErrorObject::parse_error(e));
    }
    // `\uFFFD` has the length of the escape it replaces: offsets in the
    // cleaned text are offsets in the original.
    let clean = replace_lone_surrogates(text);
    let id = serde_json::from_str::<IdOnly<'_>>(&clean)
        .ok()
        .and_then(|only| only.id)
        .and_then(|id| {
            let start = id.get().as_ptr() as usize - clean.as_ptr() as usize;
            let original = text.get(start..start + id.get().len())?;
            serde_json::from_str::<&RawValue>(original).ok()
        })
        .filter(|id| valid_id(id));
    Rejected {
        id,
        error: ErrorObject::invalid_request(
            "a member name is not a string of Unicode characters (it holds a lone surrogate escape such as \\udc00)",
        ),
    }
}

/// `text` with every `\uXXXX` escape of a lone surrogate replaced by
/// `\uFFFD` (the replacement character), escape for escape.
fn replace_lone_surrogates(text: &str) -> String {
    fn hex_at(b: &[u8], at: usize) -> Option<u16> {
        let digits = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let Some(unit) = hex_at(b, i + 2) else {
            i += 2;
            continue;
        };
        let paired = (0xD800..0xDC00).contains(&unit)
            && b.get(i + 6) == Some(&b'\\')
            && b.get(i + 7) == Some(&b'u')
            && hex_at(b, i + 8).is_some_and(|low| (0xDC00..0xE000).contains(&low));
        if paired {
            i += 12;
        } else if (0xD800..0xE000).contains(&unit) {
            out.push_str(&text[copied..i]);
            out.push_str("\\uFFFD");
            i += 6;
            copied = i;
        } else {
            i += 6;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Only the id, for answering a request that failed validation.
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
}

/// Deserializes a member that is present (even as `null`) into `Some`, so that
/// `"id": null` (a request) stays distinct from a missing id (a notification).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses, classifies and validates one message object.
pub(crate) fn parse_message(text: &str) -> Result<Parsed<'_>, Rejected<'_>> {
    if !text.trim_start().starts_with('{') {
        // serde would also accept the struct as an array of its fields; and
        // text that is not JSON at all is a parse error, not a bad request.
        let error = match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => ErrorObject::invalid_request("a request must be a JSON object"),
            Err(e) => ErrorObject::parse_error(e),
        };
        return Err(Rejected::anonymous(error));
    }
    let raw: RawMessage<'_> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) if e.is_data() => {
            // Valid JSON, members all kept raw: a member given twice.
            let id = serde_json::from_str::<IdOnly<'_>>(text)
                .ok()
                .and_then(|i| i.id)
                .filter(|id| valid_id(id));
            return Err(Rejected {
                id,
                error: ErrorObject::invalid_request(quote(&e.to_string())),
            });
        }
        Err(e) => return Err(undecodable_or_not_json(text, e)),
    };
    let id = match raw.id {
        Some(id) if !valid_id(id) => {
            return Err(Rejected::anonymous(ErrorObject::invalid_request(
                "`id` must be a string, a number or null",
            )));
        }
        id => id,
    };
    let error = raw.error.filter(|e| e.get() != NULL);
    if raw.method.is_none() && (raw.result.is_some() || error.is_some()) {
        return Ok(Parsed::Response(Response {
            id,
            result: raw.result,
            error,
        }));
    }
    let reject = |detail: &str| Rejected {
        id,
        error: ErrorObject::invalid_request(detail),
    };
    if !raw.jsonrpc.is_some_and(is_version_2) {
        return Err(reject("`jsonrpc` must be exactly \"2.0\""));
    }
    let Some(method) = raw.method else {
        return Err(reject("the `method` member is missing"));
    };
    let Some(method) = raw_str(method) else {
        return Err(reject(if method.get().starts_with('"') {
            "`method` must be a string of Unicode characters (a lone surrogate escape such as \\udc00 is not one)"
        } else {
            "`method` must be a string"
        }));
    };
    let params = match raw.params {
        Some(p) if p.get() == NULL => None,
        Some(p) if !matches!(p.get().as_bytes().first(), Some(b'[' | b'{')) => {
            return Err(reject("`params` must be an array or an object"));
        }
        p => p,
    };
    let timeout_ms = match raw.timeout_ms {
        None => None,
        Some(t) if t.get() == NULL => None,
        Some(t) => match t.get().parse::<u64>() {
            Ok(ms) => Some(ms),
            Err(_) => {
                return Err(reject(
                    "`timeout_ms` must be a whole number of milliseconds, from 0 to 18446744073709551615",
                ));
            }
        },
    };
    let credit = match raw.credit {
        None => None,
        Some(c) if c.get() == NULL => None,
        Some(c) => match c.get().parse::<u64>() {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                return Err(reject(
                    "`credit` must be a whole number of bytes, from 0 to 18446744073709551615",
                ));
            }
        },
    };
    Ok(Parsed::Request(Request {
        method,
        params,
        id,
        timeout_ms,
        credit,
        in_reply_to: raw.in_reply_to,
        // An unreadable trace context is ignored, as W3C Trace Context says.
        traceparent: raw.traceparent.and_then(raw_str),
    }))
}

/// Whether a raw `jsonrpc` value is the string "2.0" (escapes allowed).
fn is_version_2(raw: &RawValue) -> bool {
    raw.get() == r#""2.0""# || serde_json::from_str::<String>(raw.get()).is_ok_and(|v| v == "2.0")
}

/// A valid id is a string, a number or null (raw JSON text is already trimmed).
fn valid_id(id: &RawValue) -> bool {
    matches!(
        id.get().as_bytes().first(),
        Some(b'"' | b'-' | b'0'..=b'9' | b'n')
    )
}

const NULL: &str = "null";

/// Writes `{"jsonrpc":"2.0","result":<result>,"id":<id>}`.
pub(crate) fn write_result(buf: &mut BytesMut, id: &str, result: &str) {
    buf.put_slice(br#"{"jsonrpc":"2.0","result":"#);
    buf.put_slice(result.as_bytes());
    buf.put_slice(br#","id":"#);
    buf.put_slice(id.as_bytes());
    buf.put_u8(b'}');
}

/// Writes `{"jsonrpc":"2.0","error":{...},"id":<id or null>}`.
pub(crate) fn write_error(buf: &mut BytesMut, id: Option<&str>, error: &ErrorObject) {
    buf.put_slice(br#"{"jsonrpc":"2.0","error":"#);
    // An ErrorObject always serializes: its data is already a JSON value.
    if serde_json::to_writer((&mut *buf).writer(), error).is_err() {
        buf.put_slice(br#"{"code":-32603,"message":"internal error"}"#);
    }
    buf.put_slice(br#","id":"#);
    buf.put_slice(id.unwrap_or(NULL).as_bytes());
    buf.put_u8(b'}');
}

/// Writes a request (with `id`) or a notification (without), with the
/// caller's time budget if it has one.
pub(crate) fn write_request<P: Serialize + ?Sized>(
    buf: &mut BytesMut,
    method: &str,
    params: &P,
    id: Option<u64>,
    timeout: Option<std::time::Duration>,
) -> serde_json::Result<()> {
    buf.put_slice(br#"{"jsonrpc":"2.0","method":"#);
    serde_json::to_writer((&mut *buf).writer(), method)?;
    buf.put_slice(br#","params":"#);
    let start = buf.len();
    crate::json::write(buf, params)?;
    if !matches!(buf.get(start), Some(b'[' | b'{')) {
        // JSON-RPC params are positional or named: caught here, with advice,
        // rather than refused by the server as an invalid request.
        return Err(serde::ser::Error::custom(
            "params must serialize to a JSON array (by position) or object (by name); for a single argument pass a one-element tuple, `&(value,)`",
        ));
    }
    let mut digits = itoa::Buffer::new();
    if let Some(id) = id {
        buf.put_slice(br#","id":"#);
        buf.put_slice(digits.format(id).as_bytes());
    }
    if let Some(timeout) = timeout {
        // Round up: a budget of 0.4 ms is not "no time at all".
        let ms = u64::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        buf.put_slice(br#","timeout_ms":"#);
        buf.put_slice(digits.format(ms).as_bytes());
    }
    buf.put_u8(b'}');
    Ok(())
}

/// Writes the `rpc.shutdown` notice: `{"jsonrpc":"2.0","method":"rpc.shutdown","params":{"grace_ms":N}}`.
pub(crate) fn write_shutdown_notice(buf: &mut BytesMut, grace: std::time::Duration) {
    buf.put_slice(br#"{"jsonrpc":"2.0","method":"rpc.shutdown","params":{"grace_ms":"#);
    let ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    buf.put_slice(itoa::Buffer::new().format(ms).as_bytes());
    buf.put_slice(b"}}");
}

/// Writes the `rpc.cancel` notification for the call with numeric id `id`.
pub(crate) fn write_cancel(buf: &mut BytesMut, id: u64) {
    buf.put_slice(br#"{"jsonrpc":"2.0","method":"rpc.cancel","params":{"id":"#);
    buf.put_slice(itoa::Buffer::new().format(id).as_bytes());
    buf.put_slice(b"}}");
}

/// Writes a notification a handler pushes during a call: its own method and
/// params, and `in_reply_to`, the raw id of the request it belongs to.
pub(crate) fn write_push<P: Serialize + ?Sized>(
    buf: &mut BytesMut,
    method: &str,
    params: &P,
    in_reply_to: &str,
) -> serde_json::Result<()> {
    buf.put_slice(br#"{"jsonrpc":"2.0","method":"#);
    serde_json::to_writer((&mut *buf).writer(), method)?;
    buf.put_slice(br#","params":"#);
    crate::json::write(buf, params)?;
    buf.put_slice(br#","in_reply_to":"#);
    buf.put_slice(in_reply_to.as_bytes());
    buf.put_u8(b'}');
    Ok(())
}

/// A request of a batch, serialized before the batch is sent: everything
/// but its id, its time budget and its closing brace, which belong to the
/// connection it goes out on ([`write_batch`]).
pub(crate) fn write_batch_member<P: Serialize + ?Sized>(
    buf: &mut BytesMut,
    method: &str,
    params: &P,
) -> serde_json::Result<()> {
    let start = buf.len();
    write_request(buf, method, params, None, None)?;
    debug_assert_eq!(buf.last(), Some(&b'}'));
    buf.truncate(buf.len() - 1);
    debug_assert!(buf.len() > start);
    Ok(())
}

/// Writes a batch of requests from members made by [`write_batch_member`]:
/// each gets its numeric id and `timeout_ms` (id 0: a notification, which
/// gets neither).
pub(crate) fn write_batch(
    buf: &mut BytesMut,
    members: impl Iterator<Item = (u64, impl AsRef<[u8]>)>,
    budget_ms: u64,
) {
    let mut digits = itoa::Buffer::new();
    buf.put_u8(b'[');
    for (i, (id, member)) in members.enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(member.as_ref());
        if id != 0 {
            buf.put_slice(br#","id":"#);
            buf.put_slice(digits.format(id).as_bytes());
            buf.put_slice(br#","timeout_ms":"#);
            buf.put_slice(digits.format(budget_ms).as_bytes());
        }
        buf.put_u8(b'}');
    }
    buf.put_u8(b']');
}

/// Writes one response: a result or an error for the raw id `id`.
pub(crate) fn write_response(buf: &mut BytesMut, id: &str, reply: Result<&str, &ErrorObject>) {
    match reply {
        Ok(result) => write_result(buf, id, result),
        Err(error) => write_error(buf, Some(id), error),
    }
}

/// Writes the array answering a batch, one response per member with an id.
pub(crate) fn write_batch_responses<'r>(
    buf: &mut BytesMut,
    responses: impl Iterator<Item = (&'r str, Result<&'r str, &'r ErrorObject>)>,
) {
    buf.put_u8(b'[');
    for (i, (id, reply)) in responses.enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        write_response(buf, id, reply);
    }
    buf.put_u8(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(text: &str) -> Result<Request<'_>, Rejected<'_>> {
        match parse_body(text.as_bytes()) {
            Incoming::Single(r) => r.map(request),
            Incoming::Batch(_) => panic!("unexpected batch"),
        }
    }

    fn request(parsed: Parsed<'_>) -> Request<'_> {
        match parsed {
            Parsed::Request(r) => r,
            Parsed::Response(r) => panic!("unexpected response {r:?}"),
        }
    }

    fn parse_request(text: &str) -> Result<Request<'_>, Rejected<'_>> {
        parse_message(text).map(request)
    }

    #[test]
    fn a_message_with_result_or_error_and_no_method_is_a_response() {
        let Ok(Parsed::Response(r)) = parse_message(r#"{"jsonrpc":"2.0","result":null,"id":4}"#)
        else {
            panic!("a response")
        };
        assert_eq!(
            (r.id.unwrap().get(), r.result.unwrap().get()),
            ("4", "null")
        );
        let Ok(Parsed::Response(r)) = parse_message(
            r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"busy"},"id":null}"#,
        ) else {
            panic!("a response")
        };
        assert_eq!(r.error_object().unwrap().unwrap().code, -32000);
    }

    fn code_of(r: Result<Request<'_>, Rejected<'_>>) -> i64 {
        r.err().map(|e| e.error.code).unwrap_or(0)
    }

    #[test]
    fn accepts_positional_named_and_absent_params() {
        let r = single(r#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":7}"#).unwrap();
        assert_eq!(r.method, "add");
        assert_eq!(r.params.unwrap().get(), "[1,2]");
        assert_eq!(r.id.unwrap().get(), "7");
        let r = single(r#"{"jsonrpc":"2.0","method":"add","params":{"a":1},"id":"x"}"#).unwrap();
        assert_eq!(r.id.unwrap().get(), r#""x""#);
        let r = single(r#"{"jsonrpc":"2.0","method":"ping"}"#).unwrap();
        assert!(r.params.is_none() && r.id.is_none());
    }

    #[test]
    fn method_names_without_escapes_are_borrowed_not_copied() {
        let r = single(r#"{"jsonrpc":"2.0","method":"add","id":1}"#).unwrap();
        assert!(matches!(r.method, Cow::Borrowed("add")));
        let r = single(r#"{"jsonrpc":"2.0","method":"a\u0064d","id":1}"#).unwrap();
        assert_eq!(r.method, "add", "an escaped name is decoded");
    }

    #[test]
    fn the_version_may_be_written_with_escapes() {
        assert!(single(r#"{"jsonrpc":"2\u002e0","method":"m","id":1}"#).is_ok());
        assert_eq!(
            code_of(single(r#"{"jsonrpc":2.0,"method":"m","id":1}"#)),
            code::INVALID_REQUEST
        );
        assert_eq!(
            code_of(single(r#"{"jsonrpc":null,"method":"m","id":1}"#)),
            code::INVALID_REQUEST
        );
    }

    #[test]
    fn lone_surrogates_are_replaced_escape_for_escape_and_pairs_kept() {
        let text = r#"{"\udc00":1,"a\ud83d\ude00b":"\\udc00","c":"\ud800x"}"#;
        let clean = replace_lone_surrogates(text);
        assert_eq!(clean.len(), text.len());
        assert_eq!(
            clean,
            r#"{"\uFFFD":1,"a\ud83d\ude00b":"\\udc00","c":"\uFFFDx"}"#
        );
    }

    #[test]
    fn a_member_name_with_a_lone_surrogate_keeps_the_id() {
        let r = single(r#"{"jsonrpc":"2.0","method":"m","\udc00":1,"id":5}"#).unwrap_err();
        assert_eq!(r.error.code, code::INVALID_REQUEST);
        assert_eq!(r.id.map(|i| i.get()), Some("5"));
        let r = single(r#"{"id":"\udc00","\udc00":1}"#).unwrap_err();
        assert_eq!(
            r.id.map(|i| i.get()),
            Some(r#""\udc00""#),
            "the id, byte for byte"
        );
        assert_eq!(code_of(single(r#"{"\udc00":1,"#)), code::PARSE_ERROR);
    }

    #[test]
    fn null_id_is_a_request_not_a_notification() {
        let r = single(r#"{"jsonrpc":"2.0","method":"m","id":null}"#).unwrap();
        assert_eq!(r.id.map(|i| i.get()), Some("null"));
    }

    #[test]
    fn error_codes_follow_the_specification() {
        assert_eq!(code_of(single("{")), code::PARSE_ERROR);
        assert_eq!(code_of(single("hello?")), code::PARSE_ERROR);
        assert_eq!(code_of(single("")), code::PARSE_ERROR);
        assert_eq!(code_of(single("[1,")), code::PARSE_ERROR);
        assert_eq!(code_of(single("[]")), code::INVALID_REQUEST);
        assert_eq!(code_of(single("42")), code::INVALID_REQUEST);
        assert_eq!(
            code_of(parse_request(r#"["2.0","rpc.ping",null,42]"#)),
            code::INVALID_REQUEST,
            "an array is not a request, even with the right fields in order"
        );
        assert_eq!(
            code_of(single(r#"{"jsonrpc":"1.0","method":"m","id":1}"#)),
            code::INVALID_REQUEST
        );
        assert_eq!(
            code_of(single(r#"{"jsonrpc":"2.0","id":1}"#)),
            code::INVALID_REQUEST
        );
        assert_eq!(
            code_of(single(r#"{"jsonrpc":"2.0","method":1,"id":1}"#)),
            code::INVALID_REQUEST
        );
        assert_eq!(
            code_of(single(
                r#"{"jsonrpc":"2.0","method":"m","params":3,"id":1}"#
            )),
            code::INVALID_REQUEST
        );
        assert_eq!(
            code_of(single(r#"{"jsonrpc":"2.0","method":"m","id":{}}"#)),
            code::INVALID_REQUEST
        );
        match parse_body(&[b'"', 0xff, b'"']) {
            Incoming::Single(r) => assert_eq!(code_of(r.map(request)), code::PARSE_ERROR),
            Incoming::Batch(_) => panic!("not a batch"),
        }
    }

    #[test]
    fn invalid_request_keeps_a_recoverable_id() {
        let r = single(r#"{"jsonrpc":"2.0","method":5,"id":9}"#).unwrap_err();
        assert_eq!(r.id.map(|i| i.get()), Some("9"));
        let r = single(r#"{"jsonrpc":"2.0","id":"abc"}"#).unwrap_err();
        assert_eq!(r.id.map(|i| i.get()), Some(r#""abc""#));
    }

    #[test]
    fn request_and_response_writers_produce_valid_json() {
        let mut buf = BytesMut::new();
        write_request(&mut buf, "calc.add", &(1, 2.5), Some(3), None).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"jsonrpc":"2.0","method":"calc.add","params":[1,2.5],"id":3})
        );
        buf.clear();
        let budget = std::time::Duration::from_micros(2_500_100);
        write_request(&mut buf, "m", &[0; 0], None, Some(budget)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"jsonrpc":"2.0","method":"m","params":[],"timeout_ms":2501})
        );
        let r = parse_request(std::str::from_utf8(&buf).unwrap()).unwrap();
        assert_eq!(r.timeout_ms, Some(2501));
        buf.clear();
        write_error(&mut buf, None, &ErrorObject::new(-1, "x\"y"));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["error"]["message"], "x\"y");
        assert!(v["id"].is_null());
    }
}
