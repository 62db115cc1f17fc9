//! Transports: how whole JSON-RPC messages move between two peers.
//!
//! A *transport* moves messages; the session above it
//! holds the protocol state and knows nothing of bytes on a wire. Each
//! adapter here turns one kind of connection into the same two halves:
//!
//! - an inbound half the session *pulls* complete messages from (the bytes
//!   of one request, notification, response or batch), so a slow session
//!   slows its peer instead of buffering;
//! - an outbox the session serializes outbound messages into, in place,
//!   drained by a writer task the adapter spawns.
//!
//! | adapter | file | inbound | outbound |
//! |---|---|---|---|
//! | framed byte stream (TCP, TLS, any `AsyncRead + AsyncWrite`) | `framed.rs` | length-prefixed frames, with the frame and idle timeouts | length prefix written in place, one `write` per batch |
//! | in memory | `memory.rs` | a bounded channel of messages | a bounded channel of messages |
//!
//! A server finds its transports through a [`Listener`] (`listener.rs`:
//! TCP, in memory), and the first bytes of a byte stream choose its adapter
//! (`sniff`). A client opens them with a [`Connector`] (`connector.rs`:
//! TCP and TLS, in memory); reconnecting, and later discovery, sit above it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

use crate::frame::FrameError;
use crate::outbox::Outbox;

pub(crate) mod connector;
pub(crate) mod framed;
#[cfg(feature = "http")]
pub(crate) mod http;
#[cfg(feature = "http")]
mod http_client;
pub(crate) mod listener;
pub mod memory;
#[cfg(feature = "ws")]
mod ws;

pub use connector::{Connector, Limits, TcpConnector};
#[cfg(feature = "http")]
pub use http_client::{HttpConnector, MAX_CONNECTIONS as MAX_HTTP_CONNECTIONS};
pub use listener::Listener;
#[cfg(feature = "ws")]
pub use ws::WsConnector;

/// What a session knows about its peer: the address, the TLS identity and,
/// for HTTP and WebSocket peers, the request's headers. Middleware reads it
/// (authentication, rate limits, metrics).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The peer's address; `None` for an in-memory or custom transport.
    pub peer: Option<std::net::SocketAddr>,
    /// The transport's name: `"tcp"`, `"tls"`, `"memory"` or `"stream"`.
    pub transport: &'static str,
    /// The DER certificate chain the peer presented over TLS, leaf first;
    /// empty without TLS or without a client certificate.
    pub peer_certificates: Vec<Vec<u8>>,
    /// The headers of the HTTP request that opened the session (a
    /// WebSocket's upgrade); empty for other transports (each HTTP `POST`
    /// is checked by itself). Names are lower case.
    pub headers: Vec<(String, String)>,
    /// The transport authenticated the peer itself (a WebSocket upgrade
    /// with the server's bearer token).
    pub(crate) authenticated: bool,
}

impl ConnectionInfo {
    /// Information about a peer known only by its transport's name.
    pub fn new(transport: &'static str) -> Self {
        Self {
            transport,
            ..Self::default()
        }
    }

    /// The same, with the peer's address.
    pub fn with_peer(mut self, peer: std::net::SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }
}

/// An open message transport: the two halves of one connection, and what is
/// known of the peer. Made by a [`Connector`] (client) or a [`Listener`]
/// (server); the session runs on it.
pub struct Transport {
    pub(crate) inbound: Inbound,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) writer: JoinHandle<std::io::Result<()>>,
    pub(crate) info: Arc<ConnectionInfo>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// What is known of the peer.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }
}

/// One inbound message, and where its answers go.
#[derive(Debug)]
pub(crate) struct Message {
    /// The bytes of one JSON-RPC message (possibly a batch).
    pub(crate) body: Bytes,
    /// Where answers to this message go; `None`: the session's own outbox.
    /// Over HTTP, each POST has its own, and "no answer" is known when the
    /// session drops its last handle (see [`ReplyTo`]).
    pub(crate) reply: Option<Arc<ReplyTo>>,
    /// The transport authenticated the message itself (an HTTP request
    /// with the server's bearer token).
    pub(crate) authenticated: bool,
}

/// The answers to one inbound message, when they do not go to the
/// session's outbox (HTTP: the POST's response). The session holds this
/// until every answer to the message is queued, then drops it: the drop
/// closes the outbox, so the adapter sees one message (the answer) or none
/// (a notification-only body: 204 over HTTP).
#[derive(Debug)]
pub(crate) struct ReplyTo {
    pub(crate) outbox: Arc<Outbox>,
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        self.outbox.close();
    }
}

