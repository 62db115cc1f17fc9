//! The read side of a connection: frames out of a byte stream, with time limits.
//!
//! A hand-written loop rather than a codec stream, because the server needs
//! to know *when* a frame started arriving: a frame whose first bytes came
//! in must be complete within the frame timeout (so a peer trickling one
//! byte a minute cannot hold a connection forever), while a connection with
//! no partial frame is merely idle and has its own, longer limit.
//!
//! The buffer starts empty and is released after a large frame, so an idle
//! connection costs almost nothing.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use crate::frame::{FrameDecoder, FrameError};

/// Bytes requested from the socket per read when the buffer is empty.
const READ_CHUNK: usize = 4 * 1024;

/// Capacity above which the buffer is released once it is empty again.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Why no frame came.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The framing rule was broken, or the socket failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame started but did not complete within the frame timeout.
    #[error("a frame started arriving but was not complete within {0:?}")]
    FrameTimeout(Duration),
    /// Nothing arrived before the idle deadline.
    #[error("the connection was idle for too long")]
    Idle,
    /// The peer has not read its responses for this long, so the server
    /// has not been able to read its requests either.
    #[error("the peer has not read its responses for {0:?}")]
    Stalled(Duration),
    /// The peer closed the connection in the middle of a frame.
    #[error("the peer closed the connection in the middle of a frame ({0} bytes received)")]
    Truncated(usize),
}

/// Reads length-prefixed frames from `R`.
pub(crate) struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    decoder: FrameDecoder,
    frame_timeout: Option<Duration>,
    /// When the first byte of the frame now in `buf` arrived.
    started: Option<Instant>,
    /// When the last read returned data: the arrival time of every frame it
    /// completed (one clock reading per read, not per frame).
    last_read: Instant,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(io: R, max_frame: usize, frame_timeout: Option<Duration>) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max_frame),
            frame_timeout,
            started: None,
            last_read: Instant::now(),
        }
    }

    /// When bytes last arrived.
    pub(crate) fn last_read(&self) -> Instant {
        self.last_read
    }

    /// The byte stream, for draining it after a fatal error.
    pub(crate) fn into_inner(self) -> R {
        self.io
    }

    /// The next frame, or `Ok(None)` when the peer closed cleanly between frames.
    ///
    /// `idle_until`, if given, is when to give up while no frame has started.
    /// Cancel-safe: all state lives in `self`.
    pub(crate) async fn next(
        &mut self,
        idle_until: Option<Instant>,
    ) -> Result<Option<Bytes>, ReadError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                // Bytes left over belong to a frame that started arriving
                // with the last read.
                self.started = (!self.buf.is_empty()).then_some(self.last_read);
                if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
                    self.buf = BytesMut::new();
                }
                return Ok(Some(frame));
            }
            let deadline = match (self.started, self.frame_timeout) {
                (Some(started), Some(limit)) => Some(started + limit),
                (Some(_), None) => None,
                (None, _) => idle_until,
            };
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            let read = self.io.read_buf(&mut self.buf);
            let n = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                    Ok(n) => n,
                    Err(_) if self.started.is_some() => {
                        return Err(ReadError::FrameTimeout(
                            self.frame_timeout.unwrap_or_default(),
                        ));
                    }
                    Err(_) => return Err(ReadError::Idle),
                },
                None => read.await,
            }
            .map_err(FrameError::Io)?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated(self.buf.len()))
                };
            }
            self.last_read = Instant::now();
            self.started.get_or_insert(self.last_read);
        }
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
        let mut reader = FrameReader::new(rx, 1024, None);
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
        let mut reader = FrameReader::new(rx, 1024, None);
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
        let mut reader = FrameReader::new(rx, 1024, Some(Duration::from_secs(5)));
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
        let mut reader = FrameReader::new(rx, 1024, Some(Duration::from_secs(5)));
        let idle = Some(Instant::now() + Duration::from_secs(60));
        assert!(matches!(reader.next(idle).await, Err(ReadError::Idle)));
    }
}
