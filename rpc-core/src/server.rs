//! The server: accept loop, one task per connection, concurrent dispatch.
//!
//! A [`Server`] owns a set of [`Service`]s and a routing table from wire
//! method names to the service that offers each. Every accepted connection
//! gets a task that reads frames; every request in a frame runs in a task of
//! its own, so the calls of one connection proceed concurrently and their
//! responses are written as they complete, coalesced by the connection's
//! [`WriteQueue`].
//!
//! Every limit is enforced here, each with a documented default and a
//! structured error: frame size, calls in flight per connection, connections,
//! idle time, time to complete a started frame, and the response buffer of a
//! peer that does not read. So are the per-connection protocol features:
//! deadlines, `rpc.cancel`, `rpc.auth`, and the `rpc.shutdown` notice of a
//! graceful stop.

use rustc_hash::FxHashMap as HashMap;
use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::connection::{QueueError, WriteQueue};
use crate::context::CallContext;
use crate::error::ServerError;
use crate::frame::{DEFAULT_MAX_FRAME, FrameError, sub_bytes};
use crate::message::{self, ErrorObject, Incoming, Request, code};
use crate::reader::{FrameReader, ReadError};
use crate::service::{self, HandlerFuture, MethodInfo, Reply, Service};
use tokio::io::AsyncReadExt;

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

/// Frames a connection handles in a row before letting other tasks run.
const FRAMES_PER_TURN: u32 = 16;

/// Smallest limit applied to outgoing frames, whatever `max_frame_size`:
/// every error response fits, so a tiny limit never silences the server.
const MIN_OUTGOING_FRAME: usize = 4096;

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
    config: Config,
}

#[derive(Clone)]
struct Config {
    max_frame: usize,
    max_in_flight: usize,
    max_connections: usize,
    write_buffer: usize,
    idle_timeout: Duration,
    frame_timeout: Duration,
    grace_period: Duration,
    token: Option<Arc<str>>,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
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
            config: Config {
                max_frame: DEFAULT_MAX_FRAME,
                max_in_flight: DEFAULT_MAX_IN_FLIGHT,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                write_buffer: DEFAULT_WRITE_BUFFER,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                frame_timeout: DEFAULT_FRAME_TIMEOUT,
                grace_period: DEFAULT_GRACE_PERIOD,
                token: None,
                #[cfg(feature = "tls")]
                tls: None,
            },
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
    /// frame is answered with [`FRAME_TOO_LARGE`](code::FRAME_TOO_LARGE) and
    /// the connection is closed. Default: [`DEFAULT_MAX_FRAME`] (16 MiB).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes;
        self
    }

    /// Maximum calls running at once for one connection. A call beyond it is
    /// answered with [`SERVER_BUSY`](code::SERVER_BUSY); the connection goes
    /// on. Default: [`DEFAULT_MAX_IN_FLIGHT`] (1024).
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.config.max_in_flight = calls.max(1);
        self
    }

    /// Maximum connections served at once. A connection beyond it receives
    /// one [`TOO_MANY_CONNECTIONS`](code::TOO_MANY_CONNECTIONS) error and is
    /// closed. Default: [`DEFAULT_MAX_CONNECTIONS`] (10,000).
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
    /// frame arriving before the server closes it.
    /// Default: [`DEFAULT_IDLE_TIMEOUT`] (5 minutes).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// How long a frame may take to arrive completely once its first byte
    /// has (and how long a TLS handshake may take). A peer slower than that
    /// is disconnected. Default: [`DEFAULT_FRAME_TIMEOUT`] (30 s).
    pub fn frame_timeout(mut self, timeout: Duration) -> Self {
        self.config.frame_timeout = timeout;
        self
    }

    /// How long calls in flight may run after a shutdown starts before they
    /// are abandoned. Default: [`DEFAULT_GRACE_PERIOD`] (10 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.config.grace_period = grace;
        self
    }

    /// Requires every connection to present `token` with `rpc.auth` before
    /// any other call; until then calls get [`UNAUTHORIZED`](code::UNAUTHORIZED)
    /// and no handler runs. (`rpc.ping` stays open, for health checks.)
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = Some(Arc::from(token.into()));
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
        let router = Router::new(self.services)?;
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        start(listener, router, self.config)
    }

    /// Starts serving on a listener the caller already bound.
    pub fn serve(self, listener: TcpListener) -> Result<ServerHandle, ServerError> {
        let router = Router::new(self.services)?;
        start(listener, router, self.config)
    }
}

