//! `rpc-bench`: this workspace's RPC library side by side with tarpc,
//! jsonrpsee (WebSocket and HTTP) and a hand-written baseline, in one process.
//!
//! See `BENCHMARKS.md` at the root of the repository for what each scenario
//! does, how to read the table, and the latest results.

mod callgrind;
mod counting;
mod cpu;
mod guard;
#[cfg(feature = "peers")]
mod interop;
mod macro_cost;
mod mem;
mod report;
mod scenario;
mod systems;
mod tcpinfo;
#[cfg(feature = "peers")]
mod ws_crates;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::scenario::SCENARIOS;
use crate::systems::System;

#[derive(Parser)]
#[command(about = "Benchmarks rpc-core against tarpc, jsonrpsee and a hand-written baseline")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Seconds measured per scenario and system.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Seconds of unmeasured warm-up before each measurement.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// How many times to run the whole matrix.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Scenarios to run, comma-separated: seq, pipe, conns, big, fanin, stream.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Systems to run, comma-separated: rpc, rpc-ws, rpc-http, baseline, floor, tarpc,
    /// jsonrpsee-ws, jsonrpsee-http (the last five, and rpc-ws and rpc-http, need
    /// the default feature `peers`).
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// Worker threads of the clients' runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Let the OS place the runtimes' threads instead of pinning the server's
    /// to the first CPUs and the clients' to the next ones.
    #[arg(long)]
    no_pin: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Server memory per idle connection, and growth with calls served.
    Mem {
        /// Systems to measure (default: all).
        #[arg(long, value_delimiter = ',')]
        systems: Vec<String>,
        /// Idle connections to open.
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Calls for the growth check (RSS compared after a tenth and after all).
        #[arg(long, default_value_t = 1_000_000)]
        calls: u64,
        /// Time limit of each phase, in seconds.
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
        /// Worker threads of each runtime.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Compile time of a 50-method service with rpc_core's and tarpc's macros.
    MacroCost {
        #[arg(long, default_value_t = 50)]
        methods: usize,
        /// Timed rebuilds per crate.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Time `cargo build --release` instead of `cargo build`.
        #[arg(long)]
        release: bool,
        /// Where to generate the crates (default: a fixed temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The two processes of `bench/callgrind.sh` (instructions per call
    /// under valgrind's callgrind): an `rpc` server and a pipelined client,
    /// each on a current_thread runtime.
    #[command(subcommand)]
    Callgrind(CallgrindRole),
    /// The CI regression guard: `pipe` and `conns`, rpc against the
    /// baseline, in short rounds; exits with status 1 if rpc's best ratio
    /// to the baseline is under --min-ratio in either. Needs only
    /// `--no-default-features` (no tarpc, no jsonrpsee).
    Guard {
        /// Rounds; the best round's ratio counts.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds measured per scenario, system and round.
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
        /// Seconds of unmeasured warm-up before each measurement.
        #[arg(long, default_value_t = 0.25)]
        warmup: f64,
        /// The lowest acceptable ratio of rpc's calls/s to the baseline's.
        #[arg(long, default_value_t = 1.5)]
        min_ratio: f64,
        /// Let the OS place the runtimes' threads.
        #[arg(long)]
        no_pin: bool,
        /// Make the library's client send one request per write, to show
        /// that the guard trips when coalescing is lost.
        #[arg(long, hide = true)]
        lose_client_coalescing: bool,
    },
    /// tokio-tungstenite against fastwebsockets alone (no JSON-RPC): an echo
    /// server and a pipelined client on one connection, both with the same
    /// crate, rounds interleaved; see bench/src/ws_crates.rs.
    #[cfg(feature = "peers")]
    WsCrates {
        /// How many times to measure each crate (A, B, A, B, ...).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds measured per round, crate and size.
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Seconds of unmeasured warm-up before each measurement.
        #[arg(long, default_value_t = 0.5)]
        warmup: f64,
        /// Messages the client keeps in flight.
        #[arg(long, default_value_t = 64)]
        in_flight: u64,
        /// Send exactly this many messages instead of running for --secs
        /// (for instruction counts under callgrind; no CPU times then).
        #[arg(long)]
        msgs: Option<u64>,
        /// Crates, comma-separated: tungstenite, fastwebsockets (default: both).
        #[arg(long, value_delimiter = ',')]
        crates: Vec<String>,
        /// Message sizes, comma-separated: small (~60 B), big (64 KiB) (default: both).
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<String>,
    },
    /// Runs one system's server until stdin closes (used by `mem`).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        system: String,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

#[derive(Subcommand)]
enum CallgrindRole {
    /// Serves the `rpc` system's service on ADDR (printing `addr IP:PORT`)
    /// until a client calls `callgrind.stop` or --max-secs pass.
    Server {
        /// Address to bind, e.g. 127.0.0.1:0.
        addr: String,
        /// Exit (with status 1) after this many seconds without a stop.
        #[arg(long, default_value_t = 600)]
        max_secs: u64,
    },
    /// Makes N `add` calls to the server at ADDR with the generated client,
    /// --in-flight at a time, checks every answer, then stops the server.
    Client {
        addr: String,
        /// Calls to make.
        calls: u64,
        /// Calls kept in flight per connection (the `pipe` scenario's 64).
        #[arg(long, default_value_t = 64)]
        in_flight: u64,
        /// Connections, each its own client with --in-flight calls (the
        /// `conns` scenario is 16 × 8, `fanin` 1000 × 1); the N calls are
        /// shared out among them.
        #[arg(long, default_value_t = 1)]
        conns: u64,
        /// Instead of N calls, read N items of one `count` stream (the
        /// `stream` scenario), each checked.
        #[arg(long)]
        stream: bool,
        /// Make `echo(s)` calls with a string of this many bytes instead of
        /// `add` (the `big` scenario is 1048576 with 1 × 1 in flight),
        /// each answer checked byte for byte.
        #[arg(long)]
        echo: Option<usize>,
        /// Give up (exit status 1) after this many seconds.
        #[arg(long, default_value_t = 600)]
        max_secs: u64,
    },
}

fn systems(names: &[String]) -> Vec<System> {
    if names.is_empty() {
        return System::ALL.to_vec();
    }
    names
        .iter()
        .map(|n| System::parse(n).unwrap_or_else(|e| exit(&e)))
        .collect()
}

/// `names` parsed with `parse`, or `all` if none are given.
#[cfg(feature = "peers")]
fn parse_all<T: Copy>(names: &[String], all: &[T], parse: fn(&str) -> Result<T, String>) -> Vec<T> {
    if names.is_empty() {
        return all.to_vec();
    }
    names
        .iter()
        .map(|n| parse(n).unwrap_or_else(|e| exit(&e)))
        .collect()
}

fn exit(message: &str) -> ! {
    eprintln!("rpc-bench: {message}");
    std::process::exit(2)
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        None => matrix(&cli.run),
        Some(Cmd::Mem {
            systems: names,
            conns,
            calls,
            max_secs,
            threads,
        }) => mem::run(&mem::MemArgs {
            systems: systems(&names),
            conns,
            calls,
            max_secs,
            threads,
        }),
        Some(Cmd::MacroCost {
            methods,
            reps,
            release,
            dir,
        }) => macro_cost::run(&macro_cost::MacroArgs {
            methods,
            reps: reps.max(1),
            release,
            dir,
        }),
        Some(Cmd::Callgrind(CallgrindRole::Server { addr, max_secs })) => {
            callgrind::server(&addr, max_secs)
        }
        Some(Cmd::Callgrind(CallgrindRole::Client {
            addr,
            calls,
            in_flight: _,
            conns: _,
            stream,
            max_secs,
            echo: _,
        })) if stream => callgrind::stream_client(&addr, calls, max_secs),
        Some(Cmd::Callgrind(CallgrindRole::Client {
            addr,
            calls,
            in_flight,
            conns,
            echo,
            max_secs,
            ..
        })) => callgrind::client(&addr, calls, conns, in_flight, echo, max_secs),
        Some(Cmd::Guard {
            rounds,
            secs,
            warmup,
            min_ratio,
            no_pin,
            lose_client_coalescing,
        }) => {
            if lose_client_coalescing {
                systems::rpc::LOSE_CLIENT_COALESCING
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                println!("(--lose-client-coalescing: the rpc client writes one request per write)");
            }
            mem::raise_fd_limit();
            let outcome = guard::run(&guard::GuardArgs {
                rounds: rounds.max(1),
                secs,
                warmup,
                min_ratio,
                no_pin,
            });
            if let Err(why) = outcome {
                eprintln!("rpc-bench guard: FAILED: {why}");
                std::process::exit(1);
            }
        }
        #[cfg(feature = "peers")]
        Some(Cmd::WsCrates {
            rounds,
            secs,
            warmup,
            in_flight,
            msgs,
            crates,
            sizes,
        }) => ws_crates::run(&ws_crates::WsArgs {
            rounds: rounds.max(1),
            secs,
            warmup,
            in_flight: in_flight.max(1),
            msgs,
            crates: parse_all(&crates, &ws_crates::Crate::ALL, ws_crates::Crate::parse),
            sizes: parse_all(&sizes, &ws_crates::Size::ALL, ws_crates::Size::parse),
        }),
        Some(Cmd::Serve { system, threads }) => {
            mem::serve(System::parse(&system).unwrap_or_else(|e| exit(&e)), threads)
        }
    }
}

/// The 1, 5 and 15-minute load averages: other work on the machine skews
/// throughput, so each table says how busy the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn matrix(args: &RunArgs) {
    let systems = systems(&args.systems);
    let scenarios: Vec<_> = SCENARIOS
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s.name))
        .collect();
    if scenarios.is_empty() {
        exit("--only matches no scenario; expected some of seq, pipe, conns, big, fanin, stream");
    }
    let limit = mem::raise_fd_limit();
    println!(
        "server runtime: {} worker thread(s); client runtime: {} worker thread(s); {}; {}s measured after {}s warm-up; open-file limit {limit}; load average at start: {}\n",
        args.server_threads,
        args.client_threads,
        if args.no_pin {
            "threads not pinned"
        } else {
            "server threads pinned to the first CPUs, client threads to the next"
        },
        args.secs,
        args.warmup,
        loadavg()
    );
    let mut failed = false;
    for run in 1..=args.runs {
        let mut outcomes = Vec::new();
        for scenario in &scenarios {
            for &system in systems.iter().filter(|s| scenario.runs_on(**s)) {
                eprint!("run {run}: {} / {} … ", scenario.name, system.name());
                let outcome = scenario::run(
                    system,
                    *scenario,
                    Duration::from_secs_f64(args.warmup),
                    Duration::from_secs_f64(args.secs),
                    (args.server_threads, args.client_threads),
                    !args.no_pin,
                );
                if outcome.errors > 0 {
                    failed = true;
                    eprintln!("FAILED ({})", outcome.first_error.as_deref().unwrap_or("?"));
                } else {
                    eprintln!("{:.0} calls/s", outcome.calls_per_sec());
                }
                outcomes.push(outcome);
            }
        }
        println!(
            "## Run {run} of {} (load average at the end: {})\n",
            args.runs,
            loadavg()
        );
        println!("{}", report::table(&outcomes, &systems));
        println!("{}", report::segment_check(&outcomes));
        println!("Targets:\n{}", report::targets(&outcomes));
    }
    if failed {
        std::process::exit(1);
    }
}
