//! End-to-end behaviour through the generated clients: what a Rust user of
//! the library sees when calling the demo services over real TCP.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use rpc_core::Service;
use rpc_core::{Client, RpcError, Server, ServerError, code};
use rpc_demo::services::{
    Calc, CalcError, CalculatorClient, CalculatorServer, EchoClient, Greet, GreeterClient,
    GreeterServer,
};
use serde_json::Value;
use tokio::net::TcpListener;

use common::{TestServer, Via, read_frame, within};

/// The params of a call without arguments: `[]` on the wire.
const NO_PARAMS: &[(); 0] = &[];

async fn calculator_methods_compute_their_results(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let calc = CalculatorClient::new(fx.client().await);

    assert_eq!(within("add", calc.add(2.0, 3.0)).await.unwrap(), 5.0);
    assert_eq!(within("add", calc.add(-1.5, 0.25)).await.unwrap(), -1.25);
    assert_eq!(within("sub", calc.sub(2.0, 3.0)).await.unwrap(), -1.0);
    assert_eq!(within("sub", calc.sub(10.5, 0.5)).await.unwrap(), 10.0);
    assert_eq!(within("mul", calc.mul(-4.0, 2.5)).await.unwrap(), -10.0);
    assert_eq!(within("mul", calc.mul(7.0, 0.0)).await.unwrap(), 0.0);
    assert_eq!(within("div", calc.div(7.0, 2.0)).await.unwrap(), 3.5);
    assert_eq!(within("div", calc.div(-9.0, 3.0)).await.unwrap(), -3.0);
    assert_eq!(within("pow", calc.pow(2.0, 10.0)).await.unwrap(), 1024.0);
    assert_eq!(within("pow", calc.pow(9.0, 0.5)).await.unwrap(), 3.0);
    assert_eq!(within("pow", calc.pow(5.0, 0.0)).await.unwrap(), 1.0);

    drop(calc);
    fx.shutdown().await;
}

