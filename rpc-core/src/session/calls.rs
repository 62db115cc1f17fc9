//! This side's calls on a session: ids, the table of calls awaiting their
//! answers, and the notifications the peer sends in reply to them.
//!
//! Each call gets a fresh numeric id and an entry in the table; the session
//! loop matches each inbound response to its entry by id and hands the
//! answer over a oneshot channel. The table is behind one short-held lock,
//! shared by the callers (insert, remove on drop) and the loop (deliver).
//! The loop also keeps the calls' deadlines, with one timer for the whole
//! table rather than one per call: it drops the entry of a call whose
//! deadline passed, and the caller reports the timeout.

use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::transport::Timer;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::task::Context;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Session;
use crate::error::{CloseReason, RpcError};
use crate::frame::sub_bytes;
use crate::message::{self, ErrorObject, Response};
use crate::outbox::QueueError;

/// A notification the peer sent in reply to one of this side's calls (a
/// server push tied to the call: its `in_reply_to` member names the call).
#[derive(Debug, Clone)]
pub struct Notification {
    /// The notification's method name.
    pub method: String,
    /// Its raw params (`None` when absent).
    pub params: Option<Box<RawValue>>,
}

impl Notification {
    /// Decodes the params as `T` (a missing `params` decodes from `null`).
    ///
    /// # Errors
    /// The `serde_json` error when the params do not have `T`'s shape.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.params.as_deref().map_or("null", RawValue::get))
    }
}

/// What the loop hands a waiting call.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The raw JSON of `result`, sliced from the message.
    Result(Bytes),
    Error(ErrorObject),
    /// The response broke the protocol: what was wrong.
    Malformed(&'static str),
}

/// One call awaiting its answer.
#[derive(Debug)]
struct Pending {
    answer: oneshot::Sender<Answer>,
    /// When the session loop gives up on it (dropping `answer`, which the
    /// caller then reports as a timeout); `None`: the caller keeps its own
    /// time (a batch).
    deadline: Option<Instant>,
    /// Where notifications in reply to this call go, if anyone listens.
    notifications: Option<mpsc::Sender<Notification>>,
    /// For a call that opens a stream: where its items will go.
    stream: Option<Sink>,
}

/// What arrives for one of this side's open streams.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// One item's encoded value, sliced from its message.
    Item(Bytes),
    /// The server ended the stream, with an error if it says so.
    End(Option<ErrorObject>),
    /// The stream ended on this side: the connection closed, or the
    /// server broke the protocol.
    Failed(RpcError),
}

/// The receiving end of one open stream, kept by the session loop.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) events: mpsc::UnboundedSender<StreamEvent>,
    /// Bytes of items delivered and not yet read by the application; the
    /// server's credit bounds them (checked in [`Calls::stream_item`]).
    pub(crate) buffered: std::sync::Arc<AtomicU64>,
    pub(crate) window: u64,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<u64, Pending>,
    /// This side's open streams, by the id the server gave them.
    streams: HashMap<u64, Sink>,
    /// Set once the session is unusable: why.
    /// (Boxed, as the next field: rare, and every idle session carries them.)
    closed: Option<Box<CloseReason>>,
    /// The peer announced a shutdown: calls in flight still complete, new
    /// ones go to a new connection.
    draining: bool,
    /// The last error the peer sent without an id (it could not tell which
    /// call it concerns); reported if the connection then closes.
    last_unattributed: Option<Box<ErrorObject>>,
    /// Responses and stream items received: a sign of life (keepalive).
    heard: u64,
    /// No pending call has a deadline before this (it may be earlier than
    /// every deadline left: answered calls do not move it); `None`: no
    /// pending call has a deadline.
    next_deadline: Option<Instant>,
}

/// The table of this side's calls.
#[derive(Debug)]
pub(crate) struct Calls {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Wakes the session loop when a call's deadline comes before the one
    /// its timer is armed for.
    loop_waker: AtomicWaker,
}

impl Default for Calls {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            loop_waker: AtomicWaker::new(),
        }
    }
}

impl Calls {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether no call awaits an answer.
    pub(crate) fn is_empty(&self) -> bool {
        let state = self.lock();
        state.pending.is_empty() && state.streams.is_empty()
    }