/// A running server. Dropping the handle leaves the server running; call
/// [`shutdown`](Self::shutdown) to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Gracefully stops the server: stops accepting, sends every client an
    /// `rpc.shutdown` notice, answers new calls with
    /// [`SHUTTING_DOWN`](code::SHUTTING_DOWN), lets the calls in flight finish
    /// within the grace period, flushes their responses, then closes.
    pub async fn shutdown(self) {
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

fn start(
    listener: TcpListener,
    router: Router,
    config: Config,
) -> Result<ServerHandle, ServerError> {
    let local_addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
    let stop = CancellationToken::new();
    let shared = Arc::new(Shared {
        router,
        connections: Arc::new(Semaphore::new(config.max_connections)),
        config,
    });
    let task = tokio::spawn(accept_loop(listener, shared, stop.clone()));
    tracing::info!(%local_addr, "server listening");
    Ok(ServerHandle {
        local_addr,
        stop,
        task,
    })
}

/// What every connection of one server shares.
struct Shared {
    router: Router,
    config: Config,
    connections: Arc<Semaphore>,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let permit = shared.connections.clone().try_acquire_owned().ok();
                let span = tracing::debug_span!("connection", %peer);
                connections.spawn(
                    accept_connection(stream, shared.clone(), stop.clone(), permit)
                        .instrument(span),
                );
            }
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    tracing::info!("server stopped");
}

/// Sets up the byte stream (TLS handshake if configured), then serves it.
async fn accept_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    stop: CancellationToken,
    permit: Option<OwnedSemaphorePermit>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    #[cfg(feature = "tls")]
    if let Some(acceptor) = shared.config.tls.clone() {
        // Boxed: the TLS state machine is large, and inline it would make
        // every plain TCP connection's task as large too.
        Box::pin(serve_tls(acceptor, stream, shared, stop, permit)).await;
        return;
    }
    let (read, write) = stream.into_split();
    serve_connection(read, write, shared, stop, permit).await;
}

/// Completes the TLS handshake (within the frame timeout), then serves.
#[cfg(feature = "tls")]
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    shared: Arc<Shared>,
    stop: CancellationToken,
    permit: Option<OwnedSemaphorePermit>,
) {
    let handshake = tokio::time::timeout(shared.config.frame_timeout, acceptor.accept(stream));
    match handshake.await {
        Ok(Ok(tls)) => {
            let (read, write) = tokio::io::split(tls);
            serve_connection(read, write, shared, stop, permit).await;
        }
        Ok(Err(e)) => tracing::info!(error = %e, "TLS handshake failed"),
        Err(_) => tracing::info!("TLS handshake timed out"),
    }
}

