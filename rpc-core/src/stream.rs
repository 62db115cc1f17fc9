//! Streaming methods: a method that returns [`Stream<T, E>`] sends its
//! caller many items, each under per-stream flow control (PROTOCOL.md,
//! "Streams").
//!
//! ```
//! use std::time::Duration;
//!
//! #[rpc_core::service]
//! trait Clock {
//!     /// `count` ticks, `every_ms` apart.
//!     async fn ticks(&self, every_ms: u64, count: u32) -> rpc_core::Stream<u32>;
//! }
//!
//! struct C;
//! impl Clock for C {
//!     async fn ticks(&self, every_ms: u64, count: u32) -> rpc_core::Stream<u32> {
//!         let (tx, stream) = rpc_core::Stream::channel();
//!         tokio::spawn(async move {
//!             for n in 0..count {
//!                 // Waits while the caller has no credit left; an error
//!                 // means it is gone: stop producing.
//!                 if tx.send(n).await.is_err() {
//!                     return;
//!                 }
//!                 tokio::time::sleep(Duration::from_millis(every_ms)).await;
//!             }
//!         });
//!         stream
//!     }
//! }
//! ```
//!
//! On the client, the generated method opens the stream and returns a
//! [`RemoteStream`](crate::RemoteStream), a `futures::Stream` of
//! `Result<T, RpcError<E>>`.
//!
//! Flow control is by credit, counted in bytes of the items' encoded
//! values as in HTTP/2: the server never has more than the stream's window
//! ([`DEFAULT_WINDOW`] unless the caller asks for another) sent and not yet
//! acknowledged by the caller, and the caller acknowledges as its
//! application reads. A caller that stops reading one stream therefore
//! stops that stream's producer (its `send` waits), and nothing else: other
//! calls and streams on the connection go on.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::{Stream as FuturesStream, StreamExt};
use tokio::sync::mpsc;

use crate::error::Never;

/// The window of a stream whose caller asks for none: 256 KiB of items'
/// encoded values sent and not yet acknowledged.
pub const DEFAULT_WINDOW: u64 = 256 * 1024;

/// What a streaming method returns: the items to send its caller, each
/// `Ok(T)`, until the stream ends, normally or with one `Err(E)`, which
/// ends it with an application error (code 1000, as a method's error).
///
/// Build it from any `futures::Stream` ([`new`](Self::new),
/// [`try_new`](Self::try_new)), or write into it through a sender
/// ([`channel`](Self::channel)). The server polls it only when the caller
/// has credit for more, so a stream is never read ahead of its caller by
/// more than one item.
#[must_use = "a stream does nothing unless returned from a streaming method"]
pub struct Stream<T, E = Never> {
    pub(crate) items: Pin<Box<dyn FuturesStream<Item = Result<T, E>> + Send>>,
    pub(crate) meter: Arc<Meter>,
}

impl<T, E> std::fmt::Debug for Stream<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("unacknowledged_bytes", &self.meter.unacknowledged())
            .finish_non_exhaustive()
    }
}

/// Bytes sent and not yet acknowledged, shared by the server's sending
/// side and the producer's [`StreamSender`].
#[derive(Debug, Default)]
pub(crate) struct Meter {
    unacknowledged: AtomicU64,
}

impl Meter {
    pub(crate) fn set(&self, bytes: u64) {
        self.unacknowledged.store(bytes, Ordering::Relaxed);
    }

    fn unacknowledged(&self) -> u64 {
        self.unacknowledged.load(Ordering::Relaxed)
    }
}

impl<T: Send + 'static, E: Send + 'static> Stream<T, E> {
    /// A stream of the items of `items`; it ends when `items` does.
    pub fn new<S>(items: S) -> Self
    where
        S: FuturesStream<Item = T> + Send + 'static,
    {
        Self::try_new(items.map(Ok))
    }

