//! Finding out that a connection died without closing: a cable pulled, a
//! host powered off, a network namespace's link set down. No FIN or RST
//! arrives, and TCP would keep the calls waiting until their deadlines (or
//! for minutes of retransmissions). So the client watches each connection
//! that has calls in flight: when nothing has arrived on it for one
//! interval, it sends `rpc.ping`; when nothing has arrived after `misses`
//! more intervals, the connection is declared dead and closed, its calls
//! fail with [`RpcError::Closed`](crate::RpcError::Closed), and the next
//! call reconnects (a discovering client picks another instance).
//!
//! Not over `http://`: each POST has its own time limit there
//! ([`Limits::exchange_timeout`](crate::transport::Limits)), and a pool
//! whose connections all carry slow calls has none left for a ping.

use std::sync::Weak;
use std::time::Duration;

use crate::error::CloseReason;
use crate::session::Session;

/// When an unanswering connection is declared dead (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence, with calls in flight, before a ping; and between pings.
    pub interval: Duration,
    /// Pings left unanswered (with nothing else arriving) before the
    /// connection is declared dead.
    pub misses: u32,
}

impl Default for Keepalive {
    /// A ping after 2 s of silence, dead after 3 more silent intervals: a
    /// dead link is found within about 8 s.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            misses: 3,
        }
    }
}

impl Keepalive {
    /// How long a connection may stay silent, with calls in flight, before
    /// it is declared dead: one interval, then `misses` more. A
    /// discovering client gives dialling an instance no longer either.
    pub fn silence(&self) -> std::time::Duration {
        self.interval
            .max(Duration::from_millis(1))
            .saturating_mul(self.misses.saturating_add(1))
    }
}

/// Watches `session` until it ends; closes it (and aborts its task) when
/// it stays silent, with calls in flight, past the keepalive's misses.
pub(crate) async fn watch(
    session: Weak<Session>,
    task: tokio::task::AbortHandle,
    keepalive: Keepalive,
) {
    let interval = keepalive.interval.max(Duration::from_millis(1));
    let mut heard_before = None;
    let mut silent = 0u32;
    loop {
        tokio::time::sleep(interval).await;
        let Some(session) = session.upgrade() else {
            return;
        };
        if task.is_finished() {
            return;
        }
        let (in_flight, heard) = session.calls.activity();
        if in_flight == 0 || heard_before != Some(heard) {
            heard_before = Some(heard);
            silent = 0;
            continue;
        }
        silent += 1;
        if silent > keepalive.misses {
            let error = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "nothing arrived for {:?} with calls in flight, {} pings unanswered: the connection is dead",
                    interval * silent,
                    keepalive.misses
                ),
            );
            tracing::warn!(error = %error, "closing a dead connection");
            session
                .calls
                .close(CloseReason::Io(std::sync::Arc::new(error)));
            session.outbox.close();
            task.abort();
            return;
        }
        // Any answer counts as life: the ping's own, or any other.
        let deadline = crate::time::after(interval);
        tokio::spawn(async move {
            let _ = session
                .request("rpc.ping", &[(); 0], deadline, interval, None)
                .await;
        });
    }
}
