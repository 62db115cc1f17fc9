//! `rpc-bench guard`: the regression guard that `.ci/run` runs. It is
//! cheap enough for CI (built with `--no-default-features`, so without
//! tarpc and jsonrpsee) and catches a lost coalescing path, not noise.
//!
//! It runs `pipe` (1 connection × 64 calls in flight) and `conns` (16 × 8)
//! for this library (`rpc`, framed TCP) and the hand-written `baseline`, in
//! short rounds (by default 3 of 1 s each per scenario and system, the two
//! systems interleaved within a round), prints every round's figures, and
//! fails unless, in each scenario, the best round's ratio
//! `rpc calls/s ÷ baseline calls/s` is at least the bar (1.5×). The bar
//! sits well under the usual ratios (about 3× in pipe and 2.6× in conns on
//! the development VM), so that a shared, noisy CI machine does not trip it,
//! while a library that sends one message per write (about 1.0–1.1× the
//! baseline before the coalescing work, BENCHMARKS.md) does.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::scenario::{self, Outcome, SCENARIOS};
use crate::systems::System;

/// The scenarios the guard runs.
pub const SCENARIO_NAMES: [&str; 2] = ["pipe", "conns"];

/// What `rpc-bench guard` is asked to do.
#[derive(Debug, Clone)]
pub struct GuardArgs {
    /// Rounds; the best one counts.
    pub rounds: usize,
    /// Seconds measured per scenario, system and round.
    pub secs: f64,
    /// Unmeasured seconds before each measurement.
    pub warmup: f64,
    /// The lowest acceptable best ratio of rpc to baseline calls/s.
    pub min_ratio: f64,
    /// Let the OS place the runtimes' threads.
    pub no_pin: bool,
}

/// One round of one scenario: calls/s of each system, `None` when the
/// system's run failed (a wrong or missing answer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Round {
    /// `rpc`'s calls/s.
    pub rpc: Option<f64>,
    /// `baseline`'s calls/s.
    pub baseline: Option<f64>,
}

impl Round {
    /// rpc ÷ baseline, when both ran and the baseline made calls.
    pub fn ratio(&self) -> Option<f64> {
        match (self.rpc, self.baseline) {
            (Some(rpc), Some(baseline)) if baseline > 0.0 => Some(rpc / baseline),
            _ => None,
        }
    }
}

/// The guard's decision for one scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// The best round's ratio reached the bar.
    Pass { best: f64 },
    /// The best round's ratio is below the bar.
    Slow { best: f64 },
    /// No round has both systems' figures (every round failed on one side).
    NoFigures,
}

/// The pass/fail rule: the best ratio over the rounds that have one must
/// reach `min_ratio`.
pub fn judge(rounds: &[Round], min_ratio: f64) -> Judgement {
    match rounds.iter().filter_map(Round::ratio).reduce(f64::max) {
        None => Judgement::NoFigures,
        Some(best) if best >= min_ratio => Judgement::Pass { best },
        Some(best) => Judgement::Slow { best },
    }
}

fn line(o: &Outcome) -> String {
    if o.errors > 0 || o.calls == 0 {
        return format!(
            "FAILED: {} errors, first: {}",
            o.errors,
            o.first_error.as_deref().unwrap_or("no calls completed")
        );
    }
    let per = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.2}"));
    let server = o.server_ratio().map_or("–".to_owned(), |(r, wrapped)| {
        format!("{r:.2}{}", if wrapped { "" } else { "*" })
    });
    format!(
        "{:>9.0} calls/s  req/write {:>6}  resp/write {:>6}  CPU {:.1}+{:.1} µs/call",
        o.calls_per_sec(),
        per(o.client_msgs_per_write),
        server,
        o.server_cpu_us,
        o.client_cpu_us
    )
}

fn calls_per_sec(o: &Outcome) -> Option<f64> {
    (o.errors == 0 && o.calls > 0).then(|| o.calls_per_sec())
}

