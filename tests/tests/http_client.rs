//! The library's client over `http://` URLs: one POST per call, batch or
//! notification, many at once over a few keep-alive connections, with the
//! bearer token on every POST.

mod common;

use common::{TestServer, Via, within};
use rpc_core::{Client, Never, RpcError};
use rpc_demo::services::{CalcError, all_services};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_http_is_one_post_with_each_answer_typed() {
    let fx = TestServer::demo_via(Via::Http).await;
    let client = fx.client().await;
    let mut batch = client.batch();
    let sum = batch.call::<_, f64, Never>("add", &(2.0, 3.0)).unwrap();
    let quotient = batch.call::<_, f64, CalcError>("div", &(1.0, 0.0)).unwrap();
    batch.notify("echo", &("ignored",)).unwrap();
    within("the batch", batch.send()).await.unwrap();
    assert_eq!(sum.await.unwrap(), 5.0);
    assert!(matches!(
        quotient.await,
        Err(RpcError::Application(CalcError::DivisionByZero))
    ));
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_travels_as_a_bearer_on_every_post() {
    let fx = TestServer::start_via(Via::Http, all_services().token("s3cret")).await;
    let url = format!("http://{}/rpc", fx.addr());

    let client = within(
        "a client with the token",
        Client::builder().token("s3cret").connect(url.as_str()),
    )
    .await
    .expect("the right token is accepted");
    for i in 0..20 {
        let sum: f64 = within("a call", client.call("add", &(i as f64, 1.0)))
            .await
            .unwrap();
        assert_eq!(sum, i as f64 + 1.0);
    }

    // A wrong token: `connect` fails at once, with the server's 401.
    match within(
        "a client with a wrong token",
        Client::builder().token("wrong").connect(url.as_str()),
    )
    .await
    {
        Err(e) => assert!(e.to_string().contains("401"), "{e}"),
        Ok(_) => panic!("a wrong token was accepted"),
    }

    // No token: the call fails with the 401's explanation.
    let bare = within(
        "a client with no token",
        Client::builder().connect(url.as_str()),
    )
    .await
    .unwrap();
    match within(
        "a call with no token",
        bare.call::<_, f64>("add", &(1.0, 2.0)),
    )
    .await
    {
        Err(e) => assert!(
            e.to_string().contains("Authorization: Bearer"),
            "the error says what is missing: {e}"
        ),
        Ok(sum) => panic!("a call without the token went through: {sum}"),
    }
    drop((client, bare));
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_over_http_after_a_refusal_closed_its_transport() {
    let fx = TestServer::start_via(
        Via::Http,
        rpc_core::Server::builder().max_frame_size(1024).service(
            rpc_demo::services::EchoServer::new(rpc_demo::services::Echoer),
        ),
    )
    .await;
    let client = fx.client().await;
    let too_large = within(
        "a call over the limit",
        client.call::<_, String>("echo", &("x".repeat(2000),)),
    )
    .await;
    assert!(
        matches!(too_large, Err(RpcError::Closed(_))),
        "{too_large:?}"
    );
    // The next call dials again and goes through.
    let echoed: String = within("a call after", client.call("echo", &("again",)))
        .await
        .unwrap();
    assert_eq!(echoed, "again");
    drop(client);
    fx.shutdown().await;
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error_naming_the_url() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/rpc", free.local_addr().unwrap());
    drop(free);
    match within(
        "a client to a closed port",
        Client::builder().connect(url.as_str()),
    )
    .await
    {
        Err(RpcError::Connect { addr, .. }) => assert_eq!(addr, url),
        other => panic!("expected Connect, got {other:?}"),
    }
}

#[test]
fn http_urls_need_a_host_and_a_port() {
    use rpc_core::transport::HttpConnector;
    assert!(HttpConnector::new("http://127.0.0.1:7070").is_some());
    assert!(HttpConnector::new("https://example.test:443/rpc").is_some());
    assert!(HttpConnector::new("http://127.0.0.1/rpc").is_none());
    assert!(HttpConnector::new("http:///rpc").is_none());
    assert!(HttpConnector::new("ws://127.0.0.1:7070").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_cannot_hold_every_connection() {
    // A "server" that accepts connections, reports each, and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, mut accepts) = tokio::sync::mpsc::unbounded_channel();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            if accepted.send(()).is_err() {
                return;
            }
        }
    });
    let client = within(
        "a client",
        Client::builder()
            .timeout(std::time::Duration::from_millis(100))
            .connect(format!("http://{addr}/rpc")),
    )
    .await
    .unwrap();
    let calls = rpc_core::transport::MAX_HTTP_CONNECTIONS + 2;
    for _ in 0..calls {
        let answer = within(
            "a call with no answer",
            client.call::<_, f64>("add", &(1.0, 2.0)),
        )
        .await;
        assert!(matches!(answer, Err(RpcError::Timeout(_))), "{answer:?}");
    }
    // Each POST was given up with its connection, and the next call dialled
    // afresh: none waited for a connection the silent server held.
    for n in 1..=calls {
        within(&format!("connection {n} to be dialled"), accepts.recv())
            .await
            .expect("the silent server runs");
    }
    drop(client);
    silent.abort();
}

