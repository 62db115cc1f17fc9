//! Accepting: the listener loop, the connection limit, and turning each new
//! connection into a transport with a session on it.
//!
//! For a TCP connection: `TCP_NODELAY`, the TLS handshake if configured
//! (within the frame timeout), then its first bytes choose the adapter
//! ([`sniff`](crate::transport::sniff)). Only the framed adapter exists
//! yet, and it answers a peer speaking HTTP or TLS by mistake in terms that
//! peer understands; the web transports plug in at [`adapter`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{Endpoint, MIN_OUTGOING_FRAME, ServerHandle};
use crate::discovery::register::Registrations;
use crate::error::ServerError;
use crate::message::{ErrorObject, code};
#[cfg(feature = "http")]
use crate::transport::Protocol;
use crate::transport::framed::{self, FramedLimits};
use crate::transport::listener::private::Accepted;
use crate::transport::{ConnectionInfo, Listener, Transport};

/// Starts the accept loop in the background.
pub(crate) fn start<L: Listener>(
    listener: L,
    mut endpoint: Endpoint,
    registrations: Registrations,
) -> Result<ServerHandle, ServerError> {
    let local_addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
    descriptors::clamp_connections(&mut endpoint);
    endpoint.config.loopback = local_addr.ip().is_loopback();
    let stop = CancellationToken::new();
    let leaving = endpoint.leaving.clone();
    let names = endpoint.router.service_names();
    let task = tokio::spawn(accept_loop(listener, Arc::new(endpoint), stop.clone()));
    tracing::info!(%local_addr, "server listening");
    let registered = !registrations.registries.is_empty();
    let registration = registered.then(|| {
        let address = registrations
            .advertise
            .clone()
            .unwrap_or_else(|| local_addr.to_string());
        if registrations.advertise.is_none() && local_addr.ip().is_unspecified() {
            tracing::warn!(%local_addr, "registering an unspecified address clients cannot reach; set ServerBuilder::advertise");
        }
        tokio::spawn(crate::discovery::register::keep_registered(
            registrations.registries.clone(),
            names,
            address,
            registrations.ttl,
            leaving.clone(),
        ))
    });
    let leave_delay = registrations.leave_delay.unwrap_or(if registered {
        crate::discovery::register::DEFAULT_LEAVE_DELAY
    } else {
        std::time::Duration::ZERO
    });
    Ok(ServerHandle {
        local_addr,
        stop,
        task,
        leaving,
        registration,
        leave_delay,
    })
}

