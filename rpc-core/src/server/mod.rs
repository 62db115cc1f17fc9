//! The server: its configuration, its handle, and what every session of
//! one server shares.
//!
//! A [`Server`] owns a set of [`Service`]s and a routing table from wire
//! method names to the service that offers each ([`router`]). It accepts
//! connections from a [`Listener`] ([`accept`]), and runs one
//! [session](crate::session) on each; the sessions do the protocol work.
//!
//! Every limit has a documented default here and a structured error: frame
//! size, calls in flight per connection, connections, idle time, time to
//! complete a started frame, and the response buffer of a peer that does
//! not read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::discovery::Registry;
use crate::discovery::register::Registrations;
use crate::error::ServerError;
use crate::frame::DEFAULT_MAX_FRAME;
use crate::middleware::{Middleware, TokenAuth};
use crate::service::Service;
use crate::session::SessionLimits;
use crate::transport::Listener;

pub(crate) mod accept;
pub(crate) mod builtins;
pub(crate) mod router;

use router::Router;

/// Default maximum number of calls one connection may have in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Default maximum number of connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Bytes of responses a connection buffers before its handlers wait for the
/// peer to read; see [`ServerBuilder::write_buffer`].
pub const DEFAULT_WRITE_BUFFER: usize = 1024 * 1024;

/// Default time a connection may stay open with no call in flight and no
/// frame arriving: 5 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Default time a frame (or a TLS handshake) may take to arrive once it has
/// started: 30 seconds.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time in-flight calls get to finish after a shutdown starts: 10 seconds.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// Smallest limit applied to outgoing frames, whatever `max_frame_size`:
/// every error response fits, so a tiny limit never silences the server.
pub(crate) const MIN_OUTGOING_FRAME: usize = 4096;

/// What every session of one server shares: the routes, the middleware,
/// the limits. A client's sessions have one too, with no services.
pub(crate) struct Endpoint {
    pub(crate) router: Router,
    pub(crate) middleware: Vec<Arc<dyn Middleware>>,
    pub(crate) limits: SessionLimits,
    pub(crate) config: Config,
    /// One permit per connection served.
    pub(crate) connections: Arc<Semaphore>,
    /// Cancelled when the server starts leaving: `/health` answers 503.
    pub(crate) leaving: CancellationToken,
}

impl Endpoint {
    /// The endpoint of a client's sessions: no services (the built-ins
    /// only), no idle limit.
    pub(crate) fn client() -> Arc<Endpoint> {
        static CLIENT: std::sync::OnceLock<Arc<Endpoint>> = std::sync::OnceLock::new();
        CLIENT
            .get_or_init(|| {
                let config = ServerBuilder::default().config;
                let mut limits = config.session_limits();
                limits.idle_timeout = None;
                limits.stall_timeout = None;
                Arc::new(Endpoint {
                    router: Router::empty(),
                    middleware: Vec::new(),
                    limits,
                    connections: Arc::new(Semaphore::new(1)),
                    leaving: CancellationToken::new(),
                    config,
                })
            })
            .clone()
    }
}

