//! The server: accept loop, one task per connection, concurrent dispatch.
//!
//! A [`Server`] owns a set of [`Service`]s and a routing table from wire
//! method names to the service that offers each. Every accepted connection
//! gets a task that reads frames; every request in a frame runs in a task of
//! its own, so the calls of one connection proceed concurrently and their
//! responses are written as they complete, coalesced by the connection's
//! [`WriteQueue`].
//!
//! Limits are enforced here: the maximum frame size (a longer frame is
//! answered with an error and the connection closed, without allocating it),
//! and the maximum calls in flight per connection (beyond it a call is
//! answered "server busy" and the connection goes on).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::connection::{QueueError, WriteQueue};
use crate::error::ServerError;
use crate::frame::{DEFAULT_MAX_FRAME, FrameDecoder, FrameError, sub_bytes};
use crate::message::{self, ErrorObject, Incoming, Request, code};
use crate::service::{self, HandlerFuture, MethodInfo, Reply, Service};

/// Default maximum number of calls one connection may have in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Bytes of responses a connection buffers before its handlers wait for the
/// peer to read; see [`ServerBuilder::write_buffer`].
pub const DEFAULT_WRITE_BUFFER: usize = 1024 * 1024;

/// Entry point: `Server::builder()`.
///
/// ```no_run
/// # #[rpc_core::service] trait Echo { async fn echo(&self, text: String) -> String; }
/// # struct MyEcho;
/// # impl Echo for MyEcho { async fn echo(&self, text: String) -> String { text } }
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let server = rpc_core::Server::builder()
///     .service(EchoServer::new(MyEcho))
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

/// Configures and starts a server.
pub struct ServerBuilder {
    services: Vec<Arc<dyn Service>>,
    config: Config,
}

#[derive(Debug, Clone)]
struct Config {
    max_frame: usize,
    max_in_flight: usize,
    write_buffer: usize,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            services: Vec::new(),
            config: Config {
                max_frame: DEFAULT_MAX_FRAME,
                max_in_flight: DEFAULT_MAX_IN_FLIGHT,
                write_buffer: DEFAULT_WRITE_BUFFER,
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

    /// Maximum size in bytes of one frame body, in both directions.
    /// Default: [`DEFAULT_MAX_FRAME`] (16 MiB).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes;
        self
    }

    /// Maximum calls running at once for one connection. A call beyond it is
    /// answered with [`SERVER_BUSY`](code::SERVER_BUSY).
    /// Default: [`DEFAULT_MAX_IN_FLIGHT`] (1024).
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.config.max_in_flight = calls.max(1);
        self
    }

    /// Bytes of responses buffered per connection before handlers wait for
    /// the peer to read. Default: [`DEFAULT_WRITE_BUFFER`] (1 MiB).
    pub fn write_buffer(mut self, bytes: usize) -> Self {
        self.config.write_buffer = bytes.max(1);
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

    /// Stops accepting connections, lets every connection finish the calls it
    /// has in flight and flush their responses, then returns.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// A token that stops the server when cancelled (from a signal handler,
    /// say), for use with [`wait`](Self::wait).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits until the server has stopped (after its stop token is cancelled).
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
    let shared = Arc::new(Shared { router, config });
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
                let span = tracing::debug_span!("connection", %peer);
                connections
                    .spawn(serve_connection(stream, shared.clone(), stop.clone()).instrument(span));
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

/// Serves one connection until the peer closes it, it breaks, or the server stops.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, stop: CancellationToken) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    let (read, write) = stream.into_split();
    let conn = Conn {
        queue: Arc::new(WriteQueue::new(
            shared.config.max_frame,
            shared.config.write_buffer,
        )),
        in_flight: Arc::new(Semaphore::new(shared.config.max_in_flight)),
        shared,
    };
    let mut writer = tokio::spawn({
        let queue = conn.queue.clone();
        async move { queue.run_writer(write).await }
    });
    let mut frames = FramedRead::new(read, FrameDecoder::new(conn.shared.config.max_frame));
    let mut handlers = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
            frame = frames.next() => match frame {
                Some(Ok(frame)) => conn.handle_frame(frame, &mut handlers).await,
                Some(Err(FrameError::TooLarge { len, max })) => {
                    tracing::warn!(len, max, "frame too large; closing the connection");
                    let error = ErrorObject::new(
                        code::FRAME_TOO_LARGE,
                        format!("frame of {len} bytes exceeds the maximum of {max} bytes; the connection will be closed"),
                    );
                    conn.push_error(None, &error);
                    break;
                }
                Some(Err(FrameError::Io(e))) => {
                    tracing::debug!(error = %e, "read failed");
                    break;
                }
                None => break,
            },
        }
    }
    drop(frames);
    // Let the calls in flight finish and answer, unless the peer is gone.
    loop {
        tokio::select! {
            next = handlers.join_next() => if next.is_none() { break },
            _ = &mut writer => { handlers.abort_all(); break }
        }
    }
    conn.queue.close();
    if !writer.is_finished() {
        let _ = writer.await;
    }
}

