//! A service whose slow method waits until the test opens a gate, for tests
//! about calls in flight (limits, shutdown). The test controls every step,
//! so nothing depends on timing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// One slow method and one quick one.
#[rpc_core::service]
pub trait Gated {
    /// Signals that it started, then returns `"done"` once the gate opens.
    async fn slow(&self) -> String;
    /// Returns 1 at once.
    async fn quick(&self) -> u32;
}

/// The implementation; the test keeps clones of both signals.
#[derive(Default, Clone)]
pub struct Gate {
    /// Notified when `slow` has started (one permit per call).
    pub entered: Arc<Notify>,
    /// Notified by the test to let one `slow` call finish.
    pub open: Arc<Notify>,
    /// How many `slow` calls have started.
    pub started: Arc<AtomicUsize>,
}

impl Gate {
    /// Waits until `n` calls of `slow` have started in all (a permit of
    /// `entered` left by several calls wakes this once; the count decides).
    #[allow(dead_code)]
    pub async fn started(&self, n: usize) {
        while self.started.load(Ordering::SeqCst) < n {
            self.entered.notified().await;
        }
    }
}

impl Gated for Gate {
    async fn slow(&self) -> String {
        // Waiting on the gate before saying it started: once the test has
        // seen `started`, each `open.notify_one()` lets exactly one through.
        let opened = self.open.notified();
        let mut opened = std::pin::pin!(opened);
        opened.as_mut().enable();
        self.started.fetch_add(1, Ordering::SeqCst);
        self.entered.notify_one();
        opened.await;
        "done".to_owned()
    }

    async fn quick(&self) -> u32 {
        1
    }
}

/// A server on 127.0.0.1:0 serving `gate` (with `builder`'s limits).
pub async fn serve(gate: &Gate, builder: rpc_core::ServerBuilder) -> super::TestServer {
    super::TestServer::start(builder.service(GatedServer::new(gate.clone()))).await
}
