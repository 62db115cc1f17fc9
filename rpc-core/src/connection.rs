//! The write side of a connection, shared by client and server.
//!
//! Many tasks produce messages for one socket (every in-flight call on a
//! client, every handler on a server). Instead of a channel of messages, they
//! serialize straight into one shared buffer, and a single writer task sends
//! whatever has accumulated in one `write` call. Messages produced while a
//! write is in progress go out together in the next one, so under load the
//! number of syscalls per message falls well below one.
//!
//! The buffer has a high-water mark: producers that find it full wait
//! ([`WriteQueue::wait_for_room`]), so a peer that stops reading cannot make
//! this side buffer without bound.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::frame::{FrameError, FrameWriter};

/// Capacity kept for the writer's spare buffer between writes; a larger one
/// (after a big message) is released so idle connections stay small.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Why a message could not be queued.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueueError<E> {
    /// The connection is closed; nothing more will be written.
    #[error("the connection is closed")]
    Closed,
    /// The message is larger than the peer accepts.
    #[error(transparent)]
    TooLarge(FrameError),
    /// Serializing the message failed.
    #[error("{0}")]
    Encode(E),
}

/// Buffered frames waiting for the writer task.
#[derive(Debug)]
pub(crate) struct WriteQueue {
    state: Mutex<State>,
    /// Wakes the writer when the buffer goes from empty to non-empty, or on close.
    data_ready: Notify,
    /// Wakes producers waiting for the buffer to drain below the high-water mark.
    room: Notify,
    high_water: usize,
    max_frame: usize,
}

#[derive(Debug, Default)]
struct State {
    buf: BytesMut,
    closed: bool,
}

impl WriteQueue {
    /// A queue whose frames may be at most `max_frame` bytes and whose
    /// producers wait once `high_water` bytes are buffered.
    pub(crate) fn new(max_frame: usize, high_water: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            data_ready: Notify::new(),
            room: Notify::new(),
            high_water,
            max_frame,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock can only come from a serializer;
        // the buffer is still a sequence of whole frames (FrameWriter truncates
        // on failure), so the state is safe to keep using.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serializes one frame into the buffer with `fill` and wakes the writer.
    pub(crate) fn push<E>(
        &self,
        fill: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), QueueError<E>> {
        let mut state = self.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        let was_empty = state.buf.is_empty();
        let mut frame = FrameWriter::begin(&mut state.buf);
        if let Err(e) = fill(frame.body()) {
            frame.abort();
            return Err(QueueError::Encode(e));
        }
        frame.finish(self.max_frame).map_err(QueueError::TooLarge)?;
        drop(state);
        if was_empty {
            self.data_ready.notify_one();
        }
        Ok(())
    }

    /// Queues bytes that are not a frame (the plain-HTTP answer to a peer on
    /// the wrong protocol, just before closing).
    pub(crate) fn push_raw(
        &self,
        bytes: &[u8],
    ) -> Result<(), QueueError<std::convert::Infallible>> {
        let mut state = self.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        let was_empty = state.buf.is_empty();
        state.buf.extend_from_slice(bytes);
        drop(state);
        if was_empty {
            self.data_ready.notify_one();
        }
        Ok(())
    }

    /// Waits until the buffer is below its high-water mark (or closed).
    pub(crate) async fn wait_for_room(&self) {
        // The common case, room at once, registers no waiter: that would
        // lock the `Notify`'s list twice (insert, then remove on drop).
        if self.has_room() {
            return;
        }
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    /// Whether a producer may queue now without waiting: lets a caller skip
    /// building a timed wait (and reading the clock) in the common case.
    pub(crate) fn has_room(&self) -> bool {
        let state = self.lock();
        state.closed || state.buf.len() < self.high_water
    }

    /// Marks the queue closed: frames already queued are still written, new
    /// ones are refused, and waiting producers are released.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.data_ready.notify_one();
        self.room.notify_waiters();
    }

    /// The writer task: sends everything buffered, one write per batch, until
    /// the queue is closed and drained. Then shuts down the write half.
    pub(crate) async fn run_writer<W: AsyncWrite + Unpin>(&self, mut io: W) -> io::Result<()> {
        let mut out = BytesMut::new();
        let result = loop {
            let closed = {
                let mut state = self.lock();
                std::mem::swap(&mut state.buf, &mut out);
                state.closed
            };
            if out.is_empty() {
                if closed {
                    break io.shutdown().await;
                }
                self.data_ready.notified().await;
                // Woken by the first frame of a batch, by a task that is still
                // running on this worker: Tokio runs the woken writer right
                // after it, before the other ready tasks, so each write would
                // carry one frame. Step behind them first.
                YieldToQueue::default().await;
                continue;
            }
            self.room.notify_waiters();
            if let Err(e) = io.write_all(&out).await {
                break Err(e);
            }
            out.clear();
            if out.capacity() > KEEP_CAPACITY {
                out = BytesMut::new();
            }
        };
        if result.is_err() {
            let mut state = self.lock();
            state.closed = true;
            state.buf = BytesMut::new();
            drop(state);
            self.room.notify_waiters();
        }
        result
    }
}

/// Returns `Pending` once, having woken its own task: Tokio then puts the
/// task at the back of the worker's run queue, behind every task that is
/// ready now.
///
/// Not `tokio::task::yield_now`: that one defers the task until the worker
/// next polls the I/O driver, which costs an extra `epoll_wait` per batch
/// (measured: two per call instead of one in a one-call-at-a-time
/// exchange) for no gain in batching.
#[derive(Default)]
pub(crate) struct YieldToQueue {
    yielded: bool,
}

impl Future for YieldToQueue {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn frames_queued_together_arrive_intact_and_in_order() {
        let q = Arc::new(WriteQueue::new(1024, 1 << 20));
        let (a, mut b) = tokio::io::duplex(1 << 16);
        for body in [&b"one"[..], b"two", b"three"] {
            q.push(|buf| {
                buf.extend_from_slice(body);
                Ok::<_, ()>(())
            })
            .unwrap();
        }
        q.close();
        q.run_writer(a).await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        let expected: Vec<u8> = [&b"one"[..], b"two", b"three"]
            .iter()
            .flat_map(|b| crate::frame::encode(b))
            .collect();
        assert_eq!(got, expected);
    }

