//! The results table, and the project's targets checked against it.

use std::fmt::Write;

use crate::scenario::{Call, Outcome};
use crate::systems::System;

fn find<'a>(outcomes: &'a [Outcome], scenario: &str, system: System) -> Option<&'a Outcome> {
    outcomes
        .iter()
        .find(|o| o.scenario.name == scenario && o.system == system && o.errors == 0 && o.calls > 0)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// The systems a ratio column divides by: every system of the run but
/// `rpc`, the baseline and the floor first (side by side), then the others
/// in the order given.
fn ratio_columns(systems: &[System]) -> Vec<System> {
    let mut peers: Vec<System> = [System::Baseline, System::Floor]
        .into_iter()
        .filter(|s| systems.contains(s))
        .collect();
    peers.extend(
        systems
            .iter()
            .copied()
            .filter(|s| !matches!(s, System::Rpc | System::Baseline | System::Floor)),
    );
    peers
}

/// One markdown table: a row per scenario and system, with throughput ratios
/// to the baseline, to the floor and to each peer, and the p50 latency ratio
/// to the baseline.
pub fn table(outcomes: &[Outcome], systems: &[System]) -> String {
    let mut out = String::new();
    let peers = ratio_columns(systems);
    out.push_str("| scenario | system | calls/s | p50 µs | p99 µs | MiB/s | req/write (client) | resp/write (server) | CPU µs/call (server+client) |");
    for p in &peers {
        let _ = write!(out, " ÷{} |", p.name());
    }
    out.push_str(" p50 ÷baseline |\n|---|---|--:|--:|--:|--:|--:|--:|--:|");
    for _ in &peers {
        out.push_str("--:|");
    }
    out.push_str("--:|\n");
    let mut scenarios: Vec<&str> = Vec::new();
    for o in outcomes {
        if !scenarios.contains(&o.scenario.name) {
            scenarios.push(o.scenario.name);
        }
    }
    for scenario in scenarios {
        for o in outcomes.iter().filter(|o| o.scenario.name == scenario) {
            if o.errors > 0 || o.calls == 0 {
                let _ = writeln!(
                    out,
                    "| {scenario} | {} | FAILED: {} errors, first: {} |",
                    o.system.name(),
                    o.errors,
                    o.first_error
                        .as_deref()
                        .unwrap_or("no calls completed")
                        .replace('|', "/")
                );
                continue;
            }
            let server = match o.server_ratio() {
                Some((r, true)) => format!("{r:.2}"),
                Some((r, false)) => format!("{r:.2}*"),
                None => "–".into(),
            };
            // A stream's items are not requested one by one: no latency.
            let latency = |us: f64| match o.scenario.call {
                Call::Stream => "–".to_owned(),
                _ => format!("{us:.1}"),
            };
            let cpu = |us: f64| match o.scenario.call {
                Call::Stream => format!("{us:.2}"),
                _ => format!("{us:.1}"),
            };
            let _ = write!(
                out,
                "| {scenario} | {} | {:.0} | {} | {} | {} | {} | {server} | {}+{} |",
                o.system.name(),
                o.calls_per_sec(),
                latency(o.p50_us),
                latency(o.p99_us),
                opt(o.mib_per_sec(), 1),
                opt(o.client_msgs_per_write, 2),
                cpu(o.server_cpu_us),
                cpu(o.client_cpu_us),
            );
            for p in &peers {
                let cell = find(outcomes, scenario, *p).map_or("–".into(), |peer| {
                    ratio(o.calls_per_sec(), peer.calls_per_sec())
                });
                let _ = write!(out, " {cell} |");
            }
            let p50 = find(outcomes, scenario, System::Baseline)
                .map_or("–".into(), |b| ratio(o.p50_us, b.p50_us));
            let _ = writeln!(out, " {p50} |");
        }
    }
    out.push_str(
        "\n`*`: counted from the kernel's data segments received by the clients \
         (`TCP_INFO`), since the library's server sockets cannot be wrapped; \
         meaningful for small messages only (a 1 MiB write is many segments).\n\
         `stream`: one stream of `u64` counters read for the whole run; a \
         \"call\" is one item (calls/s are items/s, CPU is per item, \
         resp/write is items per server write).\n",
    );
    if systems.contains(&System::Floor) {
        out.push_str(
            "`floor`: the wire format's ceiling (hand-scanned JSON, every ready \
             message in one write; bench code, `bench/src/systems/floor.rs`); it \
             has no streams, so `stream` has no floor row and its `÷floor` cells \
             are `–`.\n",
        );
    }
    out
}

