//! Interoperability with jsonrpsee, the other JSON-RPC 2.0 library for
//! Rust, in both directions and over both web transports: this library's
//! client calling a jsonrpsee server, and jsonrpsee's clients calling this
//! library's server. Tests only (`cargo test --manifest-path
//! bench/Cargo.toml`): they live here because this workspace already builds
//! jsonrpsee for the benchmark, and `.ci/run` runs them.

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rpc_core::{Client, RpcError, code};
    use serde_json::{Value, json};

    use crate::systems::{self, RunningServer, System};

    /// Bounds every wait: a hang is a failure, not a stuck test.
    async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    async fn jsonrpsee_server() -> RunningServer {
        systems::jsonrpsee::start_server().await
    }

    /// This library's client against a jsonrpsee server at `url`: a call,
    /// a call by name, an unknown method and a batch.
    async fn our_client_calls(url: String) {
        let client = within("connect", Client::builder().connect(url.as_str()))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let sum: i64 = within("add", client.call("add", &(2, 3))).await.unwrap();
        assert_eq!(sum, 5, "{url}");
        let echoed: String = within("echo by name", client.call("echo", &json!({"s": "olá"})))
            .await
            .unwrap();
        assert_eq!(echoed, "olá", "{url}");
        match within(
            "an unknown method",
            client.call::<_, Value>("nope", &[(); 0]),
        )
        .await
        {
            Err(RpcError::Server(e)) => assert_eq!(e.code, code::METHOD_NOT_FOUND, "{url}"),
            other => panic!("{url}: expected -32601, got {other:?}"),
        }
        let mut batch = client.batch();
        let a = batch
            .call::<_, i64, rpc_core::Never>("add", &(1, 1))
            .unwrap();
        let b = batch
            .call::<_, String, rpc_core::Never>("echo", &("x",))
            .unwrap();
        within("a batch", batch.send()).await.unwrap();
        assert_eq!(a.await.unwrap(), 2, "{url}");
        assert_eq!(b.await.unwrap(), "x", "{url}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn our_client_calls_a_jsonrpsee_server_over_websocket_and_http() {
        let server = jsonrpsee_server().await;
        let addr = server.addr;
        our_client_calls(format!("ws://{addr}/")).await;
        our_client_calls(format!("http://{addr}/")).await;
        server.stop();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jsonrpsee_clients_call_our_server_over_websocket_and_http() {
        let server = systems::start_server(System::Rpc).await;
        let addr = server.addr;
        for connection in [
            within(
                "jsonrpsee's ws client",
                systems::jsonrpsee::connect_ws(addr),
            )
            .await,
            within(
                "jsonrpsee's http client",
                systems::jsonrpsee::connect_http_url(format!("http://{addr}/rpc")),
            )
            .await,
        ] {
            let connection = connection.unwrap();
            let sum = within("add", connection.client.add(20, 22)).await;
            assert_eq!(sum, Ok(42));
            let echoed = within("echo", connection.client.echo("olá".to_owned())).await;
            assert_eq!(echoed.as_deref(), Ok("olá"));
        }
        server.stop();
    }
}
