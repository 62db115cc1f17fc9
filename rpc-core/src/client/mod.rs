//! The client: many calls in flight on one multiplexed session.
//!
//! A [`Client`] is a cheap handle (clone it freely, share it between tasks);
//! all clones use one session on one connection. Each call gets a fresh
//! numeric id; the session's loop matches responses to calls by id, and its
//! outbox sends the requests of all callers in as few writes as possible.
//!
//! The guarantees, each tested:
//! - every call has a deadline (the handle's timeout, the method's default,
//!   or what remains of the handler's own budget when called from inside a
//!   handler) and sends it to the server as `timeout_ms`;
//! - dropping a call's future (or its timing out) sends `rpc.cancel`, so the
//!   server stops working on it;
//! - when the connection breaks, every pending call fails at once with
//!   [`RpcError::Closed`]; the next call reconnects through the client's
//!   [`Connector`], with exponential backoff and jitter between failed
//!   attempts;
//! - no call is ever sent twice, except one marked idempotent
//!   (`#[rpc(idempotent)]`), which is retried once on a fresh connection if
//!   the connection broke before its response arrived.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::ToSocketAddrs;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{DecodeError, Never, RpcError};
use crate::frame::DEFAULT_MAX_FRAME;
use crate::message::{ErrorObject, code};
use crate::server::Endpoint;
use crate::session::{self, Answer, Notification, Session};
use crate::transport::{ConnectionInfo, Connector, Limits, TcpConnector, Transport};
use balance::Balancer;

mod balance;
mod batch;
mod keepalive;
mod stream;

pub use balance::{Balance, FOLLOW_POLL};
pub use batch::{Batch, BatchCall};
pub use keepalive::Keepalive;
pub use stream::RemoteStream;

/// Default time a call waits for its response: 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of requests buffered before callers wait for the socket.
const WRITE_BUFFER: usize = 1024 * 1024;

/// First reconnection delay after a failed attempt; doubles per failure.
const BACKOFF_BASE: Duration = Duration::from_millis(50);

/// Longest delay between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A connection to a server, shared by every clone.
///
/// Generated clients (`FooClient`) wrap one; use it directly to call methods
/// by name, or to put several generated clients on one connection:
///
/// ```no_run
/// # #[rpc_core::service] trait Calculator { async fn add(&self, a: f64, b: f64) -> f64; }
/// # #[rpc_core::service] trait Greeter { async fn hello(&self, name: String) -> String; }
/// # async fn demo() -> Result<(), rpc_core::RpcError> {
/// let calc = CalculatorClient::connect("127.0.0.1:7070").await?;
/// // The greeter's client on the calculator's connection:
/// let greeter = GreeterClient::from(calc.inner().clone());
///
/// // Or untyped, by name:
/// let sum: f64 = calc.inner().call("add", &(2.0, 3.0)).await?;
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
            .field("target", &self.inner.connector.as_ref().map(|c| c.target()))
            .field("timeout", &self.timeout())
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
    window: Option<u64>,
}

impl CallOptions {
    /// No options: the handle's timeout, no retry.
    pub const fn new() -> Self {
        Self {
            timeout: None,
            idempotent: false,
            window: None,
        }
    }