/// Serves one connection until the peer closes it, it breaks, it idles out,
/// or the server stops. Without a connection `permit` the connection is over
/// the limit: it gets one error and is closed.
async fn serve_connection<R, W>(
    read: R,
    write: W,
    shared: Arc<Shared>,
    stop: CancellationToken,
    permit: Option<OwnedSemaphorePermit>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    let mut conn = Conn {
        // Outgoing frames are checked against the same maximum, but never
        // below a floor that every error response fits in.
        queue: Arc::new(WriteQueue::new(
            config.max_frame.max(MIN_OUTGOING_FRAME),
            config.write_buffer,
        )),
        in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
        running: HashMap::default(),
        authenticated: config.token.is_none(),
        draining: false,
        shared: shared.clone(),
    };
    let mut writer = tokio::spawn({
        let queue = conn.queue.clone();
        async move { queue.run_writer(write).await }
    });
    if permit.is_none() {
        tracing::warn!(
            max = config.max_connections,
            "connection refused: too many connections"
        );
        conn.push_error(
            None,
            &ErrorObject::new(
                code::TOO_MANY_CONNECTIONS,
                format!(
                    "too many connections: this server serves at most {}; try again later or another server",
                    config.max_connections
                ),
            ),
        );
        conn.queue.close();
        let _ = tokio::time::timeout(config.frame_timeout, writer).await;
        Box::pin(linger(read)).await;
        return;
    }
    let mut reader = FrameReader::new(read, config.max_frame, Some(config.frame_timeout));
    let mut handlers = JoinSet::new();
    let mut reading = true;
    let mut grace_ends: Option<Instant> = None;
    // When the last call in flight finished; with the reader's last read,
    // the start of the current idle period.
    let mut drained_at = Instant::now();
    let mut fatal = false;
    // Frames handled since the loop last let other tasks run.
    let mut burst = 0u32;
    loop {
        let idle_until = handlers
            .is_empty()
            .then(|| drained_at.max(reader.last_read()) + config.idle_timeout);
        tokio::select! {
            _ = stop.cancelled(), if grace_ends.is_none() => {
                grace_ends = Some(Instant::now() + config.grace_period);
                conn.draining = true;
                conn.notify_shutdown();
                if handlers.is_empty() { break }
            }
            _ = sleep_until_opt(grace_ends), if grace_ends.is_some() => {
                tracing::info!(abandoned = handlers.len(), "grace period over; abandoning calls in flight");
                handlers.abort_all();
                break;
            }
            Some(done) = handlers.join_next_with_id(), if !handlers.is_empty() => {
                let task = match done {
                    Ok((task, ())) => task,
                    Err(e) => e.id(),
                };
                conn.running.remove(&task);
                if handlers.is_empty() {
                    drained_at = Instant::now();
                    if !reading || conn.draining { break }
                }
            }
            _ = &mut writer => {
                // The writer only ends early when the socket failed: nobody can
                // receive the answers any more.
                handlers.abort_all();
                break;
            }
            frame = async {
                // A peer that stops reading for as long as the idle timeout
                // is treated as gone, so it cannot hold a connection forever.
                if !conn.queue.has_room()
                    && tokio::time::timeout(config.idle_timeout, conn.queue.wait_for_room()).await.is_err()
                {
                    return Err(ReadError::Stalled(config.idle_timeout));
                }
                reader.next(idle_until).await
            }, if reading => {
                match frame {
                    Ok(Some(frame)) => {
                        conn.handle_frame(frame, reader.last_read(), &mut handlers);
                        // Let the handlers just spawned (and the writer) run
                        // every few frames, so a burst of requests is answered
                        // in a stream rather than all at the end: both sides
                        // then work at once instead of taking turns.
                        burst += 1;
                        if burst == FRAMES_PER_TURN {
                            burst = 0;
                            crate::connection::YieldToQueue::default().await;
                        }
                    }
                    Ok(None) => {
                        reading = false;
                        if handlers.is_empty() { break }
                    }
                    Err(ReadError::Frame(FrameError::Foreign { protocol, hint })) => {
                        tracing::info!(protocol, "the peer speaks another protocol; closing the connection");
                        conn.push_foreign(protocol, hint);
                        fatal = true;
                        break;
                    }
                    Err(ReadError::Frame(FrameError::TooLarge { len, max })) => {
                        tracing::warn!(len, max, "frame too large; closing the connection");
                        let error = ErrorObject::new(
                            code::FRAME_TOO_LARGE,
                            format!("frame of {len} bytes exceeds the maximum of {max} bytes; the connection will be closed"),
                        );
                        conn.push_error(None, &error);
                        // Nothing more can be read; the calls already running
                        // still answer, within the grace period.
                        fatal = true;
                        reading = false;
                        grace_ends.get_or_insert(Instant::now() + config.grace_period);
                        if handlers.is_empty() { break }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "closing the connection");
                        reading = false;
                        if handlers.is_empty() || matches!(e, ReadError::Idle | ReadError::Stalled(_)) { break }
                    }
                }
            }
        }
    }
    conn.queue.close();
    if !writer.is_finished() {
        // Bounded: a peer that stops reading cannot hold the task forever.
        let _ = tokio::time::timeout(config.frame_timeout, &mut writer).await;
        writer.abort();
    }
    if fatal {
        Box::pin(linger(reader.into_inner())).await;
    }
    drop(permit);
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One connection's dispatch state.
struct Conn {
    shared: Arc<Shared>,
    queue: Arc<WriteQueue>,
    in_flight: Arc<Semaphore>,
    /// Calls running in their own task, with their raw ids, so `rpc.cancel`
    /// can abort them. Owned by the connection task alone (no lock): entries
    /// are added when a call is spawned and removed when its task is reaped.
    running: HashMap<tokio::task::Id, (Bytes, AbortHandle)>,
    authenticated: bool,
    draining: bool,
}

