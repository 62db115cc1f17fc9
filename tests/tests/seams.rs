//! The seams of the architecture, each used as a user (or a later feature)
//! would: server push tied to a call, the connector a client dials and
//! redials with, middleware around every call, and what a session knows of
//! its peer.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{LIMIT, TestServer, exchange, read_json, send_json, within};
use rpc_core::middleware::{Admit, CallInfo, Middleware, PeerState};
use rpc_core::transport::{Connector, Limits, TcpConnector, Transport};
use rpc_core::{Client, ErrorObject, Notification, RpcError, code};
use rpc_demo::services::calculator::CalculatorClient;
use serde_json::json;

/// A test-only service whose handler pushes notifications while it runs.
#[rpc_core::service]
trait Progress {
    /// Sends `steps` notifications `progress` with `[step, steps]`, then
    /// returns `steps`.
    async fn run(&self, steps: u32) -> u32;
    /// Tries to push from a notification's handler: there is no call to tie
    /// the push to.
    #[rpc(oneway)]
    async fn fire(&self);
    /// Whether the last `fire` was refused with `NoCall`.
    async fn fire_refused(&self) -> bool;
}

#[derive(Default)]
struct Steps {
    fire_refused: std::sync::atomic::AtomicBool,
    fired: tokio::sync::Notify,
}

impl Progress for Arc<Steps> {
    async fn run(&self, steps: u32) -> u32 {
        for step in 1..=steps {
            rpc_core::context::notify("progress", &(step, steps))
                .await
                .expect("the caller is connected");
        }
        steps
    }

    async fn fire(&self) {
        let refused = matches!(
            rpc_core::context::notify("progress", &(0, 0)).await,
            Err(rpc_core::context::PushError::NoCall)
        );
        self.fire_refused.store(refused, Ordering::SeqCst);
        self.fired.notify_one();
    }

    async fn fire_refused(&self) -> bool {
        self.fire_refused.load(Ordering::SeqCst)
    }
}

async fn progress_server(steps: Arc<Steps>) -> TestServer {
    TestServer::start(rpc_core::Server::builder().service(ProgressServer::new(steps))).await
}

