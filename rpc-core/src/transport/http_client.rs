//! The client's side of JSON-RPC over HTTP (feature `http`): each outbound
//! message (a request, a notification or a batch) is one `POST` with an
//! `application/json` body, and each `200` answer is one inbound message
//! (PROTOCOL.md, "HTTP").
//!
//! The transport keeps up to [`MAX_CONNECTIONS`] HTTP/1.1 keep-alive
//! connections to the server, opened as calls need them and reused after,
//! so that many calls can be in flight at once (HTTP/1.1 carries one
//! request at a time per connection). A `204` (notifications only) brings
//! no message. Any other status, or a failed connection, ends the transport
//! with an error naming the status and the server's message: the client
//! fails the calls in flight with it and reconnects on the next call, as it
//! does when a TCP connection breaks.
//!
//! When every connection is busy, the messages waiting for one are merged
//! into one JSON-RPC batch and sent in one `POST` (JSON-RPC 2.0, section 6:
//! a server must accept batches), so a deep pipeline costs one HTTP
//! exchange per few calls instead of one per call. The merged calls'
//! answers then arrive together, when the slowest of them is done: a call
//! that would have waited for a connection anyway waits for its batch
//! instead. [`HttpConnector::coalescing`] turns this off, for a server that
//! does not take batches.
//!
//! What HTTP cannot carry: pushes from the server (there is no channel for
//! them), and `rpc.cancel` reaches the call only when it happens to travel
//! on the same connection as the call (each server-side session is one
//! connection); otherwise the call runs to its end on the server and its
//! answer is dropped here.
//!
//! A POST with no answer after the client's default call timeout
//! ([`Limits::exchange_timeout`]) is abandoned and its connection closed,
//! so a server that never answers cannot hold every connection: a call
//! given a longer timeout of its own with
//! [`CallOptions`](crate::CallOptions) still gets no more than that over
//! HTTP.
//!
//! Written on hyper's connection API rather than hyper-util's pooled
//! client: the pool here is a dozen lines, and TLS reuses the rustls set-up
//! the other connectors share, where the pooled client would need a
//! connector crate of its own.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::connector::Dialer;
use super::{ConnectionInfo, Inbound, Limits, Message, ReadError, Timer, Transport};
use crate::error::RpcError;
use crate::frame::FrameError;
use crate::outbox::{Drain, Framing, Outbox, Taken};

/// Connections one transport opens to the server at most: calls beyond
/// this many in flight wait for a connection to come free.
pub const MAX_CONNECTIONS: usize = 8;

/// Answers received and not yet read by the session before POSTs wait:
/// one per connection, so at most twice [`MAX_CONNECTIONS`] answers (of at
/// most the maximum message size each) are held at once.
const CHANNEL_MESSAGES: usize = MAX_CONNECTIONS;

/// The most bytes of messages merged into one batch `POST`: well under
/// any server's body limit, and small enough that the merged answers stay
/// small. A message this large or larger always goes alone.
const MAX_MERGED_BYTES: usize = 256 * 1024;

/// Dials `http://` (or, over TLS, `https://`) URLs: the client's side of
/// the HTTP transport. [`ClientBuilder::connect`](crate::ClientBuilder::connect)
/// makes one for an `http://` or `https://` address, with the client's
/// token.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let client = rpc_core::Client::builder()
///     .connect("http://127.0.0.1:7070/rpc")
///     .await?;
/// let sum: f64 = client.call("soma", &(2.0, 3.0)).await?;
/// assert_eq!(sum, 5.0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpConnector {
    url: String,
    /// Dials the URL's `HOST:PORT`, which is also the `Host` header.
    dialer: Dialer,
    path: String,
    token: Option<HeaderValue>,
    /// Whether messages waiting for a connection are merged into batches.
    coalescing: bool,
}

