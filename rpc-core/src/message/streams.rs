//! The envelopes of streams (PROTOCOL.md, "Streams"): items, the end,
//! credit and `rpc.unsubscribe`, all JSON-RPC notifications whose params
//! name the stream by the id its opening response gave.

use bytes::{BufMut, BytesMut};

use super::ErrorObject;

/// Notification carrying one item, server to client.
pub(crate) const ITEM: &str = "rpc.item";
/// Notification ending a stream, server to client.
pub(crate) const END: &str = "rpc.end";
/// Notification granting a stream more credit, client to server.
pub(crate) const CREDIT: &str = "rpc.credit";
/// Ends a stream early, client to server (request or notification).
pub(crate) const UNSUBSCRIBE: &str = "rpc.unsubscribe";

/// The result of a response that opens a stream: `{"stream":N}`.
pub(crate) fn write_opened(buf: &mut BytesMut, id: &str, stream: u64) {
    buf.put_slice(br#"{"jsonrpc":"2.0","result":{"stream":"#);
    buf.put_slice(itoa::Buffer::new().format(stream).as_bytes());
    buf.put_slice(br#"},"id":"#);
    buf.put_slice(id.as_bytes());
    buf.put_u8(b'}');
}

/// Adds `"credit":N` to the request just written into `buf`.
pub(crate) fn add_credit(buf: &mut BytesMut, credit: u64) {
    debug_assert_eq!(buf.last(), Some(&b'}'));
    buf.truncate(buf.len() - 1);
    buf.put_slice(br#","credit":"#);
    buf.put_slice(itoa::Buffer::new().format(credit).as_bytes());
    buf.put_u8(b'}');
}

/// `{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":N,"value":V}}`.
pub(crate) fn write_item(buf: &mut BytesMut, stream: u64, value: &str) {
    buf.put_slice(br#"{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":"#);
    buf.put_slice(itoa::Buffer::new().format(stream).as_bytes());
    buf.put_slice(br#","value":"#);
    buf.put_slice(value.as_bytes());
    buf.put_slice(b"}}");
}

/// The start of every `rpc.item` [`write_item`] writes.
const ITEM_HEAD: &[u8] = br#"{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":"#;

/// Reads an `rpc.item` written byte for byte as [`write_item`] writes it
/// (no whitespace, members in that order): its stream and its value.
/// `None` for anything else, which then takes the general parser: this
/// only spares a stream's items the full parse of their envelope (twice:
/// the message, then its params), the bulk of a small item's cost.
///
/// The result is what the general parser would find: the value is checked
/// to be exactly one JSON value, so the whole body is the message above
/// and nothing else (a value such as `1},"id":{"a":1` is refused here and
/// left to the general parser).
pub(crate) fn parse_item(body: &[u8]) -> Option<(u64, &str)> {
    let rest = body.strip_prefix(ITEM_HEAD)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    // JSON numbers have no leading zeros; a u64 has at most 20 digits.
    if digits == 0 || digits > 20 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let stream: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let value = rest[digits..]
        .strip_prefix(br#","value":"#)?
        .strip_suffix(b"}}")?;
    let value = std::str::from_utf8(value).ok()?;
    let raw: &serde_json::value::RawValue = serde_json::from_str(value).ok()?;
    // No whitespace around the value: the general parser would leave it out.
    (raw.get().len() == value.len()).then_some((stream, value))
}

/// `rpc.end` with `{"stream":N}`, or `{"stream":N,"error":{...}}`.
pub(crate) fn write_end(buf: &mut BytesMut, stream: u64, error: Option<&ErrorObject>) {
    buf.put_slice(br#"{"jsonrpc":"2.0","method":"rpc.end","params":{"stream":"#);
    buf.put_slice(itoa::Buffer::new().format(stream).as_bytes());
    if let Some(error) = error {
        buf.put_slice(br#","error":"#);
        // An ErrorObject always serializes: its data is already a JSON value.
        if serde_json::to_writer((&mut *buf).writer(), error).is_err() {
            buf.put_slice(br#"{"code":-32603,"message":"internal error"}"#);
        }
    }
    buf.put_slice(b"}}");
}

/// `rpc.credit` with `{"stream":N,"bytes":B}`.
pub(crate) fn write_credit(buf: &mut BytesMut, stream: u64, bytes: u64) {
    buf.put_slice(br#"{"jsonrpc":"2.0","method":"rpc.credit","params":{"stream":"#);
    let mut digits = itoa::Buffer::new();
    buf.put_slice(digits.format(stream).as_bytes());
    buf.put_slice(br#","bytes":"#);
    buf.put_slice(digits.format(bytes).as_bytes());
    buf.put_slice(b"}}");
}

/// `rpc.unsubscribe` with `{"stream":N}`, as a notification.
pub(crate) fn write_unsubscribe(buf: &mut BytesMut, stream: u64) {
    buf.put_slice(br#"{"jsonrpc":"2.0","method":"rpc.unsubscribe","params":{"stream":"#);
    buf.put_slice(itoa::Buffer::new().format(stream).as_bytes());
    buf.put_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(stream: u64, value: &str) -> Vec<u8> {
        let mut buf = BytesMut::new();
        write_item(&mut buf, stream, value);
        buf.to_vec()
    }

    #[test]
    fn parse_item_reads_what_write_item_writes() {
        for (stream, value) in [
            (1, "0"),
            (7, "18446744073709551615"),
            (u64::MAX, r#"{"a":[1,"}}"],"b":null}"#),
            (12, r#""é\"}}""#),
        ] {
            assert_eq!(parse_item(&item(stream, value)), Some((stream, value)));
        }
    }

    #[test]
    fn parse_item_leaves_anything_else_to_the_parser() {
        for body in [
            br#"{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":01,"value":1}}"#.as_slice(),
            br#"{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":1,"value":1},"id":{"a":1}}"#,
            br#"{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":1,"value": 1}}"#,
            br#"{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":1,"value":1 }}"#,
            br#"{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":1,"value":}}"#,
            br#"{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":,"value":1}}"#,
            br#"{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":1,"value":[1}}"#,
            br#"{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":1,"value":1}} "#,
            br#"{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":99999999999999999999,"value":1}}"#,
            br#"{"jsonrpc":"2.0","method":"rpc.end","params":{"stream":1}}"#,
        ] {
            assert_eq!(parse_item(body), None, "{}", String::from_utf8_lossy(body));
        }
    }
}
