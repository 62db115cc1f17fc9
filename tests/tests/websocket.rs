//! JSON-RPC over WebSocket (`GET /ws`) on the same port as the framed
//! protocol and HTTP: each text message one JSON-RPC message, many calls in
//! flight on one socket.

mod common;

use std::collections::BTreeMap;

use common::{TestServer, within};
use futures_util::{SinkExt, StreamExt};
use rpc_core::code;
use rpc_demo::services::{CalculatorClient, all_services};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, http};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(
    fx: &TestServer,
    bearer: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{}/ws", fx.addr())
        .into_client_request()
        .unwrap();
    if let Some(token) = bearer {
        request.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
    }
    within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map(|(socket, _)| socket)
}

async fn send(socket: &mut Socket, message: &Value) {
    within("a send", socket.send(Message::text(message.to_string())))
        .await
        .unwrap();
}

async fn next(socket: &mut Socket) -> Value {
    loop {
        match within("a message", socket.next()).await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn calls_batches_and_notifications_over_one_socket() {
    let fx = TestServer::demo().await;
    let mut ws = open(&fx, None).await.unwrap();
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await,
        json!({"jsonrpc":"2.0","result":5.0,"id":1})
    );
    // A notification gets nothing; a batch gets one message.
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","method":"echo","params":["x"]}),
    )
    .await;
    send(
        &mut ws,
        &json!([
            {"jsonrpc":"2.0","method":"mul","params":[4,5],"id":"a"},
            {"jsonrpc":"2.0","method":"nope","id":"b"}
        ]),
    )
    .await;
    let batch = next(&mut ws).await;
    let batch = batch
        .as_array()
        .expect("the batch answer comes next, the notification got none");
    assert_eq!(batch.len(), 2);
    let b = batch.iter().find(|m| m["id"] == "b").unwrap();
    assert_eq!(b["error"]["code"], code::METHOD_NOT_FOUND);
    within("the close", ws.close(None)).await.unwrap();
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_on_one_socket_each_get_their_answer() {
    let fx = TestServer::demo().await;
    let mut ws = open(&fx, None).await.unwrap();
    for i in 0..100u32 {
        // Every one of them in flight before any answer is read.
        send(
            &mut ws,
            &json!({"jsonrpc":"2.0","method":"add","params":[i, 1],"id":i}),
        )
        .await;
    }
    let mut answers = BTreeMap::new();
    while answers.len() < 100 {
        let answer = next(&mut ws).await;
        let id = answer["id"].as_u64().unwrap();
        assert!(
            answers
                .insert(id, answer["result"].as_f64().unwrap())
                .is_none()
        );
    }
    for (id, result) in answers {
        assert_eq!(result, id as f64 + 1.0);
    }
    drop(ws);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_token_is_taken_as_a_bearer_on_the_upgrade_or_with_rpc_auth_inside() {
    let fx = TestServer::start(all_services().token("s3cret")).await;
    // With the bearer token on the upgrade: calls go through.
    let mut ws = open(&fx, Some("s3cret")).await.unwrap();
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}),
    )
    .await;
    assert_eq!(next(&mut ws).await["result"], 3.0);
    drop(ws);
    // Without it: refused until `rpc.auth`.
    let mut ws = open(&fx, None).await.unwrap();
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}),
    )
    .await;
    assert_eq!(next(&mut ws).await["error"]["code"], code::UNAUTHORIZED);
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","method":"rpc.auth","params":["s3cret"],"id":2}),
    )
    .await;
    assert_eq!(next(&mut ws).await["result"], true);
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","method":"add","params":[1,2],"id":3}),
    )
    .await;
    assert_eq!(next(&mut ws).await["result"], 3.0);
    drop(ws);
    // A wrong bearer token: the upgrade itself is refused.
    match open(&fx, Some("wrong")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    fx.shutdown().await;
}

#[tokio::test]
async fn one_port_serves_framed_http_and_websocket_clients_at_once() {
    let fx = TestServer::demo().await;
    let calc = CalculatorClient::new(fx.client().await);
    let mut ws = open(&fx, None).await.unwrap();
    let addr = fx.addr();
    let over_http = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let body = r#"{"jsonrpc":"2.0","method":"add","params":[10,20],"id":1}"#;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST /rpc HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    });
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","method":"add","params":[100,200],"id":1}),
    )
    .await;
    let (framed, from_ws, from_http) = tokio::join!(calc.add(1.0, 2.0), next(&mut ws), over_http);
    assert_eq!(framed.unwrap(), 3.0);
    assert_eq!(from_ws["result"], 300.0);
    assert!(
        from_http
            .unwrap()
            .ends_with(r#"{"jsonrpc":"2.0","result":30.0,"id":1}"#)
    );
    drop((calc, ws));
    fx.shutdown().await;
}

