//! The discovery demo on several machines: Linux network namespaces joined
//! by a bridge stand for a binder host, two server hosts and a client host,
//! each `rpc-demo` process on its own host. One long-lived `rpc-demo calc
//! --binder` keeps calling while one server is killed (it keeps getting
//! answers), and while the other server's link is cut (`ip link set down`:
//! no FIN, no RST; its pings find the dead connection and it fails over).
//!
//! The private addresses (10.231.7.0/24) exist only inside the test's
//! namespaces: every command that uses them runs there (`ip netns exec`),
//! never in the root namespace. Everything is removed on drop, also when
//! the test fails.
//!
//! Needs root (and `ip` from iproute2), with the right to make network
//! namespaces: skipped with the reason otherwise, except in CI
//! (`CI=true`), where it must run. The registry here is the binder.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::BIN;

/// The hosts' network: a /24 that exists only inside the namespaces.
const BINDER_IP: &str = "10.231.7.1";
const S1_IP: &str = "10.231.7.11";
const S2_IP: &str = "10.231.7.12";
const CLIENT_IP: &str = "10.231.7.21";
const PORT: u16 = 7070;

/// Longest a round of `calc` may take: the client's keepalive finds a dead
/// connection in about 8 s, well before the 30 s call timeout.
const ROUND_LIMIT: Duration = Duration::from_secs(20);
/// How long the binder may take to list (or forget) a server: a lease
/// lives 10 s.
const REGISTRY_LIMIT: Duration = Duration::from_secs(15);

