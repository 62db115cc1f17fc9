//! Faults: a server process that dies or restarts, a flood of malformed
//! frames, peers that never read, stall, trickle, idle or crowd the server.
//!
//! The process-level tests run `rpc-test-server` (this package's binary) as a
//! child process and kill it with `SIGKILL`; a guard kills the child when a
//! test fails, so no process outlives its test. The other tests run the
//! server in-process and misbehave on raw TCP connections.

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use rpc_core::{ErrorObject, RpcError, code};
use rpc_demo::services::{EchoClient, all_services};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use common::{TestServer, connect, exchange, expect_closed, read_json, within};

// ------------------------------------------------------- the child server ----

/// A running `rpc-test-server`; killed (and reaped) when dropped.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the server on `addr` and waits until it says it listens.
    async fn start(addr: &str) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rpc-test-server"))
            .arg(addr)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rpc-test-server starts");
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        // From here on the guard owns the child: a failed wait kills it.
        let mut process = ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A plain thread: a blocking read must not hold up the runtime, and
        // it ends when the child dies (its end of the pipe closes).
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = tx.send(
                std::io::BufReader::new(stdout)
                    .read_line(&mut line)
                    .map(|_| line),
            );
        });
        let line = within("the server process to print its address", rx)
            .await
            .expect("the reader thread answers")
            .expect("reading the child's stdout");
        let Some(listening) = line.trim().strip_prefix("listening on ") else {
            panic!("rpc-test-server did not start: it printed {line:?}");
        };
        process.addr = listening.parse().expect("a socket address");
        process
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `SIGKILL`s the server and reaps it.
    fn kill(&mut self) {
        self.child.kill().expect("killing our own child");
        self.child.wait().expect("reaping our own child");
    }

    /// Whether the process is still running.
    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory of the process, in bytes (Linux `/proc`).
    fn rss(&self) -> u64 {
        self.status_bytes("VmRSS")
    }

    /// A size from `/proc/PID/status` (`VmRSS`, `VmSize`), in bytes.
    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc/PID/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
        kib * 1024
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Only our own child, by its PID; it may already be dead and reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `future` exactly once and returns it, still pending, so the test
/// knows its first synchronous step (a client call queues its request) ran.
async fn poll_once<F: Future + Unpin>(mut future: F) -> F {
    let pending =
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut future).poll(cx).is_pending())).await;
    assert!(pending, "the call completed on its first poll");
    future
}

#[tokio::test]
async fn a_call_in_flight_fails_with_closed_within_a_second_of_the_server_being_killed() {
    let mut server = ServerProcess::start("127.0.0.1:0").await;
    let echo = within("a client to connect", EchoClient::connect(server.addr))
        .await
        .expect("connect");

    let sleeper = echo.clone();
    let call = poll_once(Box::pin(async move { sleeper.sleep(10_000).await })).await;
    let call = tokio::spawn(call);
    // The server reads the frames of one connection in order: once a later
    // call is answered, the sleep has started on the server.
    assert_eq!(
        within("echo", echo.echo("after".into())).await.unwrap(),
        "after"
    );
    assert!(!call.is_finished(), "sleep(10 s) is still in flight");

    server.kill();
    let killed = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(1), call)
        .await
        .expect("the pending call must fail within 1 s of the kill")
        .expect("the call's task does not panic");
    match outcome {
        Err(RpcError::Closed(why)) => assert!(!why.to_string().is_empty()),
        other => panic!("expected RpcError::Closed, got {other:?}"),
    }
    assert!(killed.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn the_same_client_reconnects_once_the_server_is_restarted_on_its_port() {
    let mut server = ServerProcess::start("127.0.0.1:0").await;
    let addr = server.addr;
    let echo = within("a client to connect", EchoClient::connect(addr))
        .await
        .expect("connect");
    assert_eq!(
        within("echo", echo.echo("one".into())).await.unwrap(),
        "one"
    );

    server.kill();
    // While the server is down a call fails, quickly, with a connection error.
    match within("a call while the server is down", echo.echo("x".into())).await {
        Err(RpcError::Closed(_) | RpcError::Connect { .. }) => {}
        other => panic!("expected Closed or Connect while down, got {other:?}"),
    }

    let restarted = ServerProcess::start(&addr.to_string()).await;
    assert_eq!(restarted.addr, addr);
    // The backoff may make the first attempt after the restart wait or fail;
    // within 5 s (and a bounded number of attempts) a call must succeed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut failures = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero() && failures.len() < 100,
            "no successful call within 5 s of the restart; failures: {failures:?}"
        );
        match tokio::time::timeout(left, echo.echo("two".into())).await {
            Ok(Ok(text)) => {
                assert_eq!(text, "two");
                break;
            }
            Ok(Err(e @ (RpcError::Closed(_) | RpcError::Connect { .. }))) => {
                failures.push(e.to_string())
            }
            Ok(Err(other)) => panic!("unexpected error after the restart: {other}"),
            Err(_) => panic!("a call after the restart hung; failures: {failures:?}"),
        }
    }
    // And the new connection goes on working.
    for i in 0..10 {
        let text = format!("call {i}");
        assert_eq!(within("echo", echo.echo(text.clone())).await.unwrap(), text);
    }
    drop(restarted);
}

