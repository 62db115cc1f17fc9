//! Prometheus metrics of a server: calls by method and outcome, a latency
//! histogram by method, open connections, calls in flight, and registry
//! lease renewals. Recorded with the `metrics` crate and rendered by
//! `metrics-exporter-prometheus` at `GET /metrics`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = rpc_core::metrics::install_prometheus()?;
//! let server = rpc_core::Server::builder()
//!     // .service(...)
//!     .metrics(metrics)
//!     .bind("127.0.0.1:7070")
//!     .await?;
//! // curl http://127.0.0.1:7070/metrics
//! # Ok(()) }
//! ```
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `rpc_server_calls_total` | counter | `method`, `outcome` (`ok` or `error`) |
//! | `rpc_server_call_duration_seconds` | histogram | `method` |
//! | `rpc_server_calls_in_flight` | gauge | `method` |
//! | `rpc_server_connections` | gauge | |
//! | `rpc_registry_renewals_total` | counter | `outcome` (`ok`, `lost`, `failed`) |
//!
//! Each method's handles are registered once, when the server is built,
//! so no label is hashed per call; a server built without
//! [`ServerBuilder::metrics`](crate::ServerBuilder::metrics) records
//! nothing and pays nothing.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
pub use metrics_exporter_prometheus::PrometheusHandle;

/// Latency buckets, in seconds: 50 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Why the metrics could not be set up.
#[derive(Debug, thiserror::Error)]
#[error(
    "could not install the Prometheus recorder: {0}; a process has one recorder, installed once"
)]
pub struct MetricsError(String);

/// Installs the Prometheus recorder as the process's `metrics` recorder
/// and returns the handle that renders it (hand it to
/// [`ServerBuilder::metrics`](crate::ServerBuilder::metrics)). Call it once,
/// before building the servers whose calls it should count.
///
/// # Errors
/// [`MetricsError`] when the process already has a recorder.
pub fn install_prometheus() -> Result<PrometheusHandle, MetricsError> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("rpc_server_call_duration_seconds".into()),
            BUCKETS,
        )
        .map_err(|e| MetricsError(e.to_string()))?
        .install_recorder()
        .map_err(|e| MetricsError(e.to_string()))
}

/// One method's handles.
#[derive(Debug)]
pub(crate) struct MethodMetrics {
    ok: Counter,
    error: Counter,
    latency: Histogram,
    in_flight: Gauge,
}

impl MethodMetrics {
    pub(crate) fn new(method: &'static str) -> Self {
        Self {
            ok: metrics::counter!("rpc_server_calls_total", "method" => method, "outcome" => "ok"),
            error: metrics::counter!("rpc_server_calls_total", "method" => method, "outcome" => "error"),
            latency: metrics::histogram!("rpc_server_call_duration_seconds", "method" => method),
            in_flight: metrics::gauge!("rpc_server_calls_in_flight", "method" => method),
        }
    }

    pub(crate) fn started(&self) {
        self.in_flight.increment(1.0);
    }

    pub(crate) fn finished(&self, ok: bool, elapsed: Duration) {
        self.in_flight.decrement(1.0);
        if ok {
            self.ok.increment(1);
        } else {
            self.error.increment(1);
        }
        self.latency.record(elapsed.as_secs_f64());
    }
}

/// The server's open connections.
pub(crate) fn connections() -> Gauge {
    metrics::gauge!("rpc_server_connections")
}

/// A lease renewal's outcome: `ok`, `lost` (registered again) or `failed`.
pub(crate) fn renewal(outcome: &'static str) {
    metrics::counter!("rpc_registry_renewals_total", "outcome" => outcome).increment(1);
}
