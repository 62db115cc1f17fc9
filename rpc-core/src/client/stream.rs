//! The client's side of streams: opening one, and [`RemoteStream`], the
//! `futures::Stream` of its items (PROTOCOL.md, "Streams").

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::{CallOptions, Client, application_error};
use crate::error::{DecodeError, Never, RpcError};
use crate::message::streams::UNSUBSCRIBE;
use crate::session::calls::{Sink, StreamEvent, opened_stream};
use crate::session::{Answer, Session};
use crate::stream::DEFAULT_WINDOW;

impl Client {
    /// Calls streaming method `method` and returns its stream once the
    /// server has opened it. Generated clients call this for methods that
    /// return a [`Stream`](crate::Stream).
    ///
    /// The call's timeout bounds how long the stream takes to open, not how
    /// long it lives; see [`RemoteStream::idle_timeout`] for a bound on the
    /// gap between items. [`CallOptions::window`] sets the stream's window.
    ///
    /// ```no_run
    /// # async fn demo(client: rpc_core::Client) -> Result<(), rpc_core::RpcError> {
    /// use futures_util::StreamExt;
    /// let mut ticks = client
    ///     .open_stream::<_, u32, rpc_core::Never, rpc_core::Never>("ticks", &(10, 3), Default::default())
    ///     .await?;
    /// while let Some(tick) = ticks.next().await {
    ///     println!("tick {}", tick?);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// What a call's opening can fail with: the method's own error `E` as
    /// [`RpcError::Application`], [`RpcError::Server`] for a refusal (a
    /// method that does not stream answers with a plain result, which is
    /// [`RpcError::Decode`]), the connection, the timeout.
    pub async fn open_stream<P, T, E, F>(
        &self,
        method: &str,
        params: &P,
        options: CallOptions,
    ) -> Result<RemoteStream<T, F>, RpcError<E>>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
        F: DeserializeOwned,
    {
        let (timeout, deadline) = self.budget(options);
        if timeout.is_zero() {
            return Err(RpcError::Timeout(timeout));
        }
        let window = options.window.unwrap_or(DEFAULT_WINDOW);
        let link = self
            .link(deadline, timeout)
            .await
            .map_err(RpcError::widen)?;
        let (events, rx) = mpsc::unbounded_channel();
        let buffered = Arc::new(AtomicU64::new(0));
        let sink = Sink {
            events,
            buffered: buffered.clone(),
            window,
        };
        let credit = options.window.filter(|&w| w != DEFAULT_WINDOW);
        let answer = link
            .session
            .request_stream(method, params, deadline, timeout, sink, credit)
            .await
            .map_err(RpcError::widen)?;
        let id = match answer {
            Answer::Result(result) => opened_stream(&result).ok_or_else(|| {
                RpcError::Decode(DecodeError::InvalidResponse(
                    "a streaming method's result must be {\"stream\": ID}; is the method a streaming one?",
                ))
            })?,
            Answer::Error(error) => return Err(application_error(error)),
            Answer::Malformed(why) => return Err(RpcError::Decode(DecodeError::InvalidResponse(why))),
        };
        Ok(RemoteStream {
            session: link.session.clone(),
            id,
            events: rx,
            buffered,
            window,
            unacknowledged: 0,
            method: method.to_owned(),
            idle: None,
            idle_timer: None,
            ended: false,
            _items: PhantomData,
        })
    }
}

