//! The client: many calls in flight on one multiplexed connection.
//!
//! A [`Client`] is a cheap handle (clone it freely, share it between tasks);
//! all clones use one connection. Each call gets a fresh numeric id and an
//! entry in the table of pending calls; a reader task matches responses to
//! entries by id, and a writer task sends the requests of all callers in as
//! few writes as possible (see [`WriteQueue`]).
//!
//! The guarantees, each tested:
//! - every call has a deadline (the handle's timeout, the method's default,
//!   or what remains of the handler's own budget when called from inside a
//!   handler) and sends it to the server as `timeout_ms`;
//! - dropping a call's future (or its timing out) sends `rpc.cancel`, so the
//!   server stops working on it;
//! - when the connection breaks, every pending call fails at once with
//!   [`RpcError::Closed`]; the next call reconnects, with exponential backoff
//!   and jitter between failed attempts;
//! - no call is ever sent twice, except one marked idempotent
//!   (`#[rpc(idempotent)]`), which is retried once on a fresh connection if
//!   the connection broke before its response arrived.

use rustc_hash::FxHashMap as HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::connection::{QueueError, WriteQueue};
use crate::error::{Never, RpcError};
use crate::frame::{DEFAULT_MAX_FRAME, sub_bytes};
use crate::message::{self, ErrorObject, RawResponse, code};
use crate::reader::FrameReader;

/// Default time a call waits for its response: 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of requests buffered before callers wait for the socket.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Responses the reader dispatches in a row before letting other tasks run.
const RESPONSES_PER_TURN: u32 = 16;

/// First reconnection delay after a failed attempt; doubles per failure.
const BACKOFF_BASE: Duration = Duration::from_millis(50);

/// Longest delay between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A connection to a server, shared by every clone.
///
/// Generated clients (`FooClient`) wrap one; use it directly to call methods
/// by name, or to share one connection between several generated clients.
///
/// ```no_run
/// # async fn demo() -> Result<(), rpc_core::RpcError> {
/// let client = rpc_core::Client::connect("127.0.0.1:7070").await?;
/// let sum: f64 = client.call("add", &(2.0, 3.0)).await?;
/// assert_eq!(sum, 5.0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Set by [`with_timeout`](Client::with_timeout): wins over every default.
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.inner.target)
            .field(
                "timeout",
                &self.timeout.unwrap_or(self.inner.config.timeout),
            )
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Options of one call, for [`Client::call_with`]. Generated clients fill
/// them from the method's attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    timeout: Option<Duration>,
    idempotent: bool,
}

impl CallOptions {
    /// No options: the handle's timeout, no retry.
    pub const fn new() -> Self {
        Self {
            timeout: None,
            idempotent: false,
        }
    }

    /// The method's default timeout, used unless the handle has its own
    /// ([`Client::with_timeout`]).
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The method may run twice harmlessly: retry it once on a fresh
    /// connection if the connection breaks before its response arrives.
    pub const fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
}

/// Options for a new connection.
#[derive(Clone)]
pub struct ClientBuilder {
    timeout: Duration,
    max_frame: usize,
    token: Option<Arc<str>>,
    #[cfg(feature = "tls")]
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    #[cfg(feature = "tls")]
    tls_error: Option<String>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ClientBuilder");
        d.field("timeout", &self.timeout)
            .field("max_frame", &self.max_frame)
            .field("token", &self.token.as_ref().map(|_| "<set>"));
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.as_ref().map(|(_, name)| name));
        d.finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_frame: DEFAULT_MAX_FRAME,
            token: None,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_error: None,
        }
    }
}

