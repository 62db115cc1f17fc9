//! XML-RPC on the same port (`POST /RPC2`): Python's `xmlrpc.client`, as the
//! course uses it, against the demo server; and raw HTTP bodies for what a
//! well-behaved client never sends.
//!
//! Needs `python3` on `PATH` (CI installs it); without it the Python tests
//! fail and say so, rather than passing silently.

mod common;

use std::path::PathBuf;

use common::python::{SCRIPT_LIMIT, run_python};
use common::{TestServer, within};
use rpc_demo::services::all_services;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs `examples/python/xmlrpc_client.py HOST:PORT [TOKEN]` and checks it
/// reports success.
async fn python_client_passes(fx: &TestServer, token: Option<&str>) {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/python/xmlrpc_client.py");
    assert!(script.is_file(), "missing {}", script.display());
    let mut args = vec![format!("127.0.0.1:{}", fx.addr().port())];
    args.extend(token.map(str::to_owned));
    let finished = tokio::task::spawn_blocking(move || run_python(&script, &args))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let (status, stdout, stderr) = (finished.status, finished.stdout, finished.stderr);
    let report = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    let status = status
        .unwrap_or_else(|| panic!("the Python client was killed after {SCRIPT_LIMIT:?}\n{report}"));
    assert!(
        status.success(),
        "the Python client failed ({status})\n{report}"
    );
    assert!(stdout.contains("all checks passed"), "{report}");
    assert!(!stdout.contains("FAIL"), "{report}");
}

#[tokio::test]
async fn the_course_client_calls_every_method_faults_multicall_and_introspection() {
    let fx = TestServer::demo().await;
    python_client_passes(&fx, None).await;
    fx.shutdown().await;
}

#[tokio::test]
async fn the_course_client_with_a_bearer_token() {
    let fx = TestServer::start(all_services().token("s3cret")).await;
    python_client_passes(&fx, Some("s3cret")).await;
    fx.shutdown().await;
}

/// One HTTP response: status and body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// POSTs `body` to `/RPC2` on a new connection, with `headers`.
async fn post(fx: &TestServer, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream: TcpStream = fx.raw().await;
    let mut head = String::from("POST /RPC2 HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(n, _)| *n == "content-type") {
        head.push_str("content-type: text/xml\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    within("the request to be written", async {
        stream.write_all(head.as_bytes()).await.unwrap();
        // A server may refuse before reading the body (413) and close.
        let _ = stream.write_all(body).await;
    })
    .await;
    let mut raw = Vec::new();
    within("the response", stream.read_to_end(&mut raw))
        .await
        .ok();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn call(method: &str, params: &str) -> Vec<u8> {
    format!("<?xml version=\"1.0\"?><methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>").into_bytes()
}

/// The fault code of a response body, if it is a fault.
fn fault_code(body: &str) -> Option<i64> {
    let rest = body.split("<name>faultCode</name><value><int>").nth(1)?;
    rest.split('<').next()?.parse().ok()
}

#[tokio::test]
async fn bad_bodies_are_faults_with_status_200() {
    let fx = TestServer::demo().await;
    let cases: [(&[u8], i64, &str); 6] = [
        (b"<methodCall><methodName>add</b>", -32700, "not well-formed"),
        (
            b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]><methodCall><methodName>&a;</methodName></methodCall>",
            -32700,
            "DOCTYPE",
        ),
        (b"<methodResponse/>", -32600, "expected &lt;methodCall&gt;"),
        (&call("nope", ""), -32601, "nope"),
        (&call("add", "<param><value>x</value></param>"), -32602, "invalid params"),
        (&call("add", "<param><value><double>nan</double></value></param>"), -32602, "finite"),
    ];
    for (body, code, says) in cases {
        let reply = post(&fx, &[], body).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(
            reply.head.contains("content-type: text/xml"),
            "{}",
            reply.head
        );
        assert_eq!(fault_code(&reply.body), Some(code), "{}", reply.body);
        assert!(reply.body.contains(says), "{says}: {}", reply.body);
    }
    let deep = format!(
        "{}<value>x</value>{}",
        "<value><array><data>".repeat(100),
        "</data></array></value>".repeat(100)
    );
    let reply = post(&fx, &[], &call("echo", &format!("<param>{deep}</param>"))).await;
    assert_eq!(fault_code(&reply.body), Some(-32700), "{}", reply.body);
    assert!(reply.body.contains("nest deeper"), "{}", reply.body);

    let ok = post(
        &fx,
        &[],
        &call(
            "add",
            "<param><value><int>2</int></value></param><param><value><i8>3</i8></value></param>",
        ),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert!(
        ok.body
            .contains("<params><param><value><double>5.0</double></value></param></params>"),
        "{}",
        ok.body
    );
    fx.shutdown().await;
}

#[tokio::test]
async fn refusals_below_xml_rpc_keep_their_http_status() {
    let fx = TestServer::start(all_services().token("s3cret").max_frame_size(1024)).await;
    let add = call(
        "add",
        "<param><value><int>2</int></value></param><param><value><int>3</int></value></param>",
    );

    let anonymous = post(&fx, &[], &add).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert!(anonymous.head.contains("www-authenticate: bearer"));
    assert_eq!(fault_code(&anonymous.body), Some(-32003));
    let wrong = post(&fx, &[("authorization", "Bearer nope")], &add).await;
    assert_eq!(wrong.status, 401);
    let right = post(&fx, &[("authorization", "Bearer s3cret")], &add).await;
    assert_eq!(right.status, 200, "{}", right.body);
    assert!(
        right.body.contains("<double>5.0</double>"),
        "{}",
        right.body
    );

    let auth = ("authorization", "Bearer s3cret");
    let big = call(
        "echo",
        &format!("<param><value>{}</value></param>", "x".repeat(2000)),
    );
    let too_large = post(&fx, &[auth], &big).await;
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    assert_eq!(fault_code(&too_large.body), Some(-32001));

    let foreign = post(&fx, &[auth, ("origin", "http://evil.example")], &add).await;
    assert_eq!(foreign.status, 403);
    let json = post(&fx, &[auth, ("content-type", "application/json")], &add).await;
    assert_eq!(json.status, 415, "{}", json.body);
    fx.shutdown().await;
}
