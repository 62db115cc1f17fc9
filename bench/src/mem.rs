//! `rpc-bench mem`: the server's memory per idle connection, and whether it
//! grows with the number of calls served.
//!
//! The server runs in a child process (`rpc-bench serve`), so its resident
//! set (VmRSS in /proc/self/status) holds nothing of the clients'. The parent
//! asks for it over the child's stdin/stdout.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::scenario::runtime;
use crate::systems::{self, System};

/// Raises the soft limit on open files to the hard limit; returns it.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

/// This process's resident set in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `rpc-bench serve`: runs one system's server until stdin closes, answering
/// `rss` with its VmRSS in KiB.
pub fn serve(system: System, threads: usize) {
    raise_fd_limit();
    let rt = runtime("bench-server", threads);
    let server = rt.block_on(systems::start_server(system));
    println!("addr {}", server.addr);
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("rss") => println!("{}", rss_kib()),
            Ok(_) => println!("?"),
            Err(_) => break,
        }
    }
    rt.block_on(async { server.stop() });
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// A server in a child process.
struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(system: System, threads: usize) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args([
                "serve",
                "--system",
                system.name(),
                "--threads",
                &threads.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("server address");
        let addr = line
            .trim()
            .strip_prefix("addr ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"));
        Self {
            child,
            stdin,
            stdout,
            addr,
        }
    }

    fn rss_kib(&mut self) -> u64 {
        writeln!(self.stdin, "rss").expect("ask the server");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("server answers");
        line.trim().parse().expect("a number of KiB")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin asks it to exit; do not wait long for it.
        let _ = writeln!(self.stdin, "bye");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct MemArgs {
    pub systems: Vec<System>,
    pub conns: usize,
    pub calls: u64,
    pub max_secs: u64,
    pub threads: usize,
}

/// Idle connections: RSS before, and with `conns` connections open that each
/// made one call.
fn idle(system: System, args: &MemArgs) -> Result<(u64, u64), String> {
    let mut server = ServerProcess::start(system, args.threads);
    let rt = runtime("bench-client", args.threads);
    std::thread::sleep(Duration::from_millis(200));
    let before = server.rss_kib();
    let addr = server.addr;
    let conns = rt.block_on(async {
        let opened = futures::stream::iter(0..args.conns)
            .map(|i| async move {
                let conn = systems::connect(system, addr).await?;
                let sum = conn.client.add(i as i64, 1).await?;
                if sum != i as i64 + 1 {
                    return Err(format!("add answered {sum}"));
                }
                Ok(conn)
            })
            .buffer_unordered(128)
            .collect::<Vec<Result<_, String>>>();
        tokio::time::timeout(Duration::from_secs(args.max_secs), opened)
            .await
            .map_err(|_| {
                format!(
                    "opening {} connections took over {}s",
                    args.conns, args.max_secs
                )
            })?
            .into_iter()
            .collect::<Result<Vec<_>, String>>()
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let open = server.rss_kib();
    rt.block_on(async { drop(conns) });
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok((before, open))
}

/// RSS after `calls / 10` and after `calls` calls (4 connections × 64 in flight).
fn growth(system: System, args: &MemArgs) -> Result<(u64, u64, u64, f64), String> {
    let mut server = ServerProcess::start(system, args.threads);
    let rt = runtime("bench-client", args.threads);
    let addr = server.addr;
    let conns = rt.block_on(crate::scenario::connect_all(system, addr, 4))?;
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.max_secs);
    let run_until = |target: u64| -> Result<(), String> {
        rt.block_on(async {
            let mut tasks = Vec::new();
            for conn in &conns {
                for _ in 0..64 {
                    let client = conn.client.clone();
                    let done = done.clone();
                    tasks.push(tokio::spawn(async move {
                        loop {
                            let i = done.fetch_add(1, Ordering::Relaxed);
                            if i >= target || Instant::now() >= deadline {
                                return Ok(());
                            }
                            let i = i as i64;
                            let sum = client.add(i, 2).await?;
                            if sum != i + 2 {
                                return Err(format!("add answered {sum}"));
                            }
                        }
                    }));
                }
            }
            for task in tasks {
                task.await.map_err(|e| e.to_string())??;
            }
            Ok::<_, String>(())
        })?;
        done.store(target.min(done.load(Ordering::Relaxed)), Ordering::Relaxed);
        if Instant::now() >= deadline {
            return Err(format!(
                "{target} calls did not finish within {}s",
                args.max_secs
            ));
        }
        Ok(())
    };
    run_until(args.calls / 10)?;
    std::thread::sleep(Duration::from_millis(300));
    let tenth = server.rss_kib();
    run_until(args.calls)?;
    std::thread::sleep(Duration::from_millis(300));
    let all = server.rss_kib();
    let secs = start.elapsed().as_secs_f64();
    rt.block_on(async { drop(conns) });
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok((tenth, all, args.calls, secs))
}

pub fn run(args: &MemArgs) {
    let limit = raise_fd_limit();
    println!("open-file limit: {limit} per process (server and clients are separate processes)\n");
    println!(
        "| system | server RSS idle, no conns (KiB) | with {} conns (KiB) | per conn (bytes) | after {} calls (KiB) | after {} calls (KiB) | growth (KiB) |",
        args.conns,
        args.calls / 10,
        args.calls
    );
    println!("|---|--:|--:|--:|--:|--:|--:|");
    for &system in &args.systems {
        let idle = idle(system, args);
        let growth = growth(system, args);
        let (a, b, c) = match idle {
            Ok((before, open)) => (
                before.to_string(),
                open.to_string(),
                format!(
                    "{:.0}",
                    (open.saturating_sub(before)) as f64 * 1024.0 / args.conns as f64
                ),
            ),
            Err(e) => (format!("FAILED: {e}"), "–".into(), "–".into()),
        };
        let (d, e, f) = match growth {
            Ok((tenth, all, _, _)) => (
                tenth.to_string(),
                all.to_string(),
                format!("{:+}", all as i64 - tenth as i64),
            ),
            Err(e) => (format!("FAILED: {e}"), "–".into(), "–".into()),
        };
        println!("| {} | {a} | {b} | {c} | {d} | {e} | {f} |", system.name());
    }
}
