//! What a handler knows about the call it is serving: its deadline.
//!
//! The server runs every handler inside a task-local [`CallContext`]. A
//! handler can read how much of the caller's time budget is left
//! ([`remaining`]), and every client call made from inside the handler
//! inherits that budget: its own timeout is cut to what remains, so a chain
//! of services never works past the moment the first caller gave up.
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
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static CURRENT: CallContext;
}

/// The server-side view of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallContext {
    deadline: Option<Instant>,
}

impl CallContext {
    /// A context whose budget ends at `deadline` (`None`: no limit).
    pub fn new(deadline: Option<Instant>) -> Self {
        Self { deadline }
    }

    /// When the caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Runs `future` with this context as the current one.
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }

    /// The context of the call being served by this task, if any.
    pub fn current() -> Option<CallContext> {
        CURRENT.try_with(|c| *c).ok()
    }
}

/// The deadline of the call being served, if the caller sent one.
pub fn deadline() -> Option<Instant> {
    CallContext::current().and_then(|c| c.deadline)
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
