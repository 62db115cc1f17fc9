//! The framed adapter: JSON-RPC messages over any byte stream, each in a
//! length-prefixed frame (see [`crate::frame`]). Plain TCP, TLS and custom
//! streams all use it.
//!
//! Inbound, a hand-written read loop rather than a codec stream, because
//! the session needs to know *when* a frame started arriving: a frame whose
//! first bytes came in must be complete within the frame timeout (so a peer
//! trickling one byte a minute cannot hold a connection forever), while a
//! connection with no partial frame is merely idle and has its own, longer
//! limit. The buffer starts empty and is released after a large frame, so
//! an idle connection costs almost nothing.
//!
//! Outbound, the session's [`Outbox`] already holds the frames with their
//! length prefixes, written in place; the writer task sends whatever has
//! accumulated with one `write` call.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::io::poll_read_buf;

use super::{ConnectionInfo, Inbound, ReadError, Timer, Transport};
use crate::frame::{FrameDecoder, FrameError};
use crate::outbox::{Framing, Outbox, StreamDrain};

/// Bytes requested from the socket per read when the buffer is empty.
const READ_CHUNK: usize = 4 * 1024;

/// Capacity above which the buffer is released once it is empty again.
const KEEP_CAPACITY: usize = 64 * 1024;

/// The read half of a byte stream, type-erased: one virtual call per read
/// (not per message), so the session needs no type parameter.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Unpin + Send>;

/// The sizes and times a framed transport works within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FramedLimits {
    /// Largest frame body accepted.
    pub(crate) max_frame: usize,
    /// Largest frame body sent (at least what every error response needs).
    pub(crate) max_outgoing: usize,
    /// Time a started frame may take to complete; `None`: no limit.
    pub(crate) frame_timeout: Option<Duration>,
    /// Bytes buffered for writing before producers wait.
    pub(crate) write_buffer: usize,
}

/// Opens the framed transport over `read` and `write`: spawns the writer
/// task. `prefix` holds bytes already read from `read` (the sniffed start).
pub(crate) fn open<W>(
    read: ReadHalf,
    write: W,
    prefix: BytesMut,
    limits: FramedLimits,
    info: ConnectionInfo,
) -> Transport
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let outbox = Arc::new(Outbox::new(
        Framing::LengthPrefix,
        limits.max_outgoing,
        limits.write_buffer,
    ));
    let writer = tokio::spawn({
        let outbox = outbox.clone();
        async move { outbox.run_writer(StreamDrain(write)).await }
    });
    let mut reader = Reader::new(read, limits.max_frame, limits.frame_timeout);
    if !prefix.is_empty() {
        reader.started = Some(reader.last_read);
        reader.buf = prefix;
    }
    Transport {
        inbound: Inbound::Framed(reader),
        outbox,
        writer,
        info: Arc::new(info),
    }
}

