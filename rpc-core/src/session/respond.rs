//! Serving the peer's calls on a session: admission, routing, deadlines,
//! cancellation, panics, and writing each answer.
//!
//! The session loop polls each handler once, inline, as soon as the call is
//! admitted: most handlers finish on that first poll, and their answer is
//! queued at once, with no task spawned. A handler still pending after it
//! continues in a task of its own, so the calls of one session proceed
//! concurrently and their responses are written as they complete. (The
//! price: a handler that computes for a long time before its first
//! `.await` holds up the reading of its connection's next messages; on a
//! one-thread runtime it would hold up everything in its task too.) A
//! panic in the inline poll is caught, as in a task, and fails only its
//! own call.
//! Admission happens before any handler runs, in this order: the
//! [middleware](crate::middleware) (the token check is the first layer),
//! `rpc.cancel`, the shutdown, the in-flight limit, then routing to a
//! service or a [built-in](crate::server::builtins).

use rustc_hash::FxHashMap as HashMap;
use std::borrow::Cow;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use super::Session;
use crate::context::{CallContext, PushTarget};
use crate::frame::sub_bytes;
use crate::message::streams::{END, ITEM};
use crate::message::{self, ErrorObject, Incoming, Parsed, Request, code};
use crate::metrics::MethodMetrics;
use crate::middleware::{Admit, CallInfo, PeerState};
use crate::outbox::{Outbox, QueueError};
use crate::server::Endpoint;
use crate::server::builtins;
use crate::service::{HandlerFuture, Reply};
use crate::transport::{ConnectionInfo, Message, ReplyTo};

use super::streams::{self, End, Opening, Streams};

/// Why a streaming method is refused over HTTP.
const OVER_HTTP: &str = "a streaming method cannot be called over plain HTTP, which has no channel for its items: call it over WebSocket (ws://HOST:PORT/ws) or framed TCP";
/// Why a streaming method is refused in a batch.
const IN_BATCH: &str = "a streaming method cannot be called in a batch (the batch's response goes out last, and a stream's items must follow the response that names it): call it on its own";
/// Why a streaming method is refused as a notification.
const NO_ID: &str =
    "a streaming method must be called as a request with an id: its response names the stream";

/// The serving side of one session: the state only the session loop
/// touches (no lock).
pub(crate) struct Responder {
    session: Arc<Session>,
    endpoint: Arc<Endpoint>,
    in_flight: Arc<Semaphore>,
    /// Calls running in their own task, with their raw ids, so `rpc.cancel`
    /// can abort them: added when a call is spawned, removed when its task
    /// is reaped.
    running: HashMap<tokio::task::Id, (Arc<InFlight>, AbortHandle)>,
    peer: PeerState,
    draining: bool,
    /// The open streams, from the first streaming call on.
    streams: Option<Arc<Streams>>,
}

/// Where the answers to one inbound message go: the session's outbox, or
/// the message's own (an HTTP POST's response).
#[derive(Clone)]
enum Replier {
    Session(Arc<Outbox>),
    Message(Arc<ReplyTo>),
}

impl Replier {
    fn outbox(&self) -> &Outbox {
        match self {
            Replier::Session(outbox) => outbox,
            Replier::Message(reply) => &reply.outbox,
        }
    }
}

/// The outcome of admitting one request.
enum Admitted {
    /// Answer now (or stay silent for a notification).
    Reply(Reply),
    /// Run a handler.
    Run(Call),
    /// Nothing now: an `rpc.unsubscribe` the stream's task answers once
    /// the stream's producer is dropped.
    Later,
}

