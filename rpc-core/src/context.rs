//! What a handler knows about the call it is serving: its deadline, its
//! caller ([`peer`]), and a way to send its caller notifications while it
//! runs.
//!
//! The server runs every handler inside a task-local [`CallContext`]. A
//! handler can read how much of the caller's time budget is left
//! ([`remaining`]), and every client call made from inside the handler
//! inherits that budget: its own timeout is cut to what remains, so a chain
//! of services never works past the moment the first caller gave up.
//!
//! A handler can also push notifications to its caller with [`notify`],
//! before it returns its result: each carries the call's id in its
//! `in_reply_to` member, so the caller's client routes it to that call
//! ([`Client::call_with_notifications`](crate::Client::call_with_notifications)).
//!
//! ```
//! #[rpc_core::service]
//! trait Report {
//!     async fn build(&self) -> String;
//! }
//! struct R;
//! impl Report for R {
//!     async fn build(&self) -> String {
//!         match rpc_core::context::remaining() {
//!             Some(left) if left.as_millis() < 100 => "summary".to_owned(),
//!             _ => "full report".to_owned(),
//!         }
//!     }
//! }
//! ```
//!
//! The context does not follow `tokio::spawn`: wrap a spawned future in
//! [`CallContext::scope`] to carry it along.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::outbox::QueueError;
use crate::session::respond::InFlight;
use crate::session::streams::Opening;
use crate::transport::ConnectionInfo;

tokio::task_local! {
    static CURRENT: CallContext;
}

/// The server-side view of one call.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    deadline: Option<Instant>,
    push: Option<PushTarget>,
    /// For a streaming call: where its handler leaves the stream.
    opening: Option<Arc<Opening>>,
    /// What the transport knows of the caller.
    peer: Option<Arc<ConnectionInfo>>,
}

/// Where a handler's notifications go: its session's outbox, tagged with
/// the raw id of the request being served.
pub(crate) type PushTarget = Arc<InFlight>;

/// Why a handler's notification could not be sent ([`notify`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// Not called from a handler serving a request: outside any call, or
    /// in a notification's handler (a notification has no id to tie to).
    #[error("no call to reply to: `notify` works inside the handler of a request with an id")]
    NoCall,
    /// The caller's connection is closed.
    #[error("the caller's connection is closed")]
    Closed,
    /// The notification is larger than the connection's maximum message.
    #[error(transparent)]
    TooLarge(crate::frame::FrameError),
    /// The params could not be serialized.
    #[error("could not serialize the notification's params: {0}")]
    Encode(#[source] serde_json::Error),
}

impl CallContext {
    /// A context whose budget ends at `deadline` (`None`: no limit).
    pub fn new(deadline: Option<Instant>) -> Self {
        Self {
            deadline,
            push: None,
            opening: None,
            peer: None,
        }
    }

    /// The same context, for a call from `peer`.
    pub(crate) fn with_peer(mut self, peer: Arc<ConnectionInfo>) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The same context, able to push notifications to `target`.
    pub(crate) fn with_push(mut self, target: Option<PushTarget>) -> Self {
        self.push = target;
        self
    }

    /// The same, for a streaming call.
    pub(crate) fn with_opening(mut self, opening: Option<Arc<Opening>>) -> Self {
        self.opening = opening;
        self
    }

    /// When the caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Runs `future` with this context as the current one.
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }

    /// Runs `f` with this context as the current one: a handler's first
    /// poll, made inline by the session loop before the call gets a task.
    pub(crate) fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// The context of the call being served by this task, if any.
    pub fn current() -> Option<CallContext> {
        CURRENT.try_with(Clone::clone).ok()
    }
}

/// The streaming call being served, if it is one.
pub(crate) fn opening() -> Option<Arc<Opening>> {
    CURRENT.try_with(|c| c.opening.clone()).ok().flatten()
}

/// What the transport knows of the caller of the current call: its address
/// (to count a peer's failed logins, say), its TLS identity, the headers
/// that opened its session. `None` outside a handler; the address inside is
/// `None` on an in-memory transport.
///
/// ```
/// use std::net::IpAddr;
///
/// #[rpc_core::service]
/// trait Whoami {
///     /// The caller's address, as the server sees it.
///     async fn whoami(&self) -> Option<IpAddr>;
/// }
/// struct W;
/// impl Whoami for W {
///     async fn whoami(&self) -> Option<IpAddr> {
///         rpc_core::context::peer().and_then(|info| info.peer).map(|addr| addr.ip())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = rpc_core::Server::builder()
///     .service(WhoamiServer::new(W))
///     .bind("127.0.0.1:0")
///     .await?;
/// let client = WhoamiClient::connect(server.local_addr()).await?;
/// assert_eq!(client.whoami().await?, Some(IpAddr::from([127, 0, 0, 1])));
/// assert!(rpc_core::context::peer().is_none(), "outside a handler");
/// server.shutdown().await;
/// # Ok(()) }
/// ```
pub fn peer() -> Option<Arc<ConnectionInfo>> {
    CURRENT.try_with(|c| c.peer.clone()).ok().flatten()
}

/// The deadline of the call being served, if the caller sent one.
pub fn deadline() -> Option<Instant> {
    CURRENT.try_with(|c| c.deadline).ok().flatten()
}

/// Sends the caller of the current call a notification `method` with
/// `params`, tied to the call by its id (the `in_reply_to` member; see
/// PROTOCOL.md, "Notifications during a call"). Waits while the
/// connection's outbound buffer is full, so a caller that does not read
/// slows the handler down instead of growing the server's memory.
///
/// ```
/// #[rpc_core::service]
/// trait Jobs {
///     async fn run(&self, steps: u32) -> u32;
/// }
/// struct J;
/// impl Jobs for J {
///     async fn run(&self, steps: u32) -> u32 {
///         for step in 1..=steps {
///             // Best effort: the caller may not be listening.
///             let _ = rpc_core::context::notify("progress", &(step, steps)).await;
///         }
///         steps
///     }
/// }
/// ```
///
/// # Errors
/// [`PushError::NoCall`] outside the handler of a request,
/// [`PushError::Closed`] once the caller is gone, and
/// [`PushError::TooLarge`] or [`PushError::Encode`] for params that cannot
/// be sent.
pub async fn notify<P: Serialize + ?Sized>(method: &str, params: &P) -> Result<(), PushError> {
    let target = CURRENT
        .try_with(|c| c.push.clone())
        .ok()
        .flatten()
        .ok_or(PushError::NoCall)?;
    target.outbox.wait_for_room().await;
    let id = std::str::from_utf8(&target.id).unwrap_or("null");
    target
        .outbox
        .push(|buf| crate::message::write_push(buf, method, params, id))
        .map_err(|e| match e {
            QueueError::Closed => PushError::Closed,
            QueueError::TooLarge(e) => PushError::TooLarge(e),
            QueueError::Encode(e) => PushError::Encode(e),
        })
}

/// The time left before the caller of the current call gives up (zero once
/// it has passed); `None` outside a handler or when the caller set no limit.
pub fn remaining() -> Option<Duration> {
    deadline().map(|d| d.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down_inside_the_scope_only() {
        assert_eq!(remaining(), None);
        let ctx = CallContext::new(Some(Instant::now() + Duration::from_secs(10)));
        ctx.scope(async {
            assert_eq!(remaining(), Some(Duration::from_secs(10)));
            tokio::time::advance(Duration::from_secs(4)).await;
            assert_eq!(remaining(), Some(Duration::from_secs(6)));
        })
        .await;
        assert_eq!(remaining(), None);
    }
}
