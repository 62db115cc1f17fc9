//! The HTTP adapter (feature `http`): JSON-RPC over `POST /rpc`, on the same
//! port as the framed protocol, with hyper.
//!
//! Each POST's body is one inbound message (a request, a notification or a
//! batch) with a reply handle of its own: the session queues the answers to
//! that message, and only those, into the POST's own outbox, then drops the
//! handle; the response is what was queued (`200`, `application/json`) or,
//! for a body of notifications only, `204 No Content`. Every JSON-RPC
//! response travels with status 200, errors included, because JSON-RPC
//! clients read the body; refusals below JSON-RPC get their own status
//! (PROTOCOL.md, "HTTP"):
//!
//! | status | when |
//! |---|---|
//! | 400 | a body that is not valid UTF-8, or a request hyper cannot parse |
//! | 401 | a server with a token, and no `Authorization: Bearer` with it |
//! | 404 | a path other than `/rpc` (and `/RPC2`, XML-RPC: `http/xmlrpc.rs`) |
//! | 405 | `/rpc` with a method other than `POST` |
//! | 413 | a body over the message limit, refused before it is read whole |
//! | 415 | a content type other than `application/json` (charset `utf-8` or none) |
//! | 503 | the session is gone (the server is shutting down) |
//!
//! One HTTP connection is one session: its limits (calls in flight, idle
//! time) are the same as a framed connection's. Keep-alive is on; the
//! request head must arrive within the frame timeout.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ConnectionInfo, Inbound, Message, ReadError, ReplyTo, Timer, Transport};
use crate::message::{ErrorObject, code};
use crate::outbox::{Drain, Framing, Outbox, Taken};
use crate::server::Endpoint;

mod rest;
#[cfg(feature = "xmlrpc")]
mod xmlrpc;

/// POSTs waiting for the session before the connection stops reading more.
const QUEUE: usize = 16;