async fn accept_loop<L: Listener>(
    mut listener: L,
    endpoint: Arc<Endpoint>,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    // One descriptor held in reserve, so that out of descriptors the server
    // can still accept a connection to refuse it, instead of leaving it in
    // the backlog in silence.
    let mut spare = descriptors::Spare::open();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => {
                let permit = endpoint.connections.clone().try_acquire_owned().ok();
                let span = match &accepted {
                    Accepted::Tcp(_, peer) => tracing::debug_span!("connection", %peer),
                    Accepted::Memory(_) => tracing::debug_span!("connection", peer = "memory"),
                };
                connections.spawn(
                    serve(accepted, endpoint.clone(), stop.clone(), permit).instrument(span),
                );
            }
            Err(e) if descriptors::exhausted(&e) => {
                tracing::warn!(error = %e, "out of file descriptors: refusing a connection with the spare one");
                spare.release();
                let refused = tokio::select! {
                    _ = stop.cancelled() => break,
                    accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()) => accepted,
                };
                if let Ok(Ok(accepted)) = refused {
                    // Refused the usual way, without a permit: after the
                    // TLS handshake if any, then a drain so the close does
                    // not reset the refusal away.
                    connections.spawn(serve(accepted, endpoint.clone(), stop.clone(), None));
                }
                spare = descriptors::Spare::open();
            }
            Err(e) => {
                // Back off instead of spinning.
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

/// Serves one accepted connection. Without a connection `permit` it is over
/// the limit: it gets one error and is closed.
async fn serve(
    accepted: Accepted,
    endpoint: Arc<Endpoint>,
    stop: CancellationToken,
    permit: Option<OwnedSemaphorePermit>,
) {
    let _counted = endpoint
        .config
        .metrics
        .as_ref()
        .map(|_| OpenConnection::new());
    let opened = match accepted {
        Accepted::Memory(end) => {
            let config = &endpoint.config;
            Some(Opened::Framed(end.open(
                config.max_frame,
                config.max_frame.max(MIN_OUTGOING_FRAME),
                config.write_buffer,
            )))
        }
        Accepted::Tcp(stream, peer) => {
            // Boxed: the TLS state machine is large, and inline it would make
            // every connection's task as large for as long as it lives.
            Box::pin(open_tcp(stream, peer, &endpoint, &stop, permit.is_some())).await
        }
    };
    match opened {
        None => {}
        Some(Opened::Framed(transport)) if permit.is_none() => refuse(transport, &endpoint).await,
        Some(Opened::Framed(transport)) => {
            let (_, session) = crate::session::open(transport, endpoint, Some(stop));
            session.await;
        }
        #[cfg(feature = "http")]
        Some(Opened::Http(serve)) => serve.await,
    }
    drop(permit);
}

/// A connection set up for the adapter its first bytes chose.
enum Opened {
    /// The framed protocol (or the in-memory one): a transport to run a
    /// session on.
    Framed(Transport),
    /// HTTP: the connection, ready to be served.
    #[cfg(feature = "http")]
    Http(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
}

/// Sets up a TCP connection: TLS if configured, then the adapter its first
/// bytes choose. `None` when the handshake failed, or the peer sent nothing
/// before it idled out or the server stopped.
async fn open_tcp(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    endpoint: &Arc<Endpoint>,
    stop: &CancellationToken,
    admitted: bool,
) -> Option<Opened> {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    let info = ConnectionInfo::new("tcp").with_peer(peer);
    #[cfg(feature = "tls")]
    if let Some(acceptor) = endpoint.config.tls.clone() {
        let handshake =
            tokio::time::timeout(endpoint.config.frame_timeout, acceptor.accept(stream));
        let tls = match handshake.await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::info!("TLS handshake timed out");
                return None;
            }
        };
        let mut info = info;
        info.transport = "tls";
        info.peer_certificates = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.to_vec()).collect())
            .unwrap_or_default();
        return adapter(tls, tokio::io::split, info, endpoint, stop, admitted).await;
    }
    // `into_split`, not `io::split`: no lock between the two halves.
    adapter(
        stream,
        TcpStream::into_split,
        info,
        endpoint,
        stop,
        admitted,
    )
    .await
}

/// Reads the first bytes and opens the adapter they choose. A connection
/// over the limit is not read: it is refused at once.
async fn adapter<IO, R, W>(
    mut io: IO,
    split: impl FnOnce(IO) -> (R, W),
    info: ConnectionInfo,
    endpoint: &Arc<Endpoint>,
    stop: &CancellationToken,
    admitted: bool,
) -> Option<Opened>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let config = &endpoint.config;
    let prefix = if admitted {
        // A peer that connects and says nothing is idle, not slow.
        let until = crate::time::after(config.idle_timeout);
        tokio::select! {
            _ = stop.cancelled() => return None,
            prefix = framed::read_prefix(&mut io, until, config.frame_timeout) => prefix?,
        }
    } else {
        // Over the limit: a moment to see whether the peer speaks HTTP (a
        // browser or curl sends its request at once), to refuse it in its
        // own terms; a framed client is refused with a frame either way.
        let moment = Duration::from_millis(100);
        framed::read_prefix(&mut io, crate::time::after(moment), moment)
            .await
            .unwrap_or_default()
    };
    let first: [u8; 4] = prefix
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .unwrap_or_default();
    match crate::transport::sniff(&first, config.max_frame) {
        #[cfg(feature = "http")]
        Protocol::Http if !admitted => {
            refuse_http(io, endpoint).await;
            None
        }
        #[cfg(feature = "http")]
        Protocol::Http if admitted => {
            let io = crate::transport::http::Prefixed::new(prefix.freeze(), io);
            let serve = crate::transport::http::serve(io, info, endpoint.clone(), stop.clone());
            Some(Opened::Http(Box::pin(serve)))
        }
        // The framed adapter answers a foreign protocol with an
        // explanation (TLS on a plain port; HTTP without the feature).
        _ => {
            let (read, write) = split(io);
            Some(Opened::Framed(framed::open(
                Box::new(read),
                write,
                prefix,
                FramedLimits {
                    max_frame: config.max_frame,
                    max_outgoing: config.max_frame.max(MIN_OUTGOING_FRAME),
                    frame_timeout: Some(config.frame_timeout),
                    write_buffer: config.write_buffer,
                },
                info,
            )))
        }
    }
}