impl ClientBuilder {
    /// How long each call waits for its response, unless the method or the
    /// handle says otherwise. Default: [`DEFAULT_TIMEOUT`] (30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest frame body accepted or sent, in bytes. Default: 16 MiB.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Presents `token` (with `rpc.auth`) on every new connection, before any
    /// call, for servers started with [`ServerBuilder::token`](crate::ServerBuilder::token).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Arc::from(token.into()));
        self
    }

    /// Speaks TLS, checking that the server's certificate is valid for
    /// `server_name` (see [`crate::tls::client_config`]).
    #[cfg(feature = "tls")]
    pub fn tls(
        mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: impl Into<String>,
    ) -> Self {
        let name = server_name.into();
        match rustls::pki_types::ServerName::try_from(name.clone()) {
            Ok(server_name) => {
                self.tls = Some((tokio_rustls::TlsConnector::from(config), server_name));
                self.tls_error = None;
            }
            Err(e) => self.tls_error = Some(format!("`{name}` is not a valid server name: {e}")),
        }
        self
    }

    /// Opens a connection to `addr` (TCP with `TCP_NODELAY`, TLS if set up,
    /// then `rpc.auth` if a token is set). The client reconnects to the same
    /// address when the connection breaks.
    pub async fn connect(
        self,
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Client, RpcError> {
        let target = addr.to_string();
        let deadline = Instant::now() + self.timeout;
        let conn = self.open(&target, deadline).await?;
        Ok(Client::from_parts(self, Some(target), conn))
    }

    /// Runs the protocol over any byte stream split in two halves (an
    /// in-memory pipe, a transport of your own). Such a client cannot
    /// reconnect. Must be called inside a Tokio runtime.
    pub fn start<R, W>(self, read: R, write: W) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let conn = Connection::start(read, write, self.max_frame);
        Client::from_parts(self, None, conn)
    }

    async fn open(&self, target: &str, deadline: Instant) -> Result<Arc<Connection>, RpcError> {
        let connect_error = |source: std::io::Error| RpcError::Connect {
            addr: target.to_owned(),
            source,
        };
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(target)).await {
            Ok(stream) => stream.map_err(connect_error)?,
            Err(_) => return Err(RpcError::Timeout(self.timeout)),
        };
        let _ = stream.set_nodelay(true);
        #[cfg(feature = "tls")]
        if let Some(e) = &self.tls_error {
            return Err(connect_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                e.clone(),
            )));
        }
        #[cfg(feature = "tls")]
        let conn = match &self.tls {
            Some((connector, name)) => {
                let handshake = connector.connect(name.clone(), stream);
                let tls = match tokio::time::timeout_at(deadline, handshake).await {
                    Ok(tls) => tls.map_err(|e| {
                        connect_error(std::io::Error::new(
                            e.kind(),
                            format!("the TLS handshake failed ({e}); does the server speak TLS, with a certificate for this name signed by a CA you trust?"),
                        ))
                    })?,
                    Err(_) => return Err(RpcError::Timeout(self.timeout)),
                };
                let (read, write) = tokio::io::split(tls);
                Connection::start(read, write, self.max_frame)
            }
            None => {
                let (read, write) = stream.into_split();
                Connection::start(read, write, self.max_frame)
            }
        };
        #[cfg(not(feature = "tls"))]
        let conn = {
            let (read, write) = stream.into_split();
            Connection::start(read, write, self.max_frame)
        };
        if let Some(token) = &self.token {
            let params = [&**token];
            let answer = conn
                .request("rpc.auth", &params, deadline, self.timeout)
                .await?;
            decode::<bool, Never>("rpc.auth", answer)?;
        }
        Ok(conn)
    }
}

/// What all clones of one client share.
struct Inner {
    config: ClientBuilder,
    /// Where to reconnect; `None` for a client built on a custom stream.
    target: Option<String>,
    current: Mutex<Arc<Connection>>,
    /// Serializes reconnection attempts and holds the backoff state.
    reconnect: tokio::sync::Mutex<Backoff>,
}

/// Exponential backoff with jitter between failed connection attempts.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Backoff {
    fn failed(&mut self) {
        let exp = BACKOFF_BASE.saturating_mul(1u32 << self.failures.min(16));
        let delay = exp.min(BACKOFF_MAX);
        // Jitter: anywhere in [delay/2, delay], so clients that lost the same
        // server do not all come back at the same instant.
        let jittered = delay.mul_f64(0.5 + fastrand::f64() * 0.5);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = Some(Instant::now() + jittered);
    }

    fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

impl Client {
    /// Connects to `addr` with the default options.
    pub async fn connect(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<Client, RpcError> {
        ClientBuilder::default().connect(addr).await
    }

    /// Options for a new connection.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    fn from_parts(config: ClientBuilder, target: Option<String>, conn: Arc<Connection>) -> Client {
        Client {
            inner: Arc::new(Inner {
                config,
                target,
                current: Mutex::new(conn),
                reconnect: tokio::sync::Mutex::new(Backoff::default()),
            }),
            timeout: None,
        }
    }

