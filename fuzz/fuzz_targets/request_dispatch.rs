//! Fuzzes the server's handling of one frame's contents, end to end: parse,
//! validation, batches, routing, params decoding, built-in methods, replies.
//!
//! One in-process server (with a small service) and one TCP connection to it
//! on 127.0.0.1 live for the whole run. Each input is sent as one frame,
//! followed by a ping with a fresh id. Checked: every frame the server sends
//! is a well-formed JSON-RPC response (or a non-empty batch of them); the
//! pong arrives within 5 s (no hang, no closed connection), so the server is
//! alive and the stream still frames correctly. libfuzzer-sys aborts on any
//! panic, so a panic inside the server, even one it would catch, is a crash.

#![no_main]

/// The service, shared with the property tests in `rpc-core/tests/fuzz.rs`.
#[path = "../../rpc-core/tests/fuzzed/mod.rs"]
mod fuzzed;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use fuzzed::{FuzzedServer, Impl};

struct Harness {
    runtime: tokio::runtime::Runtime,
    stream: Mutex<TcpStream>,
    next_ping: AtomicU64,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let stream = runtime.block_on(async {
            let server = rpc_core::Server::builder()
                .service(FuzzedServer::new(Impl))
                .bind("127.0.0.1:0")
                .await
                .expect("the server binds");
            TcpStream::connect(server.local_addr())
                .await
                .expect("connect")
        });
        Harness {
            runtime,
            stream: Mutex::new(stream),
            next_ping: AtomicU64::new(0),
        }
    })
}

const WAIT: Duration = Duration::from_secs(5);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Response<'a> {
    jsonrpc: &'a str,
    #[serde(borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<rpc_core::ErrorObject>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

/// Panics unless `text` is one well-formed response.
fn check_response(text: &str) {
    let response: Response<'_> = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("not a well-formed response ({e}): {text}"));
    assert_eq!(response.jsonrpc, "2.0", "{text}");
    assert!(response.id.is_some(), "no id: {text}");
    assert!(
        response.result.is_some() != response.error.is_some(),
        "not exactly one of result and error: {text}"
    );
}

async fn read_frame(stream: &mut TcpStream) -> String {
    let read = async {
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).await?;
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        stream.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    let body = tokio::time::timeout(WAIT, read)
        .await
        .expect("a frame within 5 s: the server hangs")
        .expect("the server closed the connection");
    String::from_utf8(body).expect("the server sends UTF-8")
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let mut stream = h.stream.lock().unwrap_or_else(|p| p.into_inner());
    h.runtime.block_on(async {
        let mut out = rpc_core::frame::encode(data);
        let n = h.next_ping.fetch_add(1, Ordering::Relaxed);
        let ping = format!(r#"{{"jsonrpc":"2.0","method":"rpc.ping","id":"ping-{n}"}}"#);
        out.extend_from_slice(&rpc_core::frame::encode(ping.as_bytes()));
        tokio::time::timeout(WAIT, stream.write_all(&out))
            .await
            .expect("writing within 5 s")
            .expect("writing to the server");
        let pong = format!(r#"{{"jsonrpc":"2.0","result":"pong","id":"ping-{n}"}}"#);
        // A reply to `data` may come before or after the pong; a late one is
        // checked with the next input's frames.
        for _ in 0..8 {
            let frame = read_frame(&mut stream).await;
            if frame == pong {
                return;
            }
            if frame.trim_start().starts_with('[') {
                let members: Vec<&RawValue> = serde_json::from_str(&frame)
                    .unwrap_or_else(|e| panic!("not a batch response ({e}): {frame}"));
                assert!(!members.is_empty(), "an empty batch response");
                members.iter().for_each(|m| check_response(m.get()));
            } else {
                check_response(&frame);
            }
        }
        panic!("no pong among 8 frames");
    });
});