/// Entry point: `Server::builder()`.
///
/// ```no_run
/// # #[rpc_core::service] trait Echo { async fn echo(&self, text: String) -> String; }
/// # struct MyEcho;
/// # impl Echo for MyEcho { async fn echo(&self, text: String) -> String { text } }
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let server = rpc_core::Server::builder()
///     .service(EchoServer::new(MyEcho))
///     .max_connections(500)
///     .bind("127.0.0.1:7070")
///     .await?;
/// println!("listening on {}", server.local_addr());
/// server.wait().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with the documented defaults and no services.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// Configures and starts a server. Every option has a documented default.
pub struct ServerBuilder {
    services: Vec<Arc<dyn Service>>,
    middleware: Vec<Arc<dyn Middleware>>,
    config: Config,
    registrations: Registrations,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) max_frame: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) max_connections: usize,
    pub(crate) write_buffer: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) frame_timeout: Duration,
    pub(crate) grace_period: Duration,
    pub(crate) token: Option<Arc<str>>,
    /// Origins allowed besides the server's own (`scheme://host[:port]`).
    pub(crate) origins: Vec<String>,
    /// Static pages served over HTTP: path, content type, body.
    pub(crate) pages: Vec<(String, &'static str, bytes::Bytes)>,
    /// Host names allowed besides the defaults (see `allowed_hosts`).
    pub(crate) hosts: Vec<String>,
    /// Whether the listener is on a loopback address: then only loopback
    /// names (and `hosts`) are accepted in `Host`.
    pub(crate) loopback: bool,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// What `GET /metrics` renders, when the server records metrics.
    pub(crate) metrics: Option<crate::metrics::PrometheusHandle>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Config");
        d.field("max_frame", &self.max_frame)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_connections", &self.max_connections)
            .field("write_buffer", &self.write_buffer)
            .field("idle_timeout", &self.idle_timeout)
            .field("frame_timeout", &self.frame_timeout)
            .field("grace_period", &self.grace_period)
            .field("token", &self.token.as_ref().map(|_| "<set>"));
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        d.finish()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            services: Vec::new(),
            middleware: Vec::new(),
            config: Config {
                max_frame: DEFAULT_MAX_FRAME,
                max_in_flight: DEFAULT_MAX_IN_FLIGHT,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                write_buffer: DEFAULT_WRITE_BUFFER,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                frame_timeout: DEFAULT_FRAME_TIMEOUT,
                grace_period: DEFAULT_GRACE_PERIOD,
                token: None,
                origins: Vec::new(),
                pages: Vec::new(),
                hosts: Vec::new(),
                loopback: false,
                #[cfg(feature = "tls")]
                tls: None,
                metrics: None,
            },
            registrations: Registrations::default(),
        }
    }
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field(
                "services",
                &self.services.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .finish()
    }
}

impl ServerBuilder {
    /// Adds a service. Its methods must not collide with those of the
    /// services already added; [`bind`](Self::bind) checks.
    pub fn service<S: Service>(mut self, service: S) -> Self {
        self.services.push(Arc::new(service));
        self
    }