    /// A handle on the same connection whose calls wait at most `timeout`
    /// (overriding the client's default and any method's default).
    ///
    /// ```no_run
    /// # async fn demo(client: rpc_core::Client) -> Result<(), rpc_core::RpcError> {
    /// use std::time::Duration;
    /// let quick = client.with_timeout(Duration::from_millis(200));
    /// let pong: String = quick.call("rpc.ping", &[(); 0]).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            inner: self.inner.clone(),
            timeout: Some(timeout),
        }
    }

    /// The time limit of this handle's calls (without a method default).
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(self.inner.config.timeout)
    }

    /// Whether the current connection is closed or draining. A client that
    /// knows its server's address reconnects on the next call.
    pub fn is_closed(&self) -> bool {
        !self.current().usable()
    }

    fn current(&self) -> Arc<Connection> {
        lock(&self.inner.current).clone()
    }

    /// The effective time budget of a call with `options`, and its deadline.
    fn budget(&self, options: CallOptions) -> (Duration, Instant) {
        let mut timeout = self
            .timeout
            .or(options.timeout)
            .unwrap_or(self.inner.config.timeout);
        // Inside a handler: never outlive the caller's own deadline.
        if let Some(left) = crate::context::remaining() {
            timeout = timeout.min(left);
        }
        (timeout, Instant::now() + timeout)
    }

    /// Calls `method` with `params` (any value that serializes to a JSON
    /// array or object) and decodes the result as `T`.
    ///
    /// An application error (code [`APPLICATION_ERROR`](code::APPLICATION_ERROR))
    /// whose `data` decodes as `E` is returned as [`RpcError::Application`].
    pub async fn call<P, T, E>(&self, method: &str, params: &P) -> Result<T, RpcError<E>>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        self.call_with(method, params, CallOptions::new()).await
    }

    /// [`call`](Self::call) with per-call options.
    pub async fn call_with<P, T, E>(
        &self,
        method: &str,
        params: &P,
        options: CallOptions,
    ) -> Result<T, RpcError<E>>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        let (timeout, deadline) = self.budget(options);
        let span = tracing::debug_span!(
            "rpc.client.call",
            method = %method,
            id = tracing::field::Empty,
            timeout_ms = timeout.as_millis() as u64
        );
        let started = Instant::now();
        let mut retried = false;
        let result = loop {
            let attempt = async {
                let conn = self.connection(deadline, timeout).await?;
                conn.request(method, params, deadline, timeout).await
            };
            match tracing::Instrument::instrument(attempt, span.clone()).await {
                Ok(answer) => {
                    break decode(method, answer).map_err(|e| timeout_if_expired(e, timeout));
                }
                Err(RpcError::Closed(why)) if options.idempotent && !retried => {
                    span.in_scope(|| {
                        tracing::debug!(reason = %why, "connection lost; retrying the idempotent call once")
                    });
                    retried = true;
                }
                Err(e) => break Err(e.widen()),
            }
        };
        if !span.is_disabled() {
            let elapsed_us = started.elapsed().as_micros() as u64;
            span.in_scope(|| match &result {
                Ok(_) => tracing::debug!(elapsed_us, outcome = "ok", "call finished"),
                Err(e) => tracing::debug!(elapsed_us, outcome = "error", error = %ErrorDisplay(e), "call finished"),
            });
        }
        result
    }

    /// Sends `method` as a notification: no id, no response, no retry. The
    /// future completes once the message is queued for sending.
    pub async fn notify<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<(), RpcError> {
        let (timeout, deadline) = self.budget(CallOptions::new());
        let conn = self.connection(deadline, timeout).await?;
        if tokio::time::timeout_at(deadline, conn.shared.queue.wait_for_room())
            .await
            .is_err()
        {
            return Err(RpcError::Timeout(timeout));
        }
        conn.shared
            .queue
            .push(|buf| message::write_request(buf, method, params, None, None))
            .map_err(|e| conn.shared.queue_error(e))
    }

    /// Starts a batch: calls collected and sent as one JSON-RPC batch.
    ///
    /// ```no_run
    /// # async fn demo(client: rpc_core::Client) -> Result<(), rpc_core::RpcError> {
    /// let mut batch = client.batch();
    /// let sum = batch.call::<_, f64, rpc_core::Never>("add", &(1.0, 2.0))?;
    /// let product = batch.call::<_, f64, rpc_core::Never>("mul", &(3.0, 4.0))?;
    /// batch.send().await?;
    /// assert_eq!(sum.await?, 3.0);
    /// assert_eq!(product.await?, 12.0);
    /// # Ok(()) }
    /// ```
    pub fn batch(&self) -> Batch {
        Batch {
            client: self.clone(),
            body: BytesMut::new(),
            members: Vec::new(),
            state: Arc::new(BatchState {
                sent: OnceLock::new(),
            }),
        }
    }

    /// The current connection, or a new one if it is closed and the server's
    /// address is known. Attempts are spaced by the backoff; each call makes
    /// at most one.
    async fn connection(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Arc<Connection>, RpcError> {
        let current = self.current();
        if current.usable() {
            return Ok(current);
        }
        let Some(target) = &self.inner.target else {
            return Err(current.shared.closed_error());
        };
        let Ok(mut backoff) = tokio::time::timeout_at(deadline, self.inner.reconnect.lock()).await
        else {
            return Err(RpcError::Timeout(timeout));
        };
        // Another call may have reconnected while this one waited.
        let current = self.current();
        if current.usable() {
            return Ok(current);
        }
        if let Some(at) = backoff.next_attempt {
            if at > deadline {
                return Err(current.shared.closed_error());
            }
            tokio::time::sleep_until(at).await;
        }
        match self.inner.config.open(target, deadline).await {
            Ok(conn) => {
                backoff.succeeded();
                tracing::debug!(target = %target, "reconnected");
                *lock(&self.inner.current) = conn.clone();
                Ok(conn)
            }
            Err(e) => {
                backoff.failed();
                Err(e)
            }
        }
    }
}