// ------------------------------------------------------------ the flood ----

/// What the server must answer to one malformed frame.
#[derive(Debug, Clone)]
enum Expect {
    /// An error response with this code (any of them if `None`) for this raw id.
    Error { code: Option<i64>, id: String },
    /// A successful response with this raw result for this raw id.
    Result { result: String, id: String },
    /// A batch response: one error of `code` per member, all with id `null`.
    BatchOfErrors { code: i64, members: usize },
    /// No response (a notification, even a failing one).
    Nothing,
    /// One error of `code` with id `null`, then the server closes.
    ErrorThenClose { code: i64 },
}

/// A response, with the id and result kept as raw text (ids may be numbers
/// no `f64` can hold).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Response<'a> {
    jsonrpc: &'a str,
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

fn parse_response(text: &str) -> Response<'_> {
    let response: Response<'_> = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("not a JSON-RPC response ({e}): {}", preview(text)));
    assert_eq!(response.jsonrpc, "2.0", "{}", preview(text));
    assert!(
        response.result.is_some() != response.error.is_some(),
        "exactly one of result and error: {}",
        preview(text)
    );
    response
}

fn preview(text: &str) -> String {
    text.chars().take(300).collect()
}

/// The `i`-th malformed frame of connection `conn`, and what it must get.
fn malformed(conn: usize, i: usize, rng: &mut fastrand::Rng) -> (Vec<u8>, Expect) {
    let id = (conn * 1_000_000 + i).to_string();
    let error = |code: i64, id: &str| Expect::Error {
        code: Some(code),
        id: id.to_owned(),
    };
    match i % 20 {
        0 => (
            br#"{"jsonrpc":"2.0","method":"echo","params":["x"],"id":"#.to_vec(),
            error(code::PARSE_ERROR, "null"),
        ),
        1 => (
            b"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[\"\xff\xfe\"],\"id\":1}"
                .to_vec(),
            error(code::PARSE_ERROR, "null"),
        ),
        2 => (
            format!(r#"{{"jsonrpc":"2.0","method":42,"id":{id}}}"#).into_bytes(),
            error(code::INVALID_REQUEST, &id),
        ),
        3 => (
            format!(r#"{{"jsonrpc":"1.0","method":"echo","params":["x"],"id":{id}}}"#).into_bytes(),
            error(code::INVALID_REQUEST, &id),
        ),
        4 => (
            format!(r#"{{"jsonrpc":"2.0","method":"echo","params":"x","id":{id}}}"#).into_bytes(),
            error(code::INVALID_REQUEST, &id),
        ),
        5 => (
            format!(r#"{{"jsonrpc":"2.0","method":"add","params":["a",{{}}],"id":{id}}}"#)
                .into_bytes(),
            error(code::INVALID_PARAMS, &id),
        ),
        6 => (
            br#"{"jsonrpc":"2.0","method":"echo","params":["x"],"id":{"a":1}}"#.to_vec(),
            error(code::INVALID_REQUEST, "null"),
        ),
        7 | 8 => {
            // Random bytes behind a valid length prefix.
            let len = rng.usize(0..512);
            let bytes: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
            (
                bytes,
                Expect::Error {
                    code: None,
                    id: "null".to_owned(),
                },
            )
        }
        9 => (b"[]".to_vec(), error(code::INVALID_REQUEST, "null")),
        10 => (
            br#"[1,"x",null,[]]"#.to_vec(),
            Expect::BatchOfErrors {
                code: code::INVALID_REQUEST,
                members: 4,
            },
        ),
        11 => {
            // A number id far beyond any integer or float type.
            let huge = "9".repeat(20_000);
            (
                format!(r#"{{"jsonrpc":"2.0","method":"rpc.ping","id":{huge}}}"#).into_bytes(),
                Expect::Result {
                    result: r#""pong""#.to_owned(),
                    id: huge,
                },
            )
        }
        12 => {
            let huge = format!(r#""{}""#, "i".repeat(64 * 1024));
            (
                format!(r#"{{"jsonrpc":"2.0","method":"rpc.ping","id":{huge}}}"#).into_bytes(),
                Expect::Result {
                    result: r#""pong""#.to_owned(),
                    id: huge,
                },
            )
        }
        13 => (
            format!(r#"{{"jsonrpc":"2.0","method":"no.such.method","id":{id}}}"#).into_bytes(),
            error(code::METHOD_NOT_FOUND, &id),
        ),
        14 if conn % 2 == 0 => {
            // Params nested far deeper than the typed decoder's recursion
            // limit: the frame parses (lazily), the argument does not.
            let depth = 5_000;
            let body = format!(
                r#"{{"jsonrpc":"2.0","method":"echo","params":[{}{}],"id":{id}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            (body.into_bytes(), error(code::INVALID_PARAMS, &id))
        }
        14 => {
            // A batch whose one member is nested 100,000 deep: no stack
            // overflow, one invalid member.
            let depth = 100_000;
            let body = format!("[{}{}]", "[".repeat(depth), "]".repeat(depth));
            (
                body.into_bytes(),
                Expect::BatchOfErrors {
                    code: code::INVALID_REQUEST,
                    members: 1,
                },
            )
        }
        15 => (
            // A failing notification: no answer, whatever is wrong with it.
            br#"{"jsonrpc":"2.0","method":"add","params":["not a number"]}"#.to_vec(),
            Expect::Nothing,
        ),
        16 => (
            b"\"just a string\"".to_vec(),
            error(code::INVALID_REQUEST, "null"),
        ),
        17 => (
            format!(
                r#"{{"jsonrpc":"2.0","method":"echo","params":["x"],"id":{id},"timeout_ms":-5}}"#
            )
            .into_bytes(),
            error(code::INVALID_REQUEST, &id),
        ),
        18 => (
            format!(
                r#"{{"jsonrpc":"2.0","method":"echo","method":"add","params":["x"],"id":{id}}}"#
            )
            .into_bytes(),
            error(code::INVALID_REQUEST, &id),
        ),
        _ => (Vec::new(), error(code::PARSE_ERROR, "null")),
    }
}

/// Checks one received frame against what was expected.
#[track_caller]
fn check(frame: &[u8], expect: &Expect) {
    let text = std::str::from_utf8(frame).expect("the server sends UTF-8");
    match expect {
        Expect::Error { code, id } => {
            let response = parse_response(text);
            assert_eq!(response.id.get(), id, "{}", preview(text));
            let error = response
                .error
                .unwrap_or_else(|| panic!("expected an error: {}", preview(text)));
            match code {
                Some(code) => assert_eq!(error.code, *code, "{}", preview(text)),
                None => assert!(
                    [code::PARSE_ERROR, code::INVALID_REQUEST].contains(&error.code),
                    "{}",
                    preview(text)
                ),
            }
        }
        Expect::Result { result, id } => {
            let response = parse_response(text);
            assert_eq!(response.id.get(), id, "the id comes back verbatim");
            assert_eq!(
                response.result.map(RawValue::get),
                Some(result.as_str()),
                "{}",
                preview(text)
            );
        }
        Expect::BatchOfErrors {
            code: expected,
            members,
        } => {
            let batch: Vec<&RawValue> = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("expected a batch response ({e}): {text}"));
            assert_eq!(batch.len(), *members, "{text}");
            for member in batch {
                let response = parse_response(member.get());
                assert_eq!(response.id.get(), "null", "{text}");
                assert_eq!(response.error.map(|e| e.code), Some(*expected), "{text}");
            }
        }
        Expect::ErrorThenClose { code: expected } => {
            let response = parse_response(text);
            assert_eq!(response.id.get(), "null", "{text}");
            assert_eq!(response.error.map(|e| e.code), Some(*expected), "{text}");
        }
        Expect::Nothing => panic!("expected no response, got {}", preview(text)),
    }
}

/// Reads one frame body, or `None` on a clean close.
async fn next_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) => panic!("reading a frame header: {e}"),
    }
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).await.expect("a frame body");
    Some(body)
}

/// Sends `frames` malformed frames on one connection, one at a time, and
/// checks every answer; ends with a valid ping (or a fatal frame).
async fn flood_one_connection(addr: SocketAddr, conn: usize, frames: usize, fatal_last: bool) {
    let mut rng = fastrand::Rng::with_seed(conn as u64);
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    for i in 0..frames {
        let (body, expect) = if fatal_last && i + 1 == frames {
            // Announces 2 GiB: over the limit, so the server answers and hangs up.
            (
                Vec::new(),
                Expect::ErrorThenClose {
                    code: code::FRAME_TOO_LARGE,
                },
            )
        } else {
            malformed(conn, i, &mut rng)
        };
        let bytes = match expect {
            Expect::ErrorThenClose { .. } => 0x7fff_ffffu32.to_be_bytes().to_vec(),
            _ => rpc_core::frame::encode(&body),
        };
        stream.write_all(&bytes).await.expect("writing a frame");
        if matches!(expect, Expect::Nothing) {
            // The next answer read proves nothing came for this one.
            continue;
        }
        let frame = next_frame(&mut stream)
            .await
            .unwrap_or_else(|| panic!("connection {conn} closed after frame {i} ({expect:?})"));
        check(&frame, &expect);
        if let Expect::ErrorThenClose { .. } = expect {
            assert!(
                next_frame(&mut stream).await.is_none(),
                "closed after the error"
            );
            return;
        }
    }
    let ping = br#"{"jsonrpc":"2.0","method":"rpc.ping","id":"end"}"#;
    stream
        .write_all(&rpc_core::frame::encode(ping))
        .await
        .expect("writing the final ping");
    let frame = next_frame(&mut stream).await.expect("the final pong");
    check(
        &frame,
        &Expect::Result {
            result: r#""pong""#.to_owned(),
            id: r#""end""#.to_owned(),
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_frames_get_their_errors_and_leave_the_server_up_and_small() {
    const CONNECTIONS: usize = 50;
    const FRAMES: usize = 200;
    let mut server = ServerProcess::start("127.0.0.1:0").await;
    let addr = server.addr;
    let echo = within("a client to connect", EchoClient::connect(addr))
        .await
        .expect("connect");
    assert_eq!(
        within("warm-up", echo.echo("warm".into())).await.unwrap(),
        "warm"
    );
    let rss_before = server.rss();

    let started = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for conn in 0..CONNECTIONS {
        // Every tenth connection ends with a frame over the size limit.
        flood.spawn(flood_one_connection(addr, conn, FRAMES, conn % 10 == 9));
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(done) = flood.join_next().await {
            done.expect("a flooding connection failed its checks");
        }
    })
    .await
    .expect("the flood of 10,000 frames must finish within 60 s");
    let took = started.elapsed();

    assert!(server.is_running(), "the server survived the flood");
    assert_eq!(
        within("a call after the flood", echo.echo("still here".into()))
            .await
            .unwrap(),
        "still here"
    );
    let rss_after = server.rss();
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!(
        "flood: {} frames in {took:?}; RSS {} KiB -> {} KiB",
        CONNECTIONS * FRAMES,
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        growth < 64 * 1024 * 1024,
        "RSS grew by {} MiB ({rss_before} -> {rss_after} bytes)",
        growth / (1024 * 1024)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_announced_but_never_sent_cannot_exhaust_the_servers_memory() {
    let mut server = ServerProcess::start("127.0.0.1:0").await;
    // Give the server 512 MiB of address space beyond what it uses idle, as
    // a container or `ulimit -v` would (prlimit works on our own child).
    let limit = server.status_bytes("VmSize") + 512 * 1024 * 1024;
    let status = Command::new("prlimit")
        .arg(format!("--pid={}", server.pid()))
        .arg(format!("--as={limit}"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit failed: {status}");

    // Each peer announces a frame of exactly the default maximum (16 MiB,
    // so it is not refused as too large) and sends one byte of it.
    let mut peers = Vec::new();
    for n in 0..100 {
        let peer = within("a connection", TcpStream::connect(server.addr)).await;
        let Ok(mut peer) = peer else {
            panic!(
                "the server died after {n} peers: {:?}",
                server.child.try_wait()
            );
        };
        let mut bytes = (16u32 * 1024 * 1024).to_be_bytes().to_vec();
        bytes.push(b'{');
        let _ = peer.write_all(&bytes).await;
        peers.push(peer);
    }
    // The peers' headers are read as soon as they arrive; keep checking,
    // for a bounded while, that the server lives and answers.
    for i in 0..20 {
        let check = within("a connection", TcpStream::connect(server.addr)).await;
        let Ok(mut check) = check else {
            panic!(
                "the server died ({:?}): 100 peers that sent 5 bytes each exhausted its memory",
                server.child.try_wait()
            );
        };
        assert_pings(&mut check, i).await;
        // Pacing between checks, not synchronisation.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.is_running());
    drop(peers);
}

// ------------------------------------------- peers that misbehave in time ----

/// How a connection ended, seen from the peer.
#[derive(Debug, PartialEq)]
enum Ending {
    /// A clean close (EOF), after these bytes.
    Eof(Vec<u8>),
    /// A reset, after these bytes.
    Reset(Vec<u8>),
}

/// Reads until the server closes the connection, within `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Ending {
    let mut received = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => return Ending::Eof(received),
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(_) => return Ending::Reset(received),
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .expect("the server closes the connection in time")
}

/// A raw connection that proves the server answers it.
async fn answering_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr).await;
    assert_pings(&mut stream, 0).await;
    stream
}

async fn assert_pings(stream: &mut TcpStream, id: i64) {
    let pong = exchange(
        stream,
        &json!({"jsonrpc": "2.0", "method": "rpc.ping", "id": id}),
    )
    .await;
    assert_eq!(pong["result"], "pong", "{pong}");
    assert_eq!(pong["id"], id, "{pong}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_not_read_from_and_others_are_served() {
    const REQUESTS: usize = 4096;
    let fx = TestServer::start(all_services().write_buffer(64 * 1024).max_connections(2)).await;
    let addr = fx.addr();
    let echo = EchoClient::new(fx.client().await);

    // 4096 echo requests of 16 KiB each (64 MiB), never reading a response.
    let mut body = br#"{"jsonrpc":"2.0","method":"echo","params":[""#.to_vec();
    body.resize(body.len() + 16 * 1024, b'x');
    body.extend_from_slice(br#""],"id":1}"#);
    let frame = rpc_core::frame::encode(&body);
    let written = Arc::new(AtomicUsize::new(0));
    let mut raw = connect(addr).await;
    let mut writer = tokio::spawn({
        let written = written.clone();
        async move {
            for _ in 0..REQUESTS {
                raw.write_all(&frame).await?;
                written.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, std::io::Error>(raw)
        }
    });

    assert!(
        tokio::time::timeout(Duration::from_secs(2), &mut writer)
            .await
            .is_err(),
        "writing 64 MiB to a server whose answers are never read must block"
    );
    // What got through is bounded by socket buffers, the 64 KiB response
    // buffer and the calls in flight, far below the 64 MiB offered (a server
    // that kept reading would hold every answer in memory).
    let blocked_at = written.load(Ordering::SeqCst);
    assert!(
        blocked_at * 16 < 48 * 1024,
        "{blocked_at} requests of 16 KiB were accepted from a peer that reads nothing"
    );

    // Meanwhile another client is served promptly.
    for i in 0..20 {
        let text = format!("prompt {i}");
        let answer = tokio::time::timeout(Duration::from_secs(1), echo.echo(text.clone()))
            .await
            .expect("a normal client is answered within 1 s")
            .unwrap();
        assert_eq!(answer, text);
    }
    eprintln!(
        "the non-reading peer got {blocked_at} of {REQUESTS} requests of 16 KiB written before blocking"
    );

    // Dropping the peer frees its connection slot: with max_connections(2),
    // a new connection is served once the server has cleaned up.
    writer.abort();
    let _ = writer.await;
    admitted_within_5s(addr, "the slot of the dropped peer to be freed").await;
    assert_eq!(
        within("echo", echo.echo("after".into())).await.unwrap(),
        "after"
    );
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_disconnected_after_the_idle_timeout() {
    const REQUESTS: usize = 4096;
    let limit = Duration::from_millis(500);
    let fx = TestServer::start(
        all_services()
            .write_buffer(64 * 1024)
            .idle_timeout(limit)
            // Also bounds how long the server then tries to flush answers.
            .frame_timeout(limit),
    )
    .await;
    let mut body = br#"{"jsonrpc":"2.0","method":"echo","params":[""#.to_vec();
    body.resize(body.len() + 16 * 1024, b'x');
    body.extend_from_slice(br#""],"id":1}"#);
    let frame = rpc_core::frame::encode(&body);
    let mut raw = fx.raw().await;
    let writer = tokio::spawn(async move {
        for sent in 0..REQUESTS {
            if let Err(e) = raw.write_all(&frame).await {
                return (sent, Some(e));
            }
        }
        (REQUESTS, None)
    });
    let (sent, error) = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the server drops a peer that stopped reading within 10 s")
        .unwrap();
    assert!(
        error.is_some() && sent < REQUESTS,
        "the peer's writes fail once the server hangs up ({sent} requests sent)"
    );
    answering_connection(fx.addr()).await;
    fx.shutdown().await;
}

/// Whether a new connection is served (a ping answered) rather than refused
/// with TOO_MANY_CONNECTIONS. A refused connection may be closed before the
/// ping is written or read, so write and read errors count as refused.
async fn is_admitted(addr: SocketAddr) -> bool {
    let mut stream = connect(addr).await;
    let ping = rpc_core::frame::encode(br#"{"jsonrpc":"2.0","method":"rpc.ping","id":1}"#);
    let _ = stream.write_all(&ping).await;
    let mut header = [0u8; 4];
    if stream.read_exact(&mut header).await.is_err() {
        return false;
    }
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    if stream.read_exact(&mut body).await.is_err() {
        return false;
    }
    let response: Value = serde_json::from_slice(&body).expect("a JSON response");
    if response["result"] == "pong" {
        return true;
    }
    assert_eq!(
        response["error"]["code"],
        code::TOO_MANY_CONNECTIONS,
        "{response}"
    );
    false
}

/// Polls (bounded in time and count) until a new connection is served.
async fn admitted_within_5s(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..200 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, is_admitted(addr)).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(_) => break,
        }
        // Pacing between polls, not synchronisation.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out after 5 s waiting for {what}");
}

/// Header announcing 1000 bytes, then only 10 of them.
fn half_a_frame() -> Vec<u8> {
    let mut bytes = 1000u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(br#"{"jsonrpc""#);
    bytes
}

#[tokio::test]
async fn a_frame_cut_short_by_a_close_ends_that_connection_only() {
    let fx = TestServer::demo().await;
    let mut bystander = answering_connection(fx.addr()).await;

    let mut cut = fx.raw().await;
    cut.write_all(&half_a_frame()).await.unwrap();
    cut.shutdown().await.unwrap();
    assert_eq!(
        until_closed(&mut cut, Duration::from_secs(5)).await,
        Ending::Eof(Vec::new()),
        "the server closes without answering a frame it never got"
    );

    assert_pings(&mut bystander, 1).await;
    let mut fresh = answering_connection(fx.addr()).await;
    assert_pings(&mut fresh, 2).await;
    fx.shutdown().await;
}

#[tokio::test]
async fn a_stalled_frame_is_cut_off_at_the_frame_timeout_and_others_are_served() {
    let fx = TestServer::start(all_services().frame_timeout(Duration::from_millis(300))).await;
    let mut idle = answering_connection(fx.addr()).await;

    let mut stalled = fx.raw().await;
    let started = Instant::now();
    stalled.write_all(&half_a_frame()).await.unwrap();
    // Served while the stalled frame is pending.
    assert_pings(&mut idle, 1).await;
    assert_eq!(
        until_closed(&mut stalled, Duration::from_secs(5)).await,
        Ending::Eof(Vec::new())
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed after {:?}: too early for a 300 ms frame timeout",
        started.elapsed()
    );

    // An idle connection (no partial frame) is not subject to the frame timeout.
    assert_pings(&mut idle, 2).await;
    fx.shutdown().await;
}

#[tokio::test]
async fn a_frame_trickled_byte_by_byte_is_cut_off_at_the_frame_timeout() {
    let fx = TestServer::start(all_services().frame_timeout(Duration::from_millis(300))).await;
    let mut trickle = fx.raw().await;
    let started = Instant::now();
    trickle.write_all(&1000u32.to_be_bytes()).await.unwrap();
    let (mut read, mut write) = trickle.split();
    // One byte every 20 ms keeps bytes arriving; at that pace the frame
    // would take 20 s. The frame timeout counts from its first byte.
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut sent = 0usize;
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                n = read.read(&mut buf) => return (n.map_err(|e| e.kind()), sent),
                _ = pace.tick() => {
                    if write.write_all(b" ").await.is_ok() {
                        sent += 1;
                    }
                }
            }
        }
    })
    .await
    .expect("the trickling peer is disconnected within 5 s");
    let elapsed = started.elapsed();
    assert!(
        matches!(closed.0, Ok(0) | Err(_)),
        "no answer, only a close: {closed:?}"
    );
    assert!(closed.1 > 2, "bytes kept arriving ({} sent)", closed.1);
    assert!(
        elapsed >= Duration::from_millis(250),
        "closed after {elapsed:?}"
    );
    fx.shutdown().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_at_the_idle_timeout() {
    let fx = TestServer::start(all_services().idle_timeout(Duration::from_millis(300))).await;
    let mut idle = answering_connection(fx.addr()).await;
    let last_activity = Instant::now();
    assert_eq!(
        until_closed(&mut idle, Duration::from_secs(5)).await,
        Ending::Eof(Vec::new())
    );
    assert!(
        last_activity.elapsed() >= Duration::from_millis(250),
        "closed after {:?}: too early for a 300 ms idle timeout",
        last_activity.elapsed()
    );
    // The server itself goes on.
    answering_connection(fx.addr()).await;
    fx.shutdown().await;
}

#[tokio::test]
async fn a_connection_with_a_call_in_flight_is_not_idle() {
    let fx = TestServer::start(all_services().idle_timeout(Duration::from_millis(300))).await;
    let echo = EchoClient::new(fx.client().await);
    assert_eq!(
        within("a call three times the idle timeout", echo.sleep(900))
            .await
            .unwrap(),
        900
    );
    fx.shutdown().await;
}

#[tokio::test]
async fn beyond_max_connections_a_peer_gets_one_error_then_a_close() {
    let fx = TestServer::start(all_services().max_connections(2)).await;
    let addr = fx.addr();
    let first = answering_connection(addr).await;
    let mut second = answering_connection(addr).await;

    let mut third = connect(addr).await;
    let refused = read_json(&mut third).await;
    assert_eq!(
        refused["error"]["code"],
        code::TOO_MANY_CONNECTIONS,
        "{refused}"
    );
    assert_eq!(refused["id"], Value::Null, "{refused}");
    assert!(refused.get("id").is_some(), "{refused}");
    expect_closed(&mut third).await;

    // The two admitted connections are unaffected.
    assert_pings(&mut second, 1).await;

    // Once one of them closes, a new connection is served.
    drop(first);
    admitted_within_5s(addr, "a connection to be admitted after one closed").await;
    fx.shutdown().await;
}
