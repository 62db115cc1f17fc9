//! The protocol is usable from another language: a Python 3 client written
//! with only the standard library talks to the demo server.
//!
//! Needs `python3` on `PATH` (CI installs it); without it the test fails
//! and says so, rather than passing silently.

mod common;

use std::path::PathBuf;

use common::TestServer;
use common::python::{SCRIPT_LIMIT, run_python};

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
