//! The setup of the end-to-end tests: a server on a free port of 127.0.0.1,
//! connections to it, and a shutdown that cannot hang.
//!
//! ```ignore
//! let fx = TestServer::demo().await;
//! let calc = CalculatorClient::new(fx.client().await);
//! assert_eq!(within("add", calc.add(2.0, 3.0)).await.unwrap(), 5.0);
//! drop(calc);
//! fx.shutdown().await;
//! ```
//!
//! Each connection is made when the test asks for it, so a test knows
//! exactly how many connections the server has (some count them).

use std::net::SocketAddr;

use rpc_core::transport::memory::{self, MemoryConnector};
use rpc_core::{Client, ClientBuilder, RpcError, ServerBuilder, ServerHandle};
use tokio::net::TcpStream;

use super::within;

/// The transport a test's server and clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Framed TCP on 127.0.0.1.
    Tcp,
    /// The in-memory transport: no socket at all.
    Memory,
    /// WebSocket (`ws://127.0.0.1:PORT/ws`) on the same port as TCP.
    WebSocket,
    /// HTTP (`http://127.0.0.1:PORT/rpc`, one POST per message) on the same
    /// port as TCP.
    Http,
}

/// A running server. Dropping it without [`shutdown`](Self::shutdown)
/// leaves the server running until the test's runtime ends, as dropping a
/// [`ServerHandle`] does.
pub struct TestServer {
    server: ServerHandle,
    /// How clients reach an in-memory server; `None` over TCP.
    memory: Option<MemoryConnector>,
    /// The transport its clients use.
    via: Via,
}

impl TestServer {
    /// Binds `server` (its services and limits) on a free port of 127.0.0.1.
    pub async fn start(server: ServerBuilder) -> TestServer {
        TestServer::start_via(Via::Tcp, server).await
    }

    /// Starts `server` on the transport `via` names.
    pub async fn start_via(via: Via, server: ServerBuilder) -> TestServer {
        match via {
            Via::Tcp | Via::WebSocket | Via::Http => {
                let server = within("the server to bind", server.bind("127.0.0.1:0"))
                    .await
                    .expect("the server binds 127.0.0.1:0");
                TestServer {
                    server,
                    memory: None,
                    via,
                }
            }
            Via::Memory => {
                let (listener, connector) = memory::listener();
                let server = server.serve_on(listener).expect("the server starts");
                TestServer {
                    server,
                    memory: Some(connector),
                    via,
                }
            }
        }
    }

    /// Every demo service (Calculator, Greeter, Echo), with the default limits.
    pub async fn demo() -> TestServer {
        TestServer::demo_via(Via::Tcp).await
    }

    /// Every demo service, on the transport `via` names.
    pub async fn demo_via(via: Via) -> TestServer {
        TestServer::start_via(via, rpc_demo::services::all_services()).await
    }

    /// The address the server listens on (TCP only).
    pub fn addr(&self) -> SocketAddr {
        assert!(
            self.memory.is_none(),
            "an in-memory server has no address; use `client` to reach it"
        );
        self.server.local_addr()
    }

    /// A new connection of the library's client, with the default options.
    /// Generated clients wrap it: `CalculatorClient::new(fx.client().await)`.
    pub async fn client(&self) -> Client {
        self.client_with(Client::builder())
            .await
            .unwrap_or_else(|e| panic!("a client could not connect: {e}"))
    }

    /// A new connection made with `options` (a token, TLS, a timeout); the
    /// test checks the outcome, since refusing it may be the point.
    pub async fn client_with(&self, options: ClientBuilder) -> Result<Client, RpcError> {
        match &self.memory {
            Some(connector) => {
                within(
                    "a client to connect",
                    options.connect_with(connector.clone()),
                )
                .await
            }
            None if self.via == Via::WebSocket => {
                let url = format!("ws://{}/ws", self.addr());
                within("a client to connect", options.connect(url)).await
            }
            None if self.via == Via::Http => {
                let url = format!("http://{}/rpc", self.addr());
                within("a client to connect", options.connect(url)).await
            }
            None => within("a client to connect", options.connect(self.addr())).await,
        }
    }

    /// A new raw TCP connection, for a test that writes frames itself.
    pub async fn raw(&self) -> TcpStream {
        super::connect(self.addr()).await
    }

    /// Stops the server gracefully (see [`ServerHandle::shutdown`]), failing
    /// the test if that takes longer than [`LIMIT`](super::LIMIT).
    pub async fn shutdown(self) {
        within("the server to shut down", self.server.shutdown()).await;
    }
}
