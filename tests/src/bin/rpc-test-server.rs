//! `rpc-test-server [ADDR]`: the demo services on `ADDR` (default
//! `127.0.0.1:0`), for tests that need the server in a process of its own so
//! they can kill it (`SIGKILL`), restart it and measure its memory.
//!
//! It prints `listening on ADDR` on stdout once it accepts connections (the
//! actual address, so port 0 works) and then serves until it is killed. It has
//! no signal handling and no graceful stop on purpose: the tests want to see
//! what clients experience when a server dies abruptly.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rpc-test-server: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let server = match rpc_demo::services::all_services().bind(addr.as_str()).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("rpc-test-server: {e}");
                return ExitCode::FAILURE;
            }
        };
        // The test blocks on this line: it must leave the pipe now, not when
        // a buffer fills.
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "listening on {}", server.local_addr())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return ExitCode::FAILURE;
        }
        drop(stdout);
        server.wait().await;
        ExitCode::SUCCESS
    })
}
