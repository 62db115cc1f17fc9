//! Call guarantees: deadlines, their propagation, cancellation, batches,
//! graceful shutdown, reconnection and the single retry of idempotent calls.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rpc_core::{CallOptions, Client, Never, RpcError, ServerBuilder, code};
use rpc_demo::services::{CalcError, CalculatorClient, EchoClient, all_services};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use common::{TestServer, expect_closed, read_frame, read_json, send_frame, send_json, within};

/// A service whose handlers report when they start and when they are dropped.
#[rpc_core::service]
trait Probe {
    /// Starts, then never finishes on its own.
    async fn hang(&self, tag: u64);
    /// The remaining budget the handler sees, in milliseconds.
    async fn budget(&self) -> Option<u64>;
    /// Calls `budget` on the server at `addr` and returns what it saw.
    async fn relay(&self, addr: String) -> Option<u64>;
}

struct ProbeImpl {
    started: mpsc::UnboundedSender<u64>,
    dropped: mpsc::UnboundedSender<u64>,
}

/// Reports `tag` on drop: proof that the server stopped a handler.
struct DropSignal(u64, mpsc::UnboundedSender<u64>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

impl Probe for ProbeImpl {
    async fn hang(&self, tag: u64) {
        let _signal = DropSignal(tag, self.dropped.clone());
        let _ = self.started.send(tag);
        std::future::pending::<()>().await;
    }

    async fn budget(&self) -> Option<u64> {
        rpc_core::context::remaining().map(|d| d.as_millis() as u64)
    }

    async fn relay(&self, addr: String) -> Option<u64> {
        let client = ProbeClient::connect(addr.as_str()).await.ok()?;
        client.budget().await.ok().flatten()
    }
}

/// A running probe server and the reports of its handlers.
struct Fixture {
    server: TestServer,
    started: mpsc::UnboundedReceiver<u64>,
    dropped: mpsc::UnboundedReceiver<u64>,
}

async fn probe_server(builder: ServerBuilder) -> Fixture {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let server = TestServer::start(builder.service(ProbeServer::new(ProbeImpl {
        started: started_tx,
        dropped: dropped_tx,
    })))
    .await;
    Fixture {
        server,
        started,
        dropped,
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<u64>, what: &str) -> u64 {
    within(what, rx.recv())
        .await
        .unwrap_or_else(|| panic!("channel closed waiting for {what}"))
}

#[tokio::test]
async fn an_expired_deadline_stops_the_handler_and_answers_a_deadline_error() {
    let mut fx = probe_server(ServerBuilder::default()).await;
    let mut raw = fx.server.raw().await;
    send_frame(
        &mut raw,
        br#"{"jsonrpc":"2.0","method":"hang","params":[7],"id":1,"timeout_ms":150}"#,
    )
    .await;
    assert_eq!(next(&mut fx.started, "the handler to start").await, 7);
    let response = read_json(&mut raw).await;
    assert_eq!(response["id"], 1);
    assert_eq!(response["error"]["code"], code::DEADLINE_EXCEEDED);
    assert_eq!(
        next(&mut fx.dropped, "the handler to be stopped").await,
        7,
        "the server must stop working on an expired call"
    );
    // The connection goes on.
    send_frame(&mut raw, br#"{"jsonrpc":"2.0","method":"rpc.ping","id":2}"#).await;
    assert_eq!(read_json(&mut raw).await["result"], "pong");
}

#[tokio::test]
async fn a_client_timeout_becomes_the_servers_deadline() {
    let mut fx = probe_server(ServerBuilder::default()).await;
    let client = ProbeClient::new(fx.server.client().await);
    let short = client.with_timeout(Duration::from_millis(200));
    let result = within("the call to time out", short.hang(1)).await;
    assert!(matches!(result, Err(RpcError::Timeout(d)) if d == Duration::from_millis(200)));
    assert_eq!(next(&mut fx.dropped, "the handler to be stopped").await, 1);
}

#[tokio::test]
async fn calls_past_their_deadline_time_out_and_are_cancelled_while_the_others_wait_on() {
    // A peer that reads requests and answers only the one it is told to,
    // so the client's session alone decides when a call has waited enough.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = Client::connect(addr).await.unwrap();
    let (mut peer, _) = listener.accept().await.unwrap();

    let patient = tokio::spawn({
        let client = client.with_timeout(Duration::from_secs(30));
        async move { client.call::<_, i64>("wait", &[1]).await }
    });
    let first = read_json(&mut peer).await;
    assert_eq!(first["method"], "wait");
    // Sooner deadlines than the one the session's timer is armed for.
    let hasty = client.with_timeout(Duration::from_millis(100));
    let hastier = client.with_timeout(Duration::from_millis(50));
    let (a, b) = within("the short calls to time out", async {
        tokio::join!(
            hasty.call::<_, i64>("hang", &[2]),
            hastier.call::<_, i64>("hang", &[3])
        )
    })
    .await;
    assert!(
        matches!(a, Err(RpcError::Timeout(d)) if d == Duration::from_millis(100)),
        "{a:?}"
    );
    assert!(
        matches!(b, Err(RpcError::Timeout(d)) if d == Duration::from_millis(50)),
        "{b:?}"
    );

    // The peer saw both calls, then a cancel for each, by id.
    let mut hangs = Vec::new();
    let mut cancelled = Vec::new();
    while cancelled.len() < 2 {
        let message = read_json(&mut peer).await;
        match message["method"].as_str() {
            Some("hang") => hangs.push(message["id"].clone()),
            Some("rpc.cancel") => cancelled.push(message["params"]["id"].clone()),
            _ => panic!("unexpected message: {message}"),
        }
    }
    hangs.sort_by_key(|id| id.as_i64());
    cancelled.sort_by_key(|id| id.as_i64());
    assert_eq!(hangs, cancelled, "each timed-out call is cancelled");

    // The long call still waits, and its answer still reaches it.
    assert!(!patient.is_finished());
    let answer = format!(r#"{{"jsonrpc":"2.0","result":42,"id":{}}}"#, first["id"]);
    send_frame(&mut peer, answer.as_bytes()).await;
    let answered = within("the patient call's answer", patient).await.unwrap();
    assert_eq!(answered.unwrap(), 42);
}

#[tokio::test]
async fn a_handler_sees_its_remaining_budget_and_passes_it_on() {
    let fx = probe_server(ServerBuilder::default()).await;
    let addr = fx.server.addr();
    let client = ProbeClient::new(fx.server.client().await);

    let seen = client
        .with_timeout(Duration::from_secs(2))
        .budget()
        .await
        .unwrap()
        .expect("the server knows the caller's budget");
    assert!(
        seen <= 2_000 && seen > 1_000,
        "budget seen by the handler: {seen} ms"
    );

    // The handler of `relay` calls `budget` on another connection: that call
    // inherits what is left of the outer budget, not the client default (30 s).
    let inner = client
        .with_timeout(Duration::from_millis(1_500))
        .relay(addr.to_string())
        .await
        .unwrap()
        .expect("the inner call carried a budget");
    assert!(
        inner <= 1_500,
        "inner budget {inner} ms exceeds the outer one"
    );
}

#[tokio::test]
async fn a_plain_json_rpc_request_without_a_budget_still_works() {
    let fx = probe_server(ServerBuilder::default()).await;
    let mut raw = fx.server.raw().await;
    send_frame(&mut raw, br#"{"jsonrpc":"2.0","method":"budget","id":"a"}"#).await;
    let response = read_json(&mut raw).await;
    assert_eq!(response["id"], "a");
    assert!(
        response["result"].is_null(),
        "no budget was sent: {response}"
    );
}

#[tokio::test]
async fn dropping_a_call_cancels_it_on_the_server() {
    let mut fx = probe_server(ServerBuilder::default()).await;
    let client = ProbeClient::new(fx.server.client().await);
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.hang(42).await }
    });
    assert_eq!(next(&mut fx.started, "the handler to start").await, 42);
    call.abort();
    assert_eq!(
        next(&mut fx.dropped, "the server to abort the handler").await,
        42,
        "the dropped call must be cancelled on the server"
    );
    // Other calls on the same connection are unaffected.
    assert!(client.budget().await.unwrap().is_some());
}

#[tokio::test]
async fn rpc_cancel_by_id_stops_a_running_call() {
    let mut fx = probe_server(ServerBuilder::default()).await;
    let mut raw = fx.server.raw().await;
    send_frame(
        &mut raw,
        br#"{"jsonrpc":"2.0","method":"hang","params":[3],"id":"slow"}"#,
    )
    .await;
    assert_eq!(next(&mut fx.started, "the handler to start").await, 3);
    send_frame(
        &mut raw,
        br#"{"jsonrpc":"2.0","method":"rpc.cancel","params":{"id":"slow"},"id":9}"#,
    )
    .await;
    let response = read_json(&mut raw).await;
    assert_eq!(response["id"], 9);
    assert_eq!(response["result"], true, "{response}");
    assert_eq!(next(&mut fx.dropped, "the cancelled handler").await, 3);
    // Cancelling an unknown id is harmless.
    send_frame(
        &mut raw,
        br#"{"jsonrpc":"2.0","method":"rpc.cancel","params":["nope"],"id":10}"#,
    )
    .await;
    assert_eq!(read_json(&mut raw).await["result"], false);
}

#[tokio::test]
async fn a_batch_gives_each_call_its_own_typed_result() {
    let fx = TestServer::demo().await;
    let client = fx.client().await;
    let mut batch = client.batch();
    let sum = batch.call::<_, f64, Never>("add", &(2.0, 3.0)).unwrap();
    let quotient = batch.call::<_, f64, CalcError>("div", &(1.0, 0.0)).unwrap();
    batch.notify("echo", &("ignored",)).unwrap();
    let greeting = batch.call::<_, String, Never>("hello", &("Ana",)).unwrap();
    let missing = batch.call::<_, f64, Never>("nope", &[(); 0]).unwrap();
    assert_eq!(batch.len(), 5);
    within("the batch", batch.send()).await.unwrap();
    assert_eq!(sum.await.unwrap(), 5.0);
    assert!(matches!(
        quotient.await,
        Err(RpcError::Application(CalcError::DivisionByZero))
    ));
    assert_eq!(greeting.await.unwrap(), "Olá, Ana!");
    assert!(matches!(missing.await, Err(RpcError::Server(e)) if e.code == code::METHOD_NOT_FOUND));
}

#[tokio::test]
async fn an_empty_batch_sends_nothing_and_succeeds() {
    let fx = TestServer::demo().await;
    let client = fx.client().await;
    let batch = client.batch();
    assert!(batch.is_empty());
    batch.send().await.unwrap();
    assert_eq!(
        CalculatorClient::new(client).add(1.0, 1.0).await.unwrap(),
        2.0
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_calls_in_flight_and_refuses_new_ones() {
    let fx = TestServer::start(all_services().grace_period(Duration::from_secs(5))).await;
    let addr = fx.addr();
    let echo = EchoClient::new(fx.client().await);
    let mut raw = fx.raw().await;
    send_frame(
        &mut raw,
        br#"{"jsonrpc":"2.0","method":"sleep","params":[400],"id":1}"#,
    )
    .await;
    let in_flight = tokio::spawn({
        let echo = echo.clone();
        async move { echo.sleep(400).await }
    });
    // Both calls are on the server once a later call on each connection has
    // been answered (frames of one connection are read in order).
    send_frame(&mut raw, br#"{"jsonrpc":"2.0","method":"rpc.ping","id":2}"#).await;
    assert_eq!(read_json(&mut raw).await["result"], "pong");
    assert_eq!(echo.echo("ready".into()).await.unwrap(), "ready");

    let stopping = tokio::spawn(fx.shutdown());
    let notice = read_json(&mut raw).await;
    assert_eq!(notice["method"], "rpc.shutdown", "{notice}");
    assert_eq!(notice["params"]["grace_ms"], 5000);
    send_frame(
        &mut raw,
        br#"{"jsonrpc":"2.0","method":"echo","params":["x"],"id":3}"#,
    )
    .await;
    let refused = read_json(&mut raw).await;
    assert_eq!(refused["id"], 3);
    assert_eq!(refused["error"]["code"], code::SHUTTING_DOWN, "{refused}");
    let finished = read_json(&mut raw).await;
    assert_eq!(
        (finished["id"].clone(), finished["result"].clone()),
        (1.into(), 400.into())
    );
    // Closed after the drain, with nothing after the last response.
    expect_closed(&mut raw).await;

    let finished = within("the call in flight", in_flight).await.unwrap();
    assert_eq!(
        finished.unwrap(),
        400,
        "the client's call in flight completes"
    );
    within("the shutdown", stopping).await.unwrap();
    // The client heard the notice: a new call does not wait on the old
    // connection but tries a new one, and the server is gone.
    let after = within("a call after shutdown to fail", echo.echo("late".into())).await;
    assert!(
        matches!(after, Err(RpcError::Connect { .. } | RpcError::Closed(_))),
        "{after:?}"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn shutdown_abandons_calls_that_outlive_the_grace_period() {
    let mut fx =
        probe_server(ServerBuilder::default().grace_period(Duration::from_millis(200))).await;
    let client = ProbeClient::new(fx.server.client().await);
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.hang(5).await }
    });
    assert_eq!(next(&mut fx.started, "the handler to start").await, 5);
    // The grace period bounds the shutdown, far below the fixture's limit.
    fx.server.shutdown().await;
    assert_eq!(next(&mut fx.dropped, "the abandoned handler").await, 5);
    let outcome = within("the abandoned call", call).await.unwrap();
    assert!(matches!(outcome, Err(RpcError::Closed(_))), "{outcome:?}");
}

#[tokio::test]
async fn a_client_reconnects_after_the_server_restarts() {
    let first = TestServer::demo().await;
    let addr = first.addr();
    let calc = CalculatorClient::new(first.client().await);
    assert_eq!(calc.add(1.0, 2.0).await.unwrap(), 3.0);
    first.shutdown().await;

    // While the server is down, calls fail quickly with a clear error.
    let down = within("a call while the server is down", calc.add(1.0, 2.0)).await;
    assert!(
        matches!(down, Err(RpcError::Closed(_) | RpcError::Connect { .. })),
        "{down:?}"
    );

    let second = all_services()
        .bind(addr)
        .await
        .expect("rebind the same port");
    let result = within("the client to reconnect", async {
        loop {
            match calc.add(2.0, 2.0).await {
                Ok(v) => break v,
                Err(RpcError::Connect { .. } | RpcError::Closed(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("unexpected error while reconnecting: {e}"),
            }
        }
    })
    .await;
    assert_eq!(result, 4.0);
    second.shutdown().await;
}

/// A server that answers nothing on its first connection (it reads one
/// request and hangs up) and answers `add` normally afterwards; it counts the
/// requests it received.
async fn flaky_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            let drop_it = std::mem::replace(&mut first, false);
            tokio::spawn(async move {
                while let Some(body) = read_frame(&mut stream).await {
                    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    if request["method"] == "rpc.cancel" {
                        continue;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    if drop_it {
                        return; // hang up without answering
                    }
                    let reply =
                        serde_json::json!({"jsonrpc":"2.0","result":4.0,"id":request["id"]});
                    send_json(&mut stream, &reply).await;
                }
            });
        }
    });
    (addr, requests)
}

#[tokio::test]
async fn an_idempotent_call_is_retried_once_on_a_fresh_connection() {
    let (addr, requests) = flaky_server().await;
    let client = Client::connect(addr).await.unwrap();
    let value: f64 = within(
        "the retried call",
        client.call_with::<_, f64, Never>("add", &(2, 2), CallOptions::new().idempotent()),
    )
    .await
    .expect("the retry succeeds");
    assert_eq!(value, 4.0);
    assert_eq!(requests.load(Ordering::SeqCst), 2, "sent exactly twice");
}

#[tokio::test]
async fn a_call_not_marked_idempotent_is_never_retried() {
    let (addr, requests) = flaky_server().await;
    let client = Client::connect(addr).await.unwrap();
    let outcome = within("the call", client.call::<_, f64>("add", &(2, 2))).await;
    assert!(matches!(outcome, Err(RpcError::Closed(_))), "{outcome:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 1, "sent exactly once");
}

#[tokio::test]
async fn an_http_request_on_the_rpc_port_is_told_where_json_rpc_is() {
    // The port speaks HTTP too (`POST /rpc`): a browser or curl pointed at
    // another path is told where to go, in HTTP.
    let fx = TestServer::demo().await;
    let mut raw = fx.raw().await;
    raw.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    within(
        "the server answers and closes",
        raw.read_to_end(&mut answer),
    )
    .await
    .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    assert!(answer.contains("POST /rpc"), "{answer}");
    // The server goes on.
    let calc = CalculatorClient::new(fx.client().await);
    assert_eq!(calc.add(1.0, 1.0).await.unwrap(), 2.0);
}

#[tokio::test]
async fn a_plain_client_on_a_tls_port_is_told_so() {
    // A TLS server answers a plaintext request with an alert record; the
    // client must name the mismatch instead of reporting a huge frame.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((mut stream, _)) = listener.accept().await {
            let mut first = [0u8; 4];
            let _ = stream.read_exact(&mut first).await;
            // A TLS alert record: content type 21, version 3.3, length 2.
            let _ = stream
                .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32])
                .await;
        }
    });
    let client = Client::connect(addr).await.unwrap();
    let outcome = within("the ping", client.call::<_, String>("rpc.ping", &[(); 0])).await;
    match outcome {
        Err(RpcError::Closed(why)) => assert!(why.to_string().contains("TLS"), "{why}"),
        other => panic!("expected a closed connection naming TLS, got {other:?}"),
    }
}