/// Cross-check of the segment-based count against the wrapped count, for
/// the systems that have both.
pub fn segment_check(outcomes: &[Outcome]) -> String {
    let mut out =
        String::from("resp/write (wrapped) vs resp/segment (TCP_INFO), small messages:\n");
    for o in outcomes.iter().filter(|o| o.mib_per_sec().is_none()) {
        if let (Some(w), Some(s)) = (o.server_msgs_per_write, o.server_msgs_per_segment) {
            let _ = writeln!(
                out,
                "  {:<6} {:<14} {w:>6.2} {s:>6.2}",
                o.scenario.name,
                o.system.name()
            );
        }
    }
    out
}

/// The project's targets for this run, each met or missed.
pub fn targets(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let get = |s, sys| find(outcomes, s, sys);
    let mut check = |what: &str, value: Option<f64>, goal: f64, at_least: bool| {
        let line = match value {
            Some(v) => {
                let met = if at_least { v >= goal } else { v <= goal };
                format!(
                    "{} {what}: {v:.2} ({} {goal})",
                    if met { "MET   " } else { "MISSED" },
                    if at_least { "≥" } else { "≤" }
                )
            }
            None => format!("n/a    {what}: not measured in this run"),
        };
        out.push_str(&line);
        out.push('\n');
    };
    let tput =
        |s, a, b| -> Option<f64> { Some(get(s, a)?.calls_per_sec() / get(s, b)?.calls_per_sec()) };
    check(
        "pipe rpc ÷ baseline",
        tput("pipe", System::Rpc, System::Baseline),
        3.5,
        true,
    );
    check(
        "pipe rpc ÷ floor",
        tput("pipe", System::Rpc, System::Floor),
        0.6,
        true,
    );
    #[cfg(feature = "peers")]
    {
        check(
            "pipe rpc ÷ tarpc",
            tput("pipe", System::Rpc, System::Tarpc),
            4.0,
            true,
        );
        check(
            "pipe rpc-http ÷ jsonrpsee-http",
            tput("pipe", System::RpcHttp, System::JsonrpseeHttp),
            1.5,
            true,
        );
        check(
            "pipe rpc-ws ÷ jsonrpsee-ws",
            tput("pipe", System::RpcWs, System::JsonrpseeWs),
            3.0,
            true,
        );
    }
    check(
        "conns rpc ÷ baseline",
        tput("conns", System::Rpc, System::Baseline),
        3.5,
        true,
    );
    check(
        "big rpc ÷ baseline (MiB/s)",
        tput("big", System::Rpc, System::Baseline),
        2.0,
        true,
    );
    check(
        "fanin rpc ÷ baseline",
        tput("fanin", System::Rpc, System::Baseline),
        1.2,
        true,
    );
    #[cfg(feature = "peers")]
    {
        check(
            "stream rpc ÷ jsonrpsee-ws",
            tput("stream", System::Rpc, System::JsonrpseeWs),
            3.0,
            true,
        );
        check(
            "stream rpc-ws ÷ jsonrpsee-ws",
            tput("stream", System::RpcWs, System::JsonrpseeWs),
            3.0,
            true,
        );
    }
    let p50 = (|| Some(get("seq", System::Rpc)?.p50_us / get("seq", System::Baseline)?.p50_us))();
    check("seq p50 rpc ÷ baseline", p50, 1.0, false);
    out
}