#[tokio::test]
async fn a_shutdown_tells_websocket_clients_and_closes() {
    let fx = TestServer::demo().await;
    let mut ws = open(&fx, None).await.unwrap();
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","method":"rpc.ping","id":1}),
    )
    .await;
    assert_eq!(next(&mut ws).await["result"], "pong");
    let shutdown = tokio::spawn(fx.shutdown());
    let notice = next(&mut ws).await;
    assert_eq!(notice["method"], "rpc.shutdown", "{notice}");
    // Then the socket closes, with 1001 (going away).
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
    within("the shutdown", shutdown).await.unwrap();
}

/// Reads until the close frame and returns its code (`None`: the socket
/// ended without one).
async fn close_code(socket: &mut Socket) -> Option<CloseCode> {
    loop {
        match within("the close", socket.next()).await {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_message_over_the_limit_is_explained_then_closed_with_1009() {
    let fx = TestServer::start(all_services().max_frame_size(1024)).await;
    let mut ws = open(&fx, None).await.unwrap();
    let big = json!({"jsonrpc":"2.0","method":"echo","params":["x".repeat(2000)],"id":1});
    // The server may close before the client has written it all.
    let _ = within("a send", ws.send(Message::text(big.to_string()))).await;
    let error = next(&mut ws).await;
    assert_eq!(error["error"]["code"], code::FRAME_TOO_LARGE, "{error}");
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));
    fx.shutdown().await;
}

#[tokio::test]
async fn a_page_from_another_site_cannot_open_a_socket() {
    let fx = TestServer::demo().await;
    let mut request = format!("ws://{}/ws", fx.addr())
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        http::header::ORIGIN,
        "https://evil.example".parse().unwrap(),
    );
    match within("the handshake", tokio_tungstenite::connect_async(request)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    // The server's own origin may.
    let mut request = format!("ws://{}/ws", fx.addr())
        .into_client_request()
        .unwrap();
    let own = format!("http://{}", fx.addr());
    request
        .headers_mut()
        .insert(http::header::ORIGIN, own.parse().unwrap());
    let (mut ws, _) = within("the handshake", tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","method":"rpc.ping","id":1}),
    )
    .await;
    assert_eq!(next(&mut ws).await["result"], "pong");
    drop(ws);
    fx.shutdown().await;
}

/// Records the `user-agent` the upgrade request carried.
#[derive(Default)]
struct SeeHeaders(std::sync::Mutex<Vec<String>>);

impl rpc_core::middleware::Middleware for SeeHeaders {
    fn admit(
        &self,
        _: &rpc_core::middleware::CallInfo<'_>,
        peer: &mut rpc_core::middleware::PeerState,
    ) -> Result<rpc_core::middleware::Admit, rpc_core::ErrorObject> {
        let info = peer.info();
        if let Some((_, agent)) = info.headers.iter().find(|(n, _)| n == "user-agent") {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {agent}", info.transport));
        }
        Ok(rpc_core::middleware::Admit::Continue)
    }
}

#[tokio::test]
async fn a_sockets_session_knows_the_headers_of_its_upgrade() {
    let seen = std::sync::Arc::new(SeeHeaders::default());
    let fx = TestServer::start(all_services().middleware(seen.clone())).await;
    let mut request = format!("ws://{}/ws", fx.addr())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert(http::header::USER_AGENT, "course-lab/1.0".parse().unwrap());
    let (mut ws, _) = within("the handshake", tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","method":"rpc.ping","id":1}),
    )
    .await;
    assert_eq!(next(&mut ws).await["result"], "pong");
    assert_eq!(*seen.0.lock().unwrap(), ["ws course-lab/1.0"]);
    drop(ws);
    fx.shutdown().await;
}

/// RFC 6455 §5.5.1: a close the client starts is answered with a close.
#[tokio::test]
async fn a_close_from_the_client_is_answered_with_a_close() {
    let fx = TestServer::demo().await;
    let mut ws = open(&fx, None).await.unwrap();
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","method":"rpc.ping","id":1}),
    )
    .await;
    assert_eq!(next(&mut ws).await["result"], "pong");
    within(
        "the close to be sent",
        ws.send(Message::Close(Some(
            tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            },
        ))),
    )
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Normal));
    fx.shutdown().await;
}
