//! Helpers shared by the binary's tests: the binary, a child process
//! killed on drop, and `rpc-demo serve` on a free port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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
pub fn serve_with(mut command: Command, extra: &[&str]) -> (Running, String) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = Running(
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rpc-demo serve"),
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
