//! The scenarios and the loop that drives one of them against one system.
//!
//! A scenario is a number of connections times a number of calls kept in
//! flight on each; every in-flight slot is a task that calls, checks the
//! answer and records the latency, until the time is up. A short warm-up
//! (connections established, buffers grown, caches hot) is not recorded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::systems::{self, Connection, RunningServer, System};
use crate::{cpu, tcpinfo};

/// What each call does.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    /// `add(a, b)`, checked against `a + b`.
    Add,
    /// `echo(s)` of a string of this many bytes, checked byte for byte.
    Echo(usize),
    /// One `count` stream (rpc-core's streams, jsonrpsee's subscriptions)
    /// read for the whole run, every item checked to be the next counter;
    /// a "call" is one item. Only for the systems with streams.
    Stream,
}

#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub conns: usize,
    pub in_flight: usize,
    pub call: Call,
}

pub const SCENARIOS: [Scenario; 6] = [
    Scenario {
        name: "seq",
        conns: 1,
        in_flight: 1,
        call: Call::Add,
    },
    Scenario {
        name: "pipe",
        conns: 1,
        in_flight: 64,
        call: Call::Add,
    },
    Scenario {
        name: "conns",
        conns: 16,
        in_flight: 8,
        call: Call::Add,
    },
    Scenario {
        name: "big",
        conns: 1,
        in_flight: 1,
        call: Call::Echo(1 << 20),
    },
    Scenario {
        name: "fanin",
        conns: 1000,
        in_flight: 1,
        call: Call::Add,
    },
    Scenario {
        name: "stream",
        conns: 1,
        in_flight: 1,
        call: Call::Stream,
    },
];

impl Scenario {
    /// Whether `system` can run this scenario (`stream` needs streams).
    pub fn runs_on(&self, system: System) -> bool {
        !matches!(self.call, Call::Stream) || system.streams()
    }
}

/// A call that has not answered this long after the end of the run counts
/// as failed and ends its slot, so no scenario outlives its time by more.
const GRACE: Duration = Duration::from_secs(5);

/// Longest time allowed for opening a scenario's connections.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one scenario measured on one system.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub system: System,
    pub scenario: Scenario,
    /// Calls answered correctly within the measured window.
    pub calls: u64,
    /// Calls that failed or answered wrongly (the run is invalid if any).
    pub errors: u64,
    pub first_error: Option<String>,
    pub secs: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Requests per client write syscall, where counted.
    pub client_msgs_per_write: Option<f64>,
    /// Responses per server write syscall, where counted by wrapping.
    pub server_msgs_per_write: Option<f64>,
    /// Responses per data segment the clients received (`TCP_INFO`): the
    /// server's writes as the kernel saw them.
    pub server_msgs_per_segment: Option<f64>,
    /// CPU microseconds the server's runtime spent per call.
    pub server_cpu_us: f64,
    /// CPU microseconds the clients' runtime spent per call.
    pub client_cpu_us: f64,
}

impl Outcome {
    pub fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.secs
    }

    /// Payload bytes echoed per second, each way, in MiB/s.
    pub fn mib_per_sec(&self) -> Option<f64> {
        match self.scenario.call {
            Call::Echo(bytes) => Some(self.calls_per_sec() * bytes as f64 / (1 << 20) as f64),
            Call::Add | Call::Stream => None,
        }
    }

    /// Responses per server write: wrapped count when there is one, else the
    /// segment count (marked by the caller).
    pub fn server_ratio(&self) -> Option<(f64, bool)> {
        self.server_msgs_per_write
            .map(|r| (r, true))
            .or(self.server_msgs_per_segment.map(|r| (r, false)))
    }
}

/// A multi-threaded runtime with a fixed number of workers, named for `perf`.
pub fn runtime(name: &str, workers: usize) -> tokio::runtime::Runtime {
    pinned_runtime(name, workers, None)
}

/// [`runtime`] whose threads are pinned to the CPUs `first..first+workers`
/// (modulo the CPUs there are), when `first` is given.
pub fn pinned_runtime(name: &str, workers: usize, first: Option<usize>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(workers)
        .thread_name(name)
        .enable_all();
    if let Some(first) = first {
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        builder.on_thread_start(move || {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            pin_current_thread(first + i % workers.max(1));
        });
    }
    builder.build().expect("build a tokio runtime")
}

/// Where the two runtimes' threads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the OS puts them.
    Free,
    /// Server threads on the first CPUs, client threads on the next ones.
    Split,
    /// Everything on the first CPU(s).
    Shared,
}