/// A service exercising the method attributes.
#[rpc_core::service]
trait Tuned {
    /// Never finishes; its calls wait 150 ms unless the handle says otherwise.
    #[rpc(timeout = "150ms")]
    async fn slow(&self);
    /// Records `line`, then never finishes: a caller that waited would hang.
    #[rpc(oneway)]
    async fn log(&self, line: String);
    /// Sums, safe to run twice.
    #[rpc(idempotent)]
    async fn add(&self, a: i64, b: i64) -> f64;
}

struct TunedImpl(mpsc::UnboundedSender<String>);

impl Tuned for TunedImpl {
    async fn slow(&self) {
        std::future::pending::<()>().await;
    }

    async fn log(&self, line: String) {
        let _ = self.0.send(line);
        std::future::pending::<()>().await;
    }

    async fn add(&self, a: i64, b: i64) -> f64 {
        (a + b) as f64
    }
}

async fn tuned_server() -> (TestServer, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server =
        TestServer::start(rpc_core::Server::builder().service(TunedServer::new(TunedImpl(tx))))
            .await;
    (server, rx)
}

#[tokio::test]
async fn a_method_timeout_is_the_default_and_a_handle_timeout_overrides_it() {
    let (fx, _log) = tuned_server().await;
    let client = TunedClient::new(fx.client().await);
    let outcome = within("the method timeout", client.slow()).await;
    assert!(
        matches!(outcome, Err(RpcError::Timeout(d)) if d == Duration::from_millis(150)),
        "{outcome:?}"
    );
    let outcome = within(
        "the handle timeout",
        client.with_timeout(Duration::from_millis(300)).slow(),
    )
    .await;
    assert!(
        matches!(outcome, Err(RpcError::Timeout(d)) if d == Duration::from_millis(300)),
        "{outcome:?}"
    );
    // Other methods keep the client's default.
    assert_eq!(client.add(1, 2).await.unwrap(), 3.0);
}

