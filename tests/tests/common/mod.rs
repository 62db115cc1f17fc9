//! Helpers shared by the integration tests: bounded waits, the
//! [`TestServer`] fixture, and raw frame I/O for tests that speak the wire
//! protocol without the library's client.
//!
//! Each test binary includes this module with `mod common;` and uses only
//! part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

mod fixture;
pub mod gated;
pub mod python;

#[allow(unused_imports)] // Only some test binaries choose the transport.
pub use fixture::{TestServer, Via};

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any single step of a test may take. A hang becomes a failure
/// naming the step instead of a stuck CI job.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `future` (anything `.await` takes, such as a generated batch),
/// failing the test if it takes longer than [`LIMIT`].
pub async fn within<F: IntoFuture>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {LIMIT:?} waiting for {what}"),
    }
}

/// Opens a raw TCP connection to `addr`, for servers that are not a
/// [`TestServer`] (which has [`raw`](TestServer::raw)).
pub async fn connect(addr: SocketAddr) -> TcpStream {
    within("a TCP connection", TcpStream::connect(addr))
        .await
        .unwrap_or_else(|e| panic!("could not connect to {addr}: {e}"))
}

/// Writes one frame: the 4-byte big-endian length of `body`, then `body`.
pub async fn send_frame(stream: &mut TcpStream, body: &[u8]) {
    within(
        "a frame to be written",
        stream.write_all(&rpc_core::frame::encode(body)),
    )
    .await
    .expect("writing a frame");
}

/// Writes one frame holding `json` serialized.
pub async fn send_json(stream: &mut TcpStream, json: &Value) {
    send_frame(stream, json.to_string().as_bytes()).await;
}

/// Reads one frame body, or `None` if the peer closed the connection cleanly
/// before a new frame began. Fails the test on a timeout, on a connection
/// error, or if the peer closes in the middle of a frame.
pub async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    within("a frame from the server", async {
        let mut header = [0u8; 4];
        let mut got = 0;
        while got < header.len() {
            match stream.read(&mut header[got..]).await {
                Ok(0) if got == 0 => return None,
                Ok(0) => panic!("the connection closed inside a frame header"),
                Ok(n) => got += n,
                Err(e) => panic!("reading a frame header failed: {e}"),
            }
        }
        let len = u32::from_be_bytes(header) as usize;
        let mut body = vec![0u8; len];
        stream
            .read_exact(&mut body)
            .await
            .unwrap_or_else(|e| panic!("reading a frame body of {len} bytes failed: {e}"));
        Some(body)
    })
    .await
}

/// Reads one frame and parses it as JSON; fails the test if the connection
/// closes instead.
pub async fn read_json(stream: &mut TcpStream) -> Value {
    let body = read_frame(stream)
        .await
        .expect("expected a response frame, but the server closed the connection");
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "the server sent a frame that is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// Sends `request` and returns the next frame, parsed.
pub async fn exchange(stream: &mut TcpStream, request: &Value) -> Value {
    send_json(stream, request).await;
    read_json(stream).await
}

/// Asserts that the peer closes the connection (clean EOF) without sending
/// anything more.
pub async fn expect_closed(stream: &mut TcpStream) {
    if let Some(body) = read_frame(stream).await {
        panic!(
            "expected the connection to close, got another frame: {}",
            String::from_utf8_lossy(&body)
        );
    }
}
