//! `rpc-bench callgrind server|client`: the two halves of `bench/callgrind.sh`,
//! an instruction-count benchmark of rpc-core's hot path that can be run on
//! any commit.
//!
//! Each role is its own process on a current_thread Tokio runtime, so that
//! the script can run one of them under `valgrind --tool=callgrind` (the
//! other natively) and count only that side's instructions. The server
//! serves the same `BenchService` as the `rpc` system (plus a one-method
//! control service, `callgrind.stop`, by which the client ends it); the
//! client makes `add(i64, i64)` calls through the generated client over one
//! or more connections (`--conns`), with a fixed number kept in flight on
//! each, as the `pipe`, `conns` and `fanin` scenarios do, and checks every
//! answer. Both exit on their own: the server when a client calls
//! `callgrind.stop` or after `--max-secs`, the client after its calls or
//! after `--max-secs`. The script subtracts a run of N calls from a run of
//! 2N, so startup and shutdown cancel out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::systems::rpc::{Bench, BenchServiceClient, BenchServiceServer};

/// Ends a `callgrind server` (namespaced so it cannot clash with the
/// benchmark service's method names).
#[rpc_core::service(namespace = "callgrind")]
pub trait Control {
    /// Asks the server to shut down (gracefully) and exit.
    async fn stop(&self);
}

struct Stopper(Arc<Notify>);