impl Responder {
    pub(crate) fn new(session: Arc<Session>, endpoint: Arc<Endpoint>) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(endpoint.limits.max_in_flight)),
            running: HashMap::default(),
            peer: PeerState::new(session.info.clone()),
            draining: false,
            streams: None,
            session,
            endpoint,
        }
    }

    /// Whether a shutdown started.
    pub(crate) fn draining(&self) -> bool {
        self.draining
    }

    /// Starts a graceful end: tells the peer (`rpc.shutdown`), and answers
    /// new calls with [`SHUTTING_DOWN`](code::SHUTTING_DOWN).
    pub(crate) fn start_draining(&mut self) {
        self.draining = true;
        if let Some(streams) = &self.streams {
            streams.end_all(End::ShuttingDown);
        }
        let grace = self.endpoint.limits.grace_period;
        let _ = self.session.outbox.push(|buf| {
            message::write_shutdown_notice(buf, grace);
            Ok::<_, Infallible>(())
        });
    }

    /// The peer is gone (or sends no more): its streams end, so that
    /// their tasks do not keep the session open.
    pub(crate) fn peer_gone(&self) {
        if let Some(streams) = &self.streams {
            streams.end_all(End::Closed);
        }
    }

    /// A handler task ended.
    pub(crate) fn reaped(&mut self, task: tokio::task::Id) {
        self.running.remove(&task);
    }

    /// Answers a message too large to read; the session then closes.
    pub(crate) fn refuse_too_large(&self, len: usize, max: usize) {
        let error = ErrorObject::new(
            code::FRAME_TOO_LARGE,
            format!(
                "frame of {len} bytes exceeds the maximum of {max} bytes; the connection will be closed"
            ),
        );
        push_error(&self.session.outbox, None, &error);
    }

    /// Handles one inbound message that arrived at `received`.
    pub(crate) fn handle(
        &mut self,
        message: Message,
        received: Instant,
        handlers: &mut JoinSet<()>,
    ) {
        let Message {
            body,
            reply,
            authenticated,
        } = message;
        if authenticated {
            self.peer.set_authenticated();
        }
        // A stream's items, as this library's server writes them, skip the
        // general parser (the same outcome, at a fraction of the cost).
        if let Some((stream, value)) = message::streams::parse_item(&body) {
            self.deliver_item(stream, sub_bytes(&body, value));
            return;
        }
        match message::parse_body(&body) {
            Incoming::Single(Err(rejected)) => {
                let id = rejected.id.map(|id| keep_id(&body, id));
                push_error(self.replier(reply).outbox(), id.as_deref(), &rejected.error);
            }
            Incoming::Single(Ok(Parsed::Response(response))) => {
                self.session.calls.deliver(&body, response);
            }
            Incoming::Single(Ok(Parsed::Request(request))) => {
                if request.id.is_none() && self.notification_for_this_side(&request, &body) {
                    return;
                }
                let id = request.id.map(|id| keep_id(&body, id));
                let streams = match reply {
                    None => Ok(()),
                    Some(_) => Err(OVER_HTTP),
                };
                match self.admit(&request, received, streams, id.as_ref()) {
                    Admitted::Later => {}
                    Admitted::Reply(answer) => match id {
                        Some(id) => push_reply(self.replier(reply).outbox(), &id, answer),
                        None => log_notification_error(&request.method, &answer),
                    },
                    Admitted::Run(call) => self.run(call, id, reply, handlers),
                }
            }
            Incoming::Batch(members) => {
                let replier = self.replier(reply);
                self.handle_batch(&body, &members, received, replier, handlers)
            }
        }
    }

    /// Where the answers to a message go (made only for a message that has
    /// some: a response needs none).
    fn replier(&self, reply: Option<Arc<ReplyTo>>) -> Replier {
        match reply {
            Some(reply) => Replier::Message(reply),
            None => Replier::Session(self.session.outbox.clone()),
        }
    }

    /// A notification the peer sent this side as a caller: the shutdown
    /// notice, or a push in reply to one of this side's calls. Returns
    /// whether it was one.
    fn notification_for_this_side(&self, request: &Request<'_>, body: &Bytes) -> bool {
        match &*request.method {
            ITEM => {
                self.stream_item(request.params, body);
                return true;
            }
            END => {
                self.stream_end(request.params);
                return true;
            }
            _ => {}
        }
        if let Some(call) = request.in_reply_to {
            match self.session.calls.listener(call) {
                Some(listener) => {
                    let notification = crate::Notification {
                        method: request.method.clone().into_owned(),
                        params: request.params.map(|p| p.to_owned()),
                    };
                    // Bounded: a listener that does not keep up loses what
                    // does not fit (logged), rather than stalling every other
                    // call of the session. Per-stream credit replaces this
                    // with flow control in the streams layer.
                    if let Err(e) = listener.try_send(notification) {
                        tracing::warn!(method = ?message::quote(&request.method), error = %e, "a notification in reply to a call was not delivered");
                    }
                }
                None => {
                    tracing::debug!(method = ?message::quote(&request.method), "ignored a notification for a call nobody listens to")
                }
            }
            return true;
        }
        if request.method == builtins::SHUTDOWN {
            tracing::info!("the peer is shutting down; new calls will use a new connection");
            self.session.calls.set_draining();
            return true;
        }
        false
    }

    /// An item of one of this side's streams (`rpc.item`).
    fn stream_item(&self, params: Option<&RawValue>, body: &Bytes) {
        #[derive(serde::Deserialize)]
        struct Item<'a> {
            stream: u64,
            #[serde(borrow)]
            value: &'a RawValue,
        }
        let Some(item) = params.and_then(|p| serde_json::from_str::<Item<'_>>(p.get()).ok()) else {
            tracing::debug!("ignored an `rpc.item` without a stream and a value");
            return;
        };
        self.deliver_item(item.stream, sub_bytes(body, item.value.get()));
    }

    /// Hands item `value` (its encoded value) to stream `stream`.
    fn deliver_item(&self, stream: u64, value: Bytes) {
        if self.session.calls.stream_item(stream, value).is_err() {
            tracing::warn!(
                stream,
                "the peer sent more than a stream's credit; unsubscribing"
            );
            self.session.unsubscribe(stream);
        }
    }

    /// The end of one of this side's streams (`rpc.end`).
    fn stream_end(&self, params: Option<&RawValue>) {
        #[derive(serde::Deserialize)]
        struct End {
            stream: u64,
            #[serde(default)]
            error: Option<ErrorObject>,
        }
        match params.and_then(|p| serde_json::from_str::<End>(p.get()).ok()) {
            Some(end) => self.session.calls.stream_end(end.stream, end.error),
            None => tracing::debug!("ignored an `rpc.end` without a stream"),
        }
    }

    fn handle_batch(
        &mut self,
        body: &Bytes,
        members: &[&serde_json::value::RawValue],
        received: Instant,
        replier: Replier,
        handlers: &mut JoinSet<()>,
    ) {
        let mut calls: Vec<(Option<Bytes>, Call)> = Vec::with_capacity(members.len());
        for member in members {
            match message::parse_message(member.get()) {
                Ok(Parsed::Response(response)) => self.session.calls.deliver(body, response),
                Ok(Parsed::Request(request)) => {
                    if request.id.is_none() && self.notification_for_this_side(&request, body) {
                        continue;
                    }
                    let id = request.id.map(|id| keep_id(body, id));
                    let call = match self.admit(&request, received, Err(IN_BATCH), None) {
                        Admitted::Reply(reply) => Call::ready(&request.method, reply),
                        // Not given an id to answer later, `admit` answers now.
                        Admitted::Later => {
                            Call::ready(&request.method, crate::service::encode_reply(&true))
                        }
                        Admitted::Run(call) => call,
                    };
                    calls.push((id, call));
                }
                Err(rejected) => calls.push((
                    Some(
                        rejected
                            .id
                            .map_or_else(|| Bytes::from_static(b"null"), |id| keep_id(body, id)),
                    ),
                    Call::ready("", Err(rejected.error)),
                )),
            }
        }
        if calls.is_empty() {
            return;
        }
        let push = self.session.outbox.clone();
        handlers.spawn(async move {
            let replies = futures_util::future::join_all(calls.into_iter().map(|(id, call)| {
                let push = id
                    .clone()
                    .map(|id| Arc::new(InFlight::new(push.clone(), id)));
                async move {
                    let method = call.method.clone();
                    let reply = call.run(push).await;
                    match id {
                        Some(id) => Some((id, reply)),
                        None => {
                            log_notification_error(&method, &reply);
                            None
                        }
                    }
                }
            }))
            .await;
            let replies: Vec<(Bytes, Reply)> = replies.into_iter().flatten().collect();
            if !replies.is_empty() {
                replier.outbox().wait_for_room().await;
                push_batch(replier.outbox(), &replies);
            }
            drop(replier);
        });
    }

    /// Runs `call`: its handler's first poll here, inline
    /// ([`Call::poll_inline`]), and, if it is still pending after that, the
    /// rest in a task of its own, cancellable by id. A streaming call goes
    /// to its task at once (its stream is served from there).
    ///
    /// An answer found inline is queued without waiting for room: the loop
    /// reads a message only when the outbox is below its high-water mark,
    /// so this overshoots the mark by at most one answer per message read.
    fn run(
        &mut self,
        call: Call,
        id: Option<Bytes>,
        reply: Option<Arc<ReplyTo>>,
        handlers: &mut JoinSet<()>,
    ) {
        let in_flight = id.map(|id| Arc::new(InFlight::new(self.session.outbox.clone(), id)));
        // For the log of a notification that fails (a `&'static str` when
        // routed, so no copy).
        let method = in_flight.is_none().then(|| call.method.clone());
        let call = match call.opening() {
            Some(_) => call,
            None => match call.poll_inline(in_flight.as_ref()) {
                Inline::Answered(answer) => {
                    let outbox = match &reply {
                        Some(reply) => &reply.outbox,
                        None => &*self.session.outbox,
                    };
                    match &in_flight {
                        Some(in_flight) => push_reply(outbox, &in_flight.id, answer),
                        None => log_notification_error(method.as_deref().unwrap_or(""), &answer),
                    }
                    return;
                }
                Inline::Pending(call) => call,
            },
        };
        let replier = self.replier(reply);
        let Some(in_flight) = in_flight else {
            handlers.spawn(async move {
                let method = call.method.clone();
                let reply = call.run(None).await;
                log_notification_error(&method, &reply);
                drop(replier);
            });
            return;
        };
        let entry = in_flight.clone();
        let opening = call.opening();
        let abort = handlers.spawn(async move {
            let reply = call.run(Some(in_flight.clone())).await;
            // Decided once: a cancel that came first wins, and then no
            // answer is sent; otherwise the answer is sent and a later
            // cancel answers `false`.
            if in_flight.answer() {
                if let (Ok(_), Some(opening)) = (&reply, &opening) {
                    if opening.serve(&in_flight.id, replier.outbox()).await {
                        return;
                    }
                }
                replier.outbox().wait_for_room().await;
                push_reply(replier.outbox(), &in_flight.id, reply);
            }
        });
        // Unregistered by the session loop when it reaps the task.
        self.running.insert(abort.id(), (entry, abort));
    }

    /// Decides what to do with a request: the middleware, `rpc.cancel`, the
    /// shutdown, the in-flight limit, then routing. `streams` says whether a
    /// streaming method may be called here, or why not; `later`, the
    /// request's id if its answer may be sent later by another task (see
    /// [`streams::immediate`]).
    fn admit(
        &mut self,
        request: &Request<'_>,
        received: Instant,
        streams: Result<(), &'static str>,
        later: Option<&Bytes>,
    ) -> Admitted {
        let method = &*request.method;
        if !self.endpoint.middleware.is_empty() {
            let info = call_info(request);
            for layer in self.endpoint.middleware.iter() {
                match layer.admit(&info, &mut self.peer) {
                    Ok(Admit::Continue) => {}
                    Ok(Admit::Answer(answer)) => return Admitted::Reply(Ok(answer)),
                    Err(error) => return Admitted::Reply(Err(error)),
                }
            }
        }
        if let Some(reply) = builtins::immediate(method, request.params, &mut self.running) {
            return Admitted::Reply(reply);
        }
        match streams::immediate(method, request.params, self.streams.as_deref(), later) {
            Some(streams::Immediate::Now(reply)) => return Admitted::Reply(reply),
            Some(streams::Immediate::Later) => return Admitted::Later,
            None => {}
        }
        if self.draining {
            return Admitted::Reply(Err(ErrorObject::new(
                code::SHUTTING_DOWN,
                "the server is shutting down and accepts no new calls; retry on another server or later",
            )));
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return Admitted::Reply(Err(ErrorObject::new(
                code::SERVER_BUSY,
                format!(
                    "server busy: this connection already has {} calls in flight; retry after some complete",
                    self.endpoint.limits.max_in_flight
                ),
            )));
        };
        let router = &self.endpoint.router;
        let routed =
            std::panic::catch_unwind(AssertUnwindSafe(|| router.call(method, request.params)));
        let (service, method, mut future, streaming, metrics) = match routed {
            Ok(Ok(routed)) => routed,
            Ok(Err(error)) => return Admitted::Reply(Err(error)),
            Err(panic) => return Admitted::Reply(Err(panicked(method, &*panic))),
        };
        let opening = if streaming {
            if let Err(why) = streams {
                return Admitted::Reply(Err(ErrorObject::invalid_request(why)));
            }
            if request.id.is_none() {
                return Admitted::Reply(Err(ErrorObject::invalid_request(NO_ID)));
            }
            let table = self.streams.get_or_insert_with(Arc::default).clone();
            Some(Arc::new(Opening::new(table, request.credit)))
        } else {
            None
        };
        if !self.endpoint.middleware.is_empty() {
            let info = call_info(request);
            for layer in self.endpoint.middleware.iter() {
                future = layer.wrap(&info, future);
            }
        }
        let deadline = request
            .timeout_ms
            .and_then(|ms| received.checked_add(Duration::from_millis(ms)));
        let span = tracing::debug_span!(
            "rpc.call",
            service,
            method = %method,
            id = request.id.map(|id| id.get()),
        );
        Admitted::Run(Call {
            method: Cow::Borrowed(method),
            work: Work::Running(Running {
                span,
                future,
                deadline,
                timeout_ms: request.timeout_ms,
                opening,
                metrics,
                received,
                started: None,
                peer: self.session.info.clone(),
                _permit: permit,
            }),
        })
    }
}