/// Runs `ip ARGS` in the root namespace (only to manage namespaces and
/// links); panics with its error if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Why the test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("network namespaces are Linux only".to_owned());
    }
    match Command::new("id").arg("-u").output() {
        Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "0" => {}
        Ok(out) => {
            return Some(format!(
                "it needs root to create network namespaces (uid {})",
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
        Err(e) => return Some(format!("`id -u` failed: {e}")),
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Some(format!(
                "`ip netns` is unavailable: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Err(e) => return Some(format!("`ip` (iproute2) is not installed: {e}")),
    }
    // Root in a container may still lack the right to make namespaces.
    let probe = format!("rpcb-{}-probe", std::process::id());
    let out = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .expect("run ip");
    if !out.status.success() {
        return Some(format!(
            "cannot create a network namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // `ip netns exec` mounts a fresh /sys: a container may refuse that.
    let exec = Command::new("ip")
        .args(["netns", "exec", &probe, BIN, "--version"])
        .output();
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    match exec {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "cannot run a program in a network namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("`ip netns exec` failed: {e}")),
    }
}

/// Removes the namespaces a killed earlier run left (`rpcb-PID-*` whose
/// process is gone).
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix("rpcb-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("removing namespace {name} left by an earlier run");
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// One `rpc-demo` process on a host: its stdout lines, its stderr.
struct Process {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Process {
    /// Waits for a line containing `needle`; the line.
    fn expect_line(&self, needle: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{}: no {needle:?} within {within:?}", self.label));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "{}: exited before {needle:?}; stderr:\n{}",
                        self.label,
                        self.stderr()
                    ));
                }
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

/// The test's hosts: namespaces, the bridge, the processes. Dropping it
/// kills the processes it started and deletes the namespaces.
struct Hosts {
    prefix: String,
    namespaces: Vec<String>,
    processes: Vec<Process>,
}

impl Hosts {
    /// A bridge in a namespace of its own (the switch), and one namespace
    /// per host plugged into it by a veth pair, `eth0` inside.
    fn new(hosts: &[(&str, &str)]) -> Self {
        let prefix = format!("rpcb-{}", std::process::id());
        let mut this = Self {
            prefix,
            namespaces: Vec::new(),
            processes: Vec::new(),
        };
        let switch = this.add_namespace("net");
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for (host, address) in hosts {
            let ns = this.add_namespace(host);
            let port = format!("p-{host}");
            // Both ends are created inside the namespaces: the root
            // namespace never sees them.
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &switch,
            ]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &switch, "link", "set", &port, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            eprintln!("host {ns}: {address}/24 on eth0, plugged into {switch}'s br0");
        }
        this
    }

    fn add_namespace(&mut self, host: &str) -> String {
        let ns = self.ns(host);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// Starts `rpc-demo ARGS` on `host`; its index. `ip netns exec` execs
    /// the binary, so the child's PID is `rpc-demo`'s own (checked).
    fn start(&mut self, host: &str, label: &str, args: &[&str]) -> usize {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host), BIN])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ip netns exec rpc-demo");
        let stdout = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take();
        let pid = child.id();
        self.processes.push(Process {
            label: format!("{label} (pid {pid} in {})", self.ns(host)),
            child,
            stdin,
            lines,
            stderr,
        });
        wait_for_exec(pid);
        self.processes.len() - 1
    }

    /// Kills process `index` with SIGKILL: no goodbye, no deregistration.
    fn kill(&mut self, index: usize) {
        let process = &mut self.processes[index];
        let pid = process.child.id();
        assert_eq!(comm(pid).as_deref(), Some("rpc-demo"), "pid {pid}");
        process.child.kill().expect("kill");
        process.child.wait().expect("reap");
        eprintln!("killed {}", process.label);
    }

    /// `rpc-demo ARGS` run to its end on `host`: whether it succeeded, its
    /// stdout, its stderr.
    fn run(&self, host: &str, args: &[&str]) -> (bool, String, String) {
        let mut child = common::Running(
            Command::new("ip")
                .args(["netns", "exec", &self.ns(host), BIN])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start rpc-demo"),
        );
        let mut out = child.0.stdout.take().expect("stdout");
        let mut err = child.0.stderr.take().expect("stderr");
        let readers = std::thread::spawn(move || {
            let (mut o, mut e) = (String::new(), String::new());
            let _ = out.read_to_string(&mut o);
            let _ = err.read_to_string(&mut e);
            (o, e)
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("wait") {
                break status;
            }
            assert!(
                started.elapsed() < common::LIMIT,
                "rpc-demo {args:?} on {host} did not finish within {:?}",
                common::LIMIT
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let (stdout, stderr) = readers.join().expect("readers");
        (status.success(), stdout, stderr)
    }

    /// The addresses the binder lists for Calculator, asked from `host`.
    fn lookup(&self, host: &str) -> Vec<String> {
        let binder = format!("{BINDER_IP}:7000");
        let (ok, out, err) = self.run(host, &["lookup", "Calculator", "--binder", &binder]);
        assert!(ok, "lookup failed: {err}");
        let mut addresses: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
            .collect();
        addresses.sort();
        addresses
    }

    /// Polls the binder (from the client host) until it lists exactly
    /// `expected` for Calculator.
    fn await_listing(&self, expected: &[&str]) {
        let mut expected: Vec<String> = expected.iter().map(|a| format!("{a}:{PORT}")).collect();
        expected.sort();
        let started = Instant::now();
        loop {
            let listed = self.lookup("client");
            if listed == expected {
                eprintln!(
                    "the binder lists {listed:?} (after {:.1?})",
                    started.elapsed()
                );
                return;
            }
            assert!(
                started.elapsed() < REGISTRY_LIMIT,
                "the binder lists {listed:?}, not {expected:?}, after {REGISTRY_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for process in &mut self.processes {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
        if std::thread::panicking() {
            for process in &self.processes {
                eprintln!(
                    "--- stderr of {}:\n{}",
                    process.label,
                    tail(&process.stderr(), 40)
                );
            }
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        eprintln!("removed namespaces {}-*", self.prefix);
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The command name of process `pid`.
fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Waits until `ip netns exec` has exec'd `rpc-demo` in process `pid`.
fn wait_for_exec(pid: u32) {
    let started = Instant::now();
    while comm(pid).as_deref() != Some("rpc-demo") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "pid {pid} is {:?}, not rpc-demo",
            comm(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How a round of `calc` ended.
#[derive(Debug)]
enum Round {
    /// The right sum, after this long.
    Answered(Duration),
    /// `add(N, 1000): no answer: ...`: the call was lost with a server's
    /// connection, after this long.
    Lost(Duration, String),
}

/// The long-lived `calc` client: one round at a time.
struct Calc {
    index: usize,
    rounds: u32,
}

impl Calc {
    /// One round, `add N 1000`: how it ended, or what went wrong (no line
    /// within [`ROUND_LIMIT`], a wrong sum, `calc` gone).
    fn round(&mut self, hosts: &mut Hosts) -> Result<Round, String> {
        self.rounds += 1;
        let n = self.rounds;
        let process = &mut hosts.processes[self.index];
        let started = Instant::now();
        let stdin = process.stdin.as_mut().expect("calc's stdin");
        stdin
            .write_all(format!("add\n{n}\n1000\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| {
                format!(
                    "round {n}: calc's stdin: {e}; stderr:\n{}",
                    process.stderr()
                )
            })?;
        let line = process.expect_line(&format!("add({n}, 1000)"), ROUND_LIMIT)?;
        let elapsed = started.elapsed();
        let expected = format!("add({n}, 1000) = {}", n + 1000);
        if line.ends_with(&expected) {
            Ok(Round::Answered(elapsed))
        } else if line.contains(&format!("add({n}, 1000): no answer: ")) {
            Ok(Round::Lost(elapsed, line))
        } else {
            Err(format!("round {n}: {line:?}, expected {expected:?}"))
        }
    }

    /// Rounds for at least `span`, a short pause between them; how they
    /// ended. Each must end (answered or lost) within [`ROUND_LIMIT`].
    fn rounds_for(&mut self, hosts: &mut Hosts, span: Duration) -> Vec<Round> {
        let started = Instant::now();
        let mut rounds = Vec::new();
        while started.elapsed() < span {
            let round = self
                .round(hosts)
                .unwrap_or_else(|e| panic!("a round did not end well: {e}"));
            match &round {
                Round::Answered(t) if *t > Duration::from_secs(1) => {
                    eprintln!("round {} answered after {t:.1?}", self.rounds);
                }
                Round::Answered(_) => {}
                Round::Lost(t, line) => {
                    eprintln!("round {} lost after {t:.1?}: {line}", self.rounds)
                }
            }
            rounds.push(round);
            std::thread::sleep(Duration::from_millis(50));
        }
        rounds
    }
}

/// Asserts every round answered; how many there were.
fn all_answered(rounds: &[Round], when: &str) -> usize {
    let lost: Vec<&Round> = rounds
        .iter()
        .filter(|r| matches!(r, Round::Lost(..)))
        .collect();
    assert!(lost.is_empty(), "rounds lost {when}: {lost:?}");
    rounds.len()
}

#[test]
fn a_client_on_its_own_host_survives_a_killed_server_and_a_cut_link() {
    if let Some(why) = unavailable() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI runs as root, so this test is mandatory there, but it cannot run: {why}");
        }
        eprintln!("skipped: {why}");
        return;
    }
    remove_stale_namespaces();
    let started = Instant::now();
    let mut hosts = Hosts::new(&[
        ("binder", BINDER_IP),
        ("s1", S1_IP),
        ("s2", S2_IP),
        ("client", CLIENT_IP),
    ]);
    let binder_addr = format!("{BINDER_IP}:7000");
    let listen = format!("0.0.0.0:{PORT}");

    let binder = hosts.start("binder", "binder", &["binder", "--listen", &binder_addr]);
    hosts.processes[binder]
        .expect_line("rpc-demo binder on", common::LIMIT)
        .unwrap();
    let serve = |hosts: &mut Hosts, host: &str, address: &str| {
        let advertise = format!("{address}:{PORT}");
        let index = hosts.start(
            host,
            host,
            &[
                "serve",
                "--listen",
                &listen,
                "--binder",
                &binder_addr,
                "--advertise",
                &advertise,
            ],
        );
        hosts.processes[index]
            .expect_line("rpc-demo serving", common::LIMIT)
            .unwrap();
        index
    };
    let s1 = serve(&mut hosts, "s1", S1_IP);
    let _s2 = serve(&mut hosts, "s2", S2_IP);
    hosts.await_listing(&[S1_IP, S2_IP]);

    let index = hosts.start("client", "calc", &["calc", "--binder", &binder_addr]);
    hosts.processes[index]
        .expect_line("Calculator at", common::LIMIT)
        .unwrap();
    let mut calc = Calc { index, rounds: 0 };
    let n = all_answered(
        &calc.rounds_for(&mut hosts, Duration::from_secs(1)),
        "with both servers up",
    );
    eprintln!("{n} rounds answered with both servers up");

    // 1. A server dies (SIGKILL: no deregistration). Its connection closes
    // (the kernel of its host sends the FIN), so no call is left on it:
    // every round answers, and the binder forgets the server when its
    // lease expires.
    hosts.kill(s1);
    let killed = Instant::now();
    let mut rounds = Vec::new();
    while hosts.lookup("client") != [format!("{S2_IP}:{PORT}")] {
        assert!(
            killed.elapsed() < REGISTRY_LIMIT,
            "the binder still lists the killed server after {REGISTRY_LIMIT:?}"
        );
        rounds.extend(calc.rounds_for(&mut hosts, Duration::from_millis(500)));
    }
    let n = all_answered(&rounds, "after server 1 was killed");
    eprintln!(
        "{n} rounds answered after the kill; the binder forgot the killed server after {:.1?}",
        killed.elapsed()
    );

    // Server 1 comes back at the same address.
    serve(&mut hosts, "s1", S1_IP);
    hosts.await_listing(&[S1_IP, S2_IP]);
    let n = all_answered(
        &calc.rounds_for(&mut hosts, Duration::from_secs(1)),
        "with server 1 back",
    );
    eprintln!("{n} rounds answered with server 1 back");

    // 2. Server 2's link is cut: nothing more arrives from it, no FIN, no
    // RST. The next round sent to it is in flight on a dead connection:
    // the client's pings find it dead (about 8 s, not the 30 s timeout),
    // that round is reported lost, and the next rounds go to server 1. A
    // round that dials server 2 before the client hears it left gives up
    // after the same silence and goes to server 1. Rounds go on until the
    // binder forgets server 2 (its lease expires), and a little longer for
    // the client's watch to hear it.
    let s2_ns = hosts.ns("s2");
    ip(&["-n", &s2_ns, "link", "set", "eth0", "down"]);
    let cut = Instant::now();
    eprintln!("cut server 2's link (eth0 down in {s2_ns})");
    let mut rounds = Vec::new();
    while hosts.lookup("client") != [format!("{S1_IP}:{PORT}")] {
        assert!(
            cut.elapsed() < REGISTRY_LIMIT + ROUND_LIMIT,
            "the binder still lists the cut server"
        );
        rounds.extend(calc.rounds_for(&mut hosts, Duration::from_millis(500)));
    }
    eprintln!(
        "the binder forgot the cut server after {:.1?}",
        cut.elapsed()
    );
    rounds.extend(calc.rounds_for(&mut hosts, Duration::from_secs(3)));
    let lost: Vec<(Duration, &str)> = rounds
        .iter()
        .filter_map(|r| match r {
            Round::Lost(t, line) => Some((*t, line.as_str())),
            Round::Answered(_) => None,
        })
        .collect();
    eprintln!(
        "{} rounds after the cut: {} answered, {} lost, the slowest in {:.1?}",
        rounds.len(),
        rounds.len() - lost.len(),
        lost.len(),
        rounds
            .iter()
            .map(|r| match r {
                Round::Answered(t) | Round::Lost(t, _) => *t,
            })
            .max()
            .unwrap_or_default()
    );
    // One connection to server 2 existed, and one call at a time: exactly
    // one call was in flight on it when it went dead (a round goes to either
    // server at random; dozens of rounds ran before the binder forgot it).
    // A new connection to server 2 can never open, so no other call is
    // lost.
    assert_eq!(lost.len(), 1, "rounds lost after the cut: {lost:?}");
    let (after, line) = lost[0];
    assert!(
        line.contains("dead") && after > Duration::from_secs(4),
        "the lost round, after {after:?}, was not ended by the pings: {line}"
    );
    let n = all_answered(
        &calc.rounds_for(&mut hosts, Duration::from_secs(1)),
        "on server 1 alone",
    );
    eprintln!("{n} rounds answered on server 1 alone");

    // `calc` ends at end of input, and did not fail.
    let process = &mut hosts.processes[calc.index];
    drop(process.stdin.take());
    let status = process.child.wait().expect("wait for calc");
    assert!(status.success(), "calc: {}", process.stderr());
    eprintln!(
        "{} rounds in all; the whole test took {:.1?}",
        calc.rounds,
        started.elapsed()
    );
}
