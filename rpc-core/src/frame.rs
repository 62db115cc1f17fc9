//! Length-prefixed framing: the unit that travels on the socket.
//!
//! Every message is a 4-byte big-endian length `N` followed by exactly `N`
//! bytes of UTF-8 JSON. This module owns that rule and nothing else: it does
//! not look inside the JSON.
//!
//! The decoder checks the announced length against a configurable maximum
//! *before* reserving any memory, so a peer that announces a 4 GiB frame costs
//! us four bytes of buffer, not four gigabytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Size of the length prefix in bytes.
pub const HEADER_LEN: usize = 4;

/// Default maximum frame body size: 16 MiB.
///
/// Large enough for any ordinary call, small enough that one peer cannot make
/// the server reserve an unreasonable amount of memory for a single message.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Most memory reserved ahead of the bytes that have arrived for a frame.
const RESERVE_STEP: usize = 64 * 1024;

/// A violation of the framing rule. After one of these the byte stream can no
/// longer be trusted, so the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a frame larger than this side accepts.
    #[error(
        "frame of {len} bytes exceeds the maximum of {max} bytes; send smaller messages or raise the limit on both sides"
    )]
    TooLarge {
        /// The length the peer announced.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The peer is not speaking this protocol at all: its first bytes are
    /// those of another protocol (an HTTP request, a TLS handshake).
    #[error("the peer speaks {protocol}, not length-prefixed JSON-RPC; {hint}")]
    Foreign {
        /// The protocol recognised.
        protocol: &'static str,
        /// What to do about it.
        hint: &'static str,
    },
    /// Reading from the socket failed, or it closed in the middle of a frame.
    #[error("connection error while reading a frame: {0}")]
    Io(#[from] std::io::Error),
}

/// Splits a byte stream into frames (for [`tokio_util::codec::FramedRead`]).
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder that rejects frames whose body is longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }
}

impl Decoder for FrameDecoder {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let header = [header[0], header[1], header[2], header[3]];
        let len = u32::from_be_bytes(header) as usize;
        if len > self.max_frame {
            if let Some((protocol, hint)) = foreign_protocol(&header) {
                return Err(FrameError::Foreign { protocol, hint });
            }
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let total = HEADER_LEN + len;
        if src.len() < total {
            // Grow with what actually arrives, not with what the header
            // promises: a peer announcing 16 MiB and sending five bytes must
            // not cost 16 MiB (times every such peer).
            src.reserve((total - src.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        Ok(Some(src.split_to(len).freeze()))
    }
}

/// Recognises the first four bytes of protocols people point at the wrong
/// port by mistake. Only consulted for lengths above the maximum, so a valid
/// frame is never misread.
fn foreign_protocol(header: &[u8; 4]) -> Option<(&'static str, &'static str)> {
    use crate::transport::Protocol;
    match crate::transport::foreign(header)? {
        Protocol::Http => Some((
            "HTTP",
            "this port expects 4-byte length-prefixed JSON frames (see PROTOCOL.md), not HTTP",
        )),
        Protocol::Tls => Some((
            "TLS",
            "one side uses TLS and the other does not: configure TLS on both, or on neither",
        )),
        Protocol::Framed => None,
    }
}

/// Appends frames to a buffer in place: reserve the header, let the caller
/// write the body straight into the buffer, then patch in the length.
///
/// Writing in place means an envelope is written exactly once, directly into
/// the bytes that go to the socket.
pub(crate) struct FrameWriter<'a> {
    buf: &'a mut BytesMut,
    start: usize,
}

impl<'a> FrameWriter<'a> {
    /// Starts a frame at the end of `buf`.
    pub(crate) fn begin(buf: &'a mut BytesMut) -> Self {
        let start = buf.len();
        buf.put_u32(0);
        Self { buf, start }
    }

    /// The buffer the body is written into.
    pub(crate) fn body(&mut self) -> &mut BytesMut {
        self.buf
    }

    /// Completes the frame; if its body exceeds `max_frame`, removes it again
    /// and reports the size.
    pub(crate) fn finish(self, max_frame: usize) -> Result<(), FrameError> {
        let len = self.buf.len() - self.start - HEADER_LEN;
        if len > max_frame || u32::try_from(len).is_err() {
            self.buf.truncate(self.start);
            return Err(FrameError::TooLarge {
                len,
                max: max_frame,
            });
        }
        let header = (len as u32).to_be_bytes();
        self.buf[self.start..self.start + HEADER_LEN].copy_from_slice(&header);
        Ok(())
    }

    /// Abandons the frame, leaving the buffer as it was before [`begin`](Self::begin).
    pub(crate) fn abort(self) {
        self.buf.truncate(self.start);
    }
}

/// The bytes of `part` as a slice of `frame` when `part` lies inside it (no
/// copy, the usual case for values borrowed while parsing the frame), or a
/// copy otherwise.
pub(crate) fn sub_bytes(frame: &Bytes, part: &str) -> Bytes {
    let base = frame.as_ptr() as usize;
    let start = part.as_ptr() as usize;
    if start >= base && start + part.len() <= base + frame.len() {
        frame.slice(start - base..start - base + part.len())
    } else {
        Bytes::copy_from_slice(part.as_bytes())
    }
}

/// Encodes one frame holding `body` (for tests and simple tools).
///
/// ```
/// let frame = rpc_core::frame::encode(br#"{"jsonrpc":"2.0","method":"ping"}"#);
/// assert_eq!(&frame[..4], &[0, 0, 0, 33]);
/// ```
pub fn encode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_and_waits_for_partial_ones() {
        let mut dec = FrameDecoder::new(100);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&encode(b"{}"));
        buf.extend_from_slice(&encode(b"[1]")[..5]);
        assert_eq!(
            dec.decode(&mut buf).unwrap().unwrap(),
            Bytes::from_static(b"{}")
        );
        assert!(dec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"1]");
        assert_eq!(
            dec.decode(&mut buf).unwrap().unwrap(),
            Bytes::from_static(b"[1]")
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn oversize_length_is_rejected_without_allocating() {
        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let before = buf.capacity();
        match dec.decode(&mut buf) {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!(len, u32::MAX as usize);
                assert_eq!(max, 1024);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(buf.capacity(), before);
    }

    #[test]
    fn http_and_tls_on_the_wrong_port_are_named() {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(FrameError::Foreign {
                protocol: "HTTP",
                ..
            })
        ));
        let mut buf = BytesMut::from(&[0x16, 0x03, 0x01, 0x02, 0x00][..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(FrameError::Foreign {
                protocol: "TLS",
                ..
            })
        ));
        // A small frame is a frame, whatever its bytes.
        let mut buf = BytesMut::from(&encode(b"GET ")[..]);
        assert_eq!(&dec.decode(&mut buf).unwrap().unwrap()[..], b"GET ");
    }

    #[test]
    fn writer_patches_length_and_enforces_maximum() {
        let mut buf = BytesMut::new();
        let mut w = FrameWriter::begin(&mut buf);
        w.body().extend_from_slice(b"hello");
        w.finish(10).unwrap();
        assert_eq!(&buf[..], &encode(b"hello")[..]);

        let mut w = FrameWriter::begin(&mut buf);
        w.body().extend_from_slice(b"this is far too long");
        assert!(matches!(
            w.finish(10),
            Err(FrameError::TooLarge { len: 20, .. })
        ));
        assert_eq!(
            &buf[..],
            &encode(b"hello")[..],
            "a rejected frame leaves no trace"
        );
    }
}
