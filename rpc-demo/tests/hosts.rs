//! The discovery demo on several machines: Linux network namespaces joined
//! by a bridge stand for a registry host, two server hosts and a client
//! host, each process on its own host. One long-lived `rpc-demo calc`
//! keeps calling while one server is killed (it keeps getting answers),
//! and while the other server's link is cut (`ip link set down`: no FIN,
//! no RST; its pings find the dead connection and it fails over).
//!
//! The scenario runs twice, once per registry: `rpc-demo binder`, and
//! etcd (Debian's `etcd-server`, its data in a temporary directory), with
//! `serve`, `calc` and `lookup` given `--binder ADDR` or `--etcd URL`.
//! Each run has its own namespaces (`rpcb-PID-binder-*`, `rpcb-PID-etcd-*`)
//! and its own private /24 (10.231.7.0/24 and 10.231.8.0/24), so both run
//! at once in one `cargo test`, beside other test binaries.
//!
//! The private addresses exist only inside the test's namespaces: every
//! command that uses them runs there (`ip netns exec`), never in the root
//! namespace. Everything (processes, namespaces, etcd's data) is removed
//! on drop, also when the test fails.
//!
//! Needs root (and `ip` from iproute2, and `etcd` for the etcd run), with
//! the right to make network namespaces: skipped with the reason
//! otherwise, except in CI (`CI=true`), where it must run.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::BIN;

/// The servers' port, on every server host.
const PORT: u16 = 7070;
/// The last byte of each host's address in its run's /24.
const REGISTRY_HOST: u8 = 1;
const S1_HOST: u8 = 11;
const S2_HOST: u8 = 12;
const CLIENT_HOST: u8 = 21;

/// Longest a round of `calc` may take: the client's keepalive finds a dead
/// connection in about 8 s, well before the 30 s call timeout.
const ROUND_LIMIT: Duration = Duration::from_secs(20);
/// How long the registry may take to list (or forget) a server: a lease
/// lives 10 s.
const REGISTRY_LIMIT: Duration = Duration::from_secs(15);

/// The registry the servers register in and the client finds them in.
#[derive(Clone, Copy, Debug)]
enum Registry {
    /// `rpc-demo binder`, listening on port 7000 of its host.
    Binder,
    /// etcd, its client URL on port 2379 of its host.
    Etcd,
}

impl Registry {
    /// Its host's name, also in the run's namespace names.
    fn name(self) -> &'static str {
        match self {
            Registry::Binder => "binder",
            Registry::Etcd => "etcd",
        }
    }

    /// Host `last`'s address on this run's network: 10.231.7.0/24 for the
    /// binder, 10.231.8.0/24 for etcd.
    fn ip(self, last: u8) -> String {
        let net = match self {
            Registry::Binder => 7,
            Registry::Etcd => 8,
        };
        format!("10.231.{net}.{last}")
    }

    /// The flag and value that point `serve`, `calc` and `lookup` at it.
    fn flag(self) -> [String; 2] {
        let host = self.ip(REGISTRY_HOST);
        match self {
            Registry::Binder => ["--binder".to_owned(), format!("{host}:7000")],
            Registry::Etcd => ["--etcd".to_owned(), format!("http://{host}:2379")],
        }
    }
}

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