async fn hello_greets_any_name_in_portuguese(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let greeter = GreeterClient::new(fx.client().await);

    for (name, greeting) in [
        ("Ana", "Olá, Ana!"),
        ("João Ñandú", "Olá, João Ñandú!"),
        ("世界 🌍", "Olá, 世界 🌍!"),
        ("", "Olá, !"),
        (
            "\"quoted\" \\ and\nnewline",
            "Olá, \"quoted\" \\ and\nnewline!",
        ),
    ] {
        let got = within("hello", greeter.hello(name.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("hello({name:?}) failed: {e}"));
        assert_eq!(got, greeting, "hello({name:?})");
    }

    drop(greeter);
    fx.shutdown().await;
}

async fn echo_returns_the_text_unchanged(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let echo = EchoClient::new(fx.client().await);

    let long = "ação ".repeat(20_000);
    for text in [
        "hello",
        "",
        " ",
        "ünïcödé ✓ 日本語 🦀",
        "control \u{0} \u{1f} \t \r\n and escapes \" \\ /",
        "\u{feff}byte order mark and \u{2028} line separator",
        long.as_str(),
    ] {
        let got = within("echo", echo.echo(text.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("echo of {} bytes failed: {e}", text.len()));
        assert_eq!(got, text);
    }

    // `sleep` waits, then returns its argument.
    assert_eq!(within("sleep", echo.sleep(5)).await.unwrap(), 5);
    assert_eq!(within("sleep", echo.sleep(0)).await.unwrap(), 0);

    drop(echo);
    fx.shutdown().await;
}

async fn division_by_zero_is_a_typed_application_error(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let calc = CalculatorClient::new(fx.client().await);

    for a in [1.0, 0.0, -3.0] {
        match within("div by zero", calc.div(a, 0.0)).await {
            Err(RpcError::Application(CalcError::DivisionByZero)) => {}
            other => panic!("div({a}, 0) should be DivisionByZero, got {other:?}"),
        }
    }
    // The connection is still usable after an application error.
    assert_eq!(within("div", calc.div(1.0, 4.0)).await.unwrap(), 0.25);

    drop(calc);
    fx.shutdown().await;
}

async fn overflow_is_a_typed_not_finite_error(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let calc = CalculatorClient::new(fx.client().await);

    match within("pow overflow", calc.pow(10.0, 400.0)).await {
        Err(RpcError::Application(CalcError::NotFinite { operation })) => {
            assert_eq!(operation, "pow");
        }
        other => panic!("pow(10, 400) should be NotFinite, got {other:?}"),
    }
    // The same holds for every operation that leaves the finite numbers.
    for (what, result) in [
        ("add", within("add overflow", calc.add(1e308, 1e308)).await),
        ("sub", within("sub overflow", calc.sub(-1e308, 1e308)).await),
        ("mul", within("mul overflow", calc.mul(1e308, 1e308)).await),
        ("div", within("div overflow", calc.div(1e308, 1e-308)).await),
    ] {
        match result {
            Err(RpcError::Application(CalcError::NotFinite { operation })) => {
                assert_eq!(operation, what)
            }
            other => panic!("{what} overflow should be NotFinite, got {other:?}"),
        }
    }
    // The square root of a negative number is NaN: not finite either.
    assert!(
        matches!(
            within("pow NaN", calc.pow(-1.0, 0.5)).await,
            Err(RpcError::Application(CalcError::NotFinite { .. }))
        ),
        "pow(-1, 0.5) is NaN and must be NotFinite"
    );

    drop(calc);
    fx.shutdown().await;
}

async fn a_thousand_concurrent_calls_on_one_connection_each_get_their_own_result(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let client = fx.client().await;
    let calc = CalculatorClient::new(client.clone());
    let echo = EchoClient::new(client.clone());

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u32 {
        let (calc, echo) = (calc.clone(), echo.clone());
        tasks.spawn(async move {
            let x = f64::from(i);
            match i % 5 {
                0 => assert_eq!(calc.add(x, 0.5).await.unwrap(), x + 0.5, "add #{i}"),
                1 => assert_eq!(calc.sub(x, 1000.0).await.unwrap(), x - 1000.0, "sub #{i}"),
                2 => assert_eq!(calc.mul(x, 3.0).await.unwrap(), x * 3.0, "mul #{i}"),
                3 => assert_eq!(calc.div(x, 4.0).await.unwrap(), x / 4.0, "div #{i}"),
                _ => {
                    let text = format!("call #{i} ✓");
                    assert_eq!(echo.echo(text.clone()).await.unwrap(), text);
                }
            }
            i
        });
    }
    let mut done = BTreeSet::new();
    within("1000 concurrent calls", async {
        while let Some(joined) = tasks.join_next().await {
            done.insert(joined.expect("a call task failed"));
        }
    })
    .await;
    assert_eq!(done.len(), 1000, "every call completed");

    drop((calc, echo, client));
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_at_once_are_all_served() {
    let fx = TestServer::demo().await;
    let addr = fx.addr();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50u32 {
        tasks.spawn(async move {
            let calc = CalculatorClient::connect(addr).await.unwrap();
            let greeter = GreeterClient::connect(addr).await.unwrap();
            let x = f64::from(i);
            for j in 0..10u32 {
                let y = f64::from(j);
                assert_eq!(calc.mul(x, y).await.unwrap(), x * y);
            }
            assert_eq!(
                greeter.hello(format!("client {i}")).await.unwrap(),
                format!("Olá, client {i}!")
            );
        });
    }
    within("50 clients", async {
        while let Some(joined) = tasks.join_next().await {
            joined.expect("a client task failed");
        }
    })
    .await;

    fx.shutdown().await;
}

async fn several_services_share_one_server_and_one_connection(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let client = fx.client().await;
    let calc = CalculatorClient::new(client.clone());
    let greeter = GreeterClient::new(client.clone());
    let echo = EchoClient::new(client.clone());

    let (sum, greeting, echoed) = within("three services", async {
        tokio::join!(
            calc.add(1.0, 2.0),
            greeter.hello("Maria".to_owned()),
            echo.echo("eco".to_owned())
        )
    })
    .await;
    assert_eq!(sum.unwrap(), 3.0);
    assert_eq!(greeting.unwrap(), "Olá, Maria!");
    assert_eq!(echoed.unwrap(), "eco");

    drop((calc, greeter, echo, client));
    fx.shutdown().await;
}

/// Two unrelated services that both offer `status`.
mod colliding {
    #[rpc_core::service]
    pub trait Alpha {
        async fn status(&self) -> u32;
    }

    #[rpc_core::service]
    pub trait Beta {
        async fn status(&self) -> String;
    }

    pub struct A;
    impl Alpha for A {
        async fn status(&self) -> u32 {
            1
        }
    }

    pub struct B;
    impl Beta for B {
        async fn status(&self) -> String {
            "b".to_owned()
        }
    }
}

#[tokio::test]
async fn services_with_colliding_wire_names_refuse_to_start() {
    use colliding::{A, AlphaServer, B, BetaServer};

    let started = within(
        "bind",
        Server::builder()
            .service(AlphaServer::new(A))
            .service(BetaServer::new(B))
            .bind("127.0.0.1:0"),
    )
    .await;
    let error = match started {
        Err(error) => error,
        Ok(server) => {
            within("the server to shut down", server.shutdown()).await;
            panic!("a server with two `status` methods must not start");
        }
    };
    let message = error.to_string();
    match error {
        ServerError::DuplicateMethod {
            method,
            first,
            second,
        } => {
            assert_eq!(method, "status");
            assert_eq!((first, second), ("Alpha", "Beta"));
        }
        other => panic!("expected DuplicateMethod, got {other:?}"),
    }
    for part in ["`status`", "Alpha", "Beta", "namespace"] {
        assert!(
            message.contains(part),
            "the message should mention {part}: {message}"
        );
    }
}

/// A service whose wire names carry a namespace, one of them renamed.
mod namespaced {
    #[rpc_core::service(namespace = "int")]
    pub trait Integers {
        /// Integer addition (same method name as the demo calculator's).
        async fn add(&self, a: i64, b: i64) -> i64;
        /// Negation, renamed on the wire.
        #[rpc(name = "negate")]
        async fn neg(&self, x: i64) -> i64;
    }

    pub struct Ints;
    impl Integers for Ints {
        async fn add(&self, a: i64, b: i64) -> i64 {
            a + b
        }
        async fn neg(&self, x: i64) -> i64 {
            -x
        }
    }
}

#[tokio::test]
async fn namespaces_prefix_wire_names_and_keep_same_named_methods_apart() {
    use namespaced::{IntegersClient, IntegersServer, Ints};

    // A namespaced `add` does not collide with the calculator's `add`.
    let fx =
        TestServer::start(rpc_demo::services::all_services().service(IntegersServer::new(Ints)))
            .await;
    let client = fx.client().await;

    // The generated client uses the prefixed names.
    let ints = IntegersClient::new(client.clone());
    assert_eq!(within("int.add", ints.add(2, 3)).await.unwrap(), 5);
    assert_eq!(within("int.negate", ints.neg(7)).await.unwrap(), -7);

    // On the wire, the names are `int.add` and `int.negate`.
    let sum: Result<i64, RpcError> = within("raw int.add", client.call("int.add", &(40, 2))).await;
    assert_eq!(sum.unwrap(), 42);
    let neg: Result<i64, RpcError> =
        within("raw int.negate", client.call("int.negate", &[5])).await;
    assert_eq!(neg.unwrap(), -5);

    // The unprefixed `add` is still the calculator's, and `int.neg` does not exist.
    let sum: Result<f64, RpcError> = within("raw add", client.call("add", &(0.5, 0.25))).await;
    assert_eq!(sum.unwrap(), 0.75);
    for missing in ["int.neg", "negate", "neg"] {
        let r: Result<i64, RpcError> = within("missing", client.call(missing, &[1])).await;
        match r {
            Err(RpcError::Server(e)) => assert_eq!(e.code, code::METHOD_NOT_FOUND, "{missing}"),
            other => panic!("`{missing}` should not be found, got {other:?}"),
        }
    }

    drop((ints, client));
    fx.shutdown().await;
}

async fn an_unknown_method_is_a_server_error_pointing_to_discovery(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let client = fx.client().await;

    let r: Result<Value, RpcError> = within("call", client.call("modulo", &(7, 2))).await;
    match r {
        Err(RpcError::Server(e)) => {
            assert_eq!(e.code, code::METHOD_NOT_FOUND);
            assert!(e.message.contains("`modulo`"), "{}", e.message);
            assert!(e.message.contains("rpc.discover"), "{}", e.message);
        }
        other => panic!("expected method not found, got {other:?}"),
    }
    // A param error through the untyped client is a server error too.
    let r: Result<f64, RpcError> = within("call", client.call("add", &[1.0])).await;
    match r {
        Err(RpcError::Server(e)) => {
            assert_eq!(e.code, code::INVALID_PARAMS);
            assert!(e.message.contains("`b`"), "{}", e.message);
        }
        other => panic!("expected invalid params, got {other:?}"),
    }

    drop(client);
    fx.shutdown().await;
}

/// A one-connection TCP server that accepts, reads one frame, then closes
/// the socket without answering.
async fn hang_up_after_one_frame() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut socket, _) = within("a client to connect", listener.accept())
            .await
            .unwrap();
        read_frame(&mut socket)
            .await
            .expect("the client sends a request");
        drop(socket);
    });
    (addr, task)
}