/// The outcome of admitting one request.
enum Admitted {
    /// Answer now (or stay silent for a notification).
    Reply(Reply),
    /// Run a handler.
    Run(Call),
}

impl Conn {
    /// Handles one frame that arrived at `received`.
    fn handle_frame(&mut self, frame: Bytes, received: Instant, handlers: &mut JoinSet<()>) {
        match message::parse_frame(&frame) {
            Incoming::Single(Err(rejected)) => {
                let id = rejected.id.map(|id| keep_id(&frame, id));
                self.push_error(id.as_deref(), &rejected.error);
            }
            Incoming::Single(Ok(request)) => {
                let id = request.id.map(|id| keep_id(&frame, id));
                match self.admit(&request, received) {
                    Admitted::Reply(reply) => match id {
                        Some(id) => push_reply(&self.queue, &id, reply),
                        None => log_notification_error(&request.method, &reply),
                    },
                    Admitted::Run(call) => self.spawn(call, id, handlers),
                }
            }
            Incoming::Batch(members) => {
                let calls: Vec<(Option<Bytes>, Call)> = members
                    .iter()
                    .map(|member| match message::parse_request(member.get()) {
                        Ok(request) => {
                            let id = request.id.map(|id| keep_id(&frame, id));
                            let call = match self.admit(&request, received) {
                                Admitted::Reply(reply) => Call::ready(&request.method, reply),
                                Admitted::Run(call) => call,
                            };
                            (id, call)
                        }
                        Err(rejected) => (
                            Some(rejected.id.map_or_else(
                                || Bytes::from_static(b"null"),
                                |id| keep_id(&frame, id),
                            )),
                            Call::ready("", Err(rejected.error)),
                        ),
                    })
                    .collect();
                let queue = self.queue.clone();
                handlers.spawn(async move {
                    let replies = futures_util::future::join_all(calls.into_iter().map(
                        |(id, call)| async move {
                            let method = call.method.clone();
                            let reply = call.run().await;
                            match id {
                                Some(id) => Some((id, reply)),
                                None => {
                                    log_notification_error(&method, &reply);
                                    None
                                }
                            }
                        },
                    ))
                    .await;
                    let replies: Vec<(Bytes, Reply)> = replies.into_iter().flatten().collect();
                    if !replies.is_empty() {
                        queue.wait_for_room().await;
                        push_batch(&queue, &replies);
                    }
                });
            }
        }
    }

    /// Runs `call` in a task of its own, cancellable by id.
    fn spawn(&mut self, call: Call, id: Option<Bytes>, handlers: &mut JoinSet<()>) {
        let queue = self.queue.clone();
        let Some(id) = id else {
            handlers.spawn(async move {
                let method = call.method.clone();
                let reply = call.run().await;
                log_notification_error(&method, &reply);
            });
            return;
        };
        let key = id.clone();
        let abort = handlers.spawn(async move {
            let reply = call.run().await;
            queue.wait_for_room().await;
            push_reply(&queue, &id, reply);
        });
        // Unregistered by the connection loop when it reaps the task.
        self.running.insert(abort.id(), (key, abort));
    }