/// One connection: its tasks and its table of pending calls.
struct Connection {
    shared: Arc<Shared>,
    reader: tokio::task::AbortHandle,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Flushes what is queued, then shuts down the write half.
        self.shared.queue.close();
        self.reader.abort();
    }
}

impl Connection {
    fn start<R, W>(read: R, write: W, max_frame: usize) -> Arc<Connection>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            queue: WriteQueue::new(max_frame, WRITE_BUFFER),
            calls: Mutex::new(Calls::default()),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn({
            let shared = shared.clone();
            async move {
                if let Err(e) = shared.queue.run_writer(write).await {
                    shared.close(format!("writing to the server failed: {e}"));
                }
            }
        });
        let reader = tokio::spawn(read_loop(shared.clone(), read, max_frame));
        Arc::new(Connection {
            shared,
            reader: reader.abort_handle(),
        })
    }

    fn usable(&self) -> bool {
        let calls = self.shared.lock();
        calls.closed.is_none() && !calls.draining
    }

    async fn request<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Answer, RpcError> {
        let shared = &*self.shared;
        let (id, answer) = shared.register()?;
        let mut guard = PendingGuard {
            shared,
            id,
            armed: true,
            sent: false,
        };
        if !shared.queue.has_room()
            && tokio::time::timeout_at(deadline, shared.queue.wait_for_room())
                .await
                .is_err()
        {
            return Err(RpcError::Timeout(timeout));
        }
        // What remains after connecting, authenticating or waiting for room.
        let budget = deadline.saturating_duration_since(Instant::now());
        shared
            .queue
            .push(|buf| message::write_request(buf, method, params, Some(id), Some(budget)))
            .map_err(|e| shared.queue_error(e))?;
        guard.sent = true;
        tracing::Span::current().record("id", id);
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(answer)) => {
                guard.armed = false;
                Ok(answer)
            }
            Ok(Err(_)) => {
                guard.armed = false;
                Err(shared.closed_error())
            }
            Err(_) => Err(RpcError::Timeout(timeout)),
        }
    }
}

