//! The session: the protocol state of one peer, the same on both sides.
//!
//! A session runs on one [`Transport`] and
//! knows nothing of bytes on a wire. It pulls whole inbound messages and
//! sorts each one:
//!
//! - a **response** answers one of this side's own calls: it goes to the
//!   call waiting for it ([`calls`]);
//! - a **request** or **notification** is the peer's call for this side to
//!   serve: admission, routing, deadlines, cancellation, the built-ins and
//!   panics are [`respond`]'s;
//! - a notification **in reply to** one of this side's calls (server push)
//!   goes to whoever registered for that call's notifications.
//!
//! A client's session serves nothing but the built-ins (`rpc.ping`), and a
//! server's makes no calls yet, but both run this one loop, so a client can
//! later serve calls on its connection and a server call its peer.
//!
//! Outbound, everyone with something to send (a caller, a handler, the
//! loop) serializes it into the transport's [`Outbox`], which bounds what is
//! buffered: producers wait for room, so a peer that does not read slows
//! this side down instead of growing its memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::CloseReason;
use crate::frame::FrameError;
use crate::outbox::{Closing, Outbox, YieldToQueue};
use crate::server::Endpoint;
use crate::transport::{ConnectionInfo, Inbound, Message, ReadError, Timer, Transport};

pub(crate) mod calls;
pub(crate) mod respond;
pub(crate) mod streams;

pub use calls::Notification;
pub(crate) use calls::{Answer, Calls};

/// Messages handled in a row before the loop lets other tasks run (the
/// handlers just spawned, the callers just answered, the writer), so a burst
/// is answered as a stream and both peers work at once.
const MESSAGES_PER_TURN: u32 = 16;

/// What the loop, the callers and the handlers of one peer share.
#[derive(Debug)]
pub(crate) struct Session {
    /// Where every outbound message is serialized.
    pub(crate) outbox: Arc<Outbox>,
    /// What is known of the peer.
    pub(crate) info: Arc<ConnectionInfo>,
    /// This side's calls awaiting their answers.
    pub(crate) calls: Calls,
}

impl Session {
    fn new(outbox: Arc<Outbox>, info: Arc<ConnectionInfo>) -> Self {
        Self {
            outbox,
            info,
            calls: Calls::default(),
        }
    }
}

/// Opens a session on `transport`, serving requests with `endpoint`;
/// `stop` starts a graceful end (the server's shutdown). The session runs
/// while the returned future is polled: a server awaits it in the
/// connection's task, a client spawns it.
pub(crate) fn open(
    transport: Transport,
    endpoint: Arc<Endpoint>,
    stop: Option<CancellationToken>,
) -> (
    Arc<Session>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let session = Arc::new(Session::new(transport.outbox, transport.info));
    let run = run(
        session.clone(),
        transport.inbound,
        transport.writer,
        endpoint,
        stop,
    );
    (session, run)
}

/// What woke the session loop.
enum Event {
    /// The server is shutting down.
    Stop,
    /// The shutdown's grace period ran out.
    GraceOver,
    /// A handler task ended.
    Reaped(tokio::task::Id),
    /// The writer task ended: the transport failed or was closed.
    Written(Result<std::io::Result<()>, tokio::task::JoinError>),
    /// The peer stopped reading for the whole stall timeout.
    Stalled(Duration),
    /// A message arrived, or reading ended.
    Read(Result<Option<Message>, ReadError>),
}