#[tokio::test]
async fn a_pending_call_fails_with_closed_when_the_server_goes_away() {
    let (addr, server) = hang_up_after_one_frame().await;
    // A long call timeout, so only the closed connection can end the call.
    let client = within("connect", Client::connect(addr))
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(3600));
    let calc = CalculatorClient::new(client.clone());

    let error = within("the pending call to fail", calc.add(1.0, 2.0))
        .await
        .expect_err("nobody answers");
    let display = error.to_string();
    match error {
        RpcError::Closed(why) => assert!(
            why.to_string().contains("closed the connection"),
            "the reason says why: {why}"
        ),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(
        display.contains("reconnect"),
        "the error says what to do: {display}"
    );
    within("the raw server", server).await.unwrap();
    assert!(client.is_closed());

    // Later calls try to reconnect; with nothing listening any more, each
    // fails promptly with a connection error instead of waiting.
    for _ in 0..3 {
        let later = tokio::time::timeout(Duration::from_secs(2), calc.mul(2.0, 2.0))
            .await
            .expect("a call after the server went away must fail promptly");
        match later {
            Err(RpcError::Connect { addr: tried, .. }) => assert_eq!(tried, addr.to_string()),
            other => panic!("expected Connect, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_call_the_server_never_answers_times_out() {
    // A server that reads every request and answers none.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut frames = Vec::new();
        while let Some(frame) = read_frame(&mut socket).await {
            frames.push(serde_json::from_slice::<Value>(&frame).unwrap());
        }
        frames
    });

    let calc = within("connect", CalculatorClient::connect(addr))
        .await
        .unwrap();
    let limit = Duration::from_millis(200);
    let quick = calc.with_timeout(limit);
    let started = tokio::time::Instant::now();
    match within("the call to time out", quick.add(1.0, 2.0)).await {
        Err(RpcError::Timeout(d)) => assert_eq!(d, limit),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= limit, "the call waited its full limit");
    // The timeout belongs to the handle: the connection itself is still open.
    assert!(!calc.inner().is_closed());
    let display = within("the second call to time out", quick.add(3.0, 4.0))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        display.contains("raise the timeout"),
        "the error says what to do: {display}"
    );

    drop((calc, quick));
    let frames = within("the silent server", silent).await.unwrap();
    // Each request went out with the caller's budget, and each timed-out
    // call was followed by `rpc.cancel` for its id, so the server can stop.
    let requests: Vec<&Value> = frames.iter().filter(|f| f["method"] == "add").collect();
    assert_eq!(
        requests.len(),
        2,
        "both requests reached the server: {frames:?}"
    );
    for request in &requests {
        let budget = request["timeout_ms"].as_u64().expect("a timeout_ms budget");
        assert!(
            budget <= 200,
            "the budget is the handle's timeout: {request}"
        );
        let cancelled = frames
            .iter()
            .any(|f| f["method"] == "rpc.cancel" && f["params"]["id"] == request["id"]);
        assert!(cancelled, "no rpc.cancel for {request}: {frames:?}");
    }
}