    /// Maximum size in bytes of one frame body, in both directions. A longer
    /// frame is answered with [`FRAME_TOO_LARGE`](crate::code::FRAME_TOO_LARGE) and
    /// the connection is closed. Default: [`DEFAULT_MAX_FRAME`] (16 MiB).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes;
        self
    }

    /// Maximum calls running at once for one connection. A call beyond it is
    /// answered with [`SERVER_BUSY`](crate::code::SERVER_BUSY); the connection goes
    /// on. Default: [`DEFAULT_MAX_IN_FLIGHT`] (1024).
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.config.max_in_flight = calls.max(1);
        self
    }

    /// Maximum connections served at once. A connection beyond it receives
    /// one [`TOO_MANY_CONNECTIONS`](crate::code::TOO_MANY_CONNECTIONS) error and is
    /// closed. Default: [`DEFAULT_MAX_CONNECTIONS`] (10,000).
    ///
    /// On Unix the server lowers it, with a warning in the log, to what the
    /// process's open-file limit allows (less 32 descriptors for everything
    /// else), so that the refusal happens before the operating system's
    /// limit does; and it keeps one descriptor in reserve to accept and
    /// refuse a connection even when out of descriptors.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.max_connections = connections;
        self
    }

    /// Bytes of responses buffered per connection before handlers wait for
    /// the peer to read (and the server stops reading its requests).
    /// Default: [`DEFAULT_WRITE_BUFFER`] (1 MiB).
    pub fn write_buffer(mut self, bytes: usize) -> Self {
        self.config.write_buffer = bytes.max(1);
        self
    }

    /// How long a connection may stay open with no call in flight and no
    /// frame arriving before the server closes it; also how long a peer
    /// that does not read its answers is waited for.
    /// Default: [`DEFAULT_IDLE_TIMEOUT`] (5 minutes).
    ///
    /// `Duration::ZERO` turns the limit off, as `Duration::MAX` does
    /// (closing every connection at once would serve nothing).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = zero_is_off(timeout);
        self
    }

    /// How long a frame may take to arrive completely once its first byte
    /// has (and how long a TLS handshake may take). A peer slower than that
    /// is disconnected. Default: [`DEFAULT_FRAME_TIMEOUT`] (30 s).
    ///
    /// `Duration::ZERO` turns the limit off, as `Duration::MAX` does.
    pub fn frame_timeout(mut self, timeout: Duration) -> Self {
        self.config.frame_timeout = zero_is_off(timeout);
        self
    }

    /// How long calls in flight may run after a shutdown starts before they
    /// are abandoned. Default: [`DEFAULT_GRACE_PERIOD`] (10 s).
    ///
    /// `Duration::ZERO` abandons them at once; `Duration::MAX` waits for
    /// them however long they take.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.config.grace_period = grace;
        self
    }

    /// Requires every connection to present `token` with `rpc.auth` before
    /// any other call; until then calls get [`UNAUTHORIZED`](crate::code::UNAUTHORIZED)
    /// and no handler runs. (`rpc.ping` stays open, for health checks.)
    ///
    /// This installs [`TokenAuth`] as the
    /// first middleware layer, ahead of any added with
    /// [`middleware`](Self::middleware).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = Some(Arc::from(token.into()));
        self
    }

    /// Origins (`scheme://host[:port]`, as browsers send them in `Origin`)
    /// whose pages may call this server over HTTP and WebSocket, besides
    /// pages the server itself serves. A request from any other origin gets
    /// `403`, so a page on another site cannot drive a server on the user's
    /// machine. Requests without `Origin` (curl, Python, Rust) are always
    /// allowed. Default: none.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Host names (without port) accepted in the `Host` header of HTTP and
    /// WebSocket requests, which stops DNS rebinding. A server listening on
    /// a loopback address accepts `localhost`, `127.0.0.1` and `[::1]`, plus
    /// these; one listening elsewhere accepts these, or any name when none
    /// is given (so a container reached as `server:7070` works). Other
    /// names get `403`. Default: none.
    pub fn allowed_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.hosts = hosts
            .into_iter()
            .map(|h| h.into().to_ascii_lowercase())
            .collect();
        self
    }

    /// Serves `body` at `path` (`GET`, over HTTP on the same port) with the
    /// given content type: a page that calls the server from the browser
    /// with the client every server serves at `/rpc.js`. A later page at the
    /// same path replaces an earlier one.
    ///
    /// ```
    /// let builder = rpc_core::Server::builder().page(
    ///     "/",
    ///     "text/html; charset=utf-8",
    ///     r#"<script type="module">import { Client } from "/rpc.js"; /* ... */</script>"#,
    /// );
    /// ```
    pub fn page(
        mut self,
        path: impl Into<String>,
        content_type: &'static str,
        body: impl Into<bytes::Bytes>,
    ) -> Self {
        let path = path.into();
        self.config.pages.retain(|(p, _, _)| *p != path);
        self.config.pages.push((path, content_type, body.into()));
        self
    }

    /// Adds a middleware layer around every call (authentication, metrics,
    /// rate limits, trace context): layers run in the order added, before
    /// routing, and each may refuse a call or wrap its handler. See
    /// [`crate::middleware`].
    pub fn middleware<M: Middleware>(mut self, layer: M) -> Self {
        self.middleware.push(Arc::new(layer));
        self
    }

    /// Records the calls of this server's methods (by method and outcome,
    /// with latency), its connections and its calls in flight, and serves
    /// them at `GET /metrics` in Prometheus's text format (see
    /// [`crate::metrics`]; get `handle` from
    /// [`install_prometheus`](crate::metrics::install_prometheus)). Off by
    /// default, and then free.
    pub fn metrics(mut self, handle: crate::metrics::PrometheusHandle) -> Self {
        self.config.metrics = Some(handle);
        self
    }

    /// Registers every service of this server in `registry` once it
    /// listens, under the service's name (the trait's, such as
    /// `Calculator`) and the [advertised](Self::advertise) address, and
    /// keeps the registrations alive (every TTL/3; see
    /// [`registration_ttl`](Self::registration_ttl)), registering again
    /// when a lease is lost. May be called for several registries.
    /// [`ServerHandle::shutdown`] deregisters first.
    pub fn register(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registrations.registries.push(registry);
        self
    }

    /// The address clients reach this server at, as registered (default:
    /// the bound address). Needed when listening on `0.0.0.0`, or behind a
    /// container's port mapping: `"server1:7070"`.
    pub fn advertise(mut self, address: impl Into<String>) -> Self {
        self.registrations.advertise = Some(address.into());
        self
    }

    /// The TTL of the registrations (default
    /// [`DEFAULT_TTL`](crate::discovery::register::DEFAULT_TTL), 10 s): a
    /// server that dies without deregistering vanishes from lookups this
    /// long after its last renewal.
    pub fn registration_ttl(mut self, ttl: Duration) -> Self {
        self.registrations.ttl = ttl;
        self
    }

    /// How long [`ServerHandle::shutdown`] keeps serving after
    /// deregistering, with `GET /health` answering 503, before it stops
    /// accepting connections. Default:
    /// [`DEFAULT_LEAVE_DELAY`](crate::discovery::register::DEFAULT_LEAVE_DELAY)
    /// (2 s) for a server that registers anywhere, none otherwise.
    pub fn leave_delay(mut self, delay: Duration) -> Self {
        self.registrations.leave_delay = Some(delay);
        self
    }

    /// Serves TLS instead of plain TCP, with the given rustls configuration
    /// (see [`crate::tls::server_config`]).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.config.tls = Some(tokio_rustls::TlsAcceptor::from(config));
        self
    }

    /// Binds `addr` and starts serving in the background.
    ///
    /// Fails if the address cannot be bound or two services offer the same
    /// method name.
    pub async fn bind(
        self,
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<ServerHandle, ServerError> {
        let registrations = self.registrations.clone();
        let endpoint = self.endpoint()?;
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        accept::start(listener, endpoint, registrations)
    }

    /// Starts serving on a TCP listener the caller already bound.
    pub fn serve(self, listener: TcpListener) -> Result<ServerHandle, ServerError> {
        self.serve_on(listener)
    }

    /// Starts serving on any [`Listener`]: a bound TCP listener, or an
    /// in-memory one ([`crate::transport::memory::listener`]).
    pub fn serve_on<L: Listener>(self, listener: L) -> Result<ServerHandle, ServerError> {
        let registrations = self.registrations.clone();
        let endpoint = self.endpoint()?;
        accept::start(listener, endpoint, registrations)
    }

    pub(crate) fn endpoint(self) -> Result<Endpoint, ServerError> {
        let router = Router::new(self.services, self.config.metrics.is_some())?;
        let mut middleware = self.middleware;
        if let Some(token) = &self.config.token {
            middleware.insert(0, Arc::new(TokenAuth::new(token.as_bytes())));
        }
        Ok(Endpoint {
            router,
            middleware,
            limits: self.config.session_limits(),
            connections: Arc::new(Semaphore::new(self.config.max_connections)),
            leaving: CancellationToken::new(),
            config: self.config,
        })
    }
}

