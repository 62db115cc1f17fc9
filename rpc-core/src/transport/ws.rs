//! The WebSocket adapter (feature `ws`): JSON-RPC over WebSocket on the same
//! port, by `GET /ws` (or `GET /`) with an upgrade, with tokio-tungstenite.
//!
//! Each text message (binary is accepted too, as UTF-8) is one JSON-RPC
//! message: a request, a notification, a batch or a response. Many calls
//! can be in flight on one socket; a batch is answered in one message, a
//! notification never. The session is the same as a framed connection's:
//! every answer, push and the shutdown notice go out as text messages, in
//! the order they were queued. The library answers the peer's pings; a
//! connection with nothing in flight and nothing arriving closes at the idle
//! timeout, like any other.
//!
//! Why tokio-tungstenite: the most used WebSocket implementation for tokio
//! (axum's is built on it), kept up to date, with a limit on a whole
//! message, ping handling and batched writes built in. fastwebsockets,
//! measured against it (`cargo rpc-bench ws-crates`, BENCHMARKS.md), costs
//! about 0.12 µs less CPU per small message, some 3.5 % of a call; it
//! would need its unstable split API for batched writes, a message limit
//! of our own, and pongs routed by hand.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as Frame, Utf8Bytes};

use super::connector::{Dialer, Io};
use super::{ConnectionInfo, Inbound, Message, ReadError, Timer, Transport};
use crate::frame::FrameError;
use crate::outbox::{Closing, Drain, Framing, Outbox, Taken};

/// Boxed, so the session has one receiver type whatever the stream below
/// (one virtual call per read, not per message).
type Socket = WebSocketStream<Box<dyn Io>>;

/// The socket settings: a small read buffer (an idle socket should cost
/// little; tungstenite's default is 128 KiB), frames written out only on
/// flush (the writer flushes once per batch of messages: one `write` for
/// many frames, as on the framed transport), and the message limit.
fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(1024 * 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Whether a request asks for a WebSocket (`Upgrade: websocket`).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The `101 Switching Protocols` answer to a valid upgrade request, or the
/// reason it is not one (RFC 6455 §4.2.1: version 13 and a key).
pub(crate) fn accept(headers: &HeaderMap) -> Result<http::response::Builder, &'static str> {
    if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
        return Err("a WebSocket upgrade needs `Sec-WebSocket-Version: 13`");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err("a WebSocket upgrade needs a `Sec-WebSocket-Key`");
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok(http::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept))
}

/// The transport of an upgraded connection.
pub(crate) async fn open(
    upgraded: Upgraded,
    max_message: usize,
    max_outgoing: usize,
    write_buffer: usize,
    info: ConnectionInfo,
) -> Transport {
    let io: Box<dyn Io> = Box::new(TokioIo::new(upgraded));
    let socket =
        WebSocketStream::from_raw_socket(io, Role::Server, Some(config(max_message))).await;
    let mut info = info;
    info.transport = "ws";
    transport(socket, max_message, max_outgoing, write_buffer, info)
}

/// The transport of an open socket, either side.
fn transport(
    socket: Socket,
    max_message: usize,
    max_outgoing: usize,
    write_buffer: usize,
    info: ConnectionInfo,
) -> Transport {
    let (sink, stream) = socket.split();
    let outbox = Arc::new(Outbox::new(Framing::Delimited, max_outgoing, write_buffer));
    let writer = tokio::spawn({
        let outbox = outbox.clone();
        async move { outbox.run_writer(SocketDrain(sink)).await }
    });
    Transport {
        inbound: Inbound::Ws(Receiver {
            stream,
            max_message,
            last_read: Instant::now(),
            timer: Timer::default(),
        }),
        outbox,
        writer,
        info: Arc::new(info),
    }
}

/// Dials `ws://` (or, over TLS, `wss://`) URLs: the client's side of the
/// WebSocket transport. [`ClientBuilder::connect`](crate::ClientBuilder::connect)
/// makes one for a `ws://` or `wss://` address.
#[derive(Clone)]
pub struct WsConnector {
    url: String,
    dialer: Dialer,
}

impl std::fmt::Debug for WsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConnector")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl WsConnector {
    /// A connector for `url` (`ws://host:port/path` or `wss://...`); `None`
    /// if it is not such a URL with a host and a port.
    pub fn new(url: &str) -> Option<Self> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("wss://"))?;
        let authority = rest.split('/').next()?;
        if authority.is_empty() || !authority.contains(':') {
            return None;
        }
        Some(Self {
            url: url.to_owned(),
            dialer: Dialer::new(authority.to_owned()),
        })
    }

    /// The same, inside TLS (for `wss://`).
    #[cfg(feature = "tls")]
    pub(crate) fn with_tls(
        mut self,
        connector: tokio_rustls::TlsConnector,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> Self {
        self.dialer = self.dialer.with_tls(connector, server_name);
        self
    }

    fn connect_error(&self, source: std::io::Error) -> crate::RpcError {
        crate::RpcError::Connect {
            addr: self.url.clone(),
            source,
        }
    }
}