/// `seq` (one call in flight, nothing to overlap) runs server and client on
/// one CPU: on this VM a wake-up across vCPUs costs tens of microseconds
/// when the other vCPU is idle, which swamped the software's own latency and
/// made seq bimodal (20 or 100 µs depending on where the OS had put the
/// threads). Everything else splits them so both sides can run at once.
pub fn placement(scenario: Scenario, pin: bool) -> Placement {
    match (pin, scenario.conns * scenario.in_flight) {
        (false, _) => Placement::Free,
        (true, 1) if matches!(scenario.call, Call::Add) => Placement::Shared,
        (true, _) => Placement::Split,
    }
}

/// Pins the calling thread to one CPU (best effort).
pub fn pin_current_thread(cpu: usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % cpus, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Runs `scenario` against `system`: a server on its own runtime, the clients
/// on theirs, both new for this run so nothing carries over.
pub fn run(
    system: System,
    scenario: Scenario,
    warmup: Duration,
    secs: Duration,
    threads: (usize, usize),
    pin: bool,
) -> Outcome {
    // Pinned: server threads on the first CPUs, client threads on the next;
    // with one call in flight there is nothing to run in parallel, so both
    // share the first CPU (see `Placement`).
    let (server_cpu, client_cpu) = match placement(scenario, pin) {
        Placement::Free => (None, None),
        Placement::Split => (Some(0), Some(threads.0)),
        Placement::Shared => (Some(0), Some(0)),
    };
    let server_rt = pinned_runtime("bench-server", threads.0, server_cpu);
    let client_rt = pinned_runtime("bench-client", threads.1, client_cpu);
    let server = server_rt.block_on(systems::start_server(system));
    let outcome = client_rt.block_on(drive(system, scenario, &server, warmup, secs));
    client_rt.shutdown_timeout(Duration::from_secs(1));
    server_rt.block_on(async { server.stop() });
    server_rt.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// Opens `n` connections, a few at a time.
pub async fn connect_all(
    system: System,
    addr: SocketAddr,
    n: usize,
) -> Result<Vec<Connection>, String> {
    let connecting = futures::stream::iter(0..n)
        .map(|_| systems::connect(system, addr))
        .buffer_unordered(64)
        .collect::<Vec<_>>();
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| format!("opening {n} connections took over {CONNECT_TIMEOUT:?}"))?;
    connected.into_iter().collect()
}

/// What the counters say at one moment.
#[derive(Default, Clone, Copy)]
struct Counters {
    client_writes: Option<u64>,
    server_writes: Option<u64>,
    segments_in: Option<u64>,
}

fn sum(parts: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    parts.sum()
}

fn counters(conns: &[Connection], server: &RunningServer) -> Counters {
    Counters {
        client_writes: sum(conns.iter().map(|c| c.writes.as_ref().map(|w| w.get()))),
        server_writes: server.writes.as_ref().map(|w| w.get()),
        segments_in: sum(conns
            .iter()
            .map(|c| c.fd.and_then(tcpinfo::data_segments).map(|s| s.0))),
    }
}

/// What one in-flight slot saw.
#[derive(Default)]
struct Slot {
    latencies_ns: Vec<u64>,
    /// Stream items received in the measured window (no latency: items
    /// are not requested one by one).
    items: u64,
    errors: u64,
    first_error: Option<String>,
}

/// One in-flight slot: call, check, record, until `end`.
async fn run_slot(
    slot: &mut Slot,
    client: &systems::Client,
    call: Call,
    payload: &str,
    seed: i64,
    measure_from: Instant,
    end: Instant,
) {
    for i in 0i64.. {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let outcome = match call {
            Call::Add => {
                let (a, b) = (i.wrapping_mul(7919), seed);
                client.add(a, b).await.and_then(|sum| {
                    (sum == a.wrapping_add(b))
                        .then_some(())
                        .ok_or_else(|| format!("add({a}, {b}) answered {sum}"))
                })
            }
            Call::Echo(_) => client.echo(payload.to_owned()).await.and_then(|echoed| {
                (echoed == payload)
                    .then_some(())
                    .ok_or_else(|| "echo answered a different string".to_owned())
            }),
            Call::Stream => Err("`stream` is not a call".to_owned()),
        };
        let took = t0.elapsed();
        match outcome {
            Ok(()) if t0 >= measure_from => slot.latencies_ns.push(took.as_nanos() as u64),
            Ok(()) => {}
            Err(e) => {
                slot.errors += 1;
                slot.first_error.get_or_insert(e);
                if Instant::now() >= end {
                    break;
                }
            }
        }
    }
}

/// Items read between two looks at the clock: often enough that the
/// window's edges are off by microseconds, rarely enough that the clock
/// costs the client nothing measurable.
const CLOCK_EVERY: u64 = 64;

/// The `stream` scenario's reader: opens a `count` stream from a seed,
/// reads it until `end`, checks that each item is the next counter (in
/// order, none missing), and counts those that arrive from `measure_from`.
/// Dropping the stream at the end unsubscribes.
async fn read_stream(
    slot: &mut Slot,
    client: &systems::Client,
    measure_from: Instant,
    end: Instant,
) {
    const FROM: u64 = 1_000_000_007;
    let mut stream = match client.count(FROM).await {
        Ok(stream) => stream,
        Err(e) => {
            slot.errors += 1;
            slot.first_error = Some(format!("opening the stream: {e}"));
            return;
        }
    };
    let mut expected = FROM;
    let (mut measuring, mut measured_from) = (false, FROM);
    loop {
        if (expected - FROM).is_multiple_of(CLOCK_EVERY) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            if !measuring && now >= measure_from {
                measuring = true;
                measured_from = expected;
            }
        }
        let why = match stream.next().await {
            Some(Ok(n)) if n == expected => {
                expected += 1;
                continue;
            }
            Some(Ok(n)) => format!("item {n} where {expected} was due"),
            Some(Err(e)) => format!("after {} items: {e}", expected - FROM),
            None => format!("the stream ended after {} items", expected - FROM),
        };
        slot.errors += 1;
        slot.first_error = Some(why);
        return;
    }
    if measuring {
        slot.items = expected - measured_from;
    }
}

