//! Every duration setting takes `Duration::MAX` (no limit) and
//! `Duration::ZERO` (documented per setting) without a panic, on either
//! side: arithmetic on durations a user may legally pass saturates.

mod common;

use std::time::Duration;

use common::gated::{Gate, GatedClient};
use common::{TestServer, Via, within};
use rpc_core::{Client, RpcError, Server};
use rpc_demo::services::{CalculatorClient, all_services};

#[tokio::test]
async fn client_timeouts_of_duration_max_mean_no_limit() {
    let fx = TestServer::demo().await;
    let client = fx
        .client_with(Client::builder().timeout(Duration::MAX))
        .await
        .expect("connects with no time limit");
    let calc = CalculatorClient::new(client.clone());
    assert_eq!(within("add", calc.add(1.0, 2.0)).await.unwrap(), 3.0);
    let forever = CalculatorClient::new(Client::with_timeout(&client, Duration::MAX));
    assert_eq!(within("add", forever.add(2.0, 2.0)).await.unwrap(), 4.0);
    let mut batch = forever.batch();
    let sum = batch.add(3.0, 4.0).unwrap();
    within("the batch", batch).await.unwrap();
    assert_eq!(within("the batch call", sum).await.unwrap(), 7.0);
    within("notify", forever.inner().notify("echo", &["x"]))
        .await
        .unwrap();
    drop((calc, forever, client));
    fx.shutdown().await;
}

#[tokio::test]
async fn a_call_timeout_of_zero_is_already_expired_and_nothing_is_sent() {
    // A fake server that records the first frame it receives.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = tokio::spawn(async move {
        let (mut peer, _) = listener.accept().await.unwrap();
        common::read_json(&mut peer).await
    });
    let client = within("connect", Client::connect(addr)).await.unwrap();
    let expired = client.with_timeout(Duration::ZERO);
    match within(
        "a call with no time",
        expired.call::<_, f64>("add", &(1, 2)),
    )
    .await
    {
        Err(RpcError::Timeout(d)) => assert_eq!(d, Duration::ZERO),
        other => panic!("expected Timeout at once, got {other:?}"),
    }
    assert!(matches!(
        within(
            "a notification with no time",
            expired.notify("echo", &["x"])
        )
        .await,
        Err(RpcError::Timeout(_))
    ));
    assert!(matches!(
        within("a batch with no time", expired.batch().send_one_for_test()).await,
        Err(RpcError::Timeout(_))
    ));
    // The next frame the server sees is this one: nothing expired was sent.
    let _ = client.notify("rpc.ping", &[(); 0]).await;
    let frame = within("the first frame", first).await.unwrap();
    assert_eq!(frame["method"], "rpc.ping", "{frame}");

    match within(
        "connect with no time",
        Client::builder().timeout(Duration::ZERO).connect(addr),
    )
    .await
    {
        Err(RpcError::Timeout(_) | RpcError::Connect { .. }) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
}

/// A batch of one call, sent: for the test above.
trait SendOne {
    async fn send_one_for_test(self) -> Result<(), RpcError>;
}

impl SendOne for rpc_core::Batch {
    async fn send_one_for_test(mut self) -> Result<(), RpcError> {
        let _ = self.call::<_, f64, rpc_core::Never>("add", &(1, 2))?;
        self.send().await
    }
}

#[tokio::test]
async fn server_durations_of_max_serve_and_shut_down_after_the_calls_in_flight() {
    let gate = Gate::default();
    let fx = common::gated::serve(
        &gate,
        Server::builder()
            .idle_timeout(Duration::MAX)
            .frame_timeout(Duration::MAX)
            .grace_period(Duration::MAX),
    )
    .await;
    let addr = fx.addr();
    let client = GatedClient::new(fx.client().await);
    assert_eq!(within("quick", client.quick()).await.unwrap(), 1);
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.slow().await }
    });
    within("the slow call to start", gate.entered.notified()).await;
    let shutdown = tokio::spawn(fx.shutdown());
    gate.open.notify_one();
    assert_eq!(
        within("the call in flight", slow).await.unwrap().unwrap(),
        "done",
        "a grace period of Duration::MAX lets the call finish"
    );
    within("the shutdown", shutdown).await.unwrap();
    // After the shutdown, calls fail promptly instead of hanging.
    match within("a call after the shutdown", client.quick()).await {
        Err(RpcError::Closed(_) | RpcError::Connect { .. }) => {}
        other => panic!("expected Closed or Connect, got {other:?}"),
    }
    assert!(matches!(
        within("connect", GatedClient::connect(addr)).await,
        Err(RpcError::Connect { .. })
    ));
}

#[tokio::test]
async fn a_grace_period_of_zero_abandons_calls_in_flight_at_once() {
    let gate = Gate::default();
    let fx = common::gated::serve(&gate, Server::builder().grace_period(Duration::ZERO)).await;
    let client = GatedClient::new(fx.client().await);
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.slow().await }
    });
    within("the slow call to start", gate.entered.notified()).await;
    within("a shutdown that does not wait for the gate", fx.shutdown()).await;
    assert!(matches!(
        within("the abandoned call", slow).await.unwrap(),
        Err(RpcError::Closed(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn an_idle_timeout_of_zero_is_no_limit() {
    // In memory, so paused time only moves when everything waits on it.
    let fx = TestServer::start_via(Via::Memory, all_services().idle_timeout(Duration::ZERO)).await;
    let client = fx.client().await;
    let _: String = client.call("rpc.ping", &[(); 0]).await.unwrap();
    tokio::time::advance(Duration::from_secs(365 * 86_400)).await;
    settle().await;
    assert!(!client.is_closed(), "an idle timeout of zero never closes");
    let _: String = client.call("rpc.ping", &[(); 0]).await.unwrap();
    drop(client);
    fx.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_default_idle_timeout_closes_an_idle_connection() {
    // The contrast to the test above: the same steps, the default limit.
    let fx = TestServer::start_via(Via::Memory, all_services()).await;
    let client = fx.client().await;
    let _: String = client.call("rpc.ping", &[(); 0]).await.unwrap();
    tokio::time::advance(rpc_core::DEFAULT_IDLE_TIMEOUT + Duration::from_secs(1)).await;
    settle().await;
    assert!(client.is_closed(), "idle past the default timeout: closed");
    drop(client);
    fx.shutdown().await;
}

/// Lets every task that can run, run (bounded).
async fn settle() {
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_frame_timeout_of_zero_is_no_limit_not_at_once() {
    let fx = TestServer::start(all_services().frame_timeout(Duration::ZERO)).await;
    let mut s = fx.raw().await;
    let frame = rpc_core::frame::encode(br#"{"jsonrpc":"2.0","method":"rpc.ping","id":1}"#);
    use tokio::io::AsyncWriteExt;
    s.write_all(&frame[..10]).await.unwrap();
    // The stimulus: a slow sender. With "at once" the server would drop it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(&frame[10..]).await.unwrap();
    let pong = within("the pong", common::read_json(&mut s)).await;
    assert_eq!(pong["result"], "pong", "{pong}");
    drop(s);
    fx.shutdown().await;
}