fn call_info<'a>(request: &'a Request<'a>) -> CallInfo<'a> {
    CallInfo {
        method: &request.method,
        id: request.id.map(|id| id.get()),
        params: request.params,
        traceparent: request.traceparent.as_deref(),
    }
}

/// The raw id of a request, kept until its response is written: a slice of
/// a small message, or a copy, so a large message is not held alive by its id.
fn keep_id(message: &Bytes, id: &serde_json::value::RawValue) -> Bytes {
    const SLICE_BELOW: usize = 4096;
    if message.len() < SLICE_BELOW {
        sub_bytes(message, id.get())
    } else {
        Bytes::copy_from_slice(id.get().as_bytes())
    }
}

/// One request being served: shared by its task, its handler's context
/// (to push notifications tied to it) and the session's table of running
/// calls (for `rpc.cancel`). Whether it is answered or cancelled is decided
/// here, exactly once.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// The session's outbox, for notifications the handler pushes.
    pub(crate) outbox: Arc<Outbox>,
    /// The request's raw id, byte for byte.
    pub(crate) id: Bytes,
    outcome: AtomicU8,
}

const RUNNING: u8 = 0;
const ANSWERED: u8 = 1;
const CANCELLED: u8 = 2;

impl InFlight {
    pub(crate) fn new(outbox: Arc<Outbox>, id: Bytes) -> Self {
        Self {
            outbox,
            id,
            outcome: AtomicU8::new(RUNNING),
        }
    }