/// Serves one HTTP/1.1 connection until the peer closes it, it idles out,
/// or the server stops.
pub(crate) async fn serve<IO>(
    io: IO,
    info: ConnectionInfo,
    endpoint: Arc<Endpoint>,
    stop: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (messages, rx) = mpsc::channel(QUEUE);
    // A connection upgraded to a WebSocket is served here once hyper lets
    // go of it.
    let (upgrades, mut upgraded) = mpsc::channel::<Served>(1);
    // The session's own outbox carries nothing over HTTP: pushes and the
    // shutdown notice have no response to travel on, and are dropped. Its
    // writer ends when the session closes it.
    let outbox = Arc::new(Outbox::new(Framing::Delimited, usize::MAX, 1 << 20));
    let info_for_upgrades = info.clone();
    let transport = Transport {
        inbound: Inbound::Http(Receiver {
            rx,
            last_read: Instant::now(),
            timer: Timer::default(),
        }),
        writer: tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.run_writer(Discard).await }
        }),
        outbox,
        info: Arc::new(info),
    };
    let config = &endpoint.config;
    let post = Post {
        messages,
        max_body: config.max_frame,
        max_answer: config.max_frame.max(crate::server::MIN_OUTGOING_FRAME),
        token: config
            .token
            .as_ref()
            .map(|t| Arc::new(crate::middleware::TokenAuth::new(t.as_bytes()))),
        upgrades,
        endpoint: endpoint.clone(),
        stop: stop.clone(),
        info: info_for_upgrades,
    };
    let answering = Arc::new(AtomicUsize::new(0));
    let service = hyper::service::service_fn({
        let answering = answering.clone();
        move |request| {
            let post = post.clone();
            let busy = Answering::start(&answering);
            async move {
                let response = post.answer(request).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(
            config
                .frame_timeout
                .min(std::time::Duration::from_secs(86_400)),
        );
    let mut connection = Box::pin(
        builder
            .serve_connection(hyper_util::rt::TokioIo::new(io), service)
            .with_upgrades(),
    );
    let (_, session) = crate::session::open(transport, endpoint.clone(), Some(stop.clone()));
    let mut session = std::pin::pin!(session);
    tokio::select! {
        _ = &mut session => {
            // The session ended first (shutdown, idle). A request being
            // answered gets the frame timeout to finish; an idle keep-alive
            // connection (browsers keep them) only a moment to flush a
            // response just written, since hyper would otherwise wait for
            // the peer to close it.
            connection.as_mut().graceful_shutdown();
            let drain = if answering.load(Ordering::Acquire) > 0 {
                config.frame_timeout
            } else {
                std::time::Duration::from_millis(200)
            };
            let _ = tokio::time::timeout(drain, connection).await;
            return;
        }
        served = &mut connection => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        }
    }
    // No more requests: dropping the connection drops the service and its
    // senders, so the session answers what it has, then ends.
    drop(connection);
    session.await;
    if let Ok(ws) = upgraded.try_recv() {
        ws.await;
    }
}

/// Drops what it is given: the session outbox of an HTTP connection.
struct Discard;

impl Drain for Discard {
    async fn send(&mut self, _: &mut Taken) -> std::io::Result<()> {
        Ok(())
    }

    async fn close(&mut self, _: crate::outbox::Closing) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counts the requests of a connection being answered.
struct Answering(Arc<AtomicUsize>);

impl Answering {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's life after an upgrade.
type Served = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What answering one request needs. (The fields for the WebSocket
/// upgrade are unread without feature `ws`.)
#[derive(Clone)]
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
struct Post {
    messages: mpsc::Sender<Message>,
    max_body: usize,
    max_answer: usize,
    token: Option<Arc<crate::middleware::TokenAuth>>,
    upgrades: mpsc::Sender<Served>,
    endpoint: Arc<Endpoint>,
    stop: CancellationToken,
    info: ConnectionInfo,
}

impl Post {
    async fn answer(self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        #[cfg(feature = "ws")]
        if crate::transport::ws::is_upgrade(request.headers())
            && matches!(request.uri().path(), "/ws" | "/")
            && request.method() == Method::GET
        {
            return self.upgrade(request);
        }
        if request.uri().path().starts_with("/api/") {
            return self.rest(request).await;
        }
        #[cfg(feature = "xmlrpc")]
        if request.uri().path() == xmlrpc::PATH {
            return self.xmlrpc(request).await;
        }
        if request.method() == Method::GET && request.uri().path() == "/metrics" {
            return self
                .foreign(request.headers())
                .unwrap_or_else(|| self.metrics());
        }
        if request.method() == Method::GET && request.uri().path() == "/health" {
            return self
                .foreign(request.headers())
                .unwrap_or_else(|| self.health());
        }
        if request.method() == Method::GET {
            if let Some(page) = self.page(request.uri().path()) {
                return self.foreign(request.headers()).unwrap_or(page);
            }
        }
        if let Some(refused) = self.refusal_of(&request) {
            // Read the body away (within the limit, and the frame timeout)
            // so the connection can carry the next request; a body too large
            // or too slow closes it instead.
            if announced_length(request.headers()).is_some_and(|len| len > self.max_body as u64) {
                return closing(refused);
            }
            let drain = Limited::new(request.into_body(), self.max_body).collect();
            let drained = tokio::time::timeout(self.endpoint.config.frame_timeout, drain).await;
            return if matches!(drained, Ok(Ok(_))) {
                refused
            } else {
                closing(refused)
            };
        }
        if announced_length(request.headers()).is_some_and(|len| len > self.max_body as u64) {
            return closing(too_large(self.max_body));
        }
        // Past `refusal_of`: authenticated by the bearer token if the server
        // has one (the session then lets the calls through).
        let authenticated = self.token.is_some();
        let body = match Limited::new(request.into_body(), self.max_body)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return closing(too_large(self.max_body));
            }
            Err(e) => {
                return closing(refusal(
                    StatusCode::BAD_REQUEST,
                    code::PARSE_ERROR,
                    &format!("the request body could not be read: {e}"),
                ));
            }
        };
        match self.exchange(body, authenticated).await {
            Err(gone) => gone,
            Ok(Some(answer)) => json_response(StatusCode::OK, answer),
            Ok(None) => Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Full::new(Bytes::new()))
                .unwrap_or_default(),
        }
    }

    /// Hands one message to the session and waits for its answer (`None`
    /// for notifications only); `Err` with a `503` if the session is gone.
    async fn exchange(
        &self,
        body: Bytes,
        authenticated: bool,
    ) -> Result<Option<Bytes>, Response<Full<Bytes>>> {
        let outbox = Arc::new(Outbox::new(
            Framing::Delimited,
            self.max_answer,
            self.max_answer.saturating_add(1),
        ));
        let answers = Collect::default();
        let message = Message {
            body,
            reply: Some(Arc::new(ReplyTo {
                outbox: outbox.clone(),
            })),
            authenticated,
        };
        if self.messages.send(message).await.is_err() {
            return Err(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                code::SHUTTING_DOWN,
                "the server is shutting down; retry later or on another server",
            ));
        }
        // The session drops the reply handle once every answer is queued,
        // which closes the outbox and ends the writer. Run here rather than
        // in a task of its own: nothing needs it before the answer, and the
        // outbox never makes the session wait (its budget exceeds the
        // largest answer).
        let _ = outbox.run_writer(answers.clone()).await;
        Ok(answers.take())
    }
}

impl Post {
    /// Answers a WebSocket upgrade and hands the connection, once hyper lets
    /// go of it, to a session of its own. With a token configured, a bearer
    /// token on the upgrade authenticates the socket; without one, the
    /// socket can still present it with `rpc.auth`.
    #[cfg(feature = "ws")]
    fn upgrade(self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        use crate::transport::ws;
        if let Some(refused) = self.foreign(request.headers()) {
            return refused;
        }
        let authenticated = match (&self.token, request.headers().get(header::AUTHORIZATION)) {
            (Some(auth), Some(given)) => {
                if !bearer(Some(given)).is_some_and(|t| auth.matches(t)) {
                    return refusal(
                        StatusCode::UNAUTHORIZED,
                        code::UNAUTHORIZED,
                        "unauthorized: the bearer token is not valid for this server",
                    );
                }
                true
            }
            _ => false,
        };
        let accepted = match ws::accept(request.headers()) {
            Ok(accepted) => accepted,
            Err(why) => return refusal(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, why),
        };
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let on_upgrade = hyper::upgrade::on(request);
        let Post {
            endpoint,
            stop,
            mut info,
            max_body,
            max_answer,
            ..
        } = self.clone();
        info.authenticated = authenticated;
        // The socket's session knows the request that opened it.
        info.headers = headers;
        let served: Served = Box::pin(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade failed");
                    return;
                }
            };
            let write_buffer = endpoint.config.write_buffer;
            let transport = ws::open(upgraded, max_body, max_answer, write_buffer, info).await;
            let (_, session) = crate::session::open(transport, endpoint, Some(stop));
            session.await;
        });
        if self.upgrades.try_send(served).is_err() {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                code::SHUTTING_DOWN,
                "this connection is already being upgraded",
            );
        }
        accepted.body(Full::new(Bytes::new())).unwrap_or_default()
    }

    /// The refusal a request gets before its body is read, if any: the
    /// host and origin, the path, the method, the content type, the token.
    fn refusal_of(&self, request: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
        if let Some(refused) = self.foreign(request.headers()) {
            return Some(refused);
        }
        if request.uri().path() != "/rpc" {
            return Some(refusal(
                StatusCode::NOT_FOUND,
                code::METHOD_NOT_FOUND,
                "no such path: JSON-RPC requests go to `POST /rpc`",
            ));
        }
        self.post_refusal(
            request,
            "`/rpc` takes JSON-RPC requests by `POST`",
            json_content_type,
            "send the body as `Content-Type: application/json` (UTF-8)",
            refusal,
        )
    }

    /// The refusals every `POST` route shares, in order: the method, the
    /// content type (`accepts`, else `content_hint`), the bearer token;
    /// each answered with `render`'s body (a JSON-RPC error, an XML-RPC
    /// fault).
    fn post_refusal(
        &self,
        request: &Request<Incoming>,
        post_only: &str,
        accepts: fn(Option<&HeaderValue>) -> bool,
        content_hint: &str,
        render: fn(StatusCode, i64, &str) -> Response<Full<Bytes>>,
    ) -> Option<Response<Full<Bytes>>> {
        if request.method() != Method::POST {
            let mut response = render(
                StatusCode::METHOD_NOT_ALLOWED,
                code::INVALID_REQUEST,
                post_only,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return Some(response);
        }
        if !accepts(request.headers().get(header::CONTENT_TYPE)) {
            return Some(render(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::INVALID_REQUEST,
                content_hint,
            ));
        }
        if let Some(auth) = &self.token {
            if !bearer(request.headers().get(header::AUTHORIZATION))
                .is_some_and(|t| auth.matches(t))
            {
                let mut response = render(
                    StatusCode::UNAUTHORIZED,
                    code::UNAUTHORIZED,
                    "unauthorized: this server requires `Authorization: Bearer <token>`",
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return Some(response);
            }
        }
        None
    }
}

/// The browser client every server serves at `/rpc.js`.
const RPC_JS: &str = include_str!("../../assets/rpc.js");

impl Post {
    /// A static page at `path`: `/rpc.js`, or one given to
    /// `ServerBuilder::page`.
    fn page(&self, path: &str) -> Option<Response<Full<Bytes>>> {
        let (content_type, body) = if path == "/rpc.js" {
            (
                "text/javascript; charset=utf-8",
                Bytes::from_static(RPC_JS.as_bytes()),
            )
        } else {
            let (_, content_type, body) = self
                .endpoint
                .config
                .pages
                .iter()
                .find(|(p, _, _)| p == path)?;
            (*content_type, body.clone())
        };
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Full::new(body))
            .ok()
    }

    /// `GET /metrics`: the Prometheus text format, or `404` saying how to
    /// turn metrics on.
    fn metrics(&self) -> Response<Full<Bytes>> {
        match &self.endpoint.config.metrics {
            Some(handle) => Response::builder()
                .status(StatusCode::OK)
                .header(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .header(header::CACHE_CONTROL, "no-cache")
                .body(Full::new(Bytes::from(handle.render())))
                .unwrap_or_default(),
            None => refusal(
                StatusCode::NOT_FOUND,
                code::METHOD_NOT_FOUND,
                "this server records no metrics; build it with ServerBuilder::metrics",
            ),
        }
    }

    /// `GET /health`: `200` `{"status":"serving"}` while the server serves,
    /// `503` `{"status":"leaving"}` (with `Retry-After`) once its shutdown
    /// has begun, so a load balancer or a container's health check stops
    /// sending it clients.
    fn health(&self) -> Response<Full<Bytes>> {
        let leaving = self.endpoint.leaving.is_cancelled() || self.stop.is_cancelled();
        let (status, body) = if leaving {
            (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"leaving"}"#)
        } else {
            (StatusCode::OK, r#"{"status":"serving"}"#)
        };
        let mut response = json_response(status, Bytes::from_static(body.as_bytes()));
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        );
        if leaving {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
        }
        response
    }

    /// `403` for a `Host` this server does not answer to (DNS rebinding),
    /// or an `Origin` that is neither the server's own nor allowed (a page
    /// on another site).
    fn foreign(&self, headers: &http::HeaderMap) -> Option<Response<Full<Bytes>>> {
        self.foreign_reason(headers)
            .map(|why| refusal(StatusCode::FORBIDDEN, code::UNAUTHORIZED, why))
    }

    /// Why [`foreign`](Self::foreign) refuses a request, if it does.
    fn foreign_reason(&self, headers: &http::HeaderMap) -> Option<&'static str> {
        let config = &self.endpoint.config;
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !host_allowed(host, config.loopback, &config.hosts) {
            return Some(
                "forbidden: this server does not answer to that Host name; add it with `ServerBuilder::allowed_hosts`",
            );
        }
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        if let Some(origin) = origin {
            let same = origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host));
            if !same
                && !config
                    .origins
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(origin))
            {
                return Some(
                    "forbidden: pages from this origin may not call this server; allow it with `ServerBuilder::allowed_origins`",
                );
            }
        }
        None
    }
}