/// State shared between callers, the reader and the writer of one connection.
struct Shared {
    queue: WriteQueue,
    calls: Mutex<Calls>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Calls {
    pending: HashMap<u64, oneshot::Sender<Answer>>,
    /// Set once the connection is unusable: why.
    closed: Option<String>,
    /// The server announced a shutdown: calls in flight still complete, new
    /// ones go to a new connection.
    draining: bool,
    /// The last error the server sent without an id (it could not tell which
    /// call it concerns); reported if the connection then closes.
    last_unattributed: Option<ErrorObject>,
}

/// What the reader hands a waiting call.
enum Answer {
    /// The raw JSON of `result`, sliced from the frame.
    Result(Bytes),
    Error(ErrorObject),
    Malformed(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Calls> {
        lock(&self.calls)
    }

    fn closed_error(&self) -> RpcError {
        let calls = self.lock();
        RpcError::Closed(match (&calls.closed, calls.draining) {
            (Some(why), _) => why.clone(),
            (None, true) => "the server is shutting down".to_owned(),
            (None, false) => "the connection was closed".to_owned(),
        })
    }

    /// Marks the connection closed and fails every pending call.
    fn close(&self, reason: String) {
        let pending = {
            let mut calls = self.lock();
            if calls.closed.is_none() {
                let reason = match calls.last_unattributed.take() {
                    Some(e) => format!("{reason}; the server's last message was: {}", e.message),
                    None => reason,
                };
                calls.closed = Some(reason);
            }
            std::mem::take(&mut calls.pending)
        };
        // Dropping the senders wakes every waiting call with `Closed`.
        drop(pending);
        self.queue.close();
    }

    fn register(&self) -> Result<(u64, oneshot::Receiver<Answer>), RpcError> {
        let (tx, rx) = oneshot::channel();
        let id = self.register_sender(tx)?;
        Ok((id, rx))
    }

    fn register_sender(&self, tx: oneshot::Sender<Answer>) -> Result<u64, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut calls = self.lock();
        if calls.closed.is_some() || calls.draining {
            drop(calls);
            return Err(self.closed_error());
        }
        calls.pending.insert(id, tx);
        Ok(id)
    }

    #[cold]
    fn queue_error(&self, e: QueueError<serde_json::Error>) -> RpcError {
        match e {
            QueueError::Closed => self.closed_error(),
            QueueError::TooLarge(e) => RpcError::Frame(e),
            QueueError::Encode(e) => RpcError::Encode(e),
        }
    }

    /// Removes pending entries that will never be answered.
    fn forget(&self, ids: &[u64]) {
        let mut calls = self.lock();
        for id in ids {
            calls.pending.remove(id);
        }
    }

    /// Tells the server to stop working on call `id` (best effort).
    fn cancel(&self, id: u64) {
        let _ = self.queue.push(|buf| {
            buf.put_slice(br#"{"jsonrpc":"2.0","method":"rpc.cancel","params":{"id":"#);
            buf.put_slice(itoa::Buffer::new().format(id).as_bytes());
            buf.put_slice(b"}}");
            Ok::<_, std::convert::Infallible>(())
        });
    }

    fn dispatch(&self, frame: Bytes) {
        let Ok(text) = std::str::from_utf8(&frame) else {
            tracing::warn!("the server sent a frame that is not UTF-8; ignored");
            return;
        };
        if text.trim_start().starts_with('[') {
            match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(members) => members
                    .iter()
                    .for_each(|m| self.dispatch_one(&frame, m.get())),
                Err(e) => tracing::warn!(error = %e, "the server sent an invalid batch; ignored"),
            }
        } else {
            self.dispatch_one(&frame, text);
        }
    }

    fn dispatch_one(&self, frame: &Bytes, text: &str) {
        let response: RawResponse<'_> = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the server sent a message that is not a response; ignored");
                return;
            }
        };
        if let Some(method) = response.method {
            if method == "rpc.shutdown" {
                tracing::info!("the server is shutting down; new calls will use a new connection");
                self.lock().draining = true;
            } else {
                tracing::debug!(%method, "ignored a notification from the server");
            }
            return;
        }
        let Some(id) = response.id.and_then(|id| id.get().parse::<u64>().ok()) else {
            if let Some(error) = response.error {
                tracing::warn!(%error, "the server sent an error about no particular call");
                self.lock().last_unattributed = Some(error);
            }
            return;
        };
        let answer = match (response.result, response.error) {
            (Some(result), None) => Answer::Result(sub_bytes(frame, result.get())),
            (None, Some(error)) => Answer::Error(error),
            _ => {
                Answer::Malformed("a response must have exactly one of `result` and `error`".into())
            }
        };
        let waiter = self.lock().pending.remove(&id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(answer);
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(shared: Arc<Shared>, read: R, max_frame: usize) {
    let mut frames = FrameReader::new(read, max_frame, None);
    let mut burst = 0u32;
    let reason = loop {
        match frames.next(None).await {
            Ok(Some(frame)) => {
                shared.dispatch(frame);
                // Let the callers just woken run every few responses, so
                // their next requests go out while the rest are decoded.
                burst += 1;
                if burst == RESPONSES_PER_TURN {
                    burst = 0;
                    crate::connection::YieldToQueue::default().await;
                }
            }
            Ok(None) => break "the server closed the connection".to_owned(),
            Err(e) => break e.to_string(),
        }
    };
    tracing::debug!(%reason, "connection closed");
    shared.close(reason);
}

/// Cleans up after a call that ends without its response (timeout, or the
/// caller dropped the future): removes its pending entry and, if the request
/// went out, tells the server to cancel it.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
    armed: bool,
    sent: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let was_pending = self.shared.lock().pending.remove(&self.id).is_some();
            if self.sent && was_pending {
                self.shared.cancel(self.id);
            }
        }
    }
}