/// Reads the first bytes of a new byte stream, enough to tell what it
/// speaks ([`super::sniff`]), within `until` (or the frame timeout once a
/// byte has come). `None` if the peer closed or sent nothing in time.
pub(crate) async fn read_prefix<R: AsyncRead + Unpin>(
    read: &mut R,
    until: Instant,
    frame_timeout: Duration,
) -> Option<BytesMut> {
    let mut buf = BytesMut::new();
    let mut deadline = until;
    while buf.len() < 4 {
        if buf.capacity() - buf.len() < 4 {
            buf.reserve(READ_CHUNK);
        }
        match tokio::time::timeout_at(deadline, read.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
        deadline = crate::time::after(frame_timeout);
    }
    Some(buf)
}

/// What to send a peer that speaks another protocol, in terms it
/// understands, before closing: a plain HTTP 400 for HTTP (so `curl` shows
/// why), nothing for TLS.
pub(crate) fn foreign_answer(protocol: &str, hint: &str) -> Option<Vec<u8>> {
    if protocol != "HTTP" {
        return None;
    }
    let body = format!("{hint}.\n");
    Some(
        format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// Reads length-prefixed frames from a byte stream.
pub(crate) struct Reader {
    io: ReadHalf,
    buf: BytesMut,
    decoder: FrameDecoder,
    frame_timeout: Option<Duration>,
    /// When the first byte of the frame now in `buf` arrived.
    started: Option<Instant>,
    /// When the last read returned data: the arrival time of every frame it
    /// completed (one clock reading per read, not per frame).
    last_read: Instant,
    /// The frame or idle deadline, kept across polls.
    timer: Timer,
}

impl Reader {
    pub(crate) fn new(io: ReadHalf, max_frame: usize, frame_timeout: Option<Duration>) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max_frame),
            frame_timeout,
            started: None,
            last_read: Instant::now(),
            timer: Timer::default(),
        }
    }

    /// When bytes last arrived.
    pub(crate) fn last_read(&self) -> Instant {
        self.last_read
    }

    /// The next frame, or `Ok(None)` when the peer closed cleanly between frames.
    ///
    /// `idle_until`, if given, is when to give up while no frame has started.
    /// Cancel-safe: all state lives in `self`.
    #[cfg(test)]
    pub(crate) async fn next(
        &mut self,
        idle_until: Option<Instant>,
    ) -> Result<Option<Bytes>, ReadError> {
        std::future::poll_fn(|cx| self.poll_next(cx, idle_until)).await
    }

    /// Polls for the next frame: `Ok(None)` when the peer closed cleanly
    /// between frames; `idle_until`, if given, is when to give up while no
    /// frame has started.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        idle_until: Option<Instant>,
    ) -> Poll<Result<Option<Bytes>, ReadError>> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                // Bytes left over belong to a frame that started arriving
                // with the last read.
                self.started = (!self.buf.is_empty()).then_some(self.last_read);
                if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
                    self.buf = BytesMut::new();
                }
                return Poll::Ready(Ok(Some(frame)));
            }
            let read = if self.buf.capacity() == 0 {
                // Nothing half-read and no buffer (the usual start of a
                // burst): read onto the stack, and keep only what came, in
                // a buffer of its size. Small bursts then cost one small
                // allocation, which the allocator serves from its
                // per-thread cache, instead of a fresh `READ_CHUNK` buffer
                // (and a read that finds nothing costs none).
                self.read_onto_stack(cx)
            } else {
                if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                    self.buf.reserve(READ_CHUNK);
                }
                poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
            };
            match read {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(if self.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(ReadError::Truncated(self.buf.len()))
                    });
                }
                Poll::Ready(Ok(_)) => {
                    self.last_read = Instant::now();
                    self.started.get_or_insert(self.last_read);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(FrameError::Io(e).into())),
                Poll::Pending => {
                    // Nothing half-read: give the buffer back while waiting,
                    // so an idle connection holds no read buffer (one
                    // allocation per burst of messages, not per message).
                    if self.buf.is_empty() && self.buf.capacity() > 0 {
                        self.buf = BytesMut::new();
                    }
                    let deadline = match (self.started, self.frame_timeout) {
                        (Some(started), Some(limit)) => Some(crate::time::at(started, limit)),
                        (Some(_), None) => None,
                        (None, _) => idle_until,
                    };
                    if let Some(deadline) = deadline {
                        if self.timer.poll_at(cx, deadline).is_ready() {
                            return Poll::Ready(Err(if self.started.is_some() {
                                ReadError::FrameTimeout(self.frame_timeout.unwrap_or_default())
                            } else {
                                ReadError::Idle
                            }));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// One read into a stack buffer of `READ_CHUNK` bytes; what came
    /// becomes `buf` (empty before), exactly sized.
    fn read_onto_stack(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut read = ReadBuf::uninit(&mut stack);
        match Pin::new(&mut self.io).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                let filled = read.filled();
                if !filled.is_empty() {
                    self.buf = BytesMut::from(filled);
                }
                Poll::Ready(Ok(filled.len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads and discards for at most 500 ms or 1 MiB, whichever comes first.
    pub(crate) async fn linger(mut self) {
        let mut sink = [0u8; 4096];
        let drain = async {
            let mut total = 0usize;
            while total < 1024 * 1024 {
                match self.io.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_frames_split_across_writes() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = Reader::new(Box::new(rx), 1024, None);
        let bytes = [encode(b"{\"a\":1}"), encode(b"[]")].concat();
        let writer = tokio::spawn(async move {
            for chunk in bytes.chunks(3) {
                tx.write_all(chunk).await.unwrap();
            }
        });
        assert_eq!(&reader.next(None).await.unwrap().unwrap()[..], b"{\"a\":1}");
        assert_eq!(&reader.next(None).await.unwrap().unwrap()[..], b"[]");
        writer.await.unwrap();
        assert!(
            reader.next(None).await.unwrap().is_none(),
            "clean close between frames"
        );
    }

    #[tokio::test]
    async fn close_inside_a_frame_is_reported_as_truncated() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = Reader::new(Box::new(rx), 1024, None);
        tx.write_all(&encode(b"0123456789")[..8]).await.unwrap();
        drop(tx);
        assert!(matches!(
            reader.next(None).await,
            Err(ReadError::Truncated(8))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_that_never_completes_times_out() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = Reader::new(Box::new(rx), 1024, Some(Duration::from_secs(5)));
        tx.write_all(&[0, 0, 0, 10, b'{']).await.unwrap();
        let far = Some(Instant::now() + Duration::from_secs(3600));
        assert!(matches!(
            reader.next(far).await,
            Err(ReadError::FrameTimeout(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_times_out_at_the_idle_deadline() {
        let (_tx, rx) = tokio::io::duplex(64);
        let mut reader = Reader::new(Box::new(rx), 1024, Some(Duration::from_secs(5)));
        let idle = Some(Instant::now() + Duration::from_secs(60));
        assert!(matches!(reader.next(idle).await, Err(ReadError::Idle)));
    }
}
