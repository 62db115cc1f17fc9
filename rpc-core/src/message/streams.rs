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