    /// Decides that the call is answered: `true` if it was still running,
    /// and then its answer must be sent.
    fn answer(&self) -> bool {
        self.decide(ANSWERED)
    }

    /// Decides that the call is cancelled: `true` if it was still running,
    /// and then no answer will be sent.
    pub(crate) fn cancel(&self) -> bool {
        self.decide(CANCELLED)
    }

    fn decide(&self, outcome: u8) -> bool {
        self.outcome
            .compare_exchange(RUNNING, outcome, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// One admitted call.
struct Call {
    /// The wire name, for logs: borrowed from the routing table when routed.
    method: Cow<'static, str>,
    work: Work,
}

enum Work {
    Ready(Reply),
    Running(Running),
}

/// A call whose handler has work to do.
struct Running {
    span: tracing::Span,
    future: HandlerFuture,
    deadline: Option<Instant>,
    timeout_ms: Option<u64>,
    /// For a streaming method: where its stream goes.
    opening: Option<Arc<Opening>>,
    /// Its method's metrics, on a server that records them.
    metrics: Option<Arc<MethodMetrics>>,
    /// When its message arrived: the start of its latency.
    received: Instant,
    /// Set when the handler is first polled: `Some(when)`, the time only
    /// if the span records it (the clock is read only then).
    started: Option<Option<Instant>>,
    /// What the transport knows of the caller (`context::peer`).
    peer: Arc<ConnectionInfo>,
    /// Counts the call against the session's in-flight limit until it
    /// ends (a stream's, until the stream ends).
    _permit: OwnedSemaphorePermit,
}

impl Running {
    /// What happens once, before the handler is first polled.
    fn begin(&mut self) {
        if self.started.is_none() {
            self.started = Some((!self.span.is_disabled()).then(Instant::now));
            if let Some(metrics) = &self.metrics {
                metrics.started();
            }
        }
    }

    /// The handler's context: its deadline, where it pushes, its stream.
    fn context(&self, push: Option<PushTarget>) -> CallContext {
        CallContext::new(self.deadline)
            .with_peer(self.peer.clone())
            .with_push(push)
            .with_opening(self.opening.clone())
    }

    /// The handler is done (or panicked): records it and gives the reply.
    fn finish(self, method: &str, outcome: Result<Reply, Box<dyn std::any::Any + Send>>) -> Reply {
        let Running {
            span,
            opening,
            metrics,
            received,
            started,
            _permit: permit,
            ..
        } = self;
        match opening {
            Some(opening) => opening.keep(permit),
            None => drop(permit),
        }
        let reply = outcome.unwrap_or_else(|panic| Err(panicked(method, &*panic)));
        if let Some(metrics) = &metrics {
            // From the message's arrival: queueing counts as latency.
            metrics.finished(reply.is_ok(), received.elapsed());
        }
        if span.is_disabled() {
            return reply;
        }
        span.in_scope(|| {
            let elapsed_us = started
                .flatten()
                .map_or(0, |t| t.elapsed().as_micros() as u64);
            match &reply {
                Ok(_) => tracing::debug!(elapsed_us, outcome = "ok", "call finished"),
                Err(e) => tracing::debug!(
                    elapsed_us,
                    outcome = "error",
                    code = e.code,
                    "call finished"
                ),
            }
        });
        reply
    }
}

/// What a handler's inline first poll came to.
enum Inline {
    /// It finished (or panicked): its reply.
    Answered(Reply),
    /// It waits for something: the call, to go on in a task of its own.
    Pending(Call),
}

impl Call {
    fn ready(method: &str, reply: Reply) -> Self {
        Call {
            method: Cow::Owned(method.to_owned()),
            work: Work::Ready(reply),
        }
    }

    /// For a streaming call, where its handler leaves the stream.
    fn opening(&self) -> Option<Arc<Opening>> {
        match &self.work {
            Work::Running(running) => running.opening.clone(),
            Work::Ready(_) => None,
        }
    }

    /// Polls the handler once, here and now, inside its call context and
    /// span: [`Inline::Answered`] if it finished (a panic becomes an
    /// internal error for this call only, as in [`Call::run`]), else the
    /// call back, to be run in a task of its own. Most handlers finish on their first poll,
    /// and then the call costs no task.
    ///
    /// The poll gets a no-op waker: a handler that is still pending is
    /// polled again as soon as its task starts, which registers the task's
    /// own waker wherever it waits.
    fn poll_inline(self, push: Option<&PushTarget>) -> Inline {
        let Call { method, work } = self;
        let mut running = match work {
            Work::Ready(reply) => return Inline::Answered(reply),
            Work::Running(running) => running,
        };
        running.begin();
        let context = running.context(push.cloned());
        let polled = {
            let _entered = (!running.span.is_disabled()).then(|| running.span.enter());
            let future = &mut running.future;
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                context.sync_scope(|| future.as_mut().poll(&mut cx))
            }))
        };
        match polled {
            Ok(std::task::Poll::Pending) => Inline::Pending(Call {
                method,
                work: Work::Running(running),
            }),
            Ok(std::task::Poll::Ready(reply)) => {
                Inline::Answered(running.finish(&method, Ok(reply)))
            }
            Err(panic) => Inline::Answered(running.finish(&method, Err(panic))),
        }
    }