/// Refuses an HTTP peer over the connection limit: `503` with
/// `Retry-After`, then close.
#[cfg(feature = "http")]
async fn refuse_http<IO: AsyncWrite + Unpin>(mut io: IO, endpoint: &Endpoint) {
    use tokio::io::AsyncWriteExt;
    let mut body = bytes::BytesMut::new();
    crate::message::write_error(&mut body, None, &too_many(endpoint));
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let write = async {
        io.write_all(head.as_bytes()).await?;
        io.write_all(&body).await?;
        io.shutdown().await
    };
    let _ = tokio::time::timeout(endpoint.config.frame_timeout, write).await;
}

fn too_many(endpoint: &Endpoint) -> ErrorObject {
    ErrorObject::new(
        code::TOO_MANY_CONNECTIONS,
        format!(
            "too many connections: this server serves at most {}; try again later or another server",
            endpoint.config.max_connections
        ),
    )
}

/// Refuses a connection over the limit: one error, then close.
async fn refuse(transport: Transport, endpoint: &Endpoint) {
    let config = &endpoint.config;
    tracing::warn!(
        max = config.max_connections,
        "connection refused: too many connections"
    );
    let error = too_many(endpoint);
    let _ = transport.outbox.push(|buf| {
        crate::message::write_error(buf, None, &error);
        Ok::<_, std::convert::Infallible>(())
    });
    transport
        .outbox
        .close_because(crate::outbox::Closing::Overloaded);
    let mut writer = transport.writer;
    if tokio::time::timeout(config.frame_timeout, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    transport.inbound.linger().await;
}

/// File descriptors: the connection limit is kept below what the process
/// may open, and one descriptor is kept in reserve.
mod descriptors {
    use super::Endpoint;

    /// Descriptors left for everything but connections: the listener, the
    /// runtime's own, files the handlers open, the spare.
    const RESERVED: u64 = 32;

    /// Lowers `max_connections` to what the open-file limit allows, with a
    /// warning, so the documented refusal happens before the operating
    /// system's limit does.
    pub(super) fn clamp_connections(endpoint: &mut Endpoint) {
        let Some(allowed) = allowed_connections() else {
            return;
        };
        let wanted = endpoint.config.max_connections;
        if wanted > allowed {
            tracing::warn!(
                wanted,
                allowed,
                "max_connections lowered to what the open-file limit allows; raise the limit (ulimit -n) to serve more"
            );
            endpoint.config.max_connections = allowed;
            endpoint.connections = std::sync::Arc::new(tokio::sync::Semaphore::new(allowed));
        }
    }

    #[cfg(unix)]
    fn allowed_connections() -> Option<usize> {
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
        let open = std::fs::read_dir("/proc/self/fd")
            .map(|dir| dir.count() as u64)
            .unwrap_or(16);
        let allowed = soft.saturating_sub(open).saturating_sub(RESERVED).max(1);
        Some(usize::try_from(allowed).unwrap_or(usize::MAX))
    }

    #[cfg(not(unix))]
    fn allowed_connections() -> Option<usize> {
        None
    }

    /// Whether an accept failed for want of descriptors.
    pub(super) fn exhausted(e: &std::io::Error) -> bool {
        #[cfg(unix)]
        {
            matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
        }
        #[cfg(not(unix))]
        {
            let _ = e;
            false
        }
    }

    /// The descriptor held in reserve.
    pub(super) struct Spare(Option<std::fs::File>);

    impl Spare {
        pub(super) fn open() -> Self {
            #[cfg(unix)]
            let file = std::fs::File::open("/dev/null").ok();
            #[cfg(not(unix))]
            let file = None;
            Spare(file)
        }

        /// Frees the descriptor for one accept.
        pub(super) fn release(&mut self) {
            self.0 = None;
        }
    }
}

/// Counts an open connection in the `rpc_server_connections` gauge while
/// it lives.
struct OpenConnection(metrics::Gauge);

impl OpenConnection {
    fn new() -> Self {
        let gauge = crate::metrics::connections();
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
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
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let stream = TcpStream::connect(addr).await.unwrap();
            let endpoint = crate::Server::builder().endpoint().unwrap();
            let task = serve(
                Accepted::Tcp(stream, addr),
                Arc::new(endpoint),
                CancellationToken::new(),
                None,
            );
            let size = std::mem::size_of_val(&task);
            eprintln!("the connection future is {size} bytes");
            assert!(size <= 2048, "the connection future is {size} bytes");
        });
    }
}