/// Runs the guard, prints its figures and verdict; `Err` with the reason
/// when it fails.
pub fn run(args: &GuardArgs) -> Result<(), String> {
    let started = Instant::now();
    let scenarios: Vec<_> = SCENARIO_NAMES
        .iter()
        .map(|name| {
            *SCENARIOS
                .iter()
                .find(|s| s.name == *name)
                .expect("the guard's scenarios exist")
        })
        .collect();
    println!(
        "rpc-bench guard: {} × {} round(s) of {} s (after {} s warm-up), rpc vs baseline, framed TCP, 1 worker thread per side; fails below {:.2}× in the best round",
        SCENARIO_NAMES.join(" and "),
        args.rounds,
        args.secs,
        args.warmup,
        args.min_ratio
    );
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); scenarios.len()];
    for round in 1..=args.rounds {
        for (i, scenario) in scenarios.iter().enumerate() {
            let run = |system| {
                let o = scenario::run(
                    system,
                    *scenario,
                    Duration::from_secs_f64(args.warmup),
                    Duration::from_secs_f64(args.secs),
                    (1, 1),
                    !args.no_pin,
                );
                println!(
                    "round {round}  {:<5} {:<8} {}",
                    scenario.name,
                    system.name(),
                    line(&o)
                );
                o
            };
            let rpc = run(System::Rpc);
            let baseline = run(System::Baseline);
            let figures = Round {
                rpc: calls_per_sec(&rpc),
                baseline: calls_per_sec(&baseline),
            };
            println!(
                "round {round}  {:<5} rpc ÷ baseline: {}",
                scenario.name,
                figures
                    .ratio()
                    .map_or("–".to_owned(), |r| format!("{r:.2}×"))
            );
            rounds[i].push(figures);
        }
    }
    let mut failures = String::new();
    for (scenario, rounds) in scenarios.iter().zip(&rounds) {
        let verdict = match judge(rounds, args.min_ratio) {
            Judgement::Pass { best } => format!("ok     {best:.2}×"),
            Judgement::Slow { best } => {
                let _ = write!(
                    failures,
                    "{}{}: rpc reached at best {best:.2}× the baseline's calls/s over {} round(s), below the {:.2}× bar",
                    if failures.is_empty() { "" } else { "; " },
                    scenario.name,
                    rounds.len(),
                    args.min_ratio
                );
                format!("FAILED {best:.2}×")
            }
            Judgement::NoFigures => {
                let _ = write!(
                    failures,
                    "{}{}: no round completed for both systems (see the FAILED lines above)",
                    if failures.is_empty() { "" } else { "; " },
                    scenario.name
                );
                "FAILED no figures".to_owned()
            }
        };
        println!(
            "{:<5} best rpc ÷ baseline: {verdict} (bar {:.2}×)",
            scenario.name, args.min_ratio
        );
    }
    println!(
        "rpc-bench guard: took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{failures}. A drop this large is more than noise: it usually means \
             requests or responses stopped sharing writes (compare req/write and \
             resp/write with BENCHMARKS.md), or the per-call path got much \
             slower; run `cargo rpc-bench --only pipe,conns` to see the whole table"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(rpc: f64, baseline: f64) -> Round {
        Round {
            rpc: Some(rpc),
            baseline: Some(baseline),
        }
    }

    #[test]
    fn the_best_round_decides() {
        // Today's figures (pipe, BENCHMARKS.md) with one noisy round.
        let today = [
            round(420_692.0, 130_539.0),
            round(150_000.0, 140_000.0),
            round(400_000.0, 135_000.0),
        ];
        assert!(
            matches!(judge(&today, 1.5), Judgement::Pass { best } if (best - 3.2228).abs() < 1e-3)
        );
        // Exactly at the bar passes; just under fails.
        assert_eq!(
            judge(&[round(150.0, 100.0)], 1.5),
            Judgement::Pass { best: 1.5 }
        );
        assert!(matches!(
            judge(&[round(149.0, 100.0)], 1.5),
            Judgement::Slow { .. }
        ));
    }

    /// The figures of a library whose coalescing is lost: rpc's calls/s
    /// from BENCHMARKS.md's `pipe` and `conns` runs before the writer
    /// stepped behind the ready tasks (one request per write, 2–4 responses
    /// per write), against the baseline's from its results table (130,539
    /// and 100,353 calls/s). pipe falls far under the bar; conns (1.45× at
    /// best) only just: the bar is set for noise, not for small losses.
    #[test]
    fn a_lost_coalescing_path_fails() {
        let pipe = [137_412.0, 136_271.0, 115_016.0].map(|rpc| round(rpc, 130_539.0));
        let conns = [145_399.0, 138_699.0, 60_992.0].map(|rpc| round(rpc, 100_353.0));
        for rounds in [&pipe, &conns] {
            match judge(rounds, 1.5) {
                Judgement::Slow { best } => assert!(best < 1.5, "{best}"),
                other => panic!("{other:?} for {rounds:?}"),
            }
        }
    }

    #[test]
    fn failed_rounds_do_not_count_and_all_failed_is_a_failure() {
        let failed_rpc = Round {
            rpc: None,
            baseline: Some(100.0),
        };
        let failed_baseline = Round {
            rpc: Some(300.0),
            baseline: None,
        };
        assert_eq!(
            judge(&[failed_rpc, round(160.0, 100.0)], 1.5),
            Judgement::Pass { best: 1.6 }
        );
        assert_eq!(
            judge(&[failed_rpc, failed_baseline], 1.5),
            Judgement::NoFigures
        );
        assert_eq!(judge(&[], 1.5), Judgement::NoFigures);
        assert_eq!(judge(&[round(10.0, 0.0)], 1.5), Judgement::NoFigures);
    }
}