    /// The method's default timeout, used unless the handle has its own
    /// ([`Client::with_timeout`]).
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// For a call that opens a stream ([`Client::open_stream`]): its
    /// window, the bytes of items the server may send ahead of what the
    /// application has read (default [`DEFAULT_WINDOW`](crate::DEFAULT_WINDOW),
    /// 256 KiB). A larger window keeps a fast stream going over a
    /// long round trip; a smaller one holds less in memory.
    pub const fn window(mut self, bytes: u64) -> Self {
        self.window = Some(bytes);
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
    balance: Balance,
    keepalive: Option<Keepalive>,
    #[cfg(feature = "tls")]
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
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
            balance: Balance::default(),
            keepalive: Some(Keepalive::default()),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ClientBuilder {
    /// How a client from [`discover`](Self::discover) spreads calls over
    /// the instances (default [`Balance::PowerOfTwoChoices`]).
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// How the client finds out that a connection died without closing (a
    /// cable pulled, a host gone): see [`Keepalive`]; `None` turns it off.
    /// Default: [`Keepalive::default`] (a ping after 2 s of silence with
    /// calls in flight, dead after 3 unanswered).
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// A client for every live instance of service `name` in `registry`:
    /// it connects to the instances as calls need them, spreads calls over
    /// them ([`balance`](Self::balance)), sends new calls elsewhere when one
    /// fails, and follows the registry as instances come and go. The
    /// addresses may take any form [`connect`](Self::connect) takes, with
    /// this builder's TLS and token.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use rpc_core::discovery::binder::BinderRegistry;
    /// let registry = Arc::new(BinderRegistry::connect("127.0.0.1:7000").await?);
    /// let client = rpc_core::Client::builder().discover(registry, "Calculator").await?;
    /// let sum: f64 = client.call("add", &(2.0, 3.0)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`RpcError::Connect`] when the registry cannot be reached, lists no
    /// instance of `name`, or none of them can be connected to, within the
    /// timeout.
    pub async fn discover(
        self,
        registry: Arc<dyn crate::discovery::Registry>,
        name: &str,
    ) -> Result<Client, RpcError> {
        let deadline = deadline_after(self.timeout);
        let instances = match tokio::time::timeout_at(deadline, registry.lookup(name)).await {
            Ok(Ok(instances)) => instances,
            Ok(Err(e)) => {
                return Err(RpcError::Connect {
                    addr: name.to_owned(),
                    source: std::io::Error::other(format!("the registry failed: {e}")),
                });
            }
            Err(_) => return Err(RpcError::Timeout(self.timeout)),
        };
        let balancer = Balancer::start(self.clone(), self.balance, registry, name, instances);
        let link = balancer.pick(deadline, self.timeout).await?;
        let client = Client::from_parts(self, None, link);
        *lock(&client.inner.balancer) = Some(balancer);
        Ok(client)
    }

    /// How long each call waits for its response, unless the method or the
    /// handle says otherwise, and how long connecting may take.
    /// Default: [`DEFAULT_TIMEOUT`] (30 s). `Duration::MAX` means no limit;
    /// `Duration::ZERO` means already expired: every call fails at once
    /// with [`RpcError::Timeout`] without being sent.
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
    /// `server_name` (a DNS name or an IP address; see
    /// [`crate::tls::client_config`]).
    ///
    /// # Errors
    /// [`TlsError::ServerName`](crate::tls::TlsError::ServerName) at once if
    /// `server_name` is neither a valid DNS name nor an IP address.
    #[cfg(feature = "tls")]
    pub fn tls(
        mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: impl Into<String>,
    ) -> Result<Self, crate::tls::TlsError> {
        let name = server_name.into();
        let server_name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
            crate::tls::TlsError::ServerName {
                name,
                detail: e.to_string(),
            }
        })?;
        self.tls = Some((tokio_rustls::TlsConnector::from(config), server_name));
        Ok(self)
    }

