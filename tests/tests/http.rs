//! JSON-RPC over HTTP (`POST /rpc`) on the same port as the framed
//! protocol, spoken as curl, Python's `urllib` or any HTTP client does:
//! every JSON-RPC answer with status 200, refusals below JSON-RPC with
//! their own status.

mod common;

use common::{TestServer, within};
use rpc_core::code;
use rpc_demo::services::{CalculatorClient, all_services};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP response: status, lower-case headers, body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("a JSON body ({e}): {}", String::from_utf8_lossy(&self.body))
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request on `stream` (kept alive) and reads its response.
async fn request(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    within("the request to be written", async {
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
    })
    .await;
    within("the response", read_reply(stream)).await
}

async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed inside a body");
        body.extend_from_slice(&chunk[..n]);
    }
    Reply {
        status,
        headers,
        body,
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

async fn post(stream: &mut TcpStream, body: &Value) -> Reply {
    request(stream, "POST", "/rpc", &[JSON], body.to_string().as_bytes()).await
}

#[tokio::test]
async fn requests_batches_and_errors_all_come_back_with_status_200() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    let one = post(
        &mut s,
        &json!({"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}),
    )
    .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.header("content-type"), Some("application/json"));
    assert_eq!(one.json(), json!({"jsonrpc":"2.0","result":5.0,"id":1}));

    // The same connection, kept alive: a batch, with an error inside.
    let batch = post(
        &mut s,
        &json!([
            {"jsonrpc":"2.0","method":"multiply","params":[4,5],"id":"a"},
            {"jsonrpc":"2.0","method":"mul","params":[4,5],"id":"b"},
            {"jsonrpc":"2.0","method":"rpc.ping"}
        ]),
    )
    .await;
    assert_eq!(batch.status, 200);
    let answers = batch.json();
    let answers = answers.as_array().unwrap();
    assert_eq!(
        answers.len(),
        2,
        "no answer for the notification: {answers:?}"
    );
    let by_id = |id: &str| answers.iter().find(|a| a["id"] == id).unwrap().clone();
    assert_eq!(by_id("b")["result"], 20.0);
    assert_eq!(by_id("a")["error"]["code"], code::METHOD_NOT_FOUND);

    // Every JSON-RPC error, status 200.
    for (request, expected) in [
        (
            json!({"jsonrpc":"2.0","method":"nope","id":2}),
            code::METHOD_NOT_FOUND,
        ),
        (
            json!({"jsonrpc":"2.0","method":"add","params":["x",1],"id":3}),
            code::INVALID_PARAMS,
        ),
        (
            json!({"jsonrpc":"1.0","method":"add","id":4}),
            code::INVALID_REQUEST,
        ),
        (
            json!({"jsonrpc":"2.0","method":"div","params":[1,0],"id":5}),
            code::APPLICATION_ERROR,
        ),
        (
            json!({"jsonrpc":"2.0","method":"sleep","params":[2000],"id":6,"timeout_ms":10}),
            code::DEADLINE_EXCEEDED,
        ),
    ] {
        let reply = post(&mut s, &request).await;
        assert_eq!(reply.status, 200, "{request}");
        assert_eq!(reply.json()["error"]["code"], expected, "{request}");
        assert_eq!(reply.json()["id"], request["id"]);
    }
    let garbage = request(&mut s, "POST", "/rpc", &[JSON], b"{not json").await;
    assert_eq!(garbage.status, 200);
    assert_eq!(garbage.json()["error"]["code"], code::PARSE_ERROR);

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_body_of_notifications_only_gets_204_no_content() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;
    let one = post(
        &mut s,
        &json!({"jsonrpc":"2.0","method":"echo","params":["x"]}),
    )
    .await;
    assert_eq!((one.status, one.body.len()), (204, 0));
    let batch = post(
        &mut s,
        &json!([{"jsonrpc":"2.0","method":"rpc.ping"},{"jsonrpc":"2.0","method":"nope"}]),
    )
    .await;
    assert_eq!((batch.status, batch.body.len()), (204, 0));
    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn content_types_other_than_json_in_utf8_get_415() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;
    let ping = br#"{"jsonrpc":"2.0","method":"rpc.ping","id":1}"#;
    for accepted in [
        &[][..],
        &[("content-type", "application/json")][..],
        &[("content-type", "Application/JSON; charset=UTF-8")][..],
    ] {
        let reply = request(&mut s, "POST", "/rpc", accepted, ping).await;
        assert_eq!(reply.status, 200, "{accepted:?}");
        assert_eq!(reply.json()["result"], "pong");
    }
    for refused in [
        "text/plain",
        "application/json; charset=latin1",
        "application/x-www-form-urlencoded",
    ] {
        let reply = request(&mut s, "POST", "/rpc", &[("content-type", refused)], ping).await;
        assert_eq!(reply.status, 415, "{refused}");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains("Content-Type: application/json"),
            "{message}"
        );
    }
    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_without_being_read_whole() {
    let fx = TestServer::start(all_services().max_frame_size(1024)).await;
    let mut s = fx.raw().await;
    // Announced over the limit: refused from the head alone (the body is
    // never sent here, so a server that waited for it would hang).
    within("the head to be written", async {
        s.write_all(b"POST /rpc HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100000000\r\n\r\n")
            .await
            .unwrap();
    })
    .await;
    let reply = within("the 413", read_reply(&mut s)).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], code::FRAME_TOO_LARGE);
    drop(s);
    // Within the limit, the same server answers.
    let mut s = fx.raw().await;
    let ok = post(
        &mut s,
        &json!({"jsonrpc":"2.0","method":"echo","params":["x"],"id":1}),
    )
    .await;
    assert_eq!(ok.json()["result"], "x");
    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn other_paths_and_methods_are_refused_with_their_status() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;
    let missing = request(&mut s, "GET", "/nothing-here", &[], b"").await;
    assert_eq!(missing.status, 404);
    let get = request(&mut s, "GET", "/rpc", &[], b"").await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_server_with_a_token_takes_it_as_a_bearer_and_refuses_without_it() {
    let fx = TestServer::start(all_services().token("s3cret")).await;
    let mut s = fx.raw().await;
    let add = br#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}"#;
    let none = request(&mut s, "POST", "/rpc", &[JSON], add).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert_eq!(none.json()["error"]["code"], code::UNAUTHORIZED);
    let wrong = request(
        &mut s,
        "POST",
        "/rpc",
        &[JSON, ("authorization", "Bearer nope")],
        add,
    )
    .await;
    assert_eq!(wrong.status, 401);
    let right = request(
        &mut s,
        "POST",
        "/rpc",
        &[JSON, ("authorization", "Bearer s3cret")],
        add,
    )
    .await;
    assert_eq!(right.status, 200);
    assert_eq!(right.json()["result"], 3.0);
    // Each request carries its own credentials.
    let again = request(&mut s, "POST", "/rpc", &[JSON], add).await;
    assert_eq!(again.status, 401);
    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn one_port_serves_framed_and_http_clients_at_once() {
    let fx = TestServer::demo().await;
    let calc = CalculatorClient::new(fx.client().await);
    let mut http = fx.raw().await;
    for i in 0..20u32 {
        let x = f64::from(i);
        let body = json!({"jsonrpc":"2.0","method":"add","params":[x, 2.0],"id":i});
        let (framed, over_http) = tokio::join!(calc.add(x, 1.0), post(&mut http, &body));
        assert_eq!(framed.unwrap(), x + 1.0);
        assert_eq!(over_http.json()["result"], x + 2.0);
    }
    drop((calc, http));
    fx.shutdown().await;
}

#[tokio::test]
async fn a_foreign_origin_or_host_is_refused_and_the_servers_own_pages_are_not() {
    let fx = TestServer::start(all_services().allowed_origins(["https://calc.example"])).await;
    let mut s = fx.raw().await;
    let ping = br#"{"jsonrpc":"2.0","method":"rpc.ping","id":1}"#;
    let own = format!("http://127.0.0.1:{}", fx.addr().port());
    let host = format!("127.0.0.1:{}", fx.addr().port());
    let send = |origin: Option<&str>, host: &str| {
        let mut head =
            format!("POST /rpc HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n");
        if let Some(origin) = origin {
            head.push_str(&format!("origin: {origin}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", ping.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(ping);
        bytes
    };
    for (what, origin, host, status) in [
        ("no origin", None, host.as_str(), 200),
        (
            "the server's own pages",
            Some(own.as_str()),
            host.as_str(),
            200,
        ),
        (
            "an allowed origin",
            Some("https://calc.example"),
            host.as_str(),
            200,
        ),
        (
            "a foreign origin",
            Some("https://evil.example"),
            host.as_str(),
            403,
        ),
        (
            "a foreign host (DNS rebinding)",
            None,
            "evil.example:80",
            403,
        ),
        ("localhost", None, "localhost", 200),
    ] {
        within("the request", s.write_all(&send(origin, host)))
            .await
            .unwrap();
        let reply = within("the response", read_reply(&mut s)).await;
        assert_eq!(
            reply.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    drop(s);
    fx.shutdown().await;
}

mod counter {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// One read-only method and one that changes state.
    #[rpc_core::service]
    pub trait Counter {
        /// The count.
        #[rpc(read_only, alias = "valor")]
        async fn get(&self) -> u64;
        /// Adds `by` to the count.
        async fn bump(&self, by: u64) -> u64;
    }

    #[derive(Default)]
    pub struct Count(pub AtomicU64);

    impl Counter for std::sync::Arc<Count> {
        async fn get(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        async fn bump(&self, by: u64) -> u64 {
            self.0.fetch_add(by, Ordering::SeqCst) + by
        }
    }
}

#[tokio::test]
async fn rest_routes_convert_arguments_by_type_and_map_errors_to_statuses() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;
    for (path, status, body) in [
        ("/api/mult/4/5", 200, json!(20.0)),
        ("/api/mul/4/5", 200, json!(20.0)),
        ("/api/soma/2/3", 200, json!(5.0)),
        ("/api/div/4/5", 200, json!(0.8)),
        ("/api/add?a=4&b=5", 200, json!(9.0)),
        ("/api/hello/123", 200, json!("Olá, 123!")),
        ("/api/hello/Jo%C3%A3o", 200, json!("Olá, João!")),
        ("/api/hello?name=Z%C3%A9", 200, json!("Olá, Zé!")),
    ] {
        let reply = request(&mut s, "GET", path, &[], b"").await;
        assert_eq!(reply.status, status, "{path}");
        assert_eq!(reply.json(), body, "{path}");
    }
    for (path, status, code) in [
        ("/api/div/1/0", 422, code::APPLICATION_ERROR),
        ("/api/add/x/1", 400, code::INVALID_PARAMS),
        ("/api/add/1", 400, code::INVALID_PARAMS),
        ("/api/add?a=1&c=2", 400, code::INVALID_PARAMS),
        ("/api/nope/1", 404, code::METHOD_NOT_FOUND),
    ] {
        let reply = request(&mut s, "GET", path, &[], b"").await;
        assert_eq!(
            reply.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["error"]["code"], code, "{path}");
    }
    let posted = request(&mut s, "POST", "/api/add", &[JSON], br#"{"a":1,"b":2}"#).await;
    assert_eq!((posted.status, posted.json()), (200, json!(3.0)));
    let posted = request(&mut s, "POST", "/api/add", &[JSON], b"[1,2]").await;
    assert_eq!(posted.json(), json!(3.0));
    let bad = request(&mut s, "POST", "/api/add", &[JSON], b"3").await;
    assert_eq!(bad.status, 400);
    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_method_that_changes_state_has_no_get_route() {
    let count = std::sync::Arc::new(counter::Count::default());
    let fx = TestServer::start(
        rpc_core::Server::builder().service(counter::CounterServer::new(count.clone())),
    )
    .await;
    let mut s = fx.raw().await;
    let get = request(&mut s, "GET", "/api/bump/5", &[], b"").await;
    assert_eq!(get.status, 405, "{}", String::from_utf8_lossy(&get.body));
    assert_eq!(get.header("allow"), Some("POST"));
    assert_eq!(
        count.0.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a GET (a link, an <img>) changed nothing"
    );
    let post = request(&mut s, "POST", "/api/bump", &[JSON], b"[5]").await;
    assert_eq!((post.status, post.json()), (200, json!(5)));
    let read = request(&mut s, "GET", "/api/valor", &[], b"").await;
    assert_eq!(
        (read.status, read.json()),
        (200, json!(5)),
        "the alias reads it"
    );
    // The alias answers JSON-RPC too.
    let rpc = post_rpc(&mut s, &json!({"jsonrpc":"2.0","method":"valor","id":1})).await;
    assert_eq!(rpc.json()["result"], 5);
    drop(s);
    fx.shutdown().await;
}

async fn post_rpc(stream: &mut TcpStream, body: &Value) -> Reply {
    post(stream, body).await
}

#[tokio::test]
async fn over_the_connection_limit_an_http_peer_gets_503_with_retry_after() {
    let fx = TestServer::start(all_services().max_connections(1)).await;
    // The one connection the server serves.
    let mut held = fx.raw().await;
    let pong = post(
        &mut held,
        &json!({"jsonrpc":"2.0","method":"rpc.ping","id":1}),
    )
    .await;
    assert_eq!(pong.status, 200);
    let mut extra = fx.raw().await;
    let refused = post(
        &mut extra,
        &json!({"jsonrpc":"2.0","method":"rpc.ping","id":2}),
    )
    .await;
    assert_eq!(
        refused.status,
        503,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.json()["error"]["code"], code::TOO_MANY_CONNECTIONS);
    drop((held, extra));
    fx.shutdown().await;
}