    /// Runs the handler inside its call context, within its deadline,
    /// turning a panic into an internal error. (The deadline bounds a
    /// streaming method until it returns its stream, not the stream.)
    async fn run(self, push: Option<PushTarget>) -> Reply {
        let mut running = match self.work {
            Work::Ready(reply) => return reply,
            Work::Running(running) => running,
        };
        running.begin();
        let context = running.context(push);
        let guarded = AssertUnwindSafe(context.scope(&mut running.future))
            .catch_unwind()
            .instrument(running.span.clone());
        let outcome = match running.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, guarded).await {
                Ok(outcome) => outcome,
                Err(_) => Ok(Err(ErrorObject::new(
                    code::DEADLINE_EXCEEDED,
                    format!(
                        "deadline exceeded: the call did not finish within its budget of {} ms; the server stopped working on it",
                        running.timeout_ms.unwrap_or_default()
                    ),
                ))),
            },
            None => guarded.await,
        };
        running.finish(&self.method, outcome)
    }
}

fn log_notification_error(method: &str, reply: &Reply) {
    if let Err(error) = reply {
        // Debug formatting: what a peer sent is logged escaped (no forged
        // lines) and bounded.
        tracing::warn!(
            method = ?message::quote(method),
            code = error.code,
            error = ?error.message,
            "a notification failed (no response is sent for notifications)"
        );
    }
}

