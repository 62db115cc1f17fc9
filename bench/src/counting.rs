//! Counting the write syscalls each side makes.
//!
//! [`CountingIo`] wraps a socket and counts every `poll_write` (or
//! `poll_write_vectored`) that wrote something: each one is one `send`/`writev`
//! on a TCP socket. Calls that return `Pending` (the socket was full) are not
//! counted, so the count is "writes that moved bytes".
//!
//! The library under test does not let us wrap the sockets its server
//! accepts, so for its server side we read the kernel's count of data segments
//! instead (see [`crate::tcpinfo`]).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A shared count of successful writes, read by the benchmark between runs.
#[derive(Debug, Clone, Default)]
pub struct WriteCounter(Arc<AtomicU64>);

impl WriteCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A byte stream whose writes are counted.
#[derive(Debug)]
pub struct CountingIo<T> {
    inner: T,
    writes: WriteCounter,
}

impl<T> CountingIo<T> {
    pub fn new(inner: T, writes: WriteCounter) -> Self {
        Self { inner, writes }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.writes.bump();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.writes.bump();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where a writer is in a stream of frames (4-byte big-endian length, then
/// the body).
#[derive(Debug, Clone, Copy, Default)]
struct FramePosition {
    /// Header bytes seen of the current frame (0 to 4).
    header: [u8; 4],
    header_len: usize,
    /// Body bytes of the current frame still to come, once its header is
    /// whole.
    body_left: usize,
}

impl FramePosition {
    /// Moves past `data`; returns how many of its bytes it took before the
    /// first frame boundary it reached (all of them if none).
    fn advance(&mut self, data: &[u8]) -> usize {
        let mut taken = 0;
        while taken < data.len() {
            if self.header_len < 4 {
                let take = (4 - self.header_len).min(data.len() - taken);
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&data[taken..taken + take]);
                self.header_len += take;
                taken += take;
                if self.header_len == 4 {
                    self.body_left = u32::from_be_bytes(self.header) as usize;
                }
            } else {
                let take = self.body_left.min(data.len() - taken);
                self.body_left -= take;
                taken += take;
            }
            if self.header_len == 4 && self.body_left == 0 {
                *self = Self::default();
                return taken;
            }
        }
        taken
    }
}

/// A writer that passes on at most one frame per write: what a library that
/// lost its write coalescing would do. Only for showing that the CI guard
/// trips (`rpc-bench guard --lose-client-coalescing`); vectored writes are
/// turned into plain ones.
#[derive(Debug)]
pub struct OneFramePerWrite<T> {
    inner: T,
    position: FramePosition,
}

impl<T> OneFramePerWrite<T> {
    /// Wraps `inner`, which must receive whole frames from their start.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            position: FramePosition::default(),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for OneFramePerWrite<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut probe = self.position;
        let upto = probe.advance(buf);
        let polled = Pin::new(&mut self.inner).poll_write(cx, &buf[..upto]);
        if let Poll::Ready(Ok(n)) = polled {
            self.position.advance(&buf[..n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn one_frame_per_write_splits_at_frame_boundaries() {
        let writes = WriteCounter::default();
        let mut sink = CountingIo::new(OneFramePerWrite::new(Vec::<u8>::new()), writes.clone());
        let mut stream = Vec::new();
        for body in [&b"first"[..], b"", b"third, longer"] {
            stream.extend(frame(body));
        }
        sink.write_all(&stream).await.unwrap();
        assert_eq!(writes.get(), 3, "one write per frame");
        assert_eq!(sink.inner.inner, stream, "every byte, in order");
    }

    #[test]
    fn frame_position_carries_over_writes_split_anywhere() {
        let stream = [frame(b"abc"), frame(b"defgh")].concat();
        for cut in 0..=stream.len() {
            let mut position = FramePosition::default();
            let first = position.advance(&stream[..cut]);
            let second = position.advance(&stream[first..]);
            let end_of_first_frame = 7;
            if cut >= end_of_first_frame {
                assert_eq!((first, second), (7, 9), "cut at {cut}");
            } else {
                assert_eq!((first, first + second), (cut, 7), "cut at {cut}");
            }
        }
    }
}