/// Whether the `Host` header names this server: a loopback name on a
/// loopback listener, a configured name, or, elsewhere with none
/// configured, any name.
fn host_allowed(host: &str, loopback: bool, allowed: &[String]) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]:7070`, `localhost:7070`; not the colons inside `[::1]`.
        Some((name, port)) if !port.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
    .to_ascii_lowercase();
    if allowed.contains(&name) {
        return true;
    }
    if loopback {
        return matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]");
    }
    allowed.is_empty()
}

/// The body length a request announces in `Content-Length`.
fn announced_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The same response, closing the connection after it.
fn closing(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Whether a `Content-Type` is JSON in UTF-8: `application/json`, with no
/// charset or `charset=utf-8` (any case), or no header at all.
fn json_content_type(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value else { return true };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
    {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => p.is_empty(),
    })
}

/// The token of `Authorization: Bearer TOKEN`.
fn bearer(value: Option<&HeaderValue>) -> Option<&[u8]> {
    let value = value?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

fn too_large(max: usize) -> Response<Full<Bytes>> {
    refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        code::FRAME_TOO_LARGE,
        &format!("the request body exceeds the maximum of {max} bytes; send smaller requests"),
    )
}

/// A refusal below JSON-RPC: its status, and a JSON-RPC error body.
fn refusal(status: StatusCode, code: i64, message: &str) -> Response<Full<Bytes>> {
    let mut body = bytes::BytesMut::new();
    crate::message::write_error(&mut body, None, &ErrorObject::new(code, message));
    json_response(status, body.freeze())
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .unwrap_or_default()
}

/// A byte stream whose first bytes were already read (to choose the
/// adapter): they are read again first. hyper keeps its own rewinding type
/// private, so these few lines are ours.
pub(crate) struct Prefixed<IO> {
    prefix: Bytes,
    io: IO,
}

impl<IO> Prefixed<IO> {
    pub(crate) fn new(prefix: Bytes, io: IO) -> Self {
        Self { prefix, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Keeps the one answer a POST gets.
#[derive(Clone, Default)]
struct Collect(Arc<std::sync::Mutex<Option<Bytes>>>);

impl Collect {
    fn take(&self) -> Option<Bytes> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Drain for Collect {
    async fn send(&mut self, taken: &mut Taken) -> std::io::Result<()> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for message in taken.messages() {
            // One message answers one body: a response or a batch array.
            slot.get_or_insert(message);
        }
        Ok(())
    }

    async fn close(&mut self, _: crate::outbox::Closing) -> std::io::Result<()> {
        Ok(())
    }
}

/// The inbound half: the bodies of the connection's POSTs.
pub(crate) struct Receiver {
    rx: mpsc::Receiver<Message>,
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
        match self.rx.poll_recv(cx) {
            Poll::Ready(message) => {
                self.last_read = Instant::now();
                Poll::Ready(Ok(message))
            }
            Poll::Pending => self.timer.poll_idle(cx, idle_until).map(Err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        let ok = |v: &str| json_content_type(Some(&HeaderValue::from_str(v).unwrap()));
        assert!(json_content_type(None));
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=UTF-8"));
        assert!(ok("application/json;charset=\"utf-8\""));
        assert!(!ok("text/plain"));
        assert!(!ok("application/json; charset=latin1"));
        assert!(!ok("application/x-www-form-urlencoded"));
    }

    #[test]
    fn host_names_are_checked_without_their_port() {
        assert!(host_allowed("localhost:7070", true, &[]));
        assert!(host_allowed("127.0.0.1", true, &[]));
        assert!(host_allowed("[::1]:7070", true, &[]));
        assert!(!host_allowed("evil.example:7070", true, &[]));
        assert!(
            host_allowed("server:7070", false, &[]),
            "any name off loopback"
        );
        let named = ["calc.example".to_owned()];
        assert!(host_allowed("Calc.Example:443", false, &named));
        assert!(!host_allowed("other.example", false, &named));
        assert!(host_allowed("calc.example", true, &named));
    }

    #[test]
    fn bearer_tokens_are_read_whatever_the_scheme_case() {
        let read = |v: &'static str| bearer(Some(&HeaderValue::from_static(v))).map(<[u8]>::to_vec);
        assert_eq!(read("Bearer s3cret"), Some(b"s3cret".to_vec()));
        assert_eq!(read("bearer s3cret"), Some(b"s3cret".to_vec()));
        assert_eq!(read("Basic czNjcmV0"), None);
        assert_eq!(bearer(None), None);
    }
}