impl Control for Stopper {
    async fn stop(&self) {
        self.0.notify_one();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a current_thread tokio runtime")
}

fn fail(message: &str) -> ! {
    eprintln!("rpc-bench callgrind: {message}");
    std::process::exit(1)
}

/// `callgrind server ADDR`: binds `addr`, prints `addr IP:PORT` on stdout
/// (recording metrics when `RPC_BENCH_METRICS=1`), serves until a client calls `callgrind.stop` (exit status 0) or
/// `max_secs` pass (exit status 1), then shuts down gracefully.
pub fn server(addr: &str, max_secs: u64) {
    let stopped = runtime().block_on(async {
        let stop = Arc::new(Notify::new());
        let mut builder = rpc_core::Server::builder()
            .service(BenchServiceServer::new(Bench))
            .service(ControlServer::new(Stopper(stop.clone())));
        // RPC_BENCH_METRICS=1: the same server recording Prometheus
        // metrics, to count what recording costs per call.
        if std::env::var_os("RPC_BENCH_METRICS").is_some_and(|v| v == "1") {
            let handle = rpc_core::metrics::install_prometheus()
                .unwrap_or_else(|e| fail(&format!("metrics: {e}")));
            builder = builder.metrics(handle);
        }
        let server = builder
            .bind(addr)
            .await
            .unwrap_or_else(|e| fail(&format!("bind {addr}: {e}")));
        println!("addr {}", server.local_addr());
        let stopped = tokio::select! {
            () = stop.notified() => true,
            () = tokio::time::sleep(Duration::from_secs(max_secs)) => false,
        };
        server.shutdown().await;
        stopped
    });
    if !stopped {
        fail(&format!("no client asked to stop within {max_secs} s"));
    }
}

/// `callgrind client ADDR N`: opens `conns` connections (each its own
/// `BenchServiceClient::connect`), makes `calls` calls of `add` spread over
/// them, `in_flight` at a time on each, checks each answer, then asks the
/// server to stop. With `echo: Some(bytes)` the calls are `echo(s)` of a
/// string of that many bytes (the `big` scenario's letters), each answer
/// compared byte for byte. Exit status 0 only if every answer was right and
/// all came within `max_secs`.
pub fn client(
    addr: &str,
    calls: u64,
    conns: u64,
    in_flight: u64,
    echo: Option<usize>,
    max_secs: u64,
) {
    let in_flight = in_flight.max(1);
    let conns = conns.max(1);
    let payload: Option<Arc<String>> = echo.map(|bytes| {
        Arc::new(
            (0..bytes)
                .map(|i| (b'a' + (i % 26) as u8) as char)
                .collect(),
        )
    });
    let outcome = runtime().block_on(async {
        let mut clients = Vec::with_capacity(conns as usize);
        for _ in 0..conns {
            clients.push(
                BenchServiceClient::connect(addr)
                    .await
                    .map_err(|e| format!("connect to {addr}: {e}"))?,
            );
        }
        let slots_total = conns * in_flight;
        let work = async {
            let mut slots = tokio::task::JoinSet::new();
            for slot in 0..slots_total {
                let client = clients[(slot % conns) as usize].clone();
                let payload = payload.clone();
                // Slot `s` makes calls s, s + slots, s + 2 slots, ...:
                // `calls` in all, each slot's next call sent when its last
                // one is answered.
                slots.spawn(async move {
                    let mut done = 0u64;
                    for i in (slot..calls).step_by(slots_total as usize) {
                        if let Some(payload) = &payload {
                            let echoed = client
                                .echo(String::clone(payload))
                                .await
                                .map_err(|e| format!("echo #{i}: {e}"))?;
                            if echoed != **payload {
                                return Err(format!("echo #{i} answered a different string"));
                            }
                            done += 1;
                            continue;
                        }
                        let (a, b) = ((i as i64).wrapping_mul(7919), slot as i64);
                        let sum = client
                            .add(a, b)
                            .await
                            .map_err(|e| format!("add({a}, {b}): {e}"))?;
                        if sum != a.wrapping_add(b) {
                            return Err(format!("add({a}, {b}) answered {sum}"));
                        }
                        done += 1;
                    }
                    Ok::<u64, String>(done)
                });
            }
            let mut done = 0;
            while let Some(slot) = slots.join_next().await {
                done += slot.map_err(|e| format!("a call task failed: {e}"))??;
            }
            Ok::<u64, String>(done)
        };
        let done = tokio::time::timeout(Duration::from_secs(max_secs), work)
            .await
            .unwrap_or_else(|_| Err(format!("calls not done within {max_secs} s")));
        // Stop the server whatever happened, so it does not wait for its
        // own time limit.
        let stop = ControlClient::new(clients[0].inner().clone())
            .with_timeout(Duration::from_secs(10))
            .stop()
            .await;
        let done = done?;
        stop.map_err(|e| format!("callgrind.stop: {e}"))?;
        Ok::<u64, String>(done)
    });
    match outcome {
        Ok(done) if done == calls => eprintln!("{done} calls answered correctly"),
        Ok(done) => fail(&format!("{done} calls made, {calls} expected")),
        Err(e) => fail(&e),
    }
}

/// `callgrind client ADDR N --stream`: opens one `count` stream, reads `n`
/// items and checks each is the next counter, drops the stream, then asks
/// the server to stop. Exit status 0 only if all `n` came, in order, within
/// `max_secs`.
pub fn stream_client(addr: &str, n: u64, max_secs: u64) {
    use futures::StreamExt;
    let outcome = runtime().block_on(async {
        let client = BenchServiceClient::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let read = async {
            let mut stream = client
                .count(0)
                .await
                .map_err(|e| format!("opening the stream: {e}"))?;
            for expected in 0..n {
                match stream.next().await {
                    Some(Ok(item)) if item == expected => {}
                    other => return Err(format!("item {expected}: got {other:?}")),
                }
            }
            Ok::<u64, String>(n)
        };
        let done = tokio::time::timeout(Duration::from_secs(max_secs), read)
            .await
            .unwrap_or_else(|_| Err(format!("items not read within {max_secs} s")));
        let stop = ControlClient::new(client.inner().clone())
            .with_timeout(Duration::from_secs(10))
            .stop()
            .await;
        let done = done?;
        stop.map_err(|e| format!("callgrind.stop: {e}"))?;
        Ok::<u64, String>(done)
    });
    match outcome {
        Ok(done) => eprintln!("{done} items read in order"),
        Err(e) => fail(&e),
    }
}