/// A limit of zero means no limit.
fn zero_is_off(limit: Duration) -> Duration {
    if limit.is_zero() {
        Duration::MAX
    } else {
        limit
    }
}

impl Config {
    fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            max_in_flight: self.max_in_flight,
            idle_timeout: Some(self.idle_timeout),
            flush_timeout: self.frame_timeout,
            stall_timeout: Some(self.idle_timeout),
            grace_period: self.grace_period,
        }
    }
}

/// A running server. Dropping the handle leaves the server running; call
/// [`shutdown`](Self::shutdown) to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    pub(crate) local_addr: SocketAddr,
    pub(crate) stop: CancellationToken,
    pub(crate) task: tokio::task::JoinHandle<()>,
    /// Cancelled to start leaving: deregister, `/health` 503.
    pub(crate) leaving: CancellationToken,
    /// The task that keeps the registrations, if any.
    pub(crate) registration: Option<tokio::task::JoinHandle<()>>,
    /// How long to keep serving after deregistering.
    pub(crate) leave_delay: Duration,
}

impl ServerHandle {
    /// The address the server listens on (useful after binding port 0);
    /// `0.0.0.0:0` for a listener without a socket (in memory).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Gracefully stops the server, in phases, so that no client is sent
    /// to a server that is leaving:
    /// 1. deregisters from every registry (if it [registered](ServerBuilder::register));
    /// 2. keeps serving for the [leave delay](ServerBuilder::leave_delay),
    ///    with `GET /health` answering 503;
    /// 3. stops accepting, sends every client an `rpc.shutdown` notice,
    ///    ends open streams, answers new calls with
    ///    [`SHUTTING_DOWN`](crate::code::SHUTTING_DOWN);
    /// 4. lets the calls in flight finish within the grace period, flushes
    ///    their responses, then closes.
    pub async fn shutdown(mut self) {
        self.leaving.cancel();
        if let Some(registration) = self.registration.take() {
            let _ = registration.await;
        }
        if !self.leave_delay.is_zero() {
            tracing::info!(delay = ?self.leave_delay, "deregistered; serving a little longer before stopping");
            tokio::time::sleep(self.leave_delay).await;
        }
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// A token that starts the shutdown when cancelled (from a signal
    /// handler, say); pair it with [`wait`](Self::wait).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}