/// The inbound halves the session can pull from: an enum rather than a
/// trait object, so pulling a message costs no allocation and no virtual
/// call.
pub(crate) enum Inbound {
    /// A framed byte stream.
    Framed(framed::Reader),
    /// The other end of an in-memory pair.
    Memory(memory::Receiver),
    /// The POSTs of an HTTP connection.
    #[cfg(feature = "http")]
    Http(http::Receiver),
    /// The answers to a client's POSTs.
    #[cfg(feature = "http")]
    HttpClient(http_client::Receiver),
    /// The messages of a WebSocket.
    #[cfg(feature = "ws")]
    Ws(ws::Receiver),
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Inbound::Framed(_) => "Inbound::Framed",
            Inbound::Memory(_) => "Inbound::Memory",
            #[cfg(feature = "http")]
            Inbound::Http(_) => "Inbound::Http",
            #[cfg(feature = "http")]
            Inbound::HttpClient(_) => "Inbound::HttpClient",
            #[cfg(feature = "ws")]
            Inbound::Ws(_) => "Inbound::Ws",
        })
    }
}

impl Inbound {
    /// Polls for the next message: `Ok(None)` when the peer closed cleanly
    /// between messages. `idle_until`, if given, is when to give up while no
    /// message has started. A poll function rather than an `async fn`, so
    /// the session builds no future per message; all state lives in `self`.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        idle_until: Option<Instant>,
    ) -> Poll<Result<Option<Message>, ReadError>> {
        match self {
            Inbound::Framed(reader) => reader.poll_next(cx, idle_until).map(|next| {
                Ok(next?.map(|body| Message {
                    body,
                    reply: None,
                    authenticated: false,
                }))
            }),
            Inbound::Memory(receiver) => receiver.poll_next(cx, idle_until),
            #[cfg(feature = "http")]
            Inbound::Http(receiver) => receiver.poll_next(cx, idle_until),
            #[cfg(feature = "http")]
            Inbound::HttpClient(receiver) => receiver.poll_next(cx, idle_until),
            #[cfg(feature = "ws")]
            Inbound::Ws(receiver) => receiver.poll_next(cx, idle_until),
        }
    }

    /// When bytes last arrived: the arrival time of the messages the last
    /// read completed (one clock reading per read).
    pub(crate) fn last_read(&self) -> Instant {
        match self {
            Inbound::Framed(reader) => reader.last_read(),
            Inbound::Memory(receiver) => receiver.last_read(),
            #[cfg(feature = "http")]
            Inbound::Http(receiver) => receiver.last_read(),
            #[cfg(feature = "http")]
            Inbound::HttpClient(receiver) => receiver.last_read(),
            #[cfg(feature = "ws")]
            Inbound::Ws(receiver) => receiver.last_read(),
        }
    }

    /// After a fatal error: keep reading (and discarding) for a moment, so
    /// the close does not reset a byte stream while the peer still has
    /// unread requests in flight, which could destroy the last error before
    /// the peer reads it.
    pub(crate) async fn linger(self) {
        if let Inbound::Framed(reader) = self {
            Box::pin(reader.linger()).await;
        }
    }
}

/// A timer kept across polls, so waiting with a deadline allocates once per
/// connection, not once per message.
///
/// Its entry in Tokio's timer wheel moves only when a deadline comes
/// *earlier* than where it is armed. A later one (the idle and frame
/// deadlines move forward with every read) leaves it where it is: it fires
/// early, finds the deadline not yet passed, and only then moves on to it.
/// Moving an entry takes the timer driver's lock, so this turns a move per
/// burst of messages into one per timeout period.
#[derive(Default)]
pub(crate) struct Timer(Option<Pin<Box<Sleep>>>);