#[tokio::test]
async fn a_handler_pushes_notifications_that_reach_its_call_in_order() {
    let server = progress_server(Arc::default()).await;
    let client = server.client().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Notification>(64);
    let result: u32 = within(
        "the call with notifications",
        client.call_with_notifications::<_, _, rpc_core::Never>(
            "run",
            &(5,),
            Default::default(),
            tx,
        ),
    )
    .await
    .expect("the call succeeds");
    assert_eq!(result, 5);
    let mut got = Vec::new();
    while let Ok(note) = rx.try_recv() {
        assert_eq!(note.method, "progress");
        got.push(note.params::<(u32, u32)>().unwrap());
    }
    assert_eq!(
        got,
        (1..=5).map(|s| (s, 5)).collect::<Vec<_>>(),
        "every notification arrives, in order, before the result"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pushed_notifications_carry_the_request_id_on_the_wire() {
    let server = progress_server(Arc::default()).await;
    let mut stream = server.raw().await;
    send_json(
        &mut stream,
        &json!({"jsonrpc": "2.0", "method": "run", "params": [2], "id": "job-1"}),
    )
    .await;
    let mut messages = Vec::new();
    for _ in 0..3 {
        messages.push(read_json(&mut stream).await);
    }
    assert_eq!(
        messages[0],
        json!({"jsonrpc": "2.0", "method": "progress", "params": [1, 2], "in_reply_to": "job-1"})
    );
    assert_eq!(messages[1]["params"], json!([2, 2]));
    assert_eq!(
        messages[2],
        json!({"jsonrpc": "2.0", "result": 2, "id": "job-1"})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_notification_handler_cannot_push() {
    let steps = Arc::new(Steps::default());
    let server = progress_server(steps.clone()).await;
    let client = ProgressClient::new(server.client().await);
    let fired = steps.fired.notified();
    client.fire().await.unwrap();
    within("the notification's handler to run", fired).await;
    assert!(client.fire_refused().await.unwrap());
    server.shutdown().await;
}

#[tokio::test]
async fn notifications_for_a_call_nobody_listens_to_are_dropped_and_the_call_completes() {
    let server = progress_server(Arc::default()).await;
    let client = ProgressClient::new(server.client().await);
    assert_eq!(within("run", client.run(100)).await.unwrap(), 100);
    server.shutdown().await;
}

/// A connector that counts its dials and delegates to TCP: what a resolver
/// (discovery) plugs in.
struct CountingConnector {
    dials: Arc<AtomicUsize>,
    inner: TcpConnector,
}

impl Connector for CountingConnector {
    fn connect<'a>(
        &'a self,
        limits: &'a Limits,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Transport, RpcError>> + Send + 'a>>
    {
        self.dials.fetch_add(1, Ordering::SeqCst);
        self.inner.connect(limits)
    }

    fn target(&self) -> String {
        format!("counting {}", self.inner.target())
    }
}

#[tokio::test]
async fn a_client_dials_and_redials_through_its_connector() {
    let server = TestServer::demo().await;
    let addr = server.addr();
    let dials = Arc::new(AtomicUsize::new(0));
    let client = within(
        "connect through the connector",
        Client::builder().connect_with(CountingConnector {
            dials: dials.clone(),
            inner: TcpConnector::new(addr.to_string()),
        }),
    )
    .await
    .expect("connects");
    let calc = CalculatorClient::from(client.clone());
    assert_eq!(calc.add(2.0, 3.0).await.unwrap(), 5.0);
    assert_eq!(dials.load(Ordering::SeqCst), 1);

    // A server restarted on the same port: the next call redials through
    // the same connector.
    server.shutdown().await;
    let listener = rebind(addr).await;
    let restarted = rpc_demo::services::all_services()
        .serve(listener)
        .expect("serves again");
    let sum = within("a call after the restart", async {
        loop {
            match calc.add(1.0, 1.0).await {
                Ok(sum) => break sum,
                Err(RpcError::Closed(_) | RpcError::Connect { .. }) => {
                    // Pacing between attempts; the backoff spaces the dials.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(other) => panic!("unexpected error {other}"),
            }
        }
    })
    .await;
    assert_eq!(sum, 2.0);
    assert!(
        dials.load(Ordering::SeqCst) >= 2,
        "reconnecting dialled through the connector"
    );
    within("the restarted server to stop", restarted.shutdown()).await;
}

/// Binds `addr` again once the old listener is gone (bounded).
async fn rebind(addr: std::net::SocketAddr) -> tokio::net::TcpListener {
    within("the port to be free again", async {
        loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
}

/// Refuses calls to methods named in `deny`, counts what it lets through,
/// and records the peer's transport and the caller's trace context.
#[derive(Default)]
struct Gatekeeper {
    admitted: AtomicUsize,
    wrapped: Arc<AtomicUsize>,
    seen: std::sync::Mutex<Vec<(String, Option<String>, &'static str)>>,
}

impl Middleware for Gatekeeper {
    fn admit(&self, call: &CallInfo<'_>, peer: &mut PeerState) -> Result<Admit, ErrorObject> {
        self.seen.lock().unwrap().push((
            call.method.to_owned(),
            call.traceparent.map(str::to_owned),
            peer.info().transport,
        ));
        if call.method == "div" {
            return Err(ErrorObject::new(-32010, "division is closed today"));
        }
        if call.method == "answer" {
            let answer = serde_json::value::to_raw_value(&42).unwrap();
            return Ok(Admit::Answer(answer));
        }
        self.admitted.fetch_add(1, Ordering::SeqCst);
        Ok(Admit::Continue)
    }

    fn wrap(
        &self,
        _call: &CallInfo<'_>,
        future: rpc_core::middleware::HandlerFuture,
    ) -> rpc_core::middleware::HandlerFuture {
        let wrapped = self.wrapped.clone();
        Box::pin(async move {
            let reply = future.await;
            wrapped.fetch_add(1, Ordering::SeqCst);
            reply
        })
    }
}

#[tokio::test]
async fn middleware_refuses_answers_and_wraps_calls_without_touching_the_session() {
    let gate = Arc::new(Gatekeeper::default());
    let server =
        TestServer::start(rpc_demo::services::all_services().middleware(gate.clone())).await;
    let mut stream = server.raw().await;
    let add = exchange(
        &mut stream,
        &json!({"jsonrpc":"2.0","method":"add","params":[2,3],"id":1,
            "traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}),
    )
    .await;
    assert_eq!(add["result"], 5.0, "{add}");
    let div = exchange(
        &mut stream,
        &json!({"jsonrpc":"2.0","method":"div","params":[1,1],"id":2}),
    )
    .await;
    assert_eq!(div["error"]["code"], -32010, "{div}");
    let answer = exchange(
        &mut stream,
        &json!({"jsonrpc":"2.0","method":"answer","id":3}),
    )
    .await;
    assert_eq!(answer["result"], 42, "{answer}");

    assert_eq!(gate.admitted.load(Ordering::SeqCst), 1);
    assert_eq!(
        gate.wrapped.load(Ordering::SeqCst),
        1,
        "only the admitted call ran, wrapped"
    );
    let seen = gate.seen.lock().unwrap().clone();
    assert_eq!(
        seen[0],
        (
            "add".to_owned(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
            "tcp"
        )
    );
    assert_eq!(seen.len(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn the_token_layer_runs_before_other_middleware() {
    let gate = Arc::new(Gatekeeper::default());
    let server = TestServer::start(
        rpc_demo::services::all_services()
            .token("s3cret")
            .middleware(gate.clone()),
    )
    .await;
    let client = server.client().await;
    match client.call::<_, f64>("add", &(1.0, 2.0)).await {
        Err(RpcError::Server(e)) => assert_eq!(e.code, code::UNAUTHORIZED),
        other => panic!("expected UNAUTHORIZED, got {other:?}"),
    }
    assert!(
        gate.seen.lock().unwrap().is_empty(),
        "a refused call never reaches later layers"
    );
    let authed = server
        .client_with(Client::builder().token("s3cret"))
        .await
        .unwrap();
    assert_eq!(
        authed.call::<_, f64>("add", &(1.0, 2.0)).await.unwrap(),
        3.0
    );
    assert_eq!(gate.admitted.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_can_ping_its_client_on_the_same_connection() {
    // The session is the same on both sides: a client answers the
    // built-ins on its connection, which is what lets a server call back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move { Client::connect(addr).await });
    let (mut peer, _) = within("accept", listener.accept()).await.unwrap();
    let _client = within("connect", client).await.unwrap().unwrap();
    common::send_json(
        &mut peer,
        &json!({"jsonrpc":"2.0","method":"rpc.ping","id":"from-server"}),
    )
    .await;
    let pong = tokio::time::timeout(LIMIT, read_json(&mut peer))
        .await
        .expect("the client answers");
    assert_eq!(
        pong,
        json!({"jsonrpc":"2.0","result":"pong","id":"from-server"})
    );
}