impl std::fmt::Debug for HttpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnector")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl HttpConnector {
    /// A connector for `url`: `http://HOST:PORT/PATH` or `https://...`,
    /// where the path defaults to `/rpc` (the server's JSON-RPC endpoint).
    /// `None` if it is not such a URL with a host and a port.
    pub fn new(url: &str) -> Option<Self> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        if authority.is_empty() || !authority.contains(':') {
            return None;
        }
        let path = if path.is_empty() || path == "/" {
            "/rpc"
        } else {
            path
        };
        Some(Self {
            url: url.to_owned(),
            dialer: Dialer::new(authority.to_owned()),
            path: path.to_owned(),
            token: None,
            coalescing: true,
        })
    }

    /// Sends `Authorization: Bearer TOKEN` with every POST, for servers
    /// started with [`ServerBuilder::token`](crate::ServerBuilder::token)
    /// (they answer `401` without it). `None` if the token cannot be a
    /// header value (it holds a control character).
    pub fn with_token(mut self, token: &str) -> Option<Self> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        value.set_sensitive(true);
        self.token = Some(value);
        Some(self)
    }

    /// Whether messages that wait for a free connection are merged into
    /// one JSON-RPC batch `POST` (default `true`). Merging happens only
    /// when all [`MAX_CONNECTIONS`] connections are busy, up to 256 KiB of
    /// requests per `POST`; the calls merged are answered together, when
    /// the slowest of them is done (JSON-RPC 2.0, section 6: a server must
    /// accept batches). Turn it off for a server that refuses batches, which
    /// JSON-RPC 2.0 requires servers to accept, or when one slow call must
    /// never delay the answers of others queued behind it; calls then wait
    /// for a connection of their own. Use the connector with
    /// [`ClientBuilder::connect_with`](crate::ClientBuilder::connect_with).
    pub fn coalescing(mut self, on: bool) -> Self {
        self.coalescing = on;
        self
    }

    /// The same, inside TLS (for `https://`).
    #[cfg(feature = "tls")]
    pub(crate) fn with_tls(
        mut self,
        connector: tokio_rustls::TlsConnector,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> Self {
        self.dialer = self.dialer.with_tls(connector, server_name);
        self
    }

    /// Opens one HTTP/1.1 connection, and the peer's address.
    async fn dial(&self) -> io::Result<(Conn, Option<std::net::SocketAddr>)> {
        let (dialed, peer) = self.dialer.dial().await?;
        let probe = dialed.probe();
        let io = dialed.boxed();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(io::Error::other)?;
        // The connection runs until the sender is dropped or the server
        // closes it; its error, if any, reaches the request in flight.
        tokio::spawn(connection);
        Ok((Conn { sender, probe }, peer))
    }
}

/// One connection of the pool: hyper's handle, and a second descriptor of
/// its socket to look at while it is idle.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    probe: Option<std::net::TcpStream>,
}