#[tokio::test]
async fn a_oneway_method_returns_without_waiting_for_the_handler() {
    let (fx, mut log) = tuned_server().await;
    let client = TunedClient::new(fx.client().await);
    within(
        "a oneway call, which does not wait for its (never finishing) handler",
        client.log("first".into()),
    )
    .await
    .unwrap();
    let line = within("the handler to run", log.recv()).await.unwrap();
    assert_eq!(line, "first", "the server ran the handler");
}

#[tokio::test]
async fn a_oneway_method_goes_out_as_a_notification() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TunedClient::connect(addr).await.unwrap();
    let (mut stream, _) = listener.accept().await.unwrap();
    client.log("hi".into()).await.unwrap();
    let request = read_json(&mut stream).await;
    assert_eq!(request["method"], "log");
    assert_eq!(request["params"], serde_json::json!(["hi"]));
    assert!(
        request.get("id").is_none(),
        "a notification has no id: {request}"
    );
}

#[tokio::test]
async fn a_method_marked_idempotent_is_retried_by_the_generated_client() {
    let (addr, requests) = flaky_server().await;
    let client = TunedClient::connect(addr).await.unwrap();
    let sum = within("the retried call", client.add(2, 2)).await.unwrap();
    assert_eq!(sum, 4.0);
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_generated_batch_sends_one_frame_and_types_each_result() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A server that checks the batch arrives as one frame, then answers it
    // in reverse order.
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let batch = read_json(&mut stream).await;
        let members = batch
            .as_array()
            .expect("one frame holding an array")
            .clone();
        let mut replies: Vec<serde_json::Value> = members
            .iter()
            .filter(|m| m.get("id").is_some())
            .map(|m| {
                let sum = m["params"][0].as_i64().unwrap() + m["params"][1].as_i64().unwrap();
                serde_json::json!({"jsonrpc": "2.0", "result": sum as f64, "id": m["id"]})
            })
            .collect();
        replies.reverse();
        send_json(&mut stream, &serde_json::Value::Array(replies)).await;
        members.len()
    });
    let client = TunedClient::connect(addr).await.unwrap();
    let mut batch = client.batch();
    let first = batch.add(1, 2).unwrap();
    batch.log("in the batch".into()).unwrap();
    let second = batch.add(10, 20).unwrap();
    within("the batch", batch).await.unwrap();
    assert_eq!(first.await.unwrap(), 3.0);
    assert_eq!(second.await.unwrap(), 30.0);
    assert_eq!(
        server.await.unwrap(),
        3,
        "two calls and a notification in one frame"
    );
}