    /// Opens a connection to `addr` (TCP with `TCP_NODELAY`, TLS if set up,
    /// then `rpc.auth` if a token is set). The client reconnects to the same
    /// address when the connection breaks.
    ///
    /// `addr` is `HOST:PORT`, or a URL: `tcp://HOST:PORT`, `tls://HOST:PORT`
    /// (with [`tls`](Self::tls)), `ws://HOST:PORT/ws` or `wss://HOST:PORT/ws`
    /// (WebSocket, feature `ws`), or `http://HOST:PORT/rpc` or
    /// `https://HOST:PORT/rpc` (one POST per call or batch, or per several
    /// calls when all connections are busy; feature `http`;
    /// see [`HttpConnector`](crate::transport::HttpConnector) for what HTTP
    /// cannot carry). With a token, every POST carries it as
    /// `Authorization: Bearer`.
    ///
    /// # Errors
    /// [`RpcError::Connect`] when nothing answers there (or the TLS
    /// handshake fails), [`RpcError::Timeout`] when connecting takes longer
    /// than the timeout, and the server's answer to `rpc.auth`.
    pub async fn connect(
        self,
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Client, RpcError> {
        let connector = self.connector_for(&addr.to_string())?;
        self.connect_arc(connector).await
    }

    /// The connector for `target` (any form [`connect`](Self::connect)
    /// takes), with this builder's TLS and token.
    pub(crate) fn connector_for(&self, target: &str) -> Result<Arc<dyn Connector>, RpcError> {
        let target = target.to_owned();
        #[cfg(feature = "ws")]
        if target.starts_with("ws://") || target.starts_with("wss://") {
            let Some(connector) = crate::transport::WsConnector::new(&target) else {
                return Err(RpcError::Connect {
                    addr: target,
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "a WebSocket URL needs a host and a port: ws://HOST:PORT/ws",
                    ),
                });
            };
            #[cfg(feature = "tls")]
            let connector = match (&self.tls, target.starts_with("wss://")) {
                (Some((tls, name)), true) => connector.with_tls(tls.clone(), name.clone()),
                (None, true) => {
                    return Err(RpcError::Connect {
                        addr: target,
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "a wss:// URL needs TLS: configure it with ClientBuilder::tls",
                        ),
                    });
                }
                _ => connector,
            };
            return Ok(Arc::new(connector));
        }
        #[cfg(feature = "http")]
        if target.starts_with("http://") || target.starts_with("https://") {
            let refused = |why: &str| RpcError::Connect {
                addr: target.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
            };
            let Some(mut connector) = crate::transport::HttpConnector::new(&target) else {
                return Err(refused(
                    "an HTTP URL needs a host and a port: http://HOST:PORT/rpc",
                ));
            };
            if let Some(token) = &self.token {
                connector = connector.with_token(token).ok_or_else(|| {
                    refused(
                        "the token cannot travel in an HTTP header: it holds a control character",
                    )
                })?;
            }
            #[cfg(feature = "tls")]
            let connector = match (&self.tls, target.starts_with("https://")) {
                (Some((tls, name)), true) => connector.with_tls(tls.clone(), name.clone()),
                (None, true) => {
                    return Err(refused(
                        "an https:// URL needs TLS: configure it with ClientBuilder::tls",
                    ));
                }
                _ => connector,
            };
            return Ok(Arc::new(connector));
        }
        let address = target
            .strip_prefix("tcp://")
            .or_else(|| target.strip_prefix("tls://"))
            .unwrap_or(&target)
            .trim_end_matches('/');
        if !address.contains(':') {
            return Err(RpcError::Connect {
                addr: target.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the address has no port: write HOST:PORT, e.g. 127.0.0.1:7070",
                ),
            });
        }
        let connector = TcpConnector::new(address);
        #[cfg(feature = "tls")]
        let connector = match &self.tls {
            Some((tls, name)) => connector.with_tls(tls.clone(), name.clone()),
            None => connector,
        };
        Ok(Arc::new(connector))
    }

    /// Opens a connection with any [`Connector`] (an in-memory one, or one
    /// of your own that picks the address), and reconnects through it when
    /// the connection breaks.
    ///
    /// # Errors
    /// The connector's error, [`RpcError::Timeout`] when connecting takes
    /// longer than the timeout, and the server's answer to `rpc.auth`.
    pub async fn connect_with<C: Connector>(self, connector: C) -> Result<Client, RpcError> {
        self.connect_arc(Arc::new(connector)).await
    }

    async fn connect_arc(self, connector: Arc<dyn Connector>) -> Result<Client, RpcError> {
        let deadline = deadline_after(self.timeout);
        let link = self.open(&*connector, deadline).await?;
        Ok(Client::from_parts(self, Some(connector), link))
    }

    /// Runs the protocol over any byte stream split in two halves (an
    /// in-memory pipe, a transport of your own), in length-prefixed frames.
    /// Such a client cannot reconnect. Must be called inside a Tokio
    /// runtime.
    pub fn start<R, W>(self, read: R, write: W) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let transport = crate::transport::connector::open_stream(
            read,
            write,
            &self.limits(),
            ConnectionInfo::new("stream"),
        );
        let link = Link::start(transport, self.keepalive);
        Client::from_parts(self, None, link)
    }

    fn limits(&self) -> Limits {
        let mut limits = Limits::new(self.max_frame, WRITE_BUFFER);
        limits.exchange_timeout = self.timeout;
        limits
    }

    /// Dials, starts a session, and authenticates if a token is set.
    async fn open(
        &self,
        connector: &dyn Connector,
        deadline: Instant,
    ) -> Result<Arc<Link>, RpcError> {
        let limits = self.limits();
        let transport = match tokio::time::timeout_at(deadline, connector.connect(&limits)).await {
            Ok(transport) => transport?,
            Err(_) => return Err(RpcError::Timeout(self.timeout)),
        };
        let link = Link::start(transport, self.keepalive);
        if let Some(token) = &self.token {
            let params = [&**token];
            let answer = link
                .session
                .request("rpc.auth", &params, deadline, self.timeout, None)
                .await?;
            decode::<bool, Never>("rpc.auth", answer)?;
        }
        Ok(link)
    }
}

