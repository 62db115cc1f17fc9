//! Fuzzes the HTTP side of the server's port: arbitrary bytes after a valid
//! start (`POST /rpc`, `GET /api/`, `GET /ws`, or nothing at all), over a
//! fresh TCP connection on 127.0.0.1 to an in-process server with a small
//! service and a page.
//!
//! Checked: whatever the bytes, the server answers them or closes the
//! connection within 5 s (no hang), and afterwards it still answers a
//! well-formed `POST /rpc` on a new connection with a 200 and the right
//! result. libfuzzer-sys aborts on any panic, so a panic in the server,
//! even one it would catch, is a crash.

#![no_main]

/// The service, shared with the property tests in `rpc-core/tests/fuzz.rs`.
#[path = "../../rpc-core/tests/fuzzed/mod.rs"]
mod fuzzed;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use fuzzed::{FuzzedServer, Impl};

struct Harness {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let addr = runtime.block_on(async {
            let server = rpc_core::Server::builder()
                .service(FuzzedServer::new(Impl))
                .max_frame_size(64 * 1024)
                .frame_timeout(Duration::from_secs(2))
                .page("/", "text/html", "<p>page</p>")
                .bind("127.0.0.1:0")
                .await
                .expect("the server binds");
            let addr = server.local_addr();
            std::mem::forget(server);
            addr
        });
        Harness { runtime, addr }
    })
}

const WAIT: Duration = Duration::from_secs(5);

/// The starts inputs are glued to, so most inputs reach the HTTP parser
/// and the routes rather than the framed protocol.
const STARTS: &[&[u8]] = &[
    b"POST /rpc HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n",
    b"GET /api/",
    b"POST /api/",
    b"GET /ws HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n",
    b"GET ",
    b"",
];

/// Sends `bytes`, half-closes, and reads until the server closes or the
/// wait runs out (a hang is a failure).
async fn exchange(addr: SocketAddr, bytes: &[u8]) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        panic!("the server stopped accepting connections");
    };
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut sink = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the server neither answered nor closed within {WAIT:?}");
}

/// A well-formed call must still be answered.
async fn still_serves(addr: SocketAddr) {
    let body = br#"{"jsonrpc":"2.0","method":"add","params":[2,3],"id":7}"#;
    let request = format!(
        "POST /rpc HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with(r#"{"jsonrpc":"2.0","result":5,"id":7}"#), "{answer}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let harness = harness();
    let mut input = STARTS[usize::from(choice) % STARTS.len()].to_vec();
    input.extend_from_slice(rest);
    harness.runtime.block_on(async {
        exchange(harness.addr, &input).await;
        still_serves(harness.addr).await;
    });
});
