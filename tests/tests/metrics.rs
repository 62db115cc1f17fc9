//! `GET /metrics`: calls by method and outcome, latency, connections and
//! calls in flight, in Prometheus's text format; 404 on a server without.
//! (One test per process: the recorder is the process's.)

mod common;

use std::net::SocketAddr;

use common::within;
use rpc_demo::services::{Calc, CalculatorClient, CalculatorServer};

/// `GET path` on `addr`: the status line and the body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = common::connect(addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    within("the answer", stream.read_to_string(&mut answer))
        .await
        .unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_connections_and_latency_are_counted_per_method() {
    let handle = rpc_core::metrics::install_prometheus().expect("the first recorder");
    assert!(
        rpc_core::metrics::install_prometheus().is_err(),
        "a second recorder is refused"
    );
    let server = rpc_core::Server::builder()
        .service(CalculatorServer::new(Calc))
        .metrics(handle)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let calc = CalculatorClient::connect(addr).await.unwrap();
    for i in 0..5 {
        within("add", calc.add(i as f64, 1.0)).await.unwrap();
    }
    // An alias counts under the method's own name.
    within("mult", calc.inner().call::<_, f64>("mult", &(2.0, 3.0)))
        .await
        .unwrap();
    assert!(within("div by zero", calc.div(1.0, 0.0)).await.is_err());

    let (status, body) = get(addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    for expected in [
        r#"rpc_server_calls_total{method="add",outcome="ok"} 5"#,
        r#"rpc_server_calls_total{method="mul",outcome="ok"} 1"#,
        r#"rpc_server_calls_total{method="div",outcome="error"} 1"#,
        r#"rpc_server_call_duration_seconds_count{method="add"} 5"#,
        r#"rpc_server_call_duration_seconds_bucket{method="add",le="10"} 5"#,
        r#"rpc_server_calls_in_flight{method="add"} 0"#,
        // The client's connection and this request's.
        "rpc_server_connections 2",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in:\n{body}");
    }
    drop(calc);
    server.shutdown().await;

    // A server built without metrics says how to get them.
    let plain = rpc_core::Server::builder()
        .service(CalculatorServer::new(Calc))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let (status, body) = get(plain.local_addr(), "/metrics").await;
    assert!(status.contains("404"), "{status}");
    assert!(body.contains("ServerBuilder::metrics"), "{body}");
    plain.shutdown().await;
}