/// An error type without `Display`: the message falls back to the variant.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
enum Bare {
    Nope,
}

#[rpc_core::service]
trait Plain {
    async fn fail(&self) -> Result<u8, Bare>;
}

struct PlainImpl;

impl Plain for PlainImpl {
    async fn fail(&self) -> Result<u8, Bare> {
        Err(Bare::Nope)
    }
}

#[tokio::test]
async fn an_error_type_without_display_is_named_by_its_variant() {
    let fx =
        TestServer::start(rpc_core::Server::builder().service(PlainServer::new(PlainImpl))).await;
    let mut raw = fx.raw().await;
    send_frame(&mut raw, br#"{"jsonrpc":"2.0","method":"fail","id":1}"#).await;
    let response = read_json(&mut raw).await;
    assert_eq!(response["error"]["code"], code::APPLICATION_ERROR);
    assert_eq!(response["error"]["message"], "Nope");
    let client = PlainClient::new(fx.client().await);
    assert!(matches!(
        client.fail().await,
        Err(RpcError::Application(Bare::Nope))
    ));
}

mod napping {
    /// Sleeps, then answers: the race between an answer and `rpc.cancel`.
    #[rpc_core::service]
    pub trait Nap {
        async fn nap(&self, ms: u64) -> u64;
    }

    pub struct Napper;

    impl Nap for Napper {
        async fn nap(&self, ms: u64) -> u64 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            ms
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_answered_true_means_no_result_ever_and_false_means_one_result() {
    use napping::{NapServer, Napper};
    let fx = TestServer::start(rpc_core::Server::builder().service(NapServer::new(Napper))).await;
    let mut s = fx.raw().await;
    const ROUNDS: u64 = 300;
    for i in 0..ROUNDS {
        send_json(
            &mut s,
            &serde_json::json!({"jsonrpc":"2.0","method":"nap","params":[5],"id":i}),
        )
        .await;
        // The stimulus, not a synchronisation: cancel around the moment the
        // 5 ms nap ends, so some cancels race the answer.
        tokio::time::sleep(Duration::from_micros(fastrand::u64(3_000..7_000))).await;
        send_json(
            &mut s,
            &serde_json::json!({"jsonrpc":"2.0","method":"rpc.cancel","params":{"id":i},"id":format!("c{i}")}),
        )
        .await;
    }
    // Half-close: the server answers everything still running, then closes,
    // so every message it will ever send is read below.
    within("the half-close", s.shutdown()).await.unwrap();
    let mut results = std::collections::BTreeSet::new();
    let mut cancels = std::collections::BTreeMap::new();
    while let Some(frame) = within("the answers", read_frame(&mut s)).await {
        let message: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        match &message["id"] {
            serde_json::Value::Number(n) => {
                assert_eq!(message["result"], 5, "{message}");
                assert!(
                    results.insert(n.as_u64().unwrap()),
                    "one result per call: {message}"
                );
            }
            serde_json::Value::String(c) => {
                let i: u64 = c.trim_start_matches('c').parse().unwrap();
                cancels.insert(i, message["result"].as_bool().expect("true or false"));
            }
            other => panic!("unexpected id {other} in {message}"),
        }
    }
    assert_eq!(cancels.len() as u64, ROUNDS, "every rpc.cancel is answered");
    for (i, cancelled) in &cancels {
        assert_eq!(
            results.contains(i),
            !cancelled,
            "call {i}: rpc.cancel answered {cancelled}, and its result was {}sent",
            if results.contains(i) { "" } else { "not " }
        );
    }
    fx.shutdown().await;
}

/// A shutdown that finds the session busy reading (a peer sending a steady
/// stream of notifications) with nothing running ends it at once, not
/// after the grace period: the session notices the shutdown between two
/// bursts of messages, and must then see that nothing is left to drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_a_burst_of_notifications_does_not_wait_for_the_grace() {
    let fx = TestServer::start(all_services().grace_period(Duration::from_secs(60))).await;
    let mut raw = fx.raw().await;
    // `rpc.cancel` notifications for ids that never ran: answered by
    // nothing, run by nothing.
    let (flowing, started) = tokio::sync::oneshot::channel();
    let chatter = tokio::spawn(async move {
        let frame = rpc_core::frame::encode(
            br#"{"jsonrpc":"2.0","method":"rpc.cancel","params":{"id":"none"}}"#,
        );
        let burst: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * 256)
            .collect();
        let mut flowing = Some(flowing);
        // Until the server closes the connection (bounded by the test's limit).
        for _ in 0..100_000 {
            if raw.write_all(&burst).await.is_err() {
                return;
            }
            if let Some(flowing) = flowing.take() {
                let _ = flowing.send(());
            }
        }
    });
    // The first burst is written: the session is reading a steady flow.
    within("the notifications to flow", started).await.unwrap();
    within("the shutdown, well before its 60 s grace", fx.shutdown()).await;
    chatter.abort();
}
