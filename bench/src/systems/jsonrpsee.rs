//! jsonrpsee 0.26: one server answering both WebSocket and HTTP/1.1, and
//! its WebSocket and HTTP clients.
//!
//! The server is jsonrpsee's own `TowerService` run with its
//! `serve_with_graceful_shutdown` on sockets we accept (its documented
//! low-level API), so that we can wrap them; that is the same service and the
//! same hyper connection that `Server::start` runs. The connection limit is
//! raised from 100 to 20,000 for `fanin`; everything else is default.
//! Methods come from jsonrpsee's `#[rpc(server)]` macro, as an application
//! would write them.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use jsonrpsee::PendingSubscriptionSink;
use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::core::{SubscriptionResult, to_json_raw_value};
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::rpc_params;
use jsonrpsee::server::{ServerConfig, serve_with_graceful_shutdown, stop_channel};
use jsonrpsee::types::ErrorObjectOwned;

use super::{Connection, RunningServer, listen, tcp_connect};
use crate::counting::{CountingIo, WriteCounter};

/// Bytes allowed in one request or response, both ways: room for `big`.
const MAX_MESSAGE: u32 = 16 << 20;

/// Items a subscription may hold unread on the client (default 1024); see
/// [`connect_ws`].
const SUBSCRIPTION_BUFFER: usize = 1 << 24;

#[rpc(server)]
pub trait Bench {
    /// `a + b`.
    #[method(name = "add")]
    async fn add(&self, a: i64, b: i64) -> Result<i64, ErrorObjectOwned>;
    /// Returns `s` unchanged.
    #[method(name = "echo")]
    async fn echo(&self, s: String) -> Result<String, ErrorObjectOwned>;
    /// `from, from + 1, …` without end, as fast as the sink takes them
    /// (the `stream` scenario): jsonrpsee's subscriptions.
    #[subscription(name = "subscribeCount" => "count", unsubscribe = "unsubscribeCount", item = u64)]
    async fn count(&self, from: u64) -> SubscriptionResult;
}

struct BenchImpl;

#[jsonrpsee::core::async_trait]
impl BenchServer for BenchImpl {
    async fn add(&self, a: i64, b: i64) -> Result<i64, ErrorObjectOwned> {
        Ok(a.wrapping_add(b))
    }

    async fn echo(&self, s: String) -> Result<String, ErrorObjectOwned> {
        Ok(s)
    }

    async fn count(&self, pending: PendingSubscriptionSink, from: u64) -> SubscriptionResult {
        let sink = pending.accept().await?;
        // `send` waits while the connection's buffer is full, and fails
        // once the subscriber is gone: the same producer as rpc's.
        for n in from.. {
            if sink.send(to_json_raw_value(&n)?).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

pub type WsClient = Arc<jsonrpsee_ws_client::WsClient>;
pub type HttpClient = jsonrpsee_http_client::HttpClient;

/// The items of a `count` subscription, as the client receives them.
pub type Counter = Subscription<u64>;

/// Subscribes to `count` from `from`.
pub async fn count(client: &jsonrpsee_ws_client::WsClient, from: u64) -> Result<Counter, String> {
    client
        .subscribe("subscribeCount", rpc_params![from], "unsubscribeCount")
        .await
        .map_err(|e| e.to_string())
}

pub async fn start_server() -> RunningServer {
    let listener = listen().await;
    let addr = listener.local_addr().expect("local addr");
    let writes = WriteCounter::default();
    let config = ServerConfig::builder()
        .max_connections(20_000)
        .max_request_body_size(MAX_MESSAGE)
        .max_response_body_size(MAX_MESSAGE)
        .build();
    let builder = jsonrpsee::server::Server::builder()
        .set_config(config)
        .to_service_builder();
    let methods = BenchImpl.into_rpc();
    let (stop, server_handle) = stop_channel();
    tokio::spawn({
        let writes = writes.clone();
        async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.clone().shutdown() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { break };
                let _ = stream.set_nodelay(true);
                let service = builder.clone().build(methods.clone(), stop.clone());
                let io = CountingIo::new(stream, writes.clone());
                tokio::spawn(serve_with_graceful_shutdown(
                    io,
                    service,
                    stop.clone().shutdown(),
                ));
            }
        }
    });
    RunningServer::new(addr, Some(writes), move || {
        let _ = server_handle.stop();
    })
}

pub async fn connect_ws(addr: SocketAddr) -> Result<Connection, String> {
    let stream = tcp_connect(addr).await?;
    let fd = stream.as_raw_fd();
    let writes = WriteCounter::default();
    let io = CountingIo::new(stream, writes.clone());
    let client = jsonrpsee_ws_client::WsClientBuilder::default()
        .max_request_size(MAX_MESSAGE)
        .max_response_size(MAX_MESSAGE)
        .max_concurrent_requests(1024)
        // Subscriptions have no flow control from reader to server: the
        // client's task puts each item in a bounded queue and, when the
        // reader falls behind, drops the item and closes the subscription.
        // With the default 1024 the `stream` scenario fails within a
        // second (a gap in the counters); this queue holds a whole run.
        .max_buffer_capacity_per_subscription(SUBSCRIPTION_BUFFER)
        .build_with_stream(format!("ws://{addr}"), io)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Connection {
        client: super::Client::Ws(Arc::new(client)),
        writes: Some(writes),
        fd: Some(fd),
    })
}

/// An HTTP client: a pool of keep-alive HTTP/1.1 connections that opens as
/// many as there are requests in flight, since HTTP/1.1 cannot multiplex.
/// Its sockets are hyper's, so its writes are not counted.
pub async fn connect_http(addr: SocketAddr) -> Result<Connection, String> {
    connect_http_url(format!("http://{addr}")).await
}

/// jsonrpsee's HTTP client for `url` (also used against this workspace's
/// server, at `/rpc`).
pub async fn connect_http_url(url: String) -> Result<Connection, String> {
    let client = jsonrpsee_http_client::HttpClientBuilder::default()
        .max_request_size(MAX_MESSAGE)
        .max_response_size(MAX_MESSAGE)
        .build(url)
        .map_err(|e| e.to_string())?;
    Ok(Connection {
        client: super::Client::Http(client),
        writes: None,
        fd: None,
    })
}

pub async fn add<C: ClientT>(client: &C, a: i64, b: i64) -> Result<i64, String> {
    client
        .request("add", rpc_params![a, b])
        .await
        .map_err(|e| e.to_string())
}

pub async fn echo<C: ClientT>(client: &C, s: String) -> Result<String, String> {
    client
        .request("echo", rpc_params![s])
        .await
        .map_err(|e| e.to_string())
}