    /// Decides what to do with a request: the built-in methods, the checks
    /// (authentication, shutdown, in-flight limit), then routing.
    fn admit(&mut self, request: &Request<'_>, received: Instant) -> Admitted {
        let method = &*request.method;
        if method == "rpc.auth" {
            return Admitted::Reply(self.authenticate(request.params));
        }
        if !self.authenticated && method != "rpc.ping" {
            return Admitted::Reply(Err(ErrorObject::new(
                code::UNAUTHORIZED,
                "unauthorized: this server requires a token; call `rpc.auth` with {\"token\": ...} first",
            )));
        }
        if method == "rpc.cancel" {
            return Admitted::Reply(self.cancel(request.params));
        }
        if self.draining {
            return Admitted::Reply(Err(ErrorObject::new(
                code::SHUTTING_DOWN,
                "the server is shutting down and accepts no new calls; retry on another server or later",
            )));
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return Admitted::Reply(Err(ErrorObject::new(
                code::SERVER_BUSY,
                format!(
                    "server busy: this connection already has {} calls in flight; retry after some complete",
                    self.shared.config.max_in_flight
                ),
            )));
        };
        let router = &self.shared.router;
        let routed =
            std::panic::catch_unwind(AssertUnwindSafe(|| router.call(method, request.params)));
        let (service, method, future) = match routed {
            Ok(Ok(routed)) => routed,
            Ok(Err(error)) => return Admitted::Reply(Err(error)),
            Err(panic) => return Admitted::Reply(Err(panicked(method, &*panic))),
        };
        let deadline = request
            .timeout_ms
            .map(|ms| received + Duration::from_millis(ms));
        let span = tracing::debug_span!(
            "rpc.call",
            service,
            method = %method,
            id = request.id.map(|id| id.get()),
        );
        Admitted::Run(Call {
            method: Cow::Borrowed(method),
            work: Work::Running {
                span,
                future,
                deadline,
                timeout_ms: request.timeout_ms,
                _permit: permit,
            },
        })
    }

    fn authenticate(&mut self, params: Option<&RawValue>) -> Reply {
        let Some(expected) = self.shared.config.token.clone() else {
            // No token required: any token is fine.
            return service::encode_reply(&true);
        };
        let mut reader = crate::ParamReader::new(params, &["token"])?;
        let given: String = reader.arg(0)?;
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            self.authenticated = true;
            service::encode_reply(&true)
        } else {
            tracing::warn!("rpc.auth with a wrong token");
            Err(ErrorObject::new(
                code::UNAUTHORIZED,
                "unauthorized: the token is not valid for this server",
            ))
        }
    }

    fn cancel(&mut self, params: Option<&RawValue>) -> Reply {
        let mut reader = crate::ParamReader::new(params, &["id"])?;
        let id: Box<RawValue> = reader.arg(0)?;
        // A linear search: cancellations are rare, and keying the table by
        // task keeps the common path (spawn, reap) to one hash operation each.
        let task = self
            .running
            .iter()
            .find(|(_, (raw, _))| raw.as_ref() == id.get().as_bytes())
            .map(|(task, _)| *task);
        let found = task.and_then(|task| self.running.remove(&task));
        if let Some((_, handle)) = &found {
            tracing::debug!(id = id.get(), "call cancelled by the client");
            handle.abort();
        }
        service::encode_reply(&found.is_some())
    }

    fn notify_shutdown(&self) {
        let params = format!(
            r#"{{"grace_ms":{}}}"#,
            self.shared.config.grace_period.as_millis()
        );
        let _ = self.queue.push(|buf| {
            message::write_notification(buf, "rpc.shutdown", &params);
            Ok::<_, Infallible>(())
        });
    }

    /// Answers a peer that speaks another protocol in terms it understands:
    /// a plain HTTP 400 for HTTP (so `curl` shows why), nothing for TLS.
    fn push_foreign(&self, protocol: &str, hint: &str) {
        if protocol != "HTTP" {
            return;
        }
        let body = format!("{hint}.\n");
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = self.queue.push_raw(response.as_bytes());
    }

    fn push_error(&self, id: Option<&[u8]>, error: &ErrorObject) {
        let id = id.map(|id| std::str::from_utf8(id).unwrap_or("null"));
        let _ = self.queue.push(|buf| {
            message::write_error(buf, id, error);
            Ok::<_, Infallible>(())
        });
    }
}

