//! Every request that carries an id gets exactly one answer, whatever goes
//! wrong on the server's side: a result that cannot be serialized or whose
//! serializer panics, an answer or a batch answer over the message limit,
//! an error too large to send. And when the session itself fails, the peer
//! sees its connection close at once.

mod common;

use std::collections::BTreeMap;

use common::{TestServer, exchange, expect_closed, read_json, send_frame, within};
use rpc_core::code;
use serde_json::{Value, json};

mod awkward {
    use std::collections::HashMap;

    /// Results that fail in every way a result can.
    #[rpc_core::service]
    pub trait Awkward {
        /// A map with non-string keys: JSON cannot hold it.
        async fn unserializable(&self) -> HashMap<(u8, u8), u8>;
        /// A value whose `Serialize` panics.
        async fn panicky(&self) -> Panicky;
        /// `n` bytes of text.
        async fn bytes(&self, n: usize) -> String;
        /// An application error whose data is `n` bytes.
        async fn big_error(&self, n: usize) -> Result<u8, String>;
    }

    pub struct Impl;

    /// Serializing it panics.
    #[derive(serde::Deserialize)]
    pub struct Panicky;

    impl serde::Serialize for Panicky {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("this value refuses to be serialized")
        }
    }

    impl Awkward for Impl {
        async fn unserializable(&self) -> HashMap<(u8, u8), u8> {
            HashMap::from([((1, 2), 3)])
        }
        async fn panicky(&self) -> Panicky {
            Panicky
        }
        async fn bytes(&self, n: usize) -> String {
            "x".repeat(n)
        }
        async fn big_error(&self, n: usize) -> Result<u8, String> {
            Err("e".repeat(n))
        }
    }
}

async fn awkward_server(max_frame: usize) -> TestServer {
    TestServer::start(
        rpc_core::Server::builder()
            .max_frame_size(max_frame)
            .service(awkward::AwkwardServer::new(awkward::Impl)),
    )
    .await
}

fn call(method: &str, params: Value, id: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id})
}

#[tokio::test]
async fn results_that_cannot_be_sent_are_answered_with_an_internal_error() {
    let fx = awkward_server(8192).await;
    let mut s = fx.raw().await;
    for (what, request) in [
        (
            "a map with non-string keys",
            call("unserializable", json!([]), 1),
        ),
        ("a panicking serializer", call("panicky", json!([]), 2)),
        (
            "a result over the limit",
            call("bytes", json!([100_000]), 3),
        ),
        (
            "an error over the limit",
            call("big_error", json!([100_000]), 4),
        ),
    ] {
        let answer = exchange(&mut s, &request).await;
        assert_eq!(answer["id"], request["id"], "{what}: {answer}");
        assert_eq!(
            answer["error"]["code"],
            code::INTERNAL_ERROR,
            "{what}: {answer}"
        );
    }
    // The connection goes on.
    let fine = exchange(&mut s, &call("bytes", json!([3]), 5)).await;
    assert_eq!(fine["result"], "xxx", "{fine}");
    drop(s);
    fx.shutdown().await;
}

/// Sends `batch` and collects every answer per id until `ids` all have one.
async fn answers_to(
    s: &mut tokio::net::TcpStream,
    batch: &Value,
    ids: usize,
) -> BTreeMap<u64, Vec<Value>> {
    send_frame(s, serde_json::to_string(batch).unwrap().as_bytes()).await;
    let mut answers: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    while answers.values().map(Vec::len).sum::<usize>() < ids {
        let message = read_json(s).await;
        let members = match message {
            Value::Array(members) => members,
            single => vec![single],
        };
        for member in members {
            let id = member["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("an id: {member}"));
            answers.entry(id).or_default().push(member);
        }
    }
    answers
}

#[tokio::test]
async fn a_batch_answer_over_the_limit_still_answers_every_request_once() {
    let fx = awkward_server(8192).await;
    let mut s = fx.raw().await;

    // Two results that fit one by one, not together.
    let batch = json!([
        call("bytes", json!([5000]), 1),
        call("bytes", json!([5000]), 2)
    ]);
    let answers = answers_to(&mut s, &batch, 2).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    for (id, got) in &answers {
        assert_eq!(got.len(), 1, "exactly one answer for {id}: {got:?}");
        assert_eq!(got[0]["error"]["code"], code::INTERNAL_ERROR, "{got:?}");
    }

    // So many requests that even their error answers do not fit in one
    // message: each still gets its own.
    let batch: Vec<Value> = (0..100).map(|i| call("bytes", json!([60]), i)).collect();
    let answers = answers_to(&mut s, &Value::Array(batch), 100).await;
    assert_eq!(answers.len(), 100);
    assert!(answers.values().all(|got| got.len() == 1), "{answers:?}");

    let fine = exchange(&mut s, &call("bytes", json!([3]), 500)).await;
    assert_eq!(fine["result"], "xxx", "{fine}");
    drop(s);
    fx.shutdown().await;
}

/// A layer with a bug: it panics on one method.
struct Buggy;

impl rpc_core::middleware::Middleware for Buggy {
    fn admit(
        &self,
        call: &rpc_core::middleware::CallInfo<'_>,
        _: &mut rpc_core::middleware::PeerState,
    ) -> Result<rpc_core::middleware::Admit, rpc_core::ErrorObject> {
        assert_ne!(call.method, "boom", "a bug in a middleware layer");
        Ok(rpc_core::middleware::Admit::Continue)
    }
}

#[tokio::test]
async fn a_panic_in_a_session_closes_its_connection_at_once_and_only_it() {
    let fx = TestServer::start(rpc_demo::services::all_services().middleware(Buggy)).await;
    let mut victim = fx.raw().await;
    let mut bystander = fx.raw().await;
    send_frame(&mut victim, br#"{"jsonrpc":"2.0","method":"boom","id":1}"#).await;
    // No answer can come, but the peer is not left waiting: the connection
    // closes (before the fix, the writer task held it open in silence).
    within("the close", expect_closed(&mut victim)).await;
    let pong = exchange(
        &mut bystander,
        &json!({"jsonrpc":"2.0","method":"rpc.ping","id":2}),
    )
    .await;
    assert_eq!(pong["result"], "pong", "{pong}");
    drop((victim, bystander));
    fx.shutdown().await;
}