    /// A stream of the items of `items` until it ends or yields an `Err`,
    /// which ends the stream with that error (nothing after it is read).
    pub fn try_new<S>(items: S) -> Self
    where
        S: FuturesStream<Item = Result<T, E>> + Send + 'static,
    {
        let mut failed = false;
        let items = items.take_while(move |item| {
            let go = !failed;
            failed |= item.is_err();
            std::future::ready(go)
        });
        Self {
            items: Box::pin(items),
            meter: Arc::default(),
        }
    }

    /// The items of an iterator, all known up front.
    pub fn iter<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Self::new(futures_util::stream::iter(items))
    }

    /// A stream written through a [`StreamSender`]: the stream ends when
    /// every sender is dropped, or with [`StreamSender::fail`].
    ///
    /// The channel holds one item: `send` waits until the server has taken
    /// the previous one, which it does only when the caller has credit.
    pub fn channel() -> (StreamSender<T, E>, Self) {
        let (tx, rx) = mpsc::channel(1);
        let meter: Arc<Meter> = Arc::default();
        let stream = Self::try_new(ReceiverStream(rx));
        let stream = Self {
            meter: meter.clone(),
            ..stream
        };
        (StreamSender { tx, meter }, stream)
    }
}

/// A stream is itself a `futures::Stream` of its items, for tests and for
/// composing streams on the server (a handler may build its stream from
/// another service's).
impl<T, E> FuturesStream for Stream<T, E> {
    type Item = Result<T, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.items.as_mut().poll_next(cx)
    }
}

/// A `futures::Stream` over a tokio receiver.
struct ReceiverStream<T>(mpsc::Receiver<T>);

impl<T> FuturesStream for ReceiverStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// The writing half of [`Stream::channel`]. Cheap to clone.
#[derive(Debug)]
pub struct StreamSender<T, E = Never> {
    tx: mpsc::Sender<Result<T, E>>,
    meter: Arc<Meter>,
}

impl<T, E> Clone for StreamSender<T, E> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            meter: self.meter.clone(),
        }
    }
}

/// The stream's caller is gone: it dropped the stream (`rpc.unsubscribe`),
/// its connection closed, or the server is shutting down. Stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the stream is closed: its caller unsubscribed or disconnected, or the server is shutting down; stop producing items"
)]
pub struct StreamClosed;

impl<T, E> StreamSender<T, E> {
    /// Sends one item, waiting while the caller has no credit for it.
    ///
    /// # Errors
    /// [`StreamClosed`] once the stream has ended; the item is dropped.
    pub async fn send(&self, item: T) -> Result<(), StreamClosed> {
        self.tx.send(Ok(item)).await.map_err(|_| StreamClosed)
    }

    /// Sends `item` if the stream can take it now, without waiting: the
    /// way to skip items for a caller that falls behind.
    ///
    /// # Errors
    /// `Err(Some(item))` when the caller has not taken the previous item
    /// yet (no credit, or not yet sent); `Err(None)` once the stream has
    /// ended.
    pub fn try_send(&self, item: T) -> Result<(), Option<T>> {
        self.tx.try_send(Ok(item)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(Ok(item)) => Some(item),
            _ => None,
        })
    }

    /// Ends the stream with `error`, after the items already sent.
    ///
    /// # Errors
    /// [`StreamClosed`] if the stream had already ended.
    pub async fn fail(self, error: E) -> Result<(), StreamClosed> {
        self.tx.send(Err(error)).await.map_err(|_| StreamClosed)
    }

    /// Resolves when the stream has ended (the caller is gone): for a
    /// producer that waits on something else between items.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Whether the stream has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Bytes of items sent to the caller and not yet acknowledged by its
    /// credit: never more than the stream's window, except for one item
    /// larger than the whole window, sent when nothing else was
    /// outstanding. 0 before the stream opens.
    pub fn unacknowledged_bytes(&self) -> u64 {
        self.meter.unacknowledged()
    }
}