/// The raw id of a request, kept until its response is written: a slice of
/// a small frame, or a copy, so a large frame is not held alive by its id.
fn keep_id(frame: &Bytes, id: &RawValue) -> Bytes {
    const SLICE_BELOW: usize = 4096;
    if frame.len() < SLICE_BELOW {
        sub_bytes(frame, id.get())
    } else {
        Bytes::copy_from_slice(id.get().as_bytes())
    }
}

/// After a fatal error frame: keep reading (and discarding) for a moment, so
/// the close does not reset the connection while the peer still has unread
/// requests in flight, which could destroy the error frame before the peer
/// reads it.
async fn linger<R: AsyncRead + Unpin>(mut read: R) {
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut total = 0usize;
        while total < 1024 * 1024 {
            match read.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

/// Compares without an early exit, so the time taken does not reveal how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One admitted call.
struct Call {
    /// The wire name, for logs: borrowed from the routing table when routed.
    method: Cow<'static, str>,
    work: Work,
}

enum Work {
    Ready(Reply),
    Running {
        span: tracing::Span,
        future: HandlerFuture,
        deadline: Option<Instant>,
        timeout_ms: Option<u64>,
        /// Counts the call against the connection's in-flight limit until it ends.
        _permit: OwnedSemaphorePermit,
    },
}

impl Call {
    fn ready(method: &str, reply: Reply) -> Self {
        Call {
            method: Cow::Owned(method.to_owned()),
            work: Work::Ready(reply),
        }
    }

    async fn run(self) -> Reply {
        let (span, future, deadline, timeout_ms, permit) = match self.work {
            Work::Ready(reply) => return reply,
            Work::Running {
                span,
                future,
                deadline,
                timeout_ms,
                _permit,
            } => (span, future, deadline, timeout_ms, _permit),
        };
        // The clock is read only when the span is recorded.
        let started = (!span.is_disabled()).then(Instant::now);
        let guarded = AssertUnwindSafe(CallContext::new(deadline).scope(future))
            .catch_unwind()
            .instrument(span.clone());
        let outcome = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, guarded).await {
                Ok(outcome) => outcome,
                Err(_) => Ok(Err(ErrorObject::new(
                    code::DEADLINE_EXCEEDED,
                    format!(
                        "deadline exceeded: the call did not finish within its budget of {} ms; the server stopped working on it",
                        timeout_ms.unwrap_or_default()
                    ),
                ))),
            },
            None => guarded.await,
        };
        drop(permit);
        let reply = outcome.unwrap_or_else(|panic| Err(panicked(&self.method, &*panic)));
        if span.is_disabled() {
            return reply;
        }
        span.in_scope(|| {
            let elapsed_us = started.map_or(0, |t| t.elapsed().as_micros() as u64);
            match &reply {
                Ok(_) => tracing::debug!(elapsed_us, outcome = "ok", "call finished"),
                Err(e) => tracing::debug!(
                    elapsed_us,
                    outcome = "error",
                    code = e.code,
                    "call finished"
                ),
            }
        });
        reply
    }
}

fn log_notification_error(method: &str, reply: &Reply) {
    if let Err(error) = reply {
        tracing::warn!(method, %error, "a notification failed (no response is sent for notifications)");
    }
}

#[cold]
fn panicked(what: &str, panic: &(dyn std::any::Any + Send)) -> ErrorObject {
    let detail = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    tracing::error!(method = what, panic = detail, "handler panicked");
    ErrorObject::internal(format_args!("the handler of `{what}` panicked: {detail}"))
}

fn write_reply(buf: &mut BytesMut, id: &str, reply: &Reply) {
    match reply {
        Ok(result) => message::write_result(buf, id, result.get()),
        Err(error) => message::write_error(buf, Some(id), error),
    }
}

fn id_str(id: &Bytes) -> &str {
    std::str::from_utf8(id).unwrap_or("null")
}