/// `now + timeout`, saturating: a huge timeout means no limit.
fn deadline_after(timeout: Duration) -> Instant {
    crate::time::after(timeout)
}

/// What all clones of one client share.
struct Inner {
    config: ClientBuilder,
    /// How to reconnect; `None` for a client built on a stream.
    connector: Option<Arc<dyn Connector>>,
    current: Mutex<Arc<Link>>,
    /// Serializes reconnection attempts and holds the backoff state.
    reconnect: tokio::sync::Mutex<Backoff>,
    /// For a client from `discover`: the instances it spreads calls over.
    balancer: Mutex<Option<Arc<Balancer>>>,
}

/// One session the client holds, and the task that runs it.
struct Link {
    session: Arc<Session>,
    task: tokio::task::AbortHandle,
}

impl Link {
    fn start(transport: Transport, keepalive: Option<Keepalive>) -> Arc<Link> {
        // Over HTTP each POST has its own time limit and a busy pool leaves
        // no connection for a ping: silence there is not death.
        let keepalive = keepalive.filter(|_| transport.info.transport != "http");
        let (session, run) = session::open(transport, Endpoint::client(), None);
        let task = tokio::spawn(run).abort_handle();
        if let Some(keepalive) = keepalive {
            tokio::spawn(keepalive::watch(
                Arc::downgrade(&session),
                task.clone(),
                keepalive,
            ));
        }
        Arc::new(Link { session, task })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Flushes what is queued, then shuts down the write half.
        self.session.outbox.close();
        self.task.abort();
    }
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Client {
    /// Connects to `addr` with the default options.
    ///
    /// # Errors
    /// See [`ClientBuilder::connect`].
    pub async fn connect(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<Client, RpcError> {
        ClientBuilder::default().connect(addr).await
    }

    /// Options for a new connection.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    fn from_parts(
        config: ClientBuilder,
        connector: Option<Arc<dyn Connector>>,
        link: Arc<Link>,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                config,
                connector,
                current: Mutex::new(link),
                reconnect: tokio::sync::Mutex::new(Backoff::default()),
                balancer: Mutex::new(None),
            }),
            timeout: None,
        }
    }

    /// A handle on the same connection whose calls wait at most `timeout`
    /// (overriding the client's default and any method's default).
    /// `Duration::MAX` means no limit; `Duration::ZERO` means already
    /// expired: calls fail at once with [`RpcError::Timeout`], unsent.
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
    /// knows how to reach its server reconnects on the next call.
    pub fn is_closed(&self) -> bool {
        if let Some(balancer) = &*lock(&self.inner.balancer) {
            return balancer.is_empty();
        }
        !self.current().session.calls.usable()
    }

    fn current(&self) -> Arc<Link> {
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
        (timeout, deadline_after(timeout))
    }

    /// Calls `method` with `params` (any value that serializes to a JSON
    /// array or object) and decodes the result as `T`.
    ///
    /// An application error arrives as [`RpcError::Server`] with code
    /// [`APPLICATION_ERROR`](code::APPLICATION_ERROR) and the error value in
    /// its `data`; use [`call_with`](Self::call_with) to decode it as a type.
    ///
    /// # Errors
    /// Every [`RpcError`] but `Application`.
    pub fn call<P, T>(&self, method: &str, params: &P) -> impl Future<Output = Result<T, RpcError>>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.call_inner(method, params, CallOptions::new(), None)
    }

    /// [`call`](Self::call) with per-call options, decoding an application
    /// error (code [`APPLICATION_ERROR`](code::APPLICATION_ERROR)) whose
    /// `data` decodes as `E` into [`RpcError::Application`].
    ///
    /// # Errors
    /// Every [`RpcError`].
    // Not an `async fn`: returning the inner future itself spares every call
    // the move of one large future into another.
    pub fn call_with<P, T, E>(
        &self,
        method: &str,
        params: &P,
        options: CallOptions,
    ) -> impl Future<Output = Result<T, RpcError<E>>>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        self.call_inner(method, params, options, None)
    }

    /// [`call_with`](Self::call_with), delivering the notifications the
    /// handler pushes while it runs ([`context::notify`](crate::context::notify))
    /// to `notifications`, in order, until the result arrives. The channel is
    /// bounded: what does not fit is dropped, and logged.
    ///
    /// ```no_run
    /// # async fn demo(client: rpc_core::Client) -> Result<(), rpc_core::RpcError> {
    /// let (tx, mut rx) = tokio::sync::mpsc::channel::<rpc_core::Notification>(64);
    /// let printer = tokio::spawn(async move {
    ///     while let Some(note) = rx.recv().await {
    ///         println!("{}: {:?}", note.method, note.params::<(u32, u32)>());
    ///     }
    /// });
    /// let steps: u32 = client
    ///     .call_with_notifications::<_, _, rpc_core::Never>("run", &(10,), Default::default(), tx)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Every [`RpcError`].
    pub async fn call_with_notifications<P, T, E>(
        &self,
        method: &str,
        params: &P,
        options: CallOptions,
        notifications: mpsc::Sender<Notification>,
    ) -> Result<T, RpcError<E>>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        self.call_inner(method, params, options, Some(notifications))
            .await
    }

    async fn call_inner<P, T, E>(
        &self,
        method: &str,
        params: &P,
        options: CallOptions,
        notifications: Option<mpsc::Sender<Notification>>,
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
        if timeout.is_zero() {
            // Already expired: not worth sending.
            return Err(RpcError::Timeout(timeout));
        }
        let mut retried = false;
        let result = loop {
            let attempt = async {
                let link = self.link(deadline, timeout).await?;
                link.session
                    .request(method, params, deadline, timeout, notifications.clone())
                    .await
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
    ///
    /// # Errors
    /// [`RpcError::Closed`] or [`RpcError::Connect`] when the server cannot
    /// be reached, [`RpcError::Timeout`] when the outbound buffer stays full
    /// for the whole timeout, and [`RpcError::Encode`] or
    /// [`RpcError::Frame`] for params that cannot be sent.
    pub async fn notify<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<(), RpcError> {
        let (timeout, deadline) = self.budget(CallOptions::new());
        if timeout.is_zero() {
            return Err(RpcError::Timeout(timeout));
        }
        let link = self.link(deadline, timeout).await?;
        link.session.notify(method, params, deadline, timeout).await
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
        Batch::new(self.clone())
    }

    /// The current session, or a new one if it is closed and the client
    /// knows how to reach its server. Attempts are spaced by the backoff;
    /// each call makes at most one.
    async fn link(&self, deadline: Instant, timeout: Duration) -> Result<Arc<Link>, RpcError> {
        let balancer = lock(&self.inner.balancer).clone();
        if let Some(balancer) = balancer {
            return balancer.pick(deadline, timeout).await;
        }
        let current = self.current();
        if current.session.calls.usable() {
            return Ok(current);
        }
        let Some(connector) = &self.inner.connector else {
            return Err(current.session.calls.closed_error());
        };
        let Ok(mut backoff) = tokio::time::timeout_at(deadline, self.inner.reconnect.lock()).await
        else {
            return Err(RpcError::Timeout(timeout));
        };
        // Another call may have reconnected while this one waited.
        let current = self.current();
        if current.session.calls.usable() {
            return Ok(current);
        }
        if let Some(at) = backoff.next_attempt {
            if at > deadline {
                return Err(current.session.calls.closed_error());
            }
            tokio::time::sleep_until(at).await;
        }
        match self.inner.config.open(&**connector, deadline).await {
            Ok(link) => {
                backoff.succeeded();
                tracing::debug!(target = %connector.target(), "reconnected");
                *lock(&self.inner.current) = link.clone();
                Ok(link)
            }
            Err(e) => {
                backoff.failed();
                Err(e)
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
        // `json` is a slice of a message already parsed as UTF-8 JSON, so
        // the first branch is the one taken; the second keeps serde_json's
        // error should that ever change.
        Answer::Result(json) => match std::str::from_utf8(&json) {
            Ok(text) => crate::json::from_valid(text),
            Err(_) => serde_json::from_slice(&json),
        }
        .map_err(|source| {
            RpcError::Decode(DecodeError::Result {
                method: method.to_owned(),
                source,
            })
        }),
        Answer::Error(error) => Err(application_error(error)),
        Answer::Malformed(why) => Err(RpcError::Decode(DecodeError::InvalidResponse(why))),
    }
}

#[cold]
pub(crate) fn application_error<E: DeserializeOwned>(error: ErrorObject) -> RpcError<E> {
    if error.code == code::APPLICATION_ERROR {
        if let Some(data) = &error.data {
            if let Ok(value) = E::deserialize(data) {
                return RpcError::Application(value);
            }
        }
    }
    RpcError::Server(error)
}
