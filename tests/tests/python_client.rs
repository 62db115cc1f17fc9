//! The protocol is usable from another language: a Python 3 client written
//! with only the standard library talks to the demo server.
//!
//! Needs `python3` on `PATH` (CI installs it); without it the test fails
//! and says so, rather than passing silently.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;

/// How long the Python client may run before it is killed.
const SCRIPT_LIMIT: Duration = Duration::from_secs(30);

/// What a finished (or killed) child process left behind.
struct Finished {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `python3 script args...`, killing it if it outlives [`SCRIPT_LIMIT`].
/// `status` is `None` when it had to be killed.
fn run_python(script: &PathBuf, args: &[String]) -> Finished {
    let mut child = match Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`python3` is not on PATH ({e}); this test runs a Python 3 client against the server, install Python 3 to run it"
        ),
        Err(e) => panic!("could not start `python3 {}`: {e}", script.display()),
    };
    // Drain the pipes in threads so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));

    let started = Instant::now();
    let status = loop {
        match child.try_wait().expect("waiting for python3") {
            Some(status) => break Some(status),
            None if started.elapsed() > SCRIPT_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs `examples/python/SCRIPT HOST:PORT` against a demo server and
/// checks that it reports success.
async fn passes_all_its_checks(script: &str) {
    let fx = TestServer::demo().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python")
        .join(script);
    assert!(script.is_file(), "missing {}", script.display());
    let addr = format!("127.0.0.1:{}", fx.addr().port());

    let finished = {
        let script = script.clone();
        tokio::task::spawn_blocking(move || run_python(&script, &[addr]))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    };
    let report = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        finished.stdout, finished.stderr
    );
    match finished.status {
        None => panic!(
            "`python3 {}` did not finish within {SCRIPT_LIMIT:?} and was killed\n{report}",
            script.display()
        ),
        Some(status) => assert!(
            status.success(),
            "`python3 {}` failed ({status})\n{report}",
            script.display()
        ),
    }
    println!("{report}");
    assert!(
        finished.stdout.contains("all checks passed"),
        "the script did not report success\n{report}"
    );
    assert!(
        !finished.stdout.contains("FAIL"),
        "the script reported a failure\n{report}"
    );

    fx.shutdown().await;
}

#[tokio::test]
async fn a_standard_library_python_client_over_framed_tcp_passes_all_its_checks() {
    passes_all_its_checks("framed_client.py").await;
}

#[tokio::test]
async fn a_standard_library_python_client_over_http_passes_all_its_checks() {
    passes_all_its_checks("http_client.py").await;
}
