//! CPU time spent by the server's and the clients' runtime threads.
//!
//! Throughput on a shared two-core machine moves with whatever else runs;
//! CPU time per call does much less, so the table reports both. Read from
//! /proc/self/task/*/stat (utime + stime, in clock ticks), summed by thread
//! name: the runtimes name their workers `bench-server` and `bench-client`.

/// CPU seconds used so far by threads named `server` and `client`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuTimes {
    pub server: f64,
    pub client: f64,
}

pub fn now() -> CpuTimes {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut times = CpuTimes::default();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return times;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ...`: comm may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // Fields after comm start at `state` (field 3); utime and stime are 14 and 15.
        let used = |i: usize| {
            fields
                .get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let secs = (used(14) + used(15)) / ticks;
        if comm.starts_with("bench-server") {
            times.server += secs;
        } else if comm.starts_with("bench-client") {
            times.client += secs;
        }
    }
    times
}
