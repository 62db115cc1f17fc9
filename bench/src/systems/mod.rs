//! The systems under test, behind one face: start a server, connect a client,
//! call `add` and `echo`.
//!
//! Every system serves the same two methods with the same semantics, and is
//! set up as its authors recommend for throughput (TCP_NODELAY on both sides,
//! every request handled concurrently). A client is an enum rather than a
//! trait object so that the benchmark adds no allocation of its own per call.

use std::net::SocketAddr;
use std::os::fd::RawFd;

use crate::counting::WriteCounter;

pub mod baseline;
pub mod floor;
#[cfg(feature = "peers")]
pub mod jsonrpsee;
pub mod rpc;
#[cfg(feature = "peers")]
pub mod tarpc;

/// One implementation of the benchmark service. Without the `peers`
/// feature (the CI guard's build) only `rpc`, `baseline` and `floor` exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// This workspace's `rpc-core`, over TCP.
    Rpc,
    /// This workspace's `rpc-core`, over WebSocket (the same server).
    #[cfg(feature = "peers")]
    RpcWs,
    /// This workspace's client and server over HTTP (`POST /rpc`, one POST
    /// per call over up to 8 keep-alive connections).
    #[cfg(feature = "peers")]
    RpcHttp,
    /// A hand-written LengthDelimitedCodec + serde_json client and server.
    Baseline,
    /// The ceiling of the wire format: hand-scanned JSON, every ready
    /// message in one write (bench code, see `floor.rs`).
    Floor,
    /// tarpc 0.38 with its JSON serde transport over TCP.
    #[cfg(feature = "peers")]
    Tarpc,
    /// jsonrpsee 0.26 over WebSocket.
    #[cfg(feature = "peers")]
    JsonrpseeWs,
    /// jsonrpsee 0.26 over HTTP/1.1.
    #[cfg(feature = "peers")]
    JsonrpseeHttp,
}