    /// Counts the writes that reach the inner stream.
    struct CountWrites<W>(W, Arc<std::sync::atomic::AtomicUsize>);

    impl<W: AsyncWrite + Unpin> AsyncWrite for CountWrites<W> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let polled = Pin::new(&mut self.0).poll_write(cx, buf);
            if let Poll::Ready(Ok(n)) = polled {
                if n > 0 {
                    self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            polled
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn frames_from_tasks_ready_together_share_one_write() {
        let q = Arc::new(WriteQueue::new(1024, 1 << 20));
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn({
            let q = q.clone();
            let io = CountWrites(a, writes.clone());
            async move { q.run_writer(io).await }
        });
        // Let the writer go idle, waiting for a first frame.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // Eight producers made ready at once on the worker, as the responses
        // of one read wake eight callers.
        let producers = tokio::spawn({
            let q = q.clone();
            async move {
                (0..8u8)
                    .map(|i| {
                        let q = q.clone();
                        tokio::spawn(async move {
                            q.push(|buf| {
                                buf.extend_from_slice(&[b'0' + i]);
                                Ok::<_, ()>(())
                            })
                            .unwrap();
                        })
                    })
                    .collect::<Vec<_>>()
            }
        })
        .await
        .unwrap();
        for p in producers {
            p.await.unwrap();
        }
        q.close();
        writer.await.unwrap().unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 8 * 5, "all eight frames arrive");
        assert_eq!(
            writes.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "frames queued by tasks that were ready together go out in one write"
        );
    }

    #[tokio::test]
    async fn closed_queue_refuses_frames() {
        let q = WriteQueue::new(1024, 1024);
        q.close();
        assert!(matches!(
            q.push(|_| Ok::<_, ()>(())),
            Err(QueueError::Closed)
        ));
    }

    #[tokio::test]
    async fn producers_wait_while_the_buffer_is_full() {
        let q = Arc::new(WriteQueue::new(1024, 8));
        q.push(|buf| {
            buf.extend_from_slice(b"0123456789");
            Ok::<_, ()>(())
        })
        .unwrap();
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.wait_for_room().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "a producer must wait while the buffer is over the mark"
        );
        let (a, _b) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn({
            let q = q.clone();
            async move { q.run_writer(a).await }
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("producer released once the writer drained the buffer")
            .unwrap();
        q.close();
        writer.await.unwrap().unwrap();
    }
}