impl Conn {
    /// Whether the server closed this idle connection (or sent something
    /// unasked), as its socket shows now: the end of input is waiting in
    /// the socket as soon as the server closed, whether or not the
    /// connection's task has read it yet. Then it is not reused.
    fn closed_by_peer(&self) -> bool {
        match &self.probe {
            Some(socket) => !matches!(
                socket.peek(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
            None => false,
        }
    }
}

impl super::Connector for HttpConnector {
    fn connect<'a>(
        &'a self,
        limits: &'a Limits,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<Transport, RpcError>> + Send + 'a>> {
        Box::pin(async move {
            // One connection now, so an unreachable server is an error of
            // `connect`, as with the other transports.
            let (first, peer) = self.dial().await.map_err(|source| RpcError::Connect {
                addr: self.url.clone(),
                source,
            })?;
            let mut info = ConnectionInfo::new("http");
            info.peer = peer;
            let (tx, rx) = mpsc::channel(CHANNEL_MESSAGES);
            let pool = Arc::new(Pool {
                connector: self.clone(),
                idle: Mutex::new(vec![first]),
                permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                max_answer: limits.max_frame,
                exchange_timeout: limits.exchange_timeout,
            });
            let coalescing = self.coalescing;
            let outbox = Arc::new(Outbox::new(
                Framing::Delimited,
                limits.max_frame,
                limits.write_buffer,
            ));
            let writer = tokio::spawn({
                let outbox = outbox.clone();
                async move {
                    outbox
                        .run_writer(PostDrain {
                            pool,
                            answers: tx,
                            coalescing,
                            waiting: VecDeque::new(),
                        })
                        .await
                }
            });
            Ok(Transport {
                inbound: Inbound::HttpClient(Receiver {
                    rx,
                    last_read: Instant::now(),
                    timer: Timer::default(),
                }),
                outbox,
                writer,
                info: Arc::new(info),
            })
        })
    }

    fn target(&self) -> String {
        self.url.clone()
    }
}

/// The connections of one transport.
struct Pool {
    connector: HttpConnector,
    /// Open connections with nothing in flight.
    idle: Mutex<Vec<Conn>>,
    /// One per connection in use.
    permits: Arc<Semaphore>,
    max_answer: usize,
    /// How long one POST may take before it is abandoned.
    exchange_timeout: std::time::Duration,
}

/// What came of one POST: an answer for the session, nothing (`204`), or
/// the error that ends the transport.
type Answer = io::Result<Bytes>;

impl Pool {
    /// Takes an idle connection that is still open (`true`: reused), or
    /// opens one (`false`).
    async fn connection(&self) -> io::Result<(Conn, bool)> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(mut conn) if !conn.sender.is_closed() && !conn.closed_by_peer() => {
                    if conn.sender.ready().await.is_ok() {
                        return Ok((conn, true));
                    }
                }
                Some(_) => {}
                None => return Ok((self.fresh().await?, false)),
            }
        }
    }

    /// A new connection, ready for a request.
    async fn fresh(&self) -> io::Result<Conn> {
        let mut conn = self.connector.dial().await?.0;
        conn.sender.ready().await.map_err(io::Error::other)?;
        Ok(conn)
    }

    /// Posts one body of `messages` merged messages and returns the
    /// answer, if any. The answer may hold the maximum message size once
    /// per merged message, what separate POSTs could have brought.
    ///
    /// A kept-alive connection the server closed meanwhile (its idle
    /// timeout) can fail a request before any of it was sent; hyper then
    /// hands the request back, and it goes once more on a new connection.
    /// That is safe because the server never saw it; a request that may
    /// have been sent is never repeated.
    async fn post(&self, body: Bytes, messages: usize) -> io::Result<Option<Bytes>> {
        let max_answer = self.max_answer.saturating_mul(messages);
        let (mut conn, mut reused) = self.connection().await?;
        let mut request = Request::post(self.connector.path.as_str())
            .header(header::HOST, self.connector.dialer.addr.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        if let Some(token) = &self.connector.token {
            request = request.header(header::AUTHORIZATION, token.clone());
        }
        let mut request = request.body(Full::new(body)).map_err(io::Error::other)?;
        let response = loop {
            match conn.sender.try_send_request(request).await {
                Ok(response) => break response,
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => {
                        (conn, reused) = (self.fresh().await?, false);
                        request = unsent;
                    }
                    _ => {
                        return Err(io::Error::other(format!(
                            "the POST failed: {}",
                            failed.into_error()
                        )));
                    }
                },
            }
        };
        let status = response.status();
        let answer = Limited::new(response.into_body(), max_answer)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the server's answer exceeds the maximum of {} bytes; raise ClientBuilder::max_frame",
                            max_answer
                        ),
                    )
                } else {
                    io::Error::other(format!("the answer could not be read: {e}"))
                }
            })?
            .to_bytes();
        // Only a connection that answered in full is reused.
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        match status {
            StatusCode::OK => Ok(Some(answer)),
            StatusCode::NO_CONTENT => Ok(None),
            StatusCode::NOT_FOUND => Err(io::Error::other(format!(
                "no JSON-RPC endpoint at `{}` (404: {}); check the URL's path, which is `/rpc` on this library's servers",
                self.connector.path,
                refusal_message(&answer)
            ))),
            status => Err(io::Error::other(format!(
                "the server answered {status}: {}",
                refusal_message(&answer)
            ))),
        }
    }
}

/// The message of a refusal's JSON-RPC error body, or the body itself
/// (at most 256 bytes of it).
fn refusal_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Refusal {
        error: ErrorPart,
    }
    #[derive(serde::Deserialize)]
    struct ErrorPart {
        message: String,
    }
    match serde_json::from_slice::<Refusal>(body) {
        Ok(refusal) => refusal.error.message,
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(256)]);
            format!("{:?}", text.trim())
        }
    }
}

/// Posts each outbound message from a task of its own, at most
/// [`MAX_CONNECTIONS`] at once; the answers go to the session's inbound
/// channel. Messages that wait for a connection are merged into batches.
struct PostDrain {
    pool: Arc<Pool>,
    answers: mpsc::Sender<Answer>,
    coalescing: bool,
    /// Taken from the outbox, not yet posted.
    waiting: VecDeque<Bytes>,
}

impl PostDrain {
    /// The body of the next POST, taken from the front of `waiting`: one
    /// message, or when coalescing, this connection's share of those
    /// waiting (`free` more connections are free now) merged into a batch.
    fn next_body(&mut self, free: usize) -> Option<(Bytes, usize)> {
        let first = self.waiting.pop_front()?;
        if !self.coalescing || self.waiting.is_empty() {
            return Some((first, 1));
        }
        // Spread what waits over this connection and the free ones.
        let share = (self.waiting.len() + 1).div_ceil(free + 1);
        let mut merged = Vec::with_capacity(share);
        let mut bytes = first.len();
        merged.push(first);
        while merged.len() < share {
            match self.waiting.front() {
                Some(next) if bytes + next.len() < MAX_MERGED_BYTES => {
                    bytes += next.len();
                    merged.extend(self.waiting.pop_front());
                }
                _ => break,
            }
        }
        Some((merge_into_batch(&merged), merged.len()))
    }
}