async fn drive(
    system: System,
    scenario: Scenario,
    server: &RunningServer,
    warmup: Duration,
    secs: Duration,
) -> Outcome {
    let failed = |why: String| Outcome {
        system,
        scenario,
        calls: 0,
        errors: 1,
        first_error: Some(why),
        secs: secs.as_secs_f64(),
        p50_us: 0.0,
        p99_us: 0.0,
        client_msgs_per_write: None,
        server_msgs_per_write: None,
        server_msgs_per_segment: None,
        server_cpu_us: 0.0,
        client_cpu_us: 0.0,
    };
    let conns = match connect_all(system, server.addr, scenario.conns).await {
        Ok(conns) => conns,
        Err(why) => return failed(why),
    };
    let payload: Arc<String> = Arc::new(match scenario.call {
        Call::Echo(bytes) => (0..bytes)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect(),
        Call::Add | Call::Stream => String::new(),
    });
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + secs;
    let mut slots = Vec::new();
    if let Call::Stream = scenario.call {
        let client = conns[0].client.clone();
        slots.push(tokio::spawn(async move {
            let mut slot = Slot::default();
            let deadline = tokio::time::Instant::from_std(end + GRACE);
            let read = read_stream(&mut slot, &client, measure_from, end);
            if tokio::time::timeout_at(deadline, read).await.is_err() {
                slot.errors += 1;
                slot.first_error
                    .get_or_insert_with(|| "the stream stalled".to_owned());
            }
            slot
        }));
    }
    for (c, conn) in conns.iter().enumerate() {
        if let Call::Stream = scenario.call {
            break;
        }
        for s in 0..scenario.in_flight {
            let client = conn.client.clone();
            let payload = payload.clone();
            let seed = (c * scenario.in_flight + s) as i64;
            slots.push(tokio::spawn(async move {
                let mut slot = Slot::default();
                // One time limit for the whole slot rather than one per call:
                // a timer per call would cost the clients CPU of their own.
                let deadline = tokio::time::Instant::from_std(end + GRACE);
                let calls = run_slot(
                    &mut slot,
                    &client,
                    scenario.call,
                    &payload,
                    seed,
                    measure_from,
                    end,
                );
                if tokio::time::timeout_at(deadline, calls).await.is_err() {
                    slot.errors += 1;
                    slot.first_error
                        .get_or_insert_with(|| "no answer in time".to_owned());
                }
                slot
            }));
        }
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let before = counters(&conns, server);
    let cpu_before = cpu::now();
    let mut latencies = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    let mut items = 0;
    for slot in slots {
        match slot.await {
            Ok(slot) => {
                items += slot.items;
                latencies.extend(slot.latencies_ns);
                errors += slot.errors;
                if first_error.is_none() {
                    first_error = slot.first_error;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("a call task failed: {e}"));
            }
        }
    }
    let cpu_after = cpu::now();
    let after = counters(&conns, server);
    drop(conns);
    latencies.sort_unstable();
    let calls = latencies.len() as u64 + items;
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |&ns| ns as f64 / 1000.0)
    };
    let per = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b > a => Some(calls as f64 / (b - a) as f64),
        _ => None,
    };
    Outcome {
        system,
        scenario,
        calls,
        errors,
        first_error,
        secs: secs.as_secs_f64(),
        p50_us: pct(50),
        p99_us: pct(99),
        client_msgs_per_write: per(before.client_writes, after.client_writes),
        server_msgs_per_write: per(before.server_writes, after.server_writes),
        server_msgs_per_segment: per(before.segments_in, after.segments_in),
        server_cpu_us: (cpu_after.server - cpu_before.server) * 1e6 / calls.max(1) as f64,
        client_cpu_us: (cpu_after.client - cpu_before.client) * 1e6 / calls.max(1) as f64,
    }
}