#[cold]
fn panicked(what: &str, panic: &(dyn std::any::Any + Send)) -> ErrorObject {
    let detail = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    let (what, detail) = (message::quote(what), message::quote(detail));
    tracing::error!(method = ?what, panic = ?detail, "handler panicked");
    ErrorObject::internal(format_args!("the handler of `{what}` panicked: {detail}"))
}

fn id_str(id: &Bytes) -> &str {
    std::str::from_utf8(id).unwrap_or("null")
}

fn as_response(reply: &Reply) -> Result<&str, &ErrorObject> {
    match reply {
        Ok(result) => Ok(result.get()),
        Err(error) => Err(error),
    }
}

fn push_error(outbox: &Outbox, id: Option<&[u8]>, error: &ErrorObject) {
    let id = id.map(|id| std::str::from_utf8(id).unwrap_or("null"));
    let _ = outbox.push(|buf| {
        message::write_error(buf, id, error);
        Ok::<_, Infallible>(())
    });
}

/// Queues the answer `reply` to request `id` (an error if it is too large).
pub(super) fn push_reply(outbox: &Outbox, id: &Bytes, reply: Reply) {
    let pushed = outbox.push(|buf| {
        message::write_response(buf, id_str(id), as_response(&reply));
        Ok::<_, Infallible>(())
    });
    if let Err(QueueError::TooLarge(e)) = pushed {
        let error = ErrorObject::internal(format_args!("the response is too large to send: {e}"));
        push_error(outbox, Some(id), &error);
    }
}