/// Displays an `RpcError<E>` without requiring `E: Debug` (for logs).
struct ErrorDisplay<'a, E>(&'a RpcError<E>);

impl<E> std::fmt::Display for ErrorDisplay<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            RpcError::Application(_) => f.write_str("the method returned an application error"),
            RpcError::Server(e) => write!(f, "{e}"),
            RpcError::Connect { addr, source } => {
                write!(f, "could not connect to {addr}: {source}")
            }
            RpcError::Closed(why) => write!(f, "connection closed: {why}"),
            RpcError::Timeout(d) => write!(f, "timed out after {d:?}"),
            RpcError::Encode(e) => write!(f, "encode: {e}"),
            RpcError::Decode(e) => write!(f, "decode: {e}"),
            RpcError::Frame(e) => write!(f, "{e}"),
        }
    }
}

/// The server's "deadline exceeded" is the caller's timeout: the same
/// outcome, whichever side noticed first.
fn timeout_if_expired<E>(error: RpcError<E>, timeout: Duration) -> RpcError<E> {
    match error {
        RpcError::Server(e) if e.code == code::DEADLINE_EXCEEDED => RpcError::Timeout(timeout),
        other => other,
    }
}

fn decode<T: DeserializeOwned, E: DeserializeOwned>(
    method: &str,
    answer: Answer,
) -> Result<T, RpcError<E>> {
    match answer {
        Answer::Result(json) => serde_json::from_slice(&json).map_err(|e| {
            RpcError::Decode(format!(
                "the result of `{method}` has an unexpected shape: {e}"
            ))
        }),
        Answer::Error(error) => Err(application_error(error)),
        Answer::Malformed(why) => Err(RpcError::Decode(why)),
    }
}

#[cold]
fn application_error<E: DeserializeOwned>(error: ErrorObject) -> RpcError<E> {
    if error.code == code::APPLICATION_ERROR {
        if let Some(data) = &error.data {
            if let Ok(value) = E::deserialize(data) {
                return RpcError::Application(value);
            }
        }
    }
    RpcError::Server(error)
}

/// Calls collected to be sent as one JSON-RPC batch; see [`Client::batch`].
pub struct Batch {
    client: Client,
    /// Every member's JSON without its closing `}`, back to back; the id is
    /// added when the batch is sent (ids belong to a connection).
    body: BytesMut,
    /// Each member's range in `body`, and for a call its result's channel.
    members: Vec<(std::ops::Range<usize>, Option<oneshot::Sender<Answer>>)>,
    state: Arc<BatchState>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("members", &self.members.len())
            .finish()
    }
}

struct BatchState {
    sent: OnceLock<Sent>,
}

/// A batch once sent.
struct Sent {
    shared: Arc<Shared>,
    /// The id given to each member (0 for a notification).
    ids: Vec<u64>,
    /// Every call of the batch shares one budget, counted from the send.
    deadline: Instant,
    timeout: Duration,
}

impl Batch {
    fn push_member<P: Serialize + ?Sized>(
        &mut self,
        method: &str,
        params: &P,
        answer: Option<oneshot::Sender<Answer>>,
    ) -> Result<usize, RpcError> {
        let start = self.body.len();
        if let Err(e) = message::write_request(&mut self.body, method, params, None, None) {
            self.body.truncate(start);
            return Err(RpcError::Encode(e));
        }
        // Drop the closing brace; `send` writes the id and closes the object.
        self.body.truncate(self.body.len() - 1);
        self.members.push((start..self.body.len(), answer));
        Ok(self.members.len() - 1)
    }