impl Timer {
    /// Polls a timer for `at`: `Ready` once it has passed.
    pub(crate) fn poll_at(&mut self, cx: &mut Context<'_>, at: Instant) -> Poll<()> {
        let sleep = match &mut self.0 {
            Some(sleep) => {
                if sleep.deadline() > at {
                    sleep.as_mut().reset(at);
                }
                sleep
            }
            None => self.0.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if sleep.deadline() == at || Instant::now() >= at {
            return Poll::Ready(());
        }
        // Armed early for a deadline that has since moved on.
        sleep.as_mut().reset(at);
        sleep.as_mut().poll(cx)
    }

    /// For a receiver with nothing to read: `Ready(Idle)` once `idle_until`
    /// (if any) has passed, else `Pending` (and woken then).
    pub(crate) fn poll_idle(
        &mut self,
        cx: &mut Context<'_>,
        idle_until: Option<Instant>,
    ) -> Poll<ReadError> {
        match idle_until {
            Some(until) if self.poll_at(cx, until).is_ready() => Poll::Ready(ReadError::Idle),
            _ => Poll::Pending,
        }
    }
}

/// Why no message came.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The framing rule was broken, or the socket failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A message started but did not complete within the frame timeout.
    #[error("a frame started arriving but was not complete within {0:?}")]
    FrameTimeout(Duration),
    /// Nothing arrived before the idle deadline.
    #[error("the connection was idle for too long")]
    Idle,
    /// The peer has not read its responses for this long, so the session
    /// has not been able to read its requests either.
    #[error("the peer has not read its responses for {0:?}")]
    Stalled(Duration),
    /// The peer closed the connection in the middle of a frame.
    #[error("the peer closed the connection in the middle of a frame ({0} bytes received)")]
    Truncated(usize),
}

/// What the first bytes of a new byte stream say it speaks. The listener
/// reads them before choosing an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Length-prefixed JSON-RPC frames (or too few bytes to tell yet).
    Framed,
    /// An HTTP request line.
    Http,
    /// A TLS record (on a server not configured for TLS).
    Tls,
}

/// Classifies the first four bytes of a byte stream.
///
/// A length prefix is at most the maximum frame size (16 MiB by default),
/// while an HTTP method read as a length is at least about 1 GiB (`DELE` is
/// 0x44454c45) and a TLS record header at least about 352 MiB (0x15030000),
/// so under the default maximum the three cannot be confused.
pub(crate) fn sniff(first: &[u8; 4], max_frame: usize) -> Protocol {
    if u32::from_be_bytes(*first) as usize <= max_frame {
        return Protocol::Framed;
    }
    foreign(first).unwrap_or(Protocol::Framed)
}

/// The protocol whose messages start with `first`, other than frames.
pub(crate) fn foreign(first: &[u8; 4]) -> Option<Protocol> {
    const HTTP: &[&[u8; 4]] = &[
        b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC", b"HTTP",
    ];
    if HTTP.contains(&first) {
        return Some(Protocol::Http);
    }
    if matches!(first, [0x14..=0x17, 0x03, 0x00..=0x04, _]) {
        return Some(Protocol::Tls);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `timer` for `at` once, with a waker that does nothing.
    fn poll_once(timer: &mut Timer, at: Instant) -> Poll<()> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        timer.poll_at(&mut cx, at)
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_moved_later_fires_at_the_later_deadline_only() {
        let start = Instant::now();
        let mut timer = Timer::default();
        assert!(poll_once(&mut timer, start + Duration::from_secs(10)).is_pending());
        // Moved on (armed where it was): not ready at the first deadline.
        let later = start + Duration::from_secs(20);
        assert!(poll_once(&mut timer, later).is_pending());
        tokio::time::sleep_until(start + Duration::from_secs(10)).await;
        assert!(poll_once(&mut timer, later).is_pending());
        // Re-armed for the later deadline, which then fires.
        tokio::time::sleep_until(later).await;
        assert!(poll_once(&mut timer, later).is_ready());
        // Moved earlier again: it fires at the earlier one.
        let sooner = later + Duration::from_secs(5);
        let mut timer = Timer::default();
        assert!(poll_once(&mut timer, later + Duration::from_secs(60)).is_pending());
        assert!(poll_once(&mut timer, sooner).is_pending());
        tokio::time::sleep_until(sooner).await;
        assert!(poll_once(&mut timer, sooner).is_ready());
    }

    #[test]
    fn first_bytes_tell_frames_http_and_tls_apart() {
        let max = crate::frame::DEFAULT_MAX_FRAME;
        assert_eq!(sniff(&[0, 0, 0, 42], max), Protocol::Framed);
        assert_eq!(sniff(b"POST", max), Protocol::Http);
        assert_eq!(sniff(b"GET ", max), Protocol::Http);
        assert_eq!(sniff(&[0x16, 0x03, 0x01, 0x02], max), Protocol::Tls);
        assert_eq!(
            sniff(&[0x7f, 0, 0, 0], max),
            Protocol::Framed,
            "a frame too large is still a frame, refused as such"
        );
    }
}