/// Why the test cannot run here with `registry`, if it cannot.
fn unavailable(registry: Registry) -> Option<String> {
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
    if let Registry::Etcd = registry {
        let etcd = Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !etcd.is_ok_and(|status| status.success()) {
            return Some(
                "`etcd` is not installed (apt-get install etcd-server; .ci/run installs it)"
                    .to_owned(),
            );
        }
    }
    // Root in a container may still lack the right to make namespaces.
    let probe = format!("rpcb-{}-{}-probe", std::process::id(), registry.name());
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

/// Whether `name` is one of this test's (`rpcb-PID-*`) and its process is
/// gone: left by an earlier run that was killed.
fn stale(name: &str) -> bool {
    name.strip_prefix("rpcb-")
        .and_then(|rest| rest.split('-').next())
        .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes the namespaces and etcd data directories a killed earlier run
/// left.
fn remove_stale() {
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if stale(name) {
                eprintln!("removing namespace {name} left by an earlier run");
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            if stale(&entry.file_name().to_string_lossy()) {
                eprintln!("removing {} left by an earlier run", entry.path().display());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// One process (`rpc-demo` or `etcd`) on a host: its stdout lines, its
/// stderr.
struct Process {
    label: String,
    /// Its command name (`/proc/PID/comm`), checked before it is killed.
    comm: String,
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

/// One run's hosts: namespaces, the bridge, the processes, etcd's data.
/// Dropping it kills the processes it started, deletes the namespaces and
/// removes the data.
struct Hosts {
    registry: Registry,
    /// `rpcb-PID-REGISTRY`: every namespace's name starts with it.
    prefix: String,
    namespaces: Vec<String>,
    processes: Vec<Process>,
    /// Directories to remove once the processes are gone.
    dirs: Vec<PathBuf>,
}

impl Hosts {
    /// A bridge in a namespace of its own (the switch), and one namespace
    /// per host plugged into it by a veth pair, `eth0` inside: the
    /// registry's host (named after it), `s1`, `s2` and `client`.
    fn new(registry: Registry) -> Self {
        let prefix = format!("rpcb-{}-{}", std::process::id(), registry.name());
        let mut this = Self {
            registry,
            prefix,
            namespaces: Vec::new(),
            processes: Vec::new(),
            dirs: Vec::new(),
        };
        let switch = this.add_namespace("net");
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for (host, last) in [
            (registry.name(), REGISTRY_HOST),
            ("s1", S1_HOST),
            ("s2", S2_HOST),
            ("client", CLIENT_HOST),
        ] {
            let address = registry.ip(last);
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

    /// Starts `rpc-demo ARGS` on `host`; its index.
    fn start(&mut self, host: &str, label: &str, args: &[&str]) -> usize {
        self.start_program(host, label, BIN, args)
    }

    /// Starts `program ARGS` on `host`; its index. `ip netns exec` execs
    /// the program, so the child's PID is the program's own (checked).
    fn start_program(&mut self, host: &str, label: &str, program: &str, args: &[&str]) -> usize {
        let comm = std::path::Path::new(program)
            .file_name()
            .expect("a program's file name")
            .to_string_lossy()
            .into_owned();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host), program])
            .args(args)
            // `serve` keeps student records in the data folder: a temporary
            // one, not root's home.
            .env("XDG_DATA_HOME", std::env::temp_dir().join("rpc-demo-tests"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start ip netns exec {program}: {e}"));
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
            comm: comm.clone(),
            child,
            stdin,
            lines,
            stderr,
        });
        wait_for_exec(pid, &comm);
        self.processes.len() - 1
    }

    /// Starts the registry on its host and waits until it answers.
    fn start_registry(&mut self) {
        let host = self.registry.name();
        let address = self.registry.ip(REGISTRY_HOST);
        match self.registry {
            Registry::Binder => {
                let listen = format!("{address}:7000");
                let binder = self.start(host, "binder", &["binder", "--listen", &listen]);
                self.processes[binder]
                    .expect_line("rpc-demo binder on", common::LIMIT)
                    .unwrap();
            }
            Registry::Etcd => {
                // The host's ports are all free: it is a network of its
                // own. The peer port serves no other member, so it stays
                // on the host's loopback.
                let dir = std::env::temp_dir().join(format!("{}-data", self.prefix));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("etcd's data directory");
                self.dirs.push(dir.clone());
                let url = format!("http://{address}:2379");
                let peer = "http://127.0.0.1:2380";
                let data = dir.join("data");
                let etcd = self.start_program(
                    host,
                    "etcd",
                    "etcd",
                    &[
                        "--name",
                        "hosts",
                        "--data-dir",
                        data.to_str().expect("a UTF-8 temporary directory"),
                        "--listen-client-urls",
                        &url,
                        "--advertise-client-urls",
                        &url,
                        "--listen-peer-urls",
                        peer,
                        "--initial-advertise-peer-urls",
                        peer,
                        "--initial-cluster",
                        &format!("hosts={peer}"),
                        "--logger",
                        "zap",
                        "--log-level",
                        "warn",
                    ],
                );
                // Ready when a lookup from the client host succeeds.
                let started = Instant::now();
                loop {
                    let (ok, _, err) = self.lookup_output("client");
                    if ok {
                        eprintln!("etcd answers (after {:.1?})", started.elapsed());
                        break;
                    }
                    let process = &mut self.processes[etcd];
                    let exited = process.child.try_wait().expect("wait for etcd");
                    assert!(
                        exited.is_none() && started.elapsed() < common::LIMIT,
                        "etcd at {url} did not answer within {:?} (exit: {exited:?}): {err}",
                        common::LIMIT
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Starts `rpc-demo serve` on server host `host` (`s1` or `s2`),
    /// listening on 0.0.0.0, advertising its address, registering in the
    /// registry; its index, once it serves.
    fn serve(&mut self, host: &str, last: u8) -> usize {
        let listen = format!("0.0.0.0:{PORT}");
        let advertise = format!("{}:{PORT}", self.registry.ip(last));
        let [flag, registry] = self.registry.flag();
        let index = self.start(
            host,
            host,
            &[
                "serve",
                "--listen",
                &listen,
                &flag,
                &registry,
                "--advertise",
                &advertise,
            ],
        );
        self.processes[index]
            .expect_line("rpc-demo serving", common::LIMIT)
            .unwrap();
        index
    }

    /// Kills process `index` with SIGKILL: no goodbye, no deregistration.
    fn kill(&mut self, index: usize) {
        let process = &mut self.processes[index];
        let pid = process.child.id();
        assert_eq!(comm(pid), Some(process.comm.clone()), "pid {pid}");
        process.child.kill().expect("kill");
        process.child.wait().expect("reap");
        eprintln!("killed {}", process.label);
    }

    /// `rpc-demo ARGS` run to its end on `host`: whether it succeeded, its
    /// stdout, its stderr.
    fn run(&self, host: &str, args: &[&str]) -> (bool, String, String) {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns(host), BIN])
            .args(args);
        let out = common::run_command(command, "", &format!("rpc-demo {args:?} on {host}"));
        (out.status.success(), out.stdout, out.stderr)
    }

    /// `rpc-demo lookup Calculator` in the registry, run on `host`.
    fn lookup_output(&self, host: &str) -> (bool, String, String) {
        let [flag, registry] = self.registry.flag();
        self.run(host, &["lookup", "Calculator", &flag, &registry])
    }

    /// The addresses the registry lists for Calculator, asked from `host`.
    fn lookup(&self, host: &str) -> Vec<String> {
        let (ok, out, err) = self.lookup_output(host);
        assert!(ok, "lookup in {} failed: {err}", self.registry.name());
        // `Calculator  ADDRESS` lines (not `nothing registered as ...`).
        let mut addresses: Vec<String> = out
            .lines()
            .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
                ["Calculator", address] => Some(address.to_owned()),
                _ => None,
            })
            .collect();
        addresses.sort();
        addresses
    }

    /// Server host `last`'s advertised address.
    fn server(&self, last: u8) -> String {
        format!("{}:{PORT}", self.registry.ip(last))
    }

    /// Polls the registry (from the client host) until it lists exactly
    /// the servers `expected` (last bytes) for Calculator.
    fn await_listing(&self, expected: &[u8]) {
        let mut expected: Vec<String> = expected.iter().map(|&last| self.server(last)).collect();
        expected.sort();
        let started = Instant::now();
        loop {
            let listed = self.lookup("client");
            if listed == expected {
                eprintln!(
                    "{} lists {listed:?} (after {:.1?})",
                    self.registry.name(),
                    started.elapsed()
                );
                return;
            }
            assert!(
                started.elapsed() < REGISTRY_LIMIT,
                "{} lists {listed:?}, not {expected:?}, after {REGISTRY_LIMIT:?}",
                self.registry.name()
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
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
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

/// Waits until `ip netns exec` has exec'd the program named `name` in
/// process `pid`.
fn wait_for_exec(pid: u32, name: &str) {
    let started = Instant::now();
    while comm(pid).as_deref() != Some(name) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "pid {pid} is {:?}, not {name}",
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
fn through_a_binder_a_client_on_its_own_host_survives_a_killed_server_and_a_cut_link() {
    scenario(Registry::Binder);
}

#[test]
fn through_etcd_a_client_on_its_own_host_survives_a_killed_server_and_a_cut_link() {
    scenario(Registry::Etcd);
}

/// The whole scenario, with `registry` on a host of its own.
fn scenario(registry: Registry) {
    if let Some(why) = unavailable(registry) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI runs as root, so this test is mandatory there, but it cannot run: {why}");
        }
        eprintln!("skipped: {why}");
        return;
    }
    remove_stale();
    let started = Instant::now();
    let mut hosts = Hosts::new(registry);
    let name = registry.name();
    hosts.start_registry();
    let s1 = hosts.serve("s1", S1_HOST);
    let _s2 = hosts.serve("s2", S2_HOST);
    hosts.await_listing(&[S1_HOST, S2_HOST]);

    let [flag, registry_at] = registry.flag();
    let index = hosts.start("client", "calc", &["calc", &flag, &registry_at]);
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
    // every round answers, and the registry forgets the server when its
    // lease expires.
    hosts.kill(s1);
    let killed = Instant::now();
    let mut rounds = Vec::new();
    while hosts.lookup("client") != [hosts.server(S2_HOST)] {
        assert!(
            killed.elapsed() < REGISTRY_LIMIT,
            "{name} still lists the killed server after {REGISTRY_LIMIT:?}"
        );
        rounds.extend(calc.rounds_for(&mut hosts, Duration::from_millis(500)));
    }
    let n = all_answered(&rounds, "after server 1 was killed");
    eprintln!(
        "{n} rounds answered after the kill; {name} forgot the killed server after {:.1?}",
        killed.elapsed()
    );

    // Server 1 comes back at the same address.
    hosts.serve("s1", S1_HOST);
    hosts.await_listing(&[S1_HOST, S2_HOST]);
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
    // registry forgets server 2 (its lease expires: it cannot renew it
    // either), and a little longer for the client's watch to hear it.
    let s2_ns = hosts.ns("s2");
    ip(&["-n", &s2_ns, "link", "set", "eth0", "down"]);
    let cut = Instant::now();
    eprintln!("cut server 2's link (eth0 down in {s2_ns})");
    let mut rounds = Vec::new();
    while hosts.lookup("client") != [hosts.server(S1_HOST)] {
        assert!(
            cut.elapsed() < REGISTRY_LIMIT + ROUND_LIMIT,
            "{name} still lists the cut server"
        );
        rounds.extend(calc.rounds_for(&mut hosts, Duration::from_millis(500)));
    }
    eprintln!("{name} forgot the cut server after {:.1?}", cut.elapsed());
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
    // server at random; dozens of rounds ran before the registry forgot
    // it). A new connection to server 2 can never open, so no other call is
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
    let ended = Instant::now();
    let status = loop {
        if let Some(status) = process.child.try_wait().expect("wait for calc") {
            break status;
        }
        assert!(
            ended.elapsed() < common::LIMIT,
            "calc did not end within {:?} of its input's end",
            common::LIMIT
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "calc: {}", process.stderr());
    eprintln!(
        "{} rounds in all, through {name}; the whole test took {:.1?}",
        calc.rounds,
        started.elapsed()
    );
}