/// One JSON-RPC batch of `messages`, each a request, a notification or a
/// batch (whose members are spliced in). One message is returned as it is.
fn merge_into_batch(messages: &[Bytes]) -> Bytes {
    if let [one] = messages {
        return one.clone();
    }
    let len = messages.iter().map(|m| m.len() + 1).sum::<usize>() + 1;
    let mut body = Vec::with_capacity(len);
    body.push(b'[');
    for message in messages {
        // This side writes its messages with no surrounding whitespace.
        let members = match message.as_ref() {
            [b'[', inner @ .., b']'] => inner,
            whole => whole,
        };
        if members.is_empty() {
            continue;
        }
        if body.len() > 1 {
            body.push(b',');
        }
        body.extend_from_slice(members);
    }
    body.push(b']');
    Bytes::from(body)
}

impl Drain for PostDrain {
    async fn send(&mut self, taken: &mut Taken) -> io::Result<()> {
        self.waiting.extend(taken.messages());
        while !self.waiting.is_empty() {
            // Waiting here for a free connection holds the outbox back, so
            // callers wait once its buffer is full: backpressure, as on a
            // socket.
            let pool = self.pool.clone();
            let permit = pool.permits.clone().acquire_owned().await.map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the HTTP transport was closed")
            })?;
            let Some((body, messages)) = self.next_body(pool.permits.available_permits()) else {
                break;
            };
            let answers = self.answers.clone();
            tokio::spawn(async move {
                let until = crate::time::after(pool.exchange_timeout);
                let answer = tokio::time::timeout_at(until, pool.post(body, messages)).await;
                drop(permit);
                let delivered = match answer {
                    Ok(Ok(Some(answer))) => answers.send(Ok(answer)).await,
                    Ok(Ok(None)) => Ok(()),
                    Ok(Err(e)) => answers.send(Err(e)).await,
                    // Abandoned (its connection with it): the calls it
                    // carried have timed out on their own by now, and the
                    // connection is free for the next.
                    Err(_) => Ok(()),
                };
                // A closed channel: the client is gone, nothing to tell.
                let _ = delivered;
            });
        }
        Ok(())
    }

    async fn close(&mut self, _: crate::outbox::Closing) -> io::Result<()> {
        // Nothing to close: the connections close when the last POST ends
        // and the pool is dropped.
        Ok(())
    }
}

/// The inbound half: the answers of the POSTs, in the order they arrive.
pub(crate) struct Receiver {
    rx: mpsc::Receiver<Answer>,
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
        let received = match self.rx.poll_recv(cx) {
            Poll::Ready(received) => received,
            Poll::Pending => return self.timer.poll_idle(cx, idle_until).map(Err),
        };
        self.last_read = Instant::now();
        Poll::Ready(match received {
            Some(Ok(body)) => Ok(Some(Message {
                body,
                reply: None,
                authenticated: false,
            })),
            Some(Err(e)) => Err(ReadError::Frame(FrameError::Io(e))),
            None => Ok(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(messages: &[&'static str]) -> String {
        let messages: Vec<Bytes> = messages
            .iter()
            .map(|m| Bytes::from_static(m.as_bytes()))
            .collect();
        String::from_utf8(merge_into_batch(&messages).to_vec()).unwrap()
    }

    #[test]
    fn messages_and_batches_merge_into_one_flat_batch() {
        assert_eq!(merged(&[r#"{"id":1}"#]), r#"{"id":1}"#);
        assert_eq!(
            merged(&[r#"{"id":1}"#, r#"{"id":2}"#]),
            r#"[{"id":1},{"id":2}]"#
        );
        assert_eq!(
            merged(&[
                r#"[{"id":1},{"id":2}]"#,
                r#"{"method":"n"}"#,
                r#"[{"id":3}]"#
            ]),
            r#"[{"id":1},{"id":2},{"method":"n"},{"id":3}]"#
        );
        assert_eq!(merged(&["[]", r#"{"id":1}"#]), r#"[{"id":1}]"#);
    }
}