impl System {
    /// Every system this build has, in the table's order.
    pub const ALL: &[System] = &[
        System::Rpc,
        #[cfg(feature = "peers")]
        System::RpcWs,
        #[cfg(feature = "peers")]
        System::RpcHttp,
        System::Baseline,
        System::Floor,
        #[cfg(feature = "peers")]
        System::Tarpc,
        #[cfg(feature = "peers")]
        System::JsonrpseeWs,
        #[cfg(feature = "peers")]
        System::JsonrpseeHttp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::Rpc => "rpc",
            #[cfg(feature = "peers")]
            System::RpcWs => "rpc-ws",
            #[cfg(feature = "peers")]
            System::RpcHttp => "rpc-http",
            System::Baseline => "baseline",
            System::Floor => "floor",
            #[cfg(feature = "peers")]
            System::Tarpc => "tarpc",
            #[cfg(feature = "peers")]
            System::JsonrpseeWs => "jsonrpsee-ws",
            #[cfg(feature = "peers")]
            System::JsonrpseeHttp => "jsonrpsee-http",
        }
    }

    /// Whether the system has server-to-client streams (the `stream`
    /// scenario): rpc-core's streams, jsonrpsee's subscriptions.
    pub fn streams(self) -> bool {
        match self {
            System::Rpc => true,
            #[cfg(feature = "peers")]
            System::RpcWs | System::JsonrpseeWs => true,
            _ => false,
        }
    }

    pub fn parse(name: &str) -> Result<System, String> {
        System::ALL
            .iter()
            .copied()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = System::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown system `{name}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A server running on the server runtime.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Writes made by the server, when its sockets can be wrapped.
    pub writes: Option<WriteCounter>,
    stop: Box<dyn FnOnce() + Send>,
}

impl RunningServer {
    pub fn new(
        addr: SocketAddr,
        writes: Option<WriteCounter>,
        stop: impl FnOnce() + Send + 'static,
    ) -> Self {
        Self {
            addr,
            writes,
            stop: Box::new(stop),
        }
    }

    /// Stops accepting and drops the server's tasks (connections end when
    /// their clients go).
    pub fn stop(self) {
        (self.stop)()
    }
}

/// Starts `system`'s server on 127.0.0.1 on the current runtime.
pub async fn start_server(system: System) -> RunningServer {
    match system {
        System::Rpc => rpc::start_server().await,
        #[cfg(feature = "peers")]
        System::RpcWs | System::RpcHttp => rpc::start_server().await,
        System::Baseline => baseline::start_server().await,
        System::Floor => floor::start_server().await,
        #[cfg(feature = "peers")]
        System::Tarpc => tarpc::start_server().await,
        #[cfg(feature = "peers")]
        System::JsonrpseeWs | System::JsonrpseeHttp => jsonrpsee::start_server().await,
    }
}

/// A client of one of the systems; cheap to clone, clones share a connection
/// (for HTTP: a connection pool).
#[derive(Clone)]
pub enum Client {
    Rpc(rpc::Client),
    Baseline(baseline::Client),
    Floor(floor::Client),
    #[cfg(feature = "peers")]
    Tarpc(tarpc::Client),
    #[cfg(feature = "peers")]
    Ws(jsonrpsee::WsClient),
    #[cfg(feature = "peers")]
    Http(jsonrpsee::HttpClient),
}

/// A connected client and what the benchmark can observe of its socket.
pub struct Connection {
    pub client: Client,
    /// The client's own writes, when its socket can be wrapped.
    pub writes: Option<WriteCounter>,
    /// The socket, for reading the kernel's segment counters.
    pub fd: Option<RawFd>,
}

/// Connects a client of `system` to `addr` on the current runtime.
pub async fn connect(system: System, addr: SocketAddr) -> Result<Connection, String> {
    match system {
        System::Rpc => rpc::connect(addr).await,
        #[cfg(feature = "peers")]
        System::RpcWs => rpc::connect_ws(addr).await,
        #[cfg(feature = "peers")]
        System::RpcHttp => rpc::connect_http(addr).await,
        System::Baseline => baseline::connect(addr).await,
        System::Floor => floor::connect(addr).await,
        #[cfg(feature = "peers")]
        System::Tarpc => tarpc::connect(addr).await,
        #[cfg(feature = "peers")]
        System::JsonrpseeWs => jsonrpsee::connect_ws(addr).await,
        #[cfg(feature = "peers")]
        System::JsonrpseeHttp => jsonrpsee::connect_http(addr).await,
    }
}

impl Client {
    pub async fn add(&self, a: i64, b: i64) -> Result<i64, String> {
        match self {
            Client::Rpc(c) => c.add(a, b).await.map_err(|e| e.to_string()),
            Client::Baseline(c) => c.call("add", (a, b)).await,
            Client::Floor(c) => c.add(a, b).await,
            #[cfg(feature = "peers")]
            Client::Tarpc(c) => tarpc::add(c, a, b).await,
            #[cfg(feature = "peers")]
            Client::Ws(c) => jsonrpsee::add(&**c, a, b).await,
            #[cfg(feature = "peers")]
            Client::Http(c) => jsonrpsee::add(c, a, b).await,
        }
    }

    /// Opens a `count` stream from `from`; `Err` for a system without
    /// streams (see [`System::streams`]).
    pub async fn count(&self, from: u64) -> Result<Counter, String> {
        match self {
            Client::Rpc(c) => c
                .count(from)
                .await
                .map(Counter::Rpc)
                .map_err(|e| e.to_string()),
            #[cfg(feature = "peers")]
            Client::Ws(c) => jsonrpsee::count(c, from).await.map(Counter::Ws),
            _ => Err("this system has no streams".into()),
        }
    }

    pub async fn echo(&self, s: String) -> Result<String, String> {
        match self {
            Client::Rpc(c) => c.echo(s).await.map_err(|e| e.to_string()),
            Client::Baseline(c) => c.call("echo", (s,)).await,
            Client::Floor(c) => c.echo(s).await,
            #[cfg(feature = "peers")]
            Client::Tarpc(c) => tarpc::echo(c, s).await,
            #[cfg(feature = "peers")]
            Client::Ws(c) => jsonrpsee::echo(&**c, s).await,
            #[cfg(feature = "peers")]
            Client::Http(c) => jsonrpsee::echo(c, s).await,
        }
    }
}

/// The client's end of a `count` stream: rpc-core's `RemoteStream` or a
/// jsonrpsee `Subscription`.
pub enum Counter {
    Rpc(rpc::Counter),
    #[cfg(feature = "peers")]
    Ws(jsonrpsee::Counter),
}

impl Counter {
    /// The next item; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Result<u64, String>> {
        use futures::StreamExt;
        match self {
            Counter::Rpc(s) => s.next().await.map(|i| i.map_err(|e| e.to_string())),
            #[cfg(feature = "peers")]
            Counter::Ws(s) => s.next().await.map(|i| i.map_err(|e| e.to_string())),
        }
    }
}

/// Connects with TCP_NODELAY set, as every system here does.
pub async fn tcp_connect(addr: SocketAddr) -> Result<tokio::net::TcpStream, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    Ok(stream)
}

/// A loopback listener on a free port.
pub async fn listen() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}