#[tokio::test]
async fn connecting_where_nothing_listens_is_a_connect_error_that_says_what_to_do() {
    // Bind a free port, then release it: nothing listens there any more.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let error = within("connect", CalculatorClient::connect(addr))
        .await
        .expect_err("nothing listens there");
    let message = error.to_string();
    match error {
        RpcError::Connect { addr: tried, .. } => assert_eq!(tried, addr.to_string()),
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(
        message.contains("is the server running"),
        "the message says what to check: {message}"
    );
}

async fn a_call_larger_than_the_server_accepts_fails_with_the_server_explanation(via: Via) {
    let fx = TestServer::start_via(
        via,
        Server::builder()
            .max_frame_size(1024)
            .service(CalculatorServer::new(Calc))
            .service(rpc_demo::services::EchoServer::new(
                rpc_demo::services::Echoer,
            )),
    )
    .await;
    let echo = EchoClient::new(fx.client().await);

    assert_eq!(
        within("small echo", echo.echo("fits".into()))
            .await
            .unwrap(),
        "fits"
    );
    match within("large echo", echo.echo("x".repeat(2000))).await {
        Err(RpcError::Closed(why)) => assert!(
            why.to_string()
                .contains("exceeds the maximum of 1024 bytes"),
            "the reason carries the server's explanation: {why}"
        ),
        other => panic!("expected Closed, got {other:?}"),
    }

    drop(echo);
    fx.shutdown().await;
}

async fn ping_answers_pong(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let client = fx.client().await;

    let pong: Result<String, RpcError> =
        within("rpc.ping", client.call("rpc.ping", NO_PARAMS)).await;
    assert_eq!(pong.unwrap(), "pong");

    drop(client);
    fx.shutdown().await;
}

async fn discover_lists_every_method_with_its_parameters(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let client = fx.client().await;

    let doc: Result<Value, RpcError> =
        within("rpc.discover", client.call("rpc.discover", NO_PARAMS)).await;
    let doc = doc.unwrap();
    assert!(doc["openrpc"].is_string(), "an OpenRPC document: {doc}");
    let methods = doc["methods"].as_array().expect("a list of methods");
    let names: BTreeSet<&str> = methods
        .iter()
        .map(|m| m["name"].as_str().expect("each method has a name"))
        .collect();
    for expected in ["add", "sub", "mul", "div", "pow", "hello", "echo"] {
        assert!(
            names.contains(expected),
            "`{expected}` missing from {names:?}"
        );
    }
    // Exactly the methods the demo services declare, each once.
    let declared: Vec<&str> = [
        CalculatorServer::new(Calc).methods(),
        GreeterServer::new(Greet).methods(),
        rpc_demo::services::EchoServer::new(rpc_demo::services::Echoer).methods(),
        rpc_demo::services::ChatServer::new(rpc_demo::services::Rooms::default()).methods(),
        rpc_demo::services::LiveServer::new(rpc_demo::services::Feed::default()).methods(),
    ]
    .concat()
    .iter()
    .map(|m| m.name)
    .collect();
    assert_eq!(names, declared.iter().copied().collect::<BTreeSet<_>>());
    assert_eq!(methods.len(), declared.len(), "no method listed twice");

    let params_of = |name: &str| -> Vec<String> {
        let method = methods.iter().find(|m| m["name"] == name).unwrap();
        method["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(params_of("add"), ["a", "b"]);
    assert_eq!(params_of("pow"), ["a", "b"]);
    assert_eq!(params_of("hello"), ["name"]);
    assert_eq!(params_of("echo"), ["text"]);
    let hello = methods.iter().find(|m| m["name"] == "hello").unwrap();
    assert!(
        hello["description"].as_str().unwrap().contains("Olá"),
        "descriptions come from the doc comments: {hello}"
    );

    drop(client);
    fx.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_calls_in_flight_finish_and_then_refuses_connections() {
    use common::gated::{Gate, GatedClient};

    let gate = Gate::default();
    let fx = common::gated::serve(&gate, Server::builder()).await;
    let addr = fx.addr();
    let client = GatedClient::new(fx.client().await);

    let call = tokio::spawn({
        let client = client.clone();
        async move { client.slow().await }
    });
    within("the slow call to start", gate.entered.notified()).await;
    let shutdown = tokio::spawn(fx.shutdown());
    gate.open.notify_one();

    let result = within("the call in flight", call).await.unwrap();
    assert_eq!(result.unwrap(), "done", "a call in flight is answered");
    within("shutdown", shutdown).await.unwrap();

    // Once shut down, nothing listens: calls fail promptly.
    assert_fails_after_shutdown(within("a call after shutdown", client.quick()).await);
    assert!(matches!(
        within("connect", GatedClient::connect(addr)).await,
        Err(RpcError::Connect { .. })
    ));
}

async fn shutdown_with_idle_clients_connected_returns_and_they_see_closed(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let calc = CalculatorClient::new(fx.client().await);
        assert_eq!(within("add", calc.add(1.0, 1.0)).await.unwrap(), 2.0);
        clients.push(calc);
    }

    fx.shutdown().await;

    for calc in &clients {
        assert_fails_after_shutdown(within("a call after shutdown", calc.add(1.0, 1.0)).await);
    }
}

/// A call made after its server shut down fails with `Closed` (the client
/// had not yet seen the connection end) or `Connect` (it had, and its
/// attempt to reconnect found nothing listening).
#[track_caller]
fn assert_fails_after_shutdown<T: std::fmt::Debug, E: std::fmt::Debug>(
    result: Result<T, RpcError<E>>,
) {
    match result {
        Err(RpcError::Closed(_) | RpcError::Connect { .. }) => {}
        other => panic!("expected Closed or Connect after shutdown, got {other:?}"),
    }
}

async fn messages_of_several_megabytes_round_trip(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let echo = EchoClient::new(fx.client().await);

    // Larger than the server's 1 MiB write buffer, well under the 16 MiB frame limit.
    let big: String = (0..3_000_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let got = within("a 3 MB echo", echo.echo(big.clone())).await.unwrap();
    assert!(got == big, "the 3 MB text came back changed");

    drop(echo);
    fx.shutdown().await;
}

async fn a_notification_from_the_client_gets_no_answer_and_the_connection_goes_on(via: Via) {
    let fx = TestServer::demo_via(via).await;
    let client = fx.client().await;

    within("notify", client.notify("echo", &["fire and forget"]))
        .await
        .unwrap();
    within("notify", client.notify("no_such_method", NO_PARAMS))
        .await
        .unwrap();
    let sum: Result<f64, RpcError> = within("call", client.call("add", &(1.0, 2.0))).await;
    assert_eq!(sum.unwrap(), 3.0);
    assert!(!client.is_closed());

    drop(client);
    fx.shutdown().await;
}

/// The tests above that use only the library's client run three times: over
/// TCP, over the in-memory transport (where the session has no socket at
/// all), and over WebSocket.
macro_rules! over_every_transport {
    ($($test:ident),* $(,)?) => {
        mod over_tcp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() { super::$test(super::Via::Tcp).await }
            )*
        }
        mod over_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() { super::$test(super::Via::Memory).await }
            )*
        }
        mod over_websocket {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() { super::$test(super::Via::WebSocket).await }
            )*
        }
    };
}