/// Queues the answer to a batch: one array with a response per request.
/// If that array is over the message limit, every request still gets its
/// own answer: an array of `-32603` errors saying so, or, if even that is
/// too large (a batch of very many requests), one error response each.
fn push_batch(outbox: &Outbox, replies: &[(Bytes, Reply)]) {
    let pushed = outbox.push(|buf| {
        message::write_batch_responses(
            buf,
            replies
                .iter()
                .map(|(id, reply)| (id_str(id), as_response(reply))),
        );
        Ok::<_, Infallible>(())
    });
    let Err(QueueError::TooLarge(e)) = pushed else {
        return;
    };
    let error = ErrorObject::internal(format_args!(
        "the batch response is too large to send ({e}); send these calls in smaller batches"
    ));
    let pushed = outbox.push(|buf| {
        message::write_batch_responses(
            buf,
            replies.iter().map(|(id, _)| (id_str(id), Err(&error))),
        );
        Ok::<_, Infallible>(())
    });
    if let Err(QueueError::TooLarge(_)) = pushed {
        for (id, _) in replies {
            push_error(outbox, Some(id), &error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Drain, Framing, Taken};
    use std::sync::Mutex;

    /// Collects every message an outbox's writer sends, until it closes.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<Bytes>>>);

    impl Drain for Collect {
        async fn send(&mut self, taken: &mut Taken) -> std::io::Result<()> {
            let messages: Vec<Bytes> = taken.messages().collect();
            self.0.lock().unwrap().extend(messages);
            Ok(())
        }

        async fn close(&mut self, _: crate::outbox::Closing) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn outbox() -> Arc<Outbox> {
        Arc::new(Outbox::new(Framing::Delimited, 1 << 20, 1 << 20))
    }

    /// Handles `body` as one message with its own reply handle (as an HTTP
    /// POST is), and returns what was answered on that handle once the
    /// handle closed.
    async fn answers_on_own_handle(responder: &mut Responder, body: &'static str) -> Vec<Bytes> {
        let own = outbox();
        let collect = Collect::default();
        let writer = tokio::spawn({
            let own = own.clone();
            let collect = collect.clone();
            async move { own.run_writer(collect).await }
        });
        let mut handlers = JoinSet::new();
        responder.handle(
            Message {
                body: Bytes::from_static(body.as_bytes()),
                reply: Some(Arc::new(ReplyTo { outbox: own })),
                authenticated: false,
            },
            Instant::now(),
            &mut handlers,
        );
        while handlers.join_next().await.is_some() {}
        tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("the reply handle closes once every answer is queued")
            .unwrap()
            .unwrap();
        let mut got = collect.0.lock().unwrap();
        std::mem::take(&mut *got)
    }

    #[tokio::test]
    async fn answers_follow_their_message_and_no_answer_is_known() {
        let session_outbox = outbox();
        let session = Arc::new(Session::new(
            session_outbox.clone(),
            Arc::new(ConnectionInfo::new("test")),
        ));
        let mut responder = Responder::new(session, Endpoint::client());

        let answers = answers_on_own_handle(
            &mut responder,
            r#"{"jsonrpc":"2.0","method":"rpc.ping","id":7}"#,
        )
        .await;
        assert_eq!(
            answers,
            [&br#"{"jsonrpc":"2.0","result":"pong","id":7}"#[..]]
        );

        let answers = answers_on_own_handle(
            &mut responder,
            r#"[{"jsonrpc":"2.0","method":"rpc.ping","id":1},{"jsonrpc":"2.0","method":"rpc.ping"}]"#,
        )
        .await;
        assert_eq!(
            answers,
            [&br#"[{"jsonrpc":"2.0","result":"pong","id":1}]"#[..]],
            "a batch is answered in one message, without its notification"
        );

        let answers = answers_on_own_handle(
            &mut responder,
            r#"[{"jsonrpc":"2.0","method":"rpc.ping"},{"jsonrpc":"2.0","method":"rpc.ping"}]"#,
        )
        .await;
        assert!(
            answers.is_empty(),
            "a notification-only body closes its handle with no answer (HTTP 204)"
        );
        assert!(
            session_outbox.has_room() && !session_outbox.is_closed_for_tests(),
            "nothing went to the session's own outbox"
        );
    }

    #[tokio::test]
    async fn a_cancel_after_the_answer_was_queued_answers_false() {
        let outbox = outbox();
        let collect = Collect::default();
        let writer = tokio::spawn({
            let (outbox, collect) = (outbox.clone(), collect.clone());
            async move { outbox.run_writer(collect).await }
        });
        let session = Arc::new(Session::new(
            outbox.clone(),
            Arc::new(ConnectionInfo::new("test")),
        ));
        let mut responder = Responder::new(session, Endpoint::client());
        let mut handlers = JoinSet::new();
        let message = |body: &'static str| Message {
            body: Bytes::from_static(body.as_bytes()),
            reply: None,
            authenticated: false,
        };
        responder.handle(
            message(r#"{"jsonrpc":"2.0","method":"rpc.ping","id":1}"#),
            Instant::now(),
            &mut handlers,
        );
        // Wait until the answer went out, without reaping the finished task:
        // the session loop may not have reaped it yet when a cancel arrives.
        tokio::time::timeout(Duration::from_secs(5), async {
            while collect.0.lock().unwrap().is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the answer is sent");
        responder.handle(
            message(r#"{"jsonrpc":"2.0","method":"rpc.cancel","params":{"id":1},"id":2}"#),
            Instant::now(),
            &mut handlers,
        );
        outbox.close();
        writer.await.unwrap().unwrap();
        let sent = collect.0.lock().unwrap().clone();
        assert_eq!(
            sent,
            [
                &br#"{"jsonrpc":"2.0","result":"pong","id":1}"#[..],
                br#"{"jsonrpc":"2.0","result":false,"id":2}"#,
            ],
            "the call was answered, so cancelling it is `false`"
        );
    }
}
