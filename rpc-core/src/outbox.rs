//! The outbox of a session: outbound messages, serialized in place, with a
//! byte budget.
//!
//! Many tasks produce messages for one peer (every call in flight on a
//! client, every handler on a server). Instead of a channel of messages,
//! they serialize straight into one shared buffer, and one writer task hands
//! whatever has accumulated to the transport in one go: a framed byte stream
//! writes it with one `write` call, a message transport sends each message.
//! Messages produced while a write is in progress go out together in the
//! next one, so under load the number of syscalls per message falls well
//! below one, and no message is copied between serialization and the socket.
//!
//! How the buffer marks where one message ends is the transport's
//! [`Framing`]: a length prefix written in place, or a list of end offsets.
//!
//! The buffer has a high-water mark: producers that find it full wait
//! ([`Outbox::wait_for_room`]), so a peer that stops reading cannot make
//! this side buffer without bound.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::frame::{FrameError, FrameWriter};

/// Capacity kept for the writer's spare buffer between writes; a larger one
/// (after a big message) is released so idle connections stay small.
const KEEP_CAPACITY: usize = 64 * 1024;

/// How the messages in the buffer are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Each message is preceded by its 4-byte big-endian length, so the
    /// buffer is exactly the bytes of a framed stream.
    LengthPrefix,
    /// Messages are back to back; their end offsets are kept beside them,
    /// for transports that carry whole messages (in memory, WebSocket).
    Delimited,
}

/// Why a message could not be queued.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueueError<E> {
    /// The session is closed; nothing more will be written.
    #[error("the connection is closed")]
    Closed,
    /// The message is larger than the peer accepts.
    #[error(transparent)]
    TooLarge(FrameError),
    /// Serializing the message failed.
    #[error("{0}")]
    Encode(E),
}

/// Serialized messages waiting for the writer task.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer when the buffer goes from empty to non-empty, or on
    /// close. There is one writer, so a single waker slot (no lock, no
    /// waiter list) is all it needs.
    writer: AtomicWaker,
    /// Wakes producers waiting for the buffer to drain below the high-water mark.
    room: Notify,
    /// Wakes the session loop when it polls for room ([`Outbox::poll_room`]).
    loop_waker: AtomicWaker,
    high_water: usize,
    max_message: usize,
    framing: Framing,
}

#[derive(Debug, Default)]
struct State {
    buf: BytesMut,
    /// End offset of each message in `buf` ([`Framing::Delimited`] only).
    ends: Vec<usize>,
    closed: bool,
    /// Why the session closed it, for transports that can say so.
    closing: Closing,
}

/// Why a session closes its connection, for transports whose close can
/// carry a reason: a WebSocket's close frame (RFC 6455 §7.4.1 codes). The
/// byte-stream transports just close.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Closing {
    /// The conversation ended: the peer closed, or the connection was idle
    /// (1000).
    #[default]
    Normal,
    /// The server is shutting down (1001).
    GoingAway,
    /// The peer broke the protocol: a foreign protocol, a frame that never
    /// completed, responses left unread (1002).
    Protocol,
    /// A message over the maximum size (1009).
    TooLarge,
    /// The session failed inside (1011).
    Failed,
    /// Refused over a limit; try again later (1013).
    Overloaded,
}

/// What the writer took out of the outbox in one turn.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// The bytes of every message, back to back.
    pub(crate) buf: BytesMut,
    /// End offsets of the messages ([`Framing::Delimited`] only).
    pub(crate) ends: Vec<usize>,
}

impl Taken {
    /// Splits the bytes into one `Bytes` per message, without copying.
    pub(crate) fn messages(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        let mut rest = std::mem::take(&mut self.buf).freeze();
        let mut start = 0;
        self.ends.drain(..).map(move |end| {
            let message = rest.split_to(end - start);
            start = end;
            message
        })
    }
}