/// Runs a session until the peer closes it, it breaks, it idles out, or
/// `stop` is cancelled and its calls have drained.
///
/// One poll function waits for every source at once: no future is built
/// per message, which matters on the hot path. Sources are polled in a
/// fixed order: finished handlers first (so the table of running calls
/// stays short), then the writer, then the transport; the shutdown last,
/// and every [`MESSAGES_PER_TURN`] messages, so a peer that never stops
/// sending cannot hold off a shutdown.
pub(crate) async fn run(
    session: Arc<Session>,
    mut inbound: Inbound,
    mut writer: JoinHandle<std::io::Result<()>>,
    endpoint: Arc<Endpoint>,
    stop: Option<CancellationToken>,
) {
    // If anything below panics, the peer must see the connection close at
    // once, not a socket the writer task keeps open.
    let _close_on_panic = CloseOnDrop(session.clone());
    let limits = &endpoint.limits;
    let mut responder = respond::Responder::new(session.clone(), endpoint.clone());
    let mut handlers = JoinSet::new();
    let mut reading = true;
    let mut grace_ends: Option<Instant> = None;
    // When the last call in flight finished; with the last read, the start
    // of the current idle period.
    let mut drained_at = Instant::now();
    let mut fatal = false;
    // Why the connection closes, for a transport that can say so.
    let mut closing = Closing::Normal;
    let mut burst = 0u32;
    // Why reading stopped, while the calls in flight finish.
    let mut ended: Option<CloseReason> = None;
    let mut stopped = std::pin::pin!(stop.as_ref().map(CancellationToken::cancelled));
    let mut grace_timer = Timer::default();
    let mut stall_timer = Timer::default();
    let mut deadline_timer = Timer::default();
    // When the peer's unread answers filled the outbox, if they have.
    let mut stalled_since: Option<Instant> = None;
    let reason = loop {
        let idle_until = limits.idle_timeout.and_then(|idle| {
            (handlers.is_empty() && session.calls.is_empty())
                .then(|| crate::time::at(drained_at.max(inbound.last_read()), idle))
        });
        let event = std::future::poll_fn(|cx| {
            if !handlers.is_empty() {
                if let Poll::Ready(Some(done)) = handlers.poll_join_next_with_id(cx) {
                    return Poll::Ready(Event::Reaped(match done {
                        Ok((task, ())) => task,
                        Err(e) => e.id(),
                    }));
                }
            }
            if reading {
                // A peer that does not read its answers is not read either
                // (backpressure), and one that stops reading for the whole
                // stall timeout is treated as gone, so it cannot hold a
                // session forever.
                let room = match limits.stall_timeout {
                    Some(stall) => match session.outbox.poll_room(cx) {
                        Poll::Ready(()) => {
                            stalled_since = None;
                            true
                        }
                        Poll::Pending => {
                            let since = *stalled_since.get_or_insert_with(Instant::now);
                            if stall_timer
                                .poll_at(cx, crate::time::at(since, stall))
                                .is_ready()
                            {
                                return Poll::Ready(Event::Stalled(stall));
                            }
                            false
                        }
                    },
                    None => true,
                };
                if room {
                    if let Poll::Ready(read) = inbound.poll_next(cx, idle_until) {
                        return Poll::Ready(Event::Read(read));
                    }
                }
            }
            // This side's calls past their deadline, from one timer.
            session.calls.poll_deadlines(cx, &mut deadline_timer);
            // Polled only when nothing is ready to read, so not once per
            // message: a failed writer also shows every few messages below.
            if let Poll::Ready(written) = Pin::new(&mut writer).poll(cx) {
                return Poll::Ready(Event::Written(written));
            }
            if let Some(at) = grace_ends {
                if grace_timer.poll_at(cx, at).is_ready() {
                    return Poll::Ready(Event::GraceOver);
                }
            } else if let Some(stopped) = stopped.as_mut().as_pin_mut() {
                if stopped.poll(cx).is_ready() {
                    return Poll::Ready(Event::Stop);
                }
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Stop => {
                grace_ends = Some(crate::time::after(limits.grace_period));
                responder.start_draining();
                if handlers.is_empty() {
                    break CloseReason::ShuttingDown;
                }
            }
            Event::GraceOver => {
                tracing::info!(
                    abandoned = handlers.len(),
                    "grace period over; abandoning calls in flight"
                );
                handlers.abort_all();
                break CloseReason::ShuttingDown;
            }
            Event::Reaped(task) => {
                responder.reaped(task);
                if handlers.is_empty() {
                    drained_at = Instant::now();
                    if !reading || responder.draining() {
                        break ended.take().unwrap_or(CloseReason::ShuttingDown);
                    }
                }
            }
            Event::Written(written) => {
                // The writer only ends early when the transport failed:
                // nobody can receive the answers any more.
                handlers.abort_all();
                break match written {
                    Ok(Err(e)) => CloseReason::Io(Arc::new(e)),
                    _ => CloseReason::PeerClosed { last_error: None },
                };
            }
            Event::Stalled(stall) => {
                closing = Closing::Protocol;
                let e = ReadError::Stalled(stall);
                tracing::debug!(error = %e, "closing the connection");
                break close_reason(e);
            }
            Event::Read(Ok(Some(message))) => {
                responder.handle(message, inbound.last_read(), &mut handlers);
                burst += 1;
                if burst == MESSAGES_PER_TURN {
                    burst = 0;
                    // A shutdown, or a failed writer, must not wait for a
                    // busy peer to pause.
                    if grace_ends.is_none() && stop.as_ref().is_some_and(|s| s.is_cancelled()) {
                        grace_ends = Some(crate::time::after(limits.grace_period));
                        responder.start_draining();
                        // As for `Event::Stop`: with nothing running, nothing
                        // else would end the session before the grace period.
                        if handlers.is_empty() {
                            break CloseReason::ShuttingDown;
                        }
                    }
                    if writer.is_finished() {
                        handlers.abort_all();
                        break match (&mut writer).await {
                            Ok(Err(e)) => CloseReason::Io(Arc::new(e)),
                            _ => CloseReason::PeerClosed { last_error: None },
                        };
                    }
                    YieldToQueue::default().await;
                }
            }
            Event::Read(Ok(None)) => {
                reading = false;
                responder.peer_gone();
                let reason = CloseReason::PeerClosed { last_error: None };
                session.calls.close(reason.clone());
                if handlers.is_empty() {
                    break reason;
                }
                ended = Some(reason);
            }
            Event::Read(Err(ReadError::Frame(FrameError::Foreign { protocol, hint }))) => {
                tracing::info!(
                    protocol,
                    "the peer speaks another protocol; closing the connection"
                );
                if let Some(answer) = crate::transport::framed::foreign_answer(protocol, hint) {
                    session.outbox.push_raw(&answer);
                }
                fatal = true;
                closing = Closing::Protocol;
                break CloseReason::Protocol(FrameError::Foreign { protocol, hint }.to_string());
            }
            Event::Read(Err(ReadError::Frame(FrameError::TooLarge { len, max }))) => {
                tracing::warn!(len, max, "message too large; closing the connection");
                responder.refuse_too_large(len, max);
                // Nothing more can be read; the calls already running still
                // answer, within the grace period.
                fatal = true;
                reading = false;
                responder.peer_gone();
                closing = Closing::TooLarge;
                let reason = CloseReason::Protocol(FrameError::TooLarge { len, max }.to_string());
                session.calls.close(reason.clone());
                grace_ends.get_or_insert(crate::time::after(limits.grace_period));
                if handlers.is_empty() {
                    break reason;
                }
                ended = Some(reason);
            }
            Event::Read(Err(e)) => {
                tracing::debug!(error = %e, "closing the connection");
                reading = false;
                responder.peer_gone();
                let stop_now = matches!(e, ReadError::Idle);
                if matches!(e, ReadError::FrameTimeout(_) | ReadError::Truncated(_)) {
                    closing = Closing::Protocol;
                }
                let reason = close_reason(e);
                session.calls.close(reason.clone());
                if handlers.is_empty() || stop_now {
                    break reason;
                }
                ended = Some(reason);
            }
        }
    };
    tracing::debug!(%reason, "session ended");
    // A shutdown closes connections whose peers may still be writing (a
    // late credit, a call racing the notice): read away what comes for a
    // moment after our end (a lingering close, as HTTP servers do), so
    // that a late write does not reset the connection and destroy the
    // answers the peer has not read yet.
    let linger = fatal || (reading && matches!(reason, CloseReason::ShuttingDown));
    if matches!(reason, CloseReason::ShuttingDown) {
        closing = Closing::GoingAway;
    }
    session.calls.close(reason);
    session.outbox.close_because(closing);
    if !writer.is_finished() {
        // Bounded: a peer that stops reading cannot hold the task forever.
        let _ = tokio::time::timeout(limits.flush_timeout, &mut writer).await;
        writer.abort();
    }
    if linger {
        inbound.linger().await;
    }
}

/// Closes the session's outbox and its calls when dropped: the writer
/// flushes what is queued and closes the outbound half, and callers still
/// waiting are told. Normally redundant (the loop closes both on its way
/// out); on a panic or an abort, the only thing that does.
struct CloseOnDrop(Arc<Session>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("a session panicked; closing its connection");
            self.0
                .calls
                .close(CloseReason::Protocol("the session failed".to_owned()));
            self.0.outbox.close_because(Closing::Failed);
        }
        // Calls still waiting (the loop's task aborted: the client dropped
        // its link) wait for nothing more: the loop timed them out.
        // Normally redundant too: the first reason given stands.
        self.0
            .calls
            .close(CloseReason::PeerClosed { last_error: None });
        self.0.outbox.close();
    }
}

/// What a read error means to this side's calls.
fn close_reason(e: ReadError) -> CloseReason {
    match e {
        ReadError::Frame(FrameError::Io(e)) => CloseReason::Io(Arc::new(e)),
        other => CloseReason::Protocol(other.to_string()),
    }
}

/// The limits one session works within; see
/// [`ServerBuilder`](crate::ServerBuilder) for each default.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    /// Calls of the peer running at once.
    pub(crate) max_in_flight: usize,
    /// Time with nothing in flight and nothing arriving before the session
    /// ends; `None`: no limit (a client's session).
    pub(crate) idle_timeout: Option<Duration>,
    /// Time the writer gets to flush what is queued when the session ends
    /// (the server's frame timeout).
    pub(crate) flush_timeout: Duration,
    /// How long the session waits for its peer to read before it stops
    /// reading the peer's messages counts as a stall that ends the session;
    /// `None`: never wait (a client's session, whose answers to the peer's
    /// calls are bounded by the in-flight limit instead).
    pub(crate) stall_timeout: Option<Duration>,
    /// Time calls in flight get after a shutdown starts.
    pub(crate) grace_period: Duration,
}