/// The tests that HTTP can carry run over it too: every one but those that
/// need the server to speak first (the shutdown notice), since HTTP has no
/// channel from the server.
macro_rules! over_http {
    ($($test:ident),* $(,)?) => {
        mod over_http {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() { super::$test(super::Via::Http).await }
            )*
        }
    };
}

over_http!(
    calculator_methods_compute_their_results,
    hello_greets_any_name_in_portuguese,
    echo_returns_the_text_unchanged,
    division_by_zero_is_a_typed_application_error,
    overflow_is_a_typed_not_finite_error,
    a_thousand_concurrent_calls_on_one_connection_each_get_their_own_result,
    several_services_share_one_server_and_one_connection,
    an_unknown_method_is_a_server_error_pointing_to_discovery,
    a_call_larger_than_the_server_accepts_fails_with_the_server_explanation,
    ping_answers_pong,
    discover_lists_every_method_with_its_parameters,
    messages_of_several_megabytes_round_trip,
    a_notification_from_the_client_gets_no_answer_and_the_connection_goes_on
);

over_every_transport!(
    calculator_methods_compute_their_results,
    hello_greets_any_name_in_portuguese,
    echo_returns_the_text_unchanged,
    division_by_zero_is_a_typed_application_error,
    overflow_is_a_typed_not_finite_error,
    a_thousand_concurrent_calls_on_one_connection_each_get_their_own_result,
    several_services_share_one_server_and_one_connection,
    an_unknown_method_is_a_server_error_pointing_to_discovery,
    a_call_larger_than_the_server_accepts_fails_with_the_server_explanation,
    ping_answers_pong,
    discover_lists_every_method_with_its_parameters,
    shutdown_with_idle_clients_connected_returns_and_they_see_closed,
    messages_of_several_megabytes_round_trip,
    a_notification_from_the_client_gets_no_answer_and_the_connection_goes_on
);

#[tokio::test]
async fn params_that_are_neither_array_nor_object_are_refused_before_sending_with_advice() {
    let fx = TestServer::demo().await;
    let client = fx.client().await;
    match within(
        "a call with a bare number",
        client.call::<_, String>("hello", &5),
    )
    .await
    {
        Err(RpcError::Encode(e)) => assert!(e.to_string().contains("&(value,)"), "{e}"),
        other => panic!("expected Encode, got {other:?}"),
    }
    let hello: String = within("the same with a tuple", client.call("hello", &("Ana",)))
        .await
        .unwrap();
    assert_eq!(hello, "Olá, Ana!");
    drop(client);
    fx.shutdown().await;
}