/// Where the writer task drains the outbox to: the transport's outbound half.
pub(crate) trait Drain: Send {
    /// Sends every message in `taken` (and may leave it empty or not).
    fn send(&mut self, taken: &mut Taken) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes the outbound direction after the last message, for the
    /// reason given.
    fn close(&mut self, why: Closing) -> impl Future<Output = io::Result<()>> + Send;
}

/// A byte stream whose messages are length-prefixed in the buffer already.
pub(crate) struct StreamDrain<W>(pub(crate) W);

impl<W: AsyncWrite + Unpin + Send> Drain for StreamDrain<W> {
    async fn send(&mut self, taken: &mut Taken) -> io::Result<()> {
        self.0.write_all(&taken.buf).await
    }

    async fn close(&mut self, _: Closing) -> io::Result<()> {
        self.0.shutdown().await
    }
}

impl Outbox {
    /// An outbox whose messages may be at most `max_message` bytes and whose
    /// producers wait once `high_water` bytes are buffered.
    pub(crate) fn new(framing: Framing, max_message: usize, high_water: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            writer: AtomicWaker::new(),
            room: Notify::new(),
            loop_waker: AtomicWaker::new(),
            high_water,
            max_message,
            framing,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock can only come from a serializer;
        // the buffer is still a sequence of whole messages (a failed one is
        // truncated away), so the state is safe to keep using.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serializes one message into the buffer with `fill` and wakes the writer.
    pub(crate) fn push<E>(
        &self,
        fill: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), QueueError<E>> {
        let mut state = self.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        let was_empty = state.buf.is_empty();
        match self.framing {
            Framing::LengthPrefix => {
                let mut frame = FrameWriter::begin(&mut state.buf);
                if let Err(e) = fill(frame.body()) {
                    frame.abort();
                    return Err(QueueError::Encode(e));
                }
                frame
                    .finish(self.max_message)
                    .map_err(QueueError::TooLarge)?;
            }
            Framing::Delimited => {
                let state = &mut *state;
                let start = state.buf.len();
                if let Err(e) = fill(&mut state.buf) {
                    state.buf.truncate(start);
                    return Err(QueueError::Encode(e));
                }
                let len = state.buf.len() - start;
                if len > self.max_message {
                    state.buf.truncate(start);
                    return Err(QueueError::TooLarge(FrameError::TooLarge {
                        len,
                        max: self.max_message,
                    }));
                }
                state.ends.push(state.buf.len());
            }
        }
        drop(state);
        if was_empty {
            self.writer.wake();
        }
        Ok(())
    }

    /// Queues bytes that are not a message (the plain-HTTP answer to a peer
    /// on the wrong protocol, just before closing). Byte streams only.
    pub(crate) fn push_raw(&self, bytes: &[u8]) {
        let mut state = self.lock();
        if state.closed || self.framing != Framing::LengthPrefix {
            return;
        }
        let was_empty = state.buf.is_empty();
        state.buf.extend_from_slice(bytes);
        drop(state);
        if was_empty {
            self.writer.wake();
        }
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

    /// Polls for room, for the one task that polls rather than awaits (the
    /// session loop): `Ready` once the buffer is below its high-water mark
    /// or closed.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.has_room() {
            return Poll::Ready(());
        }
        self.loop_waker.register(cx.waker());
        // Room may have come between the check and the registration.
        if self.has_room() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Whether a producer may queue now without waiting: lets a caller skip
    /// building a timed wait (and reading the clock) in the common case.
    pub(crate) fn has_room(&self) -> bool {
        let state = self.lock();
        state.closed || state.buf.len() < self.high_water
    }

    /// Whether the outbox was closed (tests only).
    #[cfg(test)]
    pub(crate) fn is_closed_for_tests(&self) -> bool {
        self.lock().closed
    }

    /// Marks the outbox closed: messages already queued are still written,
    /// new ones are refused, and waiting producers are released.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.writer.wake();
        self.room_freed();
    }

    /// Closes it, saying why (see [`Closing`]); the first reason given
    /// stands.
    pub(crate) fn close_because(&self, why: Closing) {
        {
            let mut state = self.lock();
            if !state.closed && state.closing == Closing::Normal {
                state.closing = why;
            }
            state.closed = true;
        }
        self.writer.wake();
        self.room_freed();
    }