    /// Adds a call; its result is available from the returned [`BatchCall`]
    /// once the batch is [sent](Self::send).
    pub fn call<P, T, E>(&mut self, method: &str, params: &P) -> Result<BatchCall<T, E>, RpcError>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        let (tx, rx) = oneshot::channel();
        let index = self.push_member(method, params, Some(tx))?;
        Ok(BatchCall {
            method: method.to_owned(),
            answer: rx,
            state: self.state.clone(),
            index,
            _types: std::marker::PhantomData,
        })
    }

    /// Adds a notification: sent with the batch, no result.
    pub fn notify<P: Serialize + ?Sized>(
        &mut self,
        method: &str,
        params: &P,
    ) -> Result<(), RpcError> {
        self.push_member(method, params, None).map(drop)
    }

    /// How many calls and notifications the batch holds.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Sends the batch as one frame. Each [`BatchCall`] then resolves to its
    /// own typed result, whatever order the server answers in. An empty batch
    /// sends nothing (JSON-RPC forbids empty batches).
    pub async fn send(self) -> Result<(), RpcError> {
        if self.members.is_empty() {
            return Ok(());
        }
        let (timeout, deadline) = self.client.budget(CallOptions::new());
        let conn = self.client.connection(deadline, timeout).await?;
        let shared = conn.shared.clone();
        let mut ids = Vec::with_capacity(self.members.len());
        let mut ranges = Vec::with_capacity(self.members.len());
        for (range, answer) in self.members {
            let id = match answer {
                Some(tx) => match shared.register_sender(tx) {
                    Ok(id) => id,
                    Err(e) => {
                        shared.forget(&ids);
                        return Err(e);
                    }
                },
                None => 0,
            };
            ids.push(id);
            ranges.push(range);
        }
        if tokio::time::timeout_at(deadline, shared.queue.wait_for_room())
            .await
            .is_err()
        {
            shared.forget(&ids);
            return Err(RpcError::Timeout(timeout));
        }
        let body = &self.body;
        let budget_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_micros()
            .div_ceil(1000);
        let pushed = shared.queue.push(|buf| {
            buf.put_u8(b'[');
            let mut digits = itoa::Buffer::new();
            for (i, (range, id)) in ranges.iter().zip(&ids).enumerate() {
                if i > 0 {
                    buf.put_u8(b',');
                }
                buf.put_slice(body.get(range.clone()).unwrap_or_default());
                if *id != 0 {
                    buf.put_slice(br#","id":"#);
                    buf.put_slice(digits.format(*id).as_bytes());
                    buf.put_slice(br#","timeout_ms":"#);
                    buf.put_slice(digits.format(budget_ms).as_bytes());
                }
                buf.put_u8(b'}');
            }
            buf.put_u8(b']');
            Ok::<_, serde_json::Error>(())
        });
        if let Err(e) = pushed {
            shared.forget(&ids);
            return Err(shared.queue_error(e));
        }
        let _ = self.state.sent.set(Sent {
            shared,
            ids,
            deadline,
            timeout,
        });
        Ok(())
    }
}

/// The result of one call of a [`Batch`]: `.await` it after the batch is sent.
pub struct BatchCall<T, E = Never> {
    method: String,
    answer: oneshot::Receiver<Answer>,
    state: Arc<BatchState>,
    index: usize,
    _types: std::marker::PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for BatchCall<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchCall")
            .field("method", &self.method)
            .field("index", &self.index)
            .finish()
    }
}

impl<T, E> IntoFuture for BatchCall<T, E>
where
    T: DeserializeOwned + Send + 'static,
    E: DeserializeOwned + Send + 'static,
{
    type Output = Result<T, RpcError<E>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Some(sent) = self.state.sent.get() else {
                return Err(RpcError::Closed(
                    "the batch was not sent: `Batch::send` was not called, or it failed".to_owned(),
                ));
            };
            match tokio::time::timeout_at(sent.deadline, self.answer).await {
                Ok(Ok(answer)) => {
                    decode(&self.method, answer).map_err(|e| timeout_if_expired(e, sent.timeout))
                }
                Ok(Err(_)) => Err(sent.shared.closed_error().widen()),
                Err(_) => {
                    if let Some(id) = sent.ids.get(self.index) {
                        sent.shared.forget(std::slice::from_ref(id));
                    }
                    Err(RpcError::Timeout(sent.timeout))
                }
            }
        })
    }
}
