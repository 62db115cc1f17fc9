//! Helpers shared by the binary's tests: the binary, a child process
//! killed on drop, and `rpc-demo serve` on a free port.
#![allow(dead_code)]

pub mod tmux;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rpc-demo");
pub const LIMIT: Duration = Duration::from_secs(30);

/// A child process killed on drop, so a failing test leaks nothing.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rpc-demo serve` on a free port; its address.
pub fn serve(extra: &[&str]) -> (Running, String) {
    serve_with(Command::new(BIN), extra)
}

/// `rpc-demo serve` run by `command` (the binary itself, or a wrapper that
/// runs it) on a free port; its address.
pub fn serve_with(command: Command, extra: &[&str]) -> (Running, String) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    start(command, &args)
}

/// `rpc-demo binder` on a free port; its address.
pub fn binder() -> (Running, String) {
    start(Command::new(BIN), &["binder", "--listen", "127.0.0.1:0"])
}

/// Runs `command` with `args` (a command that listens on 127.0.0.1:0 and
/// announces its address on its first line); the child and the address.
pub fn start(mut command: Command, args: &[&str]) -> (Running, String) {
    let mut child = Running(
        command
            .args(args)
            // `serve` without `--db` keeps the student records in the data
            // folder: a temporary one, not the home of whoever runs the tests.
            .env("XDG_DATA_HOME", std::env::temp_dir().join("rpc-demo-tests"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rpc-demo"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(LIMIT)
        .expect("the server announces its address");
    let addr = line
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .map(|w| w.trim_end_matches([';', ',']).to_owned())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `rpc-demo ARGS` with `input` on stdin; fails the test if it takes
/// longer than the limit.
pub fn run(args: &[&str], input: &str) -> Output {
    let mut command = Command::new(BIN);
    command.args(args);
    run_command(command, input, &format!("rpc-demo {args:?}"))
}

/// Runs `command` to its end with `input` on stdin, collecting its output;
/// fails the test, naming it `what`, if it takes longer than the limit.
pub fn run_command(mut command: Command, input: &str, what: &str) -> Output {
    let mut child = Running(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}")),
    );
    let mut stdin = child.0.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
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
            started.elapsed() < LIMIT,
            "{what} did not finish within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = readers.join().expect("reader thread");
    Output {
        status,
        stdout,
        stderr,
    }
}