/// A server that answers one POST per connection, as HTTP/1.1 keep-alive,
/// then closes the connection: what a server's idle timeout does to a
/// pooled connection between two calls.
async fn answer_once_per_connection(
    listener: tokio::net::TcpListener,
    closed: tokio::sync::mpsc::UnboundedSender<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut stream, _)) = listener.accept().await {
        let closed = closed.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then the body by Content-Length.
            let body = loop {
                let Ok(n) = stream.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&chunk[..n]);
                let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break request[end + 4..end + 4 + length].to_vec();
                }
            };
            let call: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let answer =
                serde_json::json!({"jsonrpc": "2.0", "result": 3.0, "id": call["id"]}).to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            // Closed at once, without `Connection: close`.
            drop(stream);
            let _ = closed.send(());
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_the_server_closed_does_not_fail_the_next_call() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, mut closes) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(answer_once_per_connection(listener, closed));
    let client = within(
        "a client",
        Client::builder().connect(format!("http://{addr}/rpc")),
    )
    .await
    .unwrap();
    for i in 0..50 {
        let sum: Result<f64, _> = within("a call", client.call("add", &(1.0, 2.0))).await;
        assert_eq!(sum.as_ref().ok(), Some(&3.0), "call {i}: {sum:?}");
        // The next call comes after the server closed the connection, as
        // after a server's idle timeout (a close racing a request already
        // on its way is another matter: that request may have run, and is
        // never sent twice).
        within("the server to close", closes.recv()).await;
    }
    drop(client);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_path_or_a_missing_port_says_what_to_write() {
    let fx = TestServer::demo_via(Via::Http).await;
    let addr = fx.addr();
    // HTTP: the first call learns the path is wrong, and says so.
    let client = within(
        "a client at a wrong path",
        Client::builder().connect(format!("http://{addr}/api")),
    )
    .await
    .unwrap();
    let error = within("a call", client.call::<_, f64>("add", &(1.0, 2.0)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no JSON-RPC endpoint at `/api`") && error.contains("`/rpc`"),
        "{error}"
    );
    // WebSocket: the handshake does.
    let error = within(
        "a socket at a wrong path",
        Client::builder().connect(format!("ws://{addr}/wrong")),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("no WebSocket at this path") && error.contains("`/ws`"),
        "{error}"
    );
    // No port: said so, without blaming the server.
    for target in ["127.0.0.1", "http://127.0.0.1/rpc"] {
        let error = within("a target with no port", Client::builder().connect(target))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("port"), "{error}");
        assert!(!error.contains("is the server running"), "{error}");
    }
    drop(client);
    fx.shutdown().await;
}

/// A TCP relay from a port of its own to `server` that counts the HTTP
/// requests passing through (the request lines starting `POST `).
async fn counting_relay(
    server: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let posts = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = posts.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(server).await else {
                return;
            };
            let (mut from_client, mut to_server) = (inbound, outbound);
            let posts = counted.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = from_client.split();
                let (mut server_read, mut server_write) = to_server.split();
                let upstream = async {
                    // The last bytes of the previous read, so a request
                    // line split between two reads is still counted once.
                    let mut seen: Vec<u8> = Vec::new();
                    let mut chunk = [0u8; 16 * 1024];
                    loop {
                        let n = match client_read.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let carried = seen.len();
                        seen.extend_from_slice(&chunk[..n]);
                        let found = seen
                            .windows(11)
                            .enumerate()
                            .filter(|(at, w)| *w == b"POST /rpc H" && at + 11 > carried)
                            .count();
                        posts.fetch_add(found, Ordering::SeqCst);
                        seen.drain(..seen.len().saturating_sub(10));
                        if server_write.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let downstream = tokio::io::copy(&mut server_read, &mut client_write);
                let _ = tokio::join!(upstream, downstream);
            });
        }
    });
    (addr, posts)
}

/// Calls waiting while every connection is busy: with coalescing (the
/// default) they share a few batch POSTs; without, each has its own. Either
/// way every answer reaches its own call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_for_a_connection_are_merged_into_batch_posts() {
    use common::gated::{self, Gate, GatedClient};
    use rpc_core::transport::{HttpConnector, MAX_HTTP_CONNECTIONS};
    use std::sync::atomic::Ordering;

    const QUEUED: usize = 40;
    for coalescing in [true, false] {
        let gate = Gate::default();
        let fx = gated::serve(&gate, rpc_core::Server::builder()).await;
        let (relay, posts) = counting_relay(fx.addr()).await;
        let connector = HttpConnector::new(&format!("http://{relay}/rpc"))
            .unwrap()
            .coalescing(coalescing);
        let client = within("a client", Client::builder().connect_with(connector))
            .await
            .unwrap();

        // Every connection holds a slow call.
        let gated = GatedClient::from(client.clone());
        let slow: Vec<_> = (0..MAX_HTTP_CONNECTIONS)
            .map(|_| {
                let gated = gated.clone();
                tokio::spawn(async move { gated.slow().await })
            })
            .collect();
        within(
            "the slow calls to start",
            gate.started(MAX_HTTP_CONNECTIONS),
        )
        .await;
        // The quick calls are queued by their first poll, and wait.
        let quick = futures_util::future::join_all((0..QUEUED).map(|_| gated.quick()));
        let mut quick = Box::pin(quick);
        assert!(futures_util::poll!(quick.as_mut()).is_pending());
        for _ in 0..MAX_HTTP_CONNECTIONS {
            gate.open.notify_one();
        }
        for answer in within("the slow calls", futures_util::future::join_all(slow)).await {
            assert_eq!(answer.unwrap().unwrap(), "done");
        }
        for answer in within("the quick calls", quick.as_mut()).await {
            assert_eq!(answer.unwrap(), 1);
        }
        let posts = posts.load(Ordering::SeqCst);
        if coalescing {
            assert!(
                posts <= 3 * MAX_HTTP_CONNECTIONS,
                "{QUEUED} queued calls took {posts} POSTs in all"
            );
        } else {
            assert_eq!(posts, MAX_HTTP_CONNECTIONS + QUEUED);
        }
        drop(quick);
        drop((gated, client));
        fx.shutdown().await;
    }
}