    /// Calls awaiting answers.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().pending.len()
    }

    /// Calls and streams in flight, and how many responses and items have
    /// arrived so far.
    pub(crate) fn activity(&self) -> (usize, u64) {
        let state = self.lock();
        (state.pending.len() + state.streams.len(), state.heard)
    }

    /// Whether new calls may start on this session.
    pub(crate) fn usable(&self) -> bool {
        let state = self.lock();
        state.closed.is_none() && !state.draining
    }

    /// Marks the session closed and fails every pending call (their
    /// receivers see the sender dropped). The first reason given is kept.
    pub(crate) fn close(&self, reason: CloseReason) {
        let pending = {
            let mut state = self.lock();
            if state.closed.is_none() {
                let reason = match (reason, state.last_unattributed.take()) {
                    (CloseReason::PeerClosed { last_error: None }, Some(e)) => {
                        CloseReason::PeerClosed {
                            last_error: Some(*e),
                        }
                    }
                    (reason, _) => reason,
                };
                state.closed = Some(Box::new(reason));
            }
            let streams = std::mem::take(&mut state.streams);
            (std::mem::take(&mut state.pending), streams)
        };
        let (pending, streams) = pending;
        // Dropping the senders wakes every waiting call.
        drop(pending);
        for sink in streams.into_values() {
            let _ = sink.events.send(StreamEvent::Failed(self.closed_error()));
        }
    }

    /// The peer announced a shutdown (`rpc.shutdown`).
    pub(crate) fn set_draining(&self) {
        self.lock().draining = true;
    }

    /// The error for a call that cannot start or lost its session.
    #[cold]
    pub(crate) fn closed_error(&self) -> RpcError {
        let state = self.lock();
        RpcError::Closed(match (&state.closed, state.draining) {
            (Some(why), _) => (**why).clone(),
            (None, true) => CloseReason::ShuttingDown,
            (None, false) => CloseReason::PeerClosed { last_error: None },
        })
    }

    /// Registers a call: its id and the channel its answer comes on,
    /// dropped unanswered by the session loop once `deadline` passes.
    pub(crate) fn register(
        &self,
        notifications: Option<mpsc::Sender<Notification>>,
        deadline: Instant,
    ) -> Result<(u64, oneshot::Receiver<Answer>), RpcError> {
        let (tx, rx) = oneshot::channel();
        let id = self.insert(tx, notifications, None, Some(deadline))?;
        Ok((id, rx))
    }

    /// Registers a call that opens a stream whose items go to `sink`.
    pub(crate) fn register_stream(
        &self,
        sink: Sink,
        deadline: Instant,
    ) -> Result<(u64, oneshot::Receiver<Answer>), RpcError> {
        let (tx, rx) = oneshot::channel();
        let id = self.insert(tx, None, Some(sink), Some(deadline))?;
        Ok((id, rx))
    }

    /// Registers a call whose answer goes to `answer`, with no deadline
    /// of its own (the caller keeps the time).
    pub(crate) fn register_sender(
        &self,
        answer: oneshot::Sender<Answer>,
        notifications: Option<mpsc::Sender<Notification>>,
    ) -> Result<u64, RpcError> {
        self.insert(answer, notifications, None, None)
    }

    fn insert(
        &self,
        answer: oneshot::Sender<Answer>,
        notifications: Option<mpsc::Sender<Notification>>,
        stream: Option<Sink>,
        deadline: Option<Instant>,
    ) -> Result<u64, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        if state.closed.is_some() || state.draining {
            drop(state);
            return Err(self.closed_error());
        }
        state.pending.insert(
            id,
            Pending {
                answer,
                deadline,
                notifications,
                stream,
            },
        );
        // Deadlines mostly come later than the ones before (one timeout,
        // later calls): the loop is woken only for an earlier one.
        let sooner = deadline.filter(|d| state.next_deadline.is_none_or(|next| *d < next));
        if let Some(deadline) = sooner {
            state.next_deadline = Some(deadline);
        }
        drop(state);
        if sooner.is_some() {
            self.loop_waker.wake();
        }
        Ok(id)
    }

    /// For the session loop: drops the calls whose deadline has passed
    /// (each caller then reports a timeout and cancels its call), with one
    /// timer for all of them. Never `Ready`: it only registers the loop's
    /// waker and arms `timer` for the next deadline.
    pub(crate) fn poll_deadlines(&self, cx: &mut Context<'_>, timer: &mut Timer) {
        self.loop_waker.register(cx.waker());
        loop {
            let Some(next) = self.lock().next_deadline else {
                return;
            };
            if timer.poll_at(cx, next).is_pending() {
                return;
            }
            let now = Instant::now();
            let mut state = self.lock();
            // Dropping a sender wakes its caller.
            state
                .pending
                .retain(|_, call| call.deadline.is_none_or(|d| d > now));
            state.next_deadline = state.pending.values().filter_map(|c| c.deadline).min();
        }
    }

    /// Removes entries that will never be answered.
    pub(crate) fn forget(&self, ids: &[u64]) {
        let mut state = self.lock();
        for id in ids {
            state.pending.remove(id);
        }
    }

    /// Removes one entry; whether it was still waiting.
    fn remove(&self, id: u64) -> bool {
        self.lock().pending.remove(&id).is_some()
    }

    /// Hands a response to the call it answers. A response without a
    /// usable id is kept as the connection's last unattributed error.
    pub(crate) fn deliver(&self, message: &Bytes, response: Response<'_>) {
        let Some(id) = response.id.and_then(|id| id.get().parse::<u64>().ok()) else {
            match response.error_object() {
                Some(Ok(error)) => {
                    tracing::warn!(code = error.code, error = ?crate::message::quote(&error.message), "the peer sent an error about no particular call");
                    self.lock().last_unattributed = Some(Box::new(error));
                }
                _ => tracing::debug!("ignored a response with an id this side never used"),
            }
            return;
        };
        let answer = match (response.result, response.error_object()) {
            (Some(result), None) => Answer::Result(sub_bytes(message, result.get())),
            (None, Some(Ok(error))) => Answer::Error(error),
            (None, Some(Err(_))) => {
                Answer::Malformed("the `error` member is not a JSON-RPC error object")
            }
            _ => Answer::Malformed("a response must have exactly one of `result` and `error`"),
        };
        let waiter = {
            let mut state = self.lock();
            state.heard += 1;
            state.pending.remove(&id)
        };
        match waiter {
            Some(waiter) => {
                if let (Some(sink), Answer::Result(result)) = (waiter.stream, &answer) {
                    // Registered before the next message is read: the
                    // stream's items follow its opening response.
                    if let Some(stream) = opened_stream(result) {
                        self.lock().streams.insert(stream, sink);
                    }
                }
                let _ = waiter.answer.send(answer);
            }
            None => tracing::debug!(id, "ignored a response to a call no longer waiting"),
        }
    }

    /// Hands an item of `bytes` (its encoded value) to stream `stream`.
    /// `Err` when the server sent more than the stream's credit allows:
    /// the stream is then failed and forgotten, and the caller tells the
    /// server to stop it.
    pub(crate) fn stream_item(&self, stream: u64, value: Bytes) -> Result<(), ()> {
        let mut state = self.lock();
        state.heard += 1;
        let Some(sink) = state.streams.get(&stream) else {
            // Unsubscribed meanwhile: items already in flight are dropped.
            return Ok(());
        };
        let bytes = value.len() as u64;
        let before = sink.buffered.fetch_add(bytes, Ordering::AcqRel);
        if before > 0 && before + bytes > sink.window {
            if let Some(sink) = state.streams.remove(&stream) {
                let _ = sink.events.send(StreamEvent::Failed(RpcError::Decode(
                    crate::error::DecodeError::InvalidResponse(
                        "the server sent more bytes of items than the stream's credit allows",
                    ),
                )));
            }
            return Err(());
        }
        if sink.events.send(StreamEvent::Item(value)).is_err() {
            state.streams.remove(&stream);
        }
        Ok(())
    }

    /// Stream `stream` ended on the server, with `error` if it failed.
    pub(crate) fn stream_end(&self, stream: u64, error: Option<ErrorObject>) {
        if let Some(sink) = self.lock().streams.remove(&stream) {
            let _ = sink.events.send(StreamEvent::End(error));
        }
    }

    /// Forgets stream `stream` (its reader is gone); whether it was open.
    pub(crate) fn forget_stream(&self, stream: u64) -> bool {
        self.lock().streams.remove(&stream).is_some()
    }

    /// Where a notification in reply to call `id` goes, if anyone listens.
    pub(crate) fn listener(&self, id: &RawValue) -> Option<mpsc::Sender<Notification>> {
        let id = id.get().parse::<u64>().ok()?;
        self.lock().pending.get(&id)?.notifications.clone()
    }
}