fn push_reply(queue: &WriteQueue, id: &Bytes, reply: Reply) {
    let pushed = queue.push(|buf| {
        write_reply(buf, id_str(id), &reply);
        Ok::<_, Infallible>(())
    });
    if let Err(QueueError::TooLarge(e)) = pushed {
        let error = ErrorObject::internal(format_args!("the response is too large to send: {e}"));
        let _ = queue.push(|buf| {
            message::write_error(buf, Some(id_str(id)), &error);
            Ok::<_, Infallible>(())
        });
    }
}

fn push_batch(queue: &WriteQueue, replies: &[(Bytes, Reply)]) {
    let pushed = queue.push(|buf| {
        buf.put_u8(b'[');
        for (i, (id, reply)) in replies.iter().enumerate() {
            if i > 0 {
                buf.put_u8(b',');
            }
            write_reply(buf, id_str(id), reply);
        }
        buf.put_u8(b']');
        Ok::<_, Infallible>(())
    });
    if let Err(QueueError::TooLarge(e)) = pushed {
        let error =
            ErrorObject::internal(format_args!("the batch response is too large to send: {e}"));
        let _ = queue.push(|buf| {
            message::write_error(buf, None, &error);
            Ok::<_, Infallible>(())
        });
    }
}

/// Maps wire method names to services, and answers the built-in `rpc.ping`
/// and `rpc.discover`.
struct Router {
    services: Vec<Arc<dyn Service>>,
    routes: HashMap<&'static str, usize>,
    discover: Box<RawValue>,
}

impl Router {
    fn new(services: Vec<Arc<dyn Service>>) -> Result<Self, ServerError> {
        let mut routes: HashMap<&'static str, usize> = HashMap::default();
        let mut all: Vec<MethodInfo> = Vec::new();
        for (index, service) in services.iter().enumerate() {
            for method in service.methods() {
                if method.name.starts_with("rpc.") {
                    return Err(ServerError::ReservedName {
                        method: method.name.to_owned(),
                        service: service.name(),
                    });
                }
                if let Some(&first) = routes.get(method.name) {
                    return Err(ServerError::DuplicateMethod {
                        method: method.name.to_owned(),
                        first: services[first].name(),
                        second: service.name(),
                    });
                }
                routes.insert(method.name, index);
                all.push(method);
            }
        }
        let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
        let discover = crate::discover::document(&names, &all);
        Ok(Self {
            services,
            routes,
            discover,
        })
    }

    /// The service that offers `method` (its name, for tracing), the
    /// method's name as the routing table holds it, and the future that runs
    /// the call.
    fn call(
        &self,
        method: &str,
        params: Option<&RawValue>,
    ) -> Result<(&'static str, &'static str, HandlerFuture), ErrorObject> {
        if let Some((&name, service)) = self
            .routes
            .get_key_value(method)
            .and_then(|(name, &i)| Some((name, self.services.get(i)?)))
        {
            return Ok((service.name(), name, service.call(name, params)?));
        }
        match method {
            "rpc.ping" => {
                crate::ParamReader::new(params, &[])?;
                Ok((
                    "rpc",
                    "rpc.ping",
                    Box::pin(async { service::encode_reply("pong") }),
                ))
            }
            "rpc.discover" => {
                crate::ParamReader::new(params, &[])?;
                let doc = self.discover.clone();
                Ok(("rpc", "rpc.discover", Box::pin(async move { Ok(doc) })))
            }
            _ => Err(service::method_not_found(method)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_task_stays_small() {
        // The state machine of every connection's task is allocated for as
        // long as the connection lives: keep it small (idle-memory target).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let stream = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let shared = Arc::new(Shared {
                router: Router::new(Vec::new()).unwrap(),
                config: ServerBuilder::default().config,
                connections: Arc::new(Semaphore::new(1)),
            });
            let task = accept_connection(stream, shared, CancellationToken::new(), None);
            let size = std::mem::size_of_val(&task);
            assert!(size <= 2048, "the connection future is {size} bytes");
        });
    }

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
