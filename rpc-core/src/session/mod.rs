//! The session: the protocol state of one peer, the same on both sides.
//!
//! A session runs on one [`Transport`](crate::transport::Transport) and
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

use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::CloseReason;
use crate::frame::FrameError;
use crate::outbox::{Outbox, YieldToQueue};
use crate::server::Endpoint;
use crate::transport::{ConnectionInfo, Inbound, ReadError, Transport};

pub(crate) mod calls;
pub(crate) mod respond;

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

/// Runs a session until the peer closes it, it breaks, it idles out, or
/// `stop` is cancelled and its calls have drained.
pub(crate) async fn run(
    session: Arc<Session>,
    mut inbound: Inbound,
    mut writer: JoinHandle<std::io::Result<()>>,
    endpoint: Arc<Endpoint>,
    stop: Option<CancellationToken>,
) {
    let limits = &endpoint.limits;
    let mut responder = respond::Responder::new(session.clone(), endpoint.clone());
    let mut handlers = JoinSet::new();
    let mut reading = true;
    let mut grace_ends: Option<Instant> = None;
    // When the last call in flight finished; with the last read, the start
    // of the current idle period.
    let mut drained_at = Instant::now();
    let mut fatal = false;
    let mut burst = 0u32;
    // Why reading stopped, while the calls in flight finish.
    let mut ended: Option<CloseReason> = None;
    let reason = loop {
        let idle_until = limits.idle_timeout.and_then(|idle| {
            (handlers.is_empty() && session.calls.is_empty())
                .then(|| drained_at.max(inbound.last_read()).checked_add(idle))
                .flatten()
        });
        // Biased: the branches are polled in this order, which needs no
        // random number per turn; reaping before reading keeps the table of
        // running calls short.
        tokio::select! {
            biased;
            _ = cancelled(stop.as_ref()), if grace_ends.is_none() => {
                grace_ends = Some(Instant::now() + limits.grace_period);
                responder.start_draining();
                if handlers.is_empty() { break CloseReason::ShuttingDown }
            }
            _ = sleep_until_opt(grace_ends), if grace_ends.is_some() => {
                tracing::info!(abandoned = handlers.len(), "grace period over; abandoning calls in flight");
                handlers.abort_all();
                break CloseReason::ShuttingDown;
            }
            Some(done) = handlers.join_next_with_id(), if !handlers.is_empty() => {
                responder.reaped(match done {
                    Ok((task, ())) => task,
                    Err(e) => e.id(),
                });
                if handlers.is_empty() {
                    drained_at = Instant::now();
                    if !reading || responder.draining() { break ended.take().unwrap_or(CloseReason::ShuttingDown) }
                }
            }
            written = &mut writer => {
                // The writer only ends early when the transport failed:
                // nobody can receive the answers any more.
                handlers.abort_all();
                break match written {
                    Ok(Err(e)) => CloseReason::Io(Arc::new(e)),
                    _ => CloseReason::PeerClosed { last_error: None },
                };
            }
            message = async {
                // A peer that does not read its answers is not read either
                // (backpressure), and one that stops reading for as long as
                // the stall timeout is treated as gone, so it cannot hold a
                // session forever.
                if let Some(stalled) = limits.stall_timeout {
                    if !session.outbox.has_room() {
                        let room = session.outbox.wait_for_room();
                        match Instant::now().checked_add(stalled) {
                            Some(until) => {
                                if tokio::time::timeout_at(until, room).await.is_err() {
                                    return Err(ReadError::Stalled(stalled));
                                }
                            }
                            None => room.await,
                        }
                    }
                }
                inbound.next(idle_until).await
            }, if reading => {
                match message {
                    Ok(Some(message)) => {
                        responder.handle(message, inbound.last_read(), &mut handlers);
                        burst += 1;
                        if burst == MESSAGES_PER_TURN {
                            burst = 0;
                            YieldToQueue::default().await;
                        }
                    }
                    Ok(None) => {
                        reading = false;
                        let reason = CloseReason::PeerClosed { last_error: None };
                        session.calls.close(reason.clone());
                        if handlers.is_empty() { break reason }
                        ended = Some(reason);
                    }
                    Err(ReadError::Frame(FrameError::Foreign { protocol, hint })) => {
                        tracing::info!(protocol, "the peer speaks another protocol; closing the connection");
                        if let Some(answer) = crate::transport::framed::foreign_answer(protocol, hint) {
                            session.outbox.push_raw(&answer);
                        }
                        fatal = true;
                        break CloseReason::Protocol(FrameError::Foreign { protocol, hint }.to_string());
                    }
                    Err(ReadError::Frame(FrameError::TooLarge { len, max })) => {
                        tracing::warn!(len, max, "message too large; closing the connection");
                        responder.refuse_too_large(len, max);
                        // Nothing more can be read; the calls already running
                        // still answer, within the grace period.
                        fatal = true;
                        reading = false;
                        let reason = CloseReason::Protocol(FrameError::TooLarge { len, max }.to_string());
                        session.calls.close(reason.clone());
                        grace_ends.get_or_insert(Instant::now() + limits.grace_period);
                        if handlers.is_empty() { break reason }
                        ended = Some(reason);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "closing the connection");
                        reading = false;
                        let stop_now = matches!(e, ReadError::Idle | ReadError::Stalled(_));
                        let reason = close_reason(e);
                        session.calls.close(reason.clone());
                        if handlers.is_empty() || stop_now { break reason }
                        ended = Some(reason);
                    }
                }
            }
        }
    };
    tracing::debug!(%reason, "session ended");
    session.calls.close(reason);
    session.outbox.close();
    if !writer.is_finished() {
        // Bounded: a peer that stops reading cannot hold the task forever.
        let _ = tokio::time::timeout(limits.flush_timeout, &mut writer).await;
        writer.abort();
    }
    if fatal {
        inbound.linger().await;
    }
}

/// What a read error means to this side's calls.
fn close_reason(e: ReadError) -> CloseReason {
    match e {
        ReadError::Frame(FrameError::Io(e)) => CloseReason::Io(Arc::new(e)),
        other => CloseReason::Protocol(other.to_string()),
    }
}

async fn cancelled(stop: Option<&CancellationToken>) {
    match stop {
        Some(stop) => stop.cancelled().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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