    fn room_freed(&self) {
        self.room.notify_waiters();
        self.loop_waker.wake();
    }

    /// The writer task: sends everything buffered, one send per batch, until
    /// the outbox is closed and drained. Then closes the sink.
    pub(crate) async fn run_writer<D: Drain>(&self, mut sink: D) -> io::Result<()> {
        let mut out = Taken::default();
        let result = loop {
            let (closed, closing) = {
                let mut state = self.lock();
                std::mem::swap(&mut state.buf, &mut out.buf);
                std::mem::swap(&mut state.ends, &mut out.ends);
                (state.closed, state.closing)
            };
            if out.buf.is_empty() {
                if closed {
                    break sink.close(closing).await;
                }
                // Registered before looking, so a push in between wakes it.
                std::future::poll_fn(|cx| {
                    self.writer.register(cx.waker());
                    let state = self.lock();
                    if state.buf.is_empty() && !state.closed {
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    }
                })
                .await;
                // Woken by the first message of a batch, by a task that is
                // still running on this worker: Tokio runs the woken writer
                // right after it, before the other ready tasks, so each write
                // would carry one message. Step behind them first.
                YieldToQueue::default().await;
                continue;
            }
            self.room_freed();
            if let Err(e) = sink.send(&mut out).await {
                break Err(e);
            }
            out.buf.clear();
            out.ends.clear();
            if out.buf.capacity() > KEEP_CAPACITY {
                out.buf = BytesMut::new();
            }
        };
        if result.is_err() {
            let mut state = self.lock();
            state.closed = true;
            state.buf = BytesMut::new();
            state.ends = Vec::new();
            drop(state);
            self.room_freed();
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
        let q = Arc::new(Outbox::new(Framing::LengthPrefix, 1024, 1 << 20));
        let (a, mut b) = tokio::io::duplex(1 << 16);
        for body in [&b"one"[..], b"two", b"three"] {
            q.push(|buf| {
                buf.extend_from_slice(body);
                Ok::<_, ()>(())
            })
            .unwrap();
        }
        q.close();
        q.run_writer(StreamDrain(a)).await.unwrap();
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
        let q = Arc::new(Outbox::new(Framing::LengthPrefix, 1024, 1 << 20));
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn({
            let q = q.clone();
            let io = CountWrites(a, writes.clone());
            async move { q.run_writer(StreamDrain(io)).await }
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
    async fn delimited_messages_come_out_one_by_one() {
        let q = Outbox::new(Framing::Delimited, 5, 1 << 20);
        for body in [&b"one"[..], b"two", b"three"] {
            q.push(|buf| {
                buf.extend_from_slice(body);
                Ok::<_, ()>(())
            })
            .unwrap();
        }
        assert!(matches!(
            q.push(|buf| {
                buf.extend_from_slice(b"toolong");
                Ok::<_, ()>(())
            }),
            Err(QueueError::TooLarge(_))
        ));
        let mut state = q.lock();
        let mut taken = Taken {
            buf: std::mem::take(&mut state.buf),
            ends: std::mem::take(&mut state.ends),
        };
        drop(state);
        let got: Vec<Bytes> = taken.messages().collect();
        assert_eq!(got, [&b"one"[..], b"two", b"three"]);
    }

    #[tokio::test]
    async fn closed_queue_refuses_frames() {
        let q = Outbox::new(Framing::LengthPrefix, 1024, 1024);
        q.close();
        assert!(matches!(
            q.push(|_| Ok::<_, ()>(())),
            Err(QueueError::Closed)
        ));
    }

    #[tokio::test]
    async fn producers_wait_while_the_buffer_is_full() {
        let q = Arc::new(Outbox::new(Framing::LengthPrefix, 1024, 8));
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
            async move { q.run_writer(StreamDrain(a)).await }
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("producer released once the writer drained the buffer")
            .unwrap();
        q.close();
        writer.await.unwrap().unwrap();
    }
}