impl super::Connector for WsConnector {
    fn connect<'a>(
        &'a self,
        limits: &'a super::Limits,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<Transport, crate::RpcError>> + Send + 'a>>
    {
        Box::pin(async move {
            let (dialed, peer) = self
                .dialer
                .dial()
                .await
                .map_err(|e| self.connect_error(e))?;
            let mut info = ConnectionInfo::new("ws");
            info.peer = peer;
            let io = dialed.boxed();
            let (socket, _) = tokio_tungstenite::client_async_with_config(
                self.url.as_str(),
                io,
                Some(config(limits.max_frame)),
            )
            .await
            .map_err(|e| {
                let why = match &e {
                    tungstenite::Error::Http(response) if response.status() == StatusCode::NOT_FOUND => {
                        "no WebSocket at this path (404); check the URL's path, which is `/ws` on this library's servers".to_owned()
                    }
                    e => format!("the WebSocket handshake failed: {e}"),
                };
                self.connect_error(std::io::Error::other(why))
            })?;
            Ok(transport(
                socket,
                limits.max_frame,
                limits.max_frame,
                limits.write_buffer,
                info,
            ))
        })
    }

    fn target(&self) -> String {
        self.url.clone()
    }
}

/// The inbound half: text (or binary) messages.
pub(crate) struct Receiver {
    stream: SplitStream<Socket>,
    max_message: usize,
    last_read: Instant,
    timer: Timer,
}

impl Receiver {
    pub(crate) fn last_read(&self) -> Instant {
        self.last_read
    }

    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        idle_until: Option<Instant>,
    ) -> Poll<Result<Option<Message>, ReadError>> {
        loop {
            let frame = match Pin::new(&mut self.stream).poll_next(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => return self.timer.poll_idle(cx, idle_until).map(Err),
            };
            self.last_read = Instant::now();
            let body: Bytes = match frame {
                None | Some(Ok(Frame::Close(_))) => return Poll::Ready(Ok(None)),
                Some(Ok(Frame::Text(text))) => text.into(),
                Some(Ok(Frame::Binary(bytes))) => bytes,
                // Pings are answered by tungstenite itself.
                Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => continue,
                Some(Err(tungstenite::Error::Capacity(
                    tungstenite::error::CapacityError::MessageTooLong { size, .. },
                ))) => {
                    return Poll::Ready(Err(ReadError::Frame(FrameError::TooLarge {
                        len: size,
                        max: self.max_message,
                    })));
                }
                Some(Err(tungstenite::Error::Io(e))) => {
                    return Poll::Ready(Err(ReadError::Frame(FrameError::Io(e))));
                }
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => {
                    return Poll::Ready(Ok(None));
                }
                Some(Err(e)) => {
                    return Poll::Ready(Err(ReadError::Frame(FrameError::Io(
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    ))));
                }
            };
            return Poll::Ready(Ok(Some(Message {
                body,
                reply: None,
                authenticated: false,
            })));
        }
    }
}

/// Sends each outbound message as one text message.
struct SocketDrain(SplitSink<Socket, Frame>);

impl Drain for SocketDrain {
    async fn send(&mut self, taken: &mut Taken) -> std::io::Result<()> {
        for message in taken.messages() {
            // The outbox holds JSON the session wrote: UTF-8 by construction.
            let text = Utf8Bytes::try_from(message)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            self.0.feed(Frame::Text(text)).await.map_err(io_error)?;
        }
        self.0.flush().await.map_err(io_error)
    }

    async fn close(&mut self, why: Closing) -> std::io::Result<()> {
        // A close the peer started was answered by tungstenite as it was
        // read (RFC 6455 §5.5.1); the reply waits in its write buffer, and
        // this flush sends it. Then no second close may follow.
        match self.0.flush().await {
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(());
            }
            Err(e) => return Err(io_error(e)),
            Ok(()) => {}
        }
        // Otherwise this side closes: the close frame, with the code for
        // why, flushed; not waiting for the peer's reply (the session has
        // stopped reading, so it would never be seen). The JSON-RPC error
        // that explains a limit went out just before, as a text message.
        let (code, reason) = close_code(why);
        let frame = Frame::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        match self.0.feed(frame).await {
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(());
            }
            other => other.map_err(io_error)?,
        }
        self.0.flush().await.map_err(io_error)
    }
}

/// The close code (RFC 6455 §7.4.1, and 1013 from IANA's registry) and a
/// short reason for why the session closed.
fn close_code(why: Closing) -> (CloseCode, &'static str) {
    match why {
        Closing::Normal => (CloseCode::Normal, ""),
        Closing::GoingAway => (CloseCode::Away, "the server is shutting down"),
        Closing::Protocol => (CloseCode::Protocol, "protocol error"),
        Closing::TooLarge => (CloseCode::Size, "message too large"),
        Closing::Failed => (CloseCode::Error, "internal error"),
        Closing::Overloaded => (CloseCode::Again, "too many connections; try again later"),
    }
}

fn io_error(e: tungstenite::Error) -> std::io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => std::io::Error::other(other),
    }
}