/// The items of a stream a server sends this client: a `futures::Stream`
/// of `Result<T, RpcError<E>>`, from [`Client::open_stream`] or a
/// generated client's streaming method.
///
/// - Items arrive in order. The stream ends (`None`) when the server ends
///   it; an error item ends it too: the method's own error `E` as
///   [`RpcError::Application`], [`RpcError::Closed`] when the connection
///   is lost, [`RpcError::Timeout`] after an [idle
///   timeout](Self::idle_timeout).
/// - Reading an item acknowledges its bytes to the server (as credit, every
///   half window, and whenever everything received has been read), which
///   then sends more: a stream read slowly is sent slowly, and nothing else
///   on the connection waits for it.
/// - Dropping it ends the stream on the server (`rpc.unsubscribe`), which
///   stops producing, but cannot wait for the server to let it go: when
///   what follows depends on the end (a chat nick free again), use
///   [`close`](Self::close), which waits for the server's confirmation.
pub struct RemoteStream<T, E = Never> {
    session: Arc<Session>,
    id: u64,
    events: mpsc::UnboundedReceiver<StreamEvent>,
    /// Bytes delivered and not yet read (shared with the session's sink).
    buffered: Arc<AtomicU64>,
    window: u64,
    /// Bytes read and not yet granted back.
    unacknowledged: u64,
    method: String,
    idle: Option<Duration>,
    idle_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether the stream is over (the server ended it, or it failed here).
    ended: bool,
    _items: PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for RemoteStream<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStream")
            .field("method", &self.method)
            .field("id", &self.id)
            .field("window", &self.window)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<T, E> RemoteStream<T, E> {
    /// The stream's id on its connection, as the server named it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Ends the stream with [`RpcError::Timeout`] (and unsubscribes) when
    /// no item or end arrives for `idle`. Default: no limit.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self.idle_timer = None;
        self
    }

    /// Ends the stream here and on the server (`rpc.unsubscribe`), then
    /// waits, at most `timeout`, for the server's answer, which it sends
    /// once the handler's stream is dropped: when this returns `Ok`, the
    /// server has let the stream go. `Ok` at once if the stream had ended.
    ///
    /// # Errors
    ///
    /// [`RpcError::Timeout`] if no answer comes within `timeout`, and
    /// [`RpcError::Closed`] if the connection is lost first (the server then
    /// ends the stream itself, but this side cannot know when).
    pub async fn close(mut self, timeout: Duration) -> Result<(), RpcError> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        if !self.session.calls.forget_stream(self.id) {
            return Ok(());
        }
        let params = serde_json::json!({ "stream": self.id });
        let deadline = tokio::time::Instant::now() + timeout;
        self.session
            .request(UNSUBSCRIBE, &params, deadline, timeout, None)
            .await
            .map(drop)
    }

    /// Stops the stream here and tells the server, unless it has ended.
    fn finish(&mut self) {
        if !self.ended {
            self.ended = true;
            if self.session.calls.forget_stream(self.id) {
                self.session.unsubscribe(self.id);
            }
        }
    }
}

impl<T: DeserializeOwned, E: DeserializeOwned> futures_util::Stream for RemoteStream<T, E> {
    type Item = Result<T, RpcError<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        let event = match this.events.poll_recv(cx) {
            Poll::Ready(event) => event,
            Poll::Pending => {
                // Nothing left to read: grant what was read, even under half
                // the window. Otherwise an item larger than the credit left
                // would wait for a grant that waits for it.
                if this.unacknowledged > 0 {
                    this.session.grant(this.id, this.unacknowledged);
                    this.unacknowledged = 0;
                }
                if let Some(idle) = this.idle {
                    let timer = this
                        .idle_timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if timer.as_mut().poll(cx).is_ready() {
                        this.finish();
                        return Poll::Ready(Some(Err(RpcError::Timeout(idle))));
                    }
                }
                return Poll::Pending;
            }
        };
        this.idle_timer = None;
        let item = match event {
            Some(StreamEvent::Item(value)) => {
                let bytes = value.len() as u64;
                this.buffered.fetch_sub(bytes, Ordering::AcqRel);
                this.unacknowledged += bytes;
                if this.unacknowledged >= (this.window / 2).max(1) {
                    this.session.grant(this.id, this.unacknowledged);
                    this.unacknowledged = 0;
                }
                serde_json::from_slice(&value).map_err(|source| {
                    RpcError::Decode(DecodeError::Result {
                        method: this.method.clone(),
                        source,
                    })
                })
            }
            Some(StreamEvent::End(None)) => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Some(StreamEvent::End(Some(error))) => {
                this.ended = true;
                Err(application_error(error))
            }
            Some(StreamEvent::Failed(error)) => {
                this.ended = true;
                Err(error.widen())
            }
            None => {
                this.ended = true;
                Err(this.session.calls.closed_error().widen())
            }
        };
        Poll::Ready(Some(item))
    }
}

impl<T, E> Drop for RemoteStream<T, E> {
    fn drop(&mut self) {
        self.finish();
    }
}