/// One connection's dispatch state.
struct Conn {
    shared: Arc<Shared>,
    queue: Arc<WriteQueue>,
    in_flight: Arc<Semaphore>,
}

impl Conn {
    async fn handle_frame(&self, frame: Bytes, handlers: &mut JoinSet<()>) {
        // Reading more requests while the peer is not reading responses would
        // only grow our buffer: wait until it drains.
        self.queue.wait_for_room().await;
        match message::parse_frame(&frame) {
            Incoming::Single(Err(rejected)) => {
                let id = rejected.id.map(|id| sub_bytes(&frame, id.get()));
                self.push_error(id.as_deref(), &rejected.error);
            }
            Incoming::Single(Ok(request)) => {
                let id = request.id.map(|id| sub_bytes(&frame, id.get()));
                let call = self.prepare(&request);
                let queue = self.queue.clone();
                handlers.spawn(async move {
                    let reply = call.run().await;
                    if let Some(id) = id {
                        queue.wait_for_room().await;
                        push_reply(&queue, &id, reply);
                    }
                });
            }
            Incoming::Batch(members) => {
                let calls: Vec<(Option<Bytes>, Call)> = members
                    .iter()
                    .map(|member| match message::parse_request(member.get()) {
                        Ok(request) => (
                            request.id.map(|id| sub_bytes(&frame, id.get())),
                            self.prepare(&request),
                        ),
                        Err(rejected) => (
                            Some(rejected.id.map_or_else(
                                || Bytes::from_static(b"null"),
                                |id| sub_bytes(&frame, id.get()),
                            )),
                            Call::Ready(Err(rejected.error)),
                        ),
                    })
                    .collect();
                let queue = self.queue.clone();
                handlers.spawn(async move {
                    let replies = futures_util::future::join_all(calls.into_iter().map(
                        |(id, call)| async move {
                            let reply = call.run().await;
                            id.map(|id| (id, reply))
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

    /// Routes a request and decodes its params; the handler does not run yet.
    fn prepare(&self, request: &Request<'_>) -> Call {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return Call::Ready(Err(ErrorObject::new(
                code::SERVER_BUSY,
                format!(
                    "server busy: this connection already has {} calls in flight; retry after some complete",
                    self.shared.config.max_in_flight
                ),
            )));
        };
        let router = &self.shared.router;
        let routed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            router.call(&request.method, request.params)
        }));
        match routed {
            Ok(Ok(future)) => Call::Running(future, permit),
            Ok(Err(error)) => Call::Ready(Err(error)),
            Err(panic) => Call::Ready(Err(panicked(&request.method, &*panic))),
        }
    }

    fn push_error(&self, id: Option<&[u8]>, error: &ErrorObject) {
        let id = id.map(|id| std::str::from_utf8(id).unwrap_or("null"));
        let _ = self.queue.push(|buf| {
            message::write_error(buf, id, error);
            Ok::<_, Infallible>(())
        });
    }
}

/// A routed call: either already answered, or a handler to run.
enum Call {
    Ready(Reply),
    /// The permit counts the call against the connection's in-flight limit
    /// until it completes.
    Running(HandlerFuture, OwnedSemaphorePermit),
}

impl Call {
    async fn run(self) -> Reply {
        match self {
            Call::Ready(reply) => reply,
            Call::Running(future, permit) => {
                let reply = AssertUnwindSafe(future)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| Err(panicked("the method", &*panic)));
                drop(permit);
                reply
            }
        }
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
    ErrorObject::internal(format_args!("{what} panicked: {detail}"))
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

/// Maps wire method names to services, and answers the built-in `rpc.` methods.
struct Router {
    services: Vec<Arc<dyn Service>>,
    routes: HashMap<&'static str, usize>,
    discover: Box<RawValue>,
}

impl Router {
    fn new(services: Vec<Arc<dyn Service>>) -> Result<Self, ServerError> {
        let mut routes: HashMap<&'static str, usize> = HashMap::new();
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

    fn call(&self, method: &str, params: Option<&RawValue>) -> Result<HandlerFuture, ErrorObject> {
        if let Some(&index) = self.routes.get(method) {
            return self.services[index].call(method, params);
        }
        match method {
            "rpc.ping" => {
                crate::ParamReader::new(params, &[])?;
                Ok(Box::pin(async { service::encode_reply("pong") }))
            }
            "rpc.discover" => {
                crate::ParamReader::new(params, &[])?;
                let doc = self.discover.clone();
                Ok(Box::pin(async move { Ok(doc) }))
            }
            _ => Err(service::method_not_found(method)),
        }
    }
}
