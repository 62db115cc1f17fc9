//! Connectors: how a client dials a server and gets a message transport.
//!
//! The client asks its [`Connector`] for a [`Transport`] when it first
//! connects and each time it reconnects; everything above (authentication,
//! backoff, retries, and later discovery and load balancing) sits above the
//! connector, never inside it. [`TcpConnector`] is framed TCP, optionally
//! inside TLS; [`MemoryConnector`](super::memory::MemoryConnector) reaches
//! an in-memory server. A connector of your own can pick an address (from a
//! registry, say) and delegate to a `TcpConnector`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::framed::{self, FramedLimits};
use super::{ConnectionInfo, Transport};
use crate::error::RpcError;

/// The sizes a connector opens its transport with; the client fills them
/// in from its builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest message accepted or sent, in bytes.
    pub max_frame: usize,
    /// Bytes of outbound messages buffered before callers wait.
    pub write_buffer: usize,
    /// How long one exchange may take on a transport that cannot tell when
    /// a call ends by itself (an HTTP POST): the client's default call
    /// timeout ([`ClientBuilder::timeout`](crate::ClientBuilder::timeout),
    /// 30 s unless set). Default: 30 s.
    pub exchange_timeout: Duration,
}

impl Limits {
    /// Limits with the given maximum message size and write buffer, in bytes.
    pub fn new(max_frame: usize, write_buffer: usize) -> Self {
        Self {
            max_frame,
            write_buffer,
            exchange_timeout: Duration::from_secs(30),
        }
    }
}

/// Dials a server and returns an open message transport.
///
/// The client bounds each attempt by the call's deadline (dropping the
/// future), so an implementation needs no timeout of its own.
pub trait Connector: Send + Sync + 'static {
    /// Opens one transport.
    ///
    /// # Errors
    /// [`RpcError::Connect`] when the server cannot be reached (refused,
    /// unreachable, TLS handshake failed), naming the address tried.
    fn connect<'a>(
        &'a self,
        limits: &'a Limits,
    ) -> Pin<Box<dyn Future<Output = Result<Transport, RpcError>> + Send + 'a>>;

    /// What it dials, for messages and logs (`127.0.0.1:7070`, `memory`).
    fn target(&self) -> String;
}

/// Framed JSON-RPC over TCP (with `TCP_NODELAY`), or inside TLS when
/// configured through [`ClientBuilder::tls`](crate::ClientBuilder::tls).
#[derive(Clone, Debug)]
pub struct TcpConnector {
    dialer: Dialer,
}

impl TcpConnector {
    /// A connector for `addr` (`host:port`), resolved at each attempt.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            dialer: Dialer::new(addr.into()),
        }
    }

    /// The same, speaking TLS and checking the server's certificate against
    /// `server_name`.
    #[cfg(feature = "tls")]
    pub(crate) fn with_tls(
        mut self,
        connector: tokio_rustls::TlsConnector,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> Self {
        self.dialer = self.dialer.with_tls(connector, server_name);
        self
    }
}

/// Any byte stream a client connection runs on once boxed: TCP, TLS over
/// TCP, or (on the server) an upgraded HTTP connection.
#[cfg(feature = "http")]
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

#[cfg(feature = "http")]
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How a client reaches `HOST:PORT`: TCP with `TCP_NODELAY`, then TLS if
/// configured. Shared by the framed, WebSocket and HTTP connectors.
#[derive(Clone)]
pub(crate) struct Dialer {
    /// `HOST:PORT`, resolved at each attempt.
    pub(crate) addr: String,
    #[cfg(feature = "tls")]
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Dialer");
        d.field("addr", &self.addr);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.as_ref().map(|(_, name)| name));
        d.finish()
    }
}

/// An open client stream, before it is split or boxed.
pub(crate) enum Dialed {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Dialed {
    /// A second descriptor of the TCP socket under this stream (a `dup`,
    /// so it stays valid for as long as it is held), to look at the socket
    /// while the stream is idle; `None` where that is not possible.
    #[cfg(feature = "http")]
    pub(crate) fn probe(&self) -> Option<std::net::TcpStream> {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            // (A match, not a `let`: without `tls` it has one arm.)
            #[allow(clippy::infallible_destructuring_match)]
            let tcp = match self {
                Dialed::Tcp(stream) => stream,
                #[cfg(feature = "tls")]
                Dialed::Tls(stream) => stream.get_ref().0,
            };
            tcp.as_fd()
                .try_clone_to_owned()
                .ok()
                .map(std::net::TcpStream::from)
        }
        #[cfg(not(unix))]
        {
            None
        }
    }

    /// The stream behind one virtual call per read or write.
    #[cfg(feature = "http")]
    pub(crate) fn boxed(self) -> Box<dyn Io> {
        match self {
            Dialed::Tcp(stream) => Box::new(stream),
            #[cfg(feature = "tls")]
            Dialed::Tls(stream) => stream,
        }
    }
}

impl Dialer {
    pub(crate) fn new(addr: String) -> Self {
        Self {
            addr,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The same, speaking TLS and checking the server's certificate
    /// against `server_name`.
    #[cfg(feature = "tls")]
    pub(crate) fn with_tls(
        mut self,
        connector: tokio_rustls::TlsConnector,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> Self {
        self.tls = Some((connector, server_name));
        self
    }

    /// Opens the stream, and says who answered.
    ///
    /// # Errors
    /// The socket's error, or a failed TLS handshake with advice on its
    /// usual causes.
    pub(crate) async fn dial(&self) -> std::io::Result<(Dialed, Option<std::net::SocketAddr>)> {
        let stream = TcpStream::connect(&self.addr).await?;
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        #[cfg(feature = "tls")]
        if let Some((connector, name)) = &self.tls {
            let tls = connector.connect(name.clone(), stream).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("the TLS handshake failed ({e}); does the server speak TLS, with a certificate for this name signed by a CA you trust?"),
                )
            })?;
            return Ok((Dialed::Tls(Box::new(tls)), peer));
        }
        Ok((Dialed::Tcp(stream), peer))
    }
}

impl Connector for TcpConnector {
    fn connect<'a>(
        &'a self,
        limits: &'a Limits,
    ) -> Pin<Box<dyn Future<Output = Result<Transport, RpcError>> + Send + 'a>> {
        Box::pin(async move {
            let (dialed, peer) = self
                .dialer
                .dial()
                .await
                .map_err(|source| RpcError::Connect {
                    addr: self.dialer.addr.clone(),
                    source,
                })?;
            let mut info = ConnectionInfo::new("tcp");
            info.peer = peer;
            match dialed {
                Dialed::Tcp(stream) => {
                    let (read, write) = stream.into_split();
                    Ok(open_stream(read, write, limits, info))
                }
                #[cfg(feature = "tls")]
                Dialed::Tls(tls) => {
                    info.transport = "tls";
                    let (read, write) = tokio::io::split(tls);
                    Ok(open_stream(read, write, limits, info))
                }
            }
        })
    }

    fn target(&self) -> String {
        self.dialer.addr.clone()
    }
}

/// The framed transport over a client's byte stream (no time limits on
/// reading: the calls' own deadlines bound every wait).
pub(crate) fn open_stream<R, W>(
    read: R,
    write: W,
    limits: &Limits,
    info: ConnectionInfo,
) -> Transport
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    framed::open(
        Box::new(read),
        write,
        bytes::BytesMut::new(),
        FramedLimits {
            max_frame: limits.max_frame,
            max_outgoing: limits.max_frame,
            frame_timeout: None::<Duration>,
            write_buffer: limits.write_buffer,
        },
        info,
    )
}
