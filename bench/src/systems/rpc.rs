//! This workspace's library: `#[rpc_core::service]` over TCP.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Connection, RunningServer, listen, tcp_connect};
use crate::counting::{CountingIo, OneFramePerWrite, WriteCounter};

/// The benchmark service.
#[rpc_core::service]
pub trait BenchService {
    /// `a + b`.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Returns `s` unchanged.
    async fn echo(&self, s: String) -> String;
    /// `from, from + 1, …` without end, as fast as the caller's credit
    /// allows (the `stream` scenario).
    async fn count(&self, from: u64) -> rpc_core::Stream<u64>;
}

/// The implementation every `rpc` run serves (also `rpc-bench callgrind server`).
pub struct Bench;

impl BenchService for Bench {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    async fn echo(&self, s: String) -> String {
        s
    }

    async fn count(&self, from: u64) -> rpc_core::Stream<u64> {
        rpc_core::Stream::new(futures::stream::iter(from..))
    }
}

pub type Client = BenchServiceClient;

/// The items of a `count` stream, as the client receives them.
pub type Counter = rpc_core::RemoteStream<u64>;

/// The server, with the library's defaults. Its sockets cannot be wrapped
/// (the library accepts them itself), so its writes are counted from the
/// client side through `TCP_INFO`.
pub async fn start_server() -> RunningServer {
    let server = rpc_core::Server::builder()
        .service(BenchServiceServer::new(Bench))
        .serve(listen().await)
        .expect("start the rpc server");
    let addr = server.local_addr();
    let stop = server.stop_token();
    RunningServer::new(addr, None, move || stop.cancel())
}

#[cfg(feature = "peers")]
/// The client over WebSocket (`ws://ADDR/ws`), to the same server. Its
/// writes are not counted (the library dials the socket itself).
pub async fn connect_ws(addr: SocketAddr) -> Result<Connection, String> {
    let client = rpc_core::Client::connect(format!("ws://{addr}/ws"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Connection {
        client: super::Client::Rpc(BenchServiceClient::new(client)),
        writes: None,
        fd: None,
    })
}

#[cfg(feature = "peers")]
/// The client over HTTP (`http://ADDR/rpc`, one POST per call over up to 8
/// keep-alive connections), to the same server. Its writes are not counted.
pub async fn connect_http(addr: SocketAddr) -> Result<Connection, String> {
    let client = rpc_core::Client::connect(format!("http://{addr}/rpc"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Connection {
        client: super::Client::Rpc(BenchServiceClient::new(client)),
        writes: None,
        fd: None,
    })
}

/// When set, [`connect`]'s clients write one request per write (the hidden
/// `rpc-bench guard --lose-client-coalescing`, which shows that the guard
/// trips when the library's writes stop carrying several messages).
pub static LOSE_CLIENT_COALESCING: AtomicBool = AtomicBool::new(false);

/// The client, through `ClientBuilder::start` so its write half is counted.
pub async fn connect(addr: SocketAddr) -> Result<Connection, String> {
    let stream = tcp_connect(addr).await?;
    let fd = stream.as_raw_fd();
    let (read, write) = stream.into_split();
    let writes = WriteCounter::default();
    let builder = rpc_core::Client::builder();
    let client = if LOSE_CLIENT_COALESCING.load(Ordering::Relaxed) {
        builder.start(
            read,
            CountingIo::new(OneFramePerWrite::new(write), writes.clone()),
        )
    } else {
        builder.start(read, CountingIo::new(write, writes.clone()))
    };
    Ok(Connection {
        client: super::Client::Rpc(BenchServiceClient::new(client)),
        writes: Some(writes),
        fd: Some(fd),
    })
}