impl Session {
    /// Sends a request and waits for its answer until `deadline`.
    /// `notifications` receives what the peer pushes in reply to it.
    pub(crate) async fn request<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
        deadline: Instant,
        timeout: Duration,
        notifications: Option<mpsc::Sender<Notification>>,
    ) -> Result<Answer, RpcError> {
        self.exchange(
            method,
            params,
            deadline,
            timeout,
            Opens::Call(notifications),
        )
        .await
    }

    /// Sends a request that opens a stream, whose items go to `sink`, with
    /// `credit` as the stream's window when it is not the default.
    pub(crate) async fn request_stream<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
        deadline: Instant,
        timeout: Duration,
        sink: Sink,
        credit: Option<u64>,
    ) -> Result<Answer, RpcError> {
        self.exchange(
            method,
            params,
            deadline,
            timeout,
            Opens::Stream(sink, credit),
        )
        .await
    }

    async fn exchange<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
        deadline: Instant,
        timeout: Duration,
        opens: Opens,
    ) -> Result<Answer, RpcError> {
        let (credit, registered) = match opens {
            Opens::Call(notifications) => (None, self.calls.register(notifications, deadline)),
            Opens::Stream(sink, credit) => (credit, self.calls.register_stream(sink, deadline)),
        };
        let (id, answer) = registered?;
        let mut guard = PendingGuard {
            session: self,
            id,
            armed: true,
            sent: false,
        };
        if !self.outbox.has_room()
            && tokio::time::timeout_at(deadline, self.outbox.wait_for_room())
                .await
                .is_err()
        {
            return Err(RpcError::Timeout(timeout));
        }
        // What remains after connecting, authenticating or waiting for room.
        let budget = deadline.saturating_duration_since(Instant::now());
        self.outbox
            .push(|buf| {
                message::write_request(buf, method, params, Some(id), Some(budget))?;
                if let Some(credit) = credit {
                    message::streams::add_credit(buf, credit);
                }
                Ok(())
            })
            .map_err(|e| self.queue_error(e))?;
        guard.sent = true;
        tracing::Span::current().record("id", id);
        // No timer of its own: the session loop drops the call's entry
        // once its deadline passes (`Calls::poll_deadlines`), one timer
        // for all of the session's calls.
        let answered = answer.await;
        guard.armed = false;
        match answered {
            Ok(answer) => Ok(answer),
            Err(_) if Instant::now() >= deadline => {
                // Expired (its entry is gone): tell the peer to stop.
                self.cancel(id);
                Err(RpcError::Timeout(timeout))
            }
            Err(_) => Err(self.calls.closed_error()),
        }
    }

    /// Sends a notification (no id, no answer) once there is room.
    pub(crate) async fn notify<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), RpcError> {
        if tokio::time::timeout_at(deadline, self.outbox.wait_for_room())
            .await
            .is_err()
        {
            return Err(RpcError::Timeout(timeout));
        }
        self.outbox
            .push(|buf| message::write_request(buf, method, params, None, None))
            .map_err(|e| self.queue_error(e))
    }

    /// Tells the peer to end stream `stream` (best effort), unless it has
    /// ended already.
    pub(crate) fn unsubscribe(&self, stream: u64) {
        let _ = self.outbox.push(|buf| {
            message::streams::write_unsubscribe(buf, stream);
            Ok::<_, std::convert::Infallible>(())
        });
    }

    /// Grants the peer `bytes` more credit on stream `stream`; nothing once
    /// the peer announced its shutdown, which ends every stream: credit
    /// would only be written to a closing connection (and a write there
    /// can reset it, losing the end messages not yet read).
    pub(crate) fn grant(&self, stream: u64, bytes: u64) {
        if self.calls.lock().draining {
            return;
        }
        let _ = self.outbox.push(|buf| {
            message::streams::write_credit(buf, stream, bytes);
            Ok::<_, std::convert::Infallible>(())
        });
    }

    /// Tells the peer to stop working on call `id` (best effort).
    pub(crate) fn cancel(&self, id: u64) {
        let _ = self.outbox.push(|buf| {
            message::write_cancel(buf, id);
            Ok::<_, std::convert::Infallible>(())
        });
    }

    #[cold]
    pub(crate) fn queue_error(&self, e: QueueError<serde_json::Error>) -> RpcError {
        match e {
            QueueError::Closed => self.calls.closed_error(),
            QueueError::TooLarge(e) => RpcError::Frame(e),
            QueueError::Encode(e) => RpcError::Encode(e),
        }
    }
}

/// What a request registers: a call (with a listener for its pushes, if
/// any) or a stream.
enum Opens {
    Call(Option<mpsc::Sender<Notification>>),
    Stream(Sink, Option<u64>),
}

/// Cleans up after a call that ends without its answer (timeout, or the
/// caller dropped the future): removes its entry and, if the request went
/// out, tells the peer to cancel it.
struct PendingGuard<'a> {
    session: &'a Session,
    id: u64,
    armed: bool,
    sent: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.armed && self.session.calls.remove(self.id) && self.sent {
            self.session.cancel(self.id);
        }
    }
}

/// The stream id in a streaming call's result, `{"stream": N}`.
pub(crate) fn opened_stream(result: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Opened {
        stream: u64,
    }
    serde_json::from_slice::<Opened>(result)
        .ok()
        .map(|o| o.stream)
}
