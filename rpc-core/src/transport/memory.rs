//! The in-memory transport: a client and a server in one process, with no
//! socket, for tests of your own services.
//!
//! [`listener`] returns the two sides: a [`MemoryListener`] the server
//! accepts from, and a [`MemoryConnector`] clients connect with (clone it
//! for as many clients as you like). Each connection is a pair of bounded
//! channels of whole messages, so everything above the transport (the
//! session, deadlines, cancellation, batches, limits) runs exactly as over
//! TCP.
//!
//! ```
//! #[rpc_core::service]
//! trait Echo {
//!     async fn echo(&self, text: String) -> String;
//! }
//! struct Parrot;
//! impl Echo for Parrot {
//!     async fn echo(&self, text: String) -> String { text }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (listener, connector) = rpc_core::transport::memory::listener();
//! let server = rpc_core::Server::builder()
//!     .service(EchoServer::new(Parrot))
//!     .serve_on(listener)?;
//! let echo = EchoClient::from(rpc_core::Client::builder().connect_with(connector).await?);
//! assert_eq!(echo.echo("olá".into()).await?, "olá");
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ConnectionInfo, Inbound, Limits, Message, ReadError, Timer, Transport};
use crate::error::RpcError;
use crate::outbox::{Drain, Framing, Outbox, Taken};

/// Messages a channel holds before the sender waits (on top of the
/// outbox's byte budget).
const CHANNEL_MESSAGES: usize = 16;

/// Connections waiting to be accepted before `connect` waits.
const BACKLOG: usize = 128;

/// Creates an in-memory listener and the connector that reaches it.
pub fn listener() -> (MemoryListener, MemoryConnector) {
    let (tx, rx) = mpsc::channel(BACKLOG);
    (
        MemoryListener { incoming: rx },
        MemoryConnector { listener: tx },
    )
}

/// The server's side: hand it to [`ServerBuilder::serve_on`](crate::ServerBuilder::serve_on).
/// Its `local_addr` is `0.0.0.0:0`: nothing listens on a socket.
#[derive(Debug)]
pub struct MemoryListener {
    incoming: mpsc::Receiver<End>,
}

impl MemoryListener {
    pub(crate) async fn accept(&mut self) -> io::Result<End> {
        self.incoming.recv().await.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotConnected, "every connector was dropped")
        })
    }
}

/// The clients' side: hand it to
/// [`ClientBuilder::connect_with`](crate::ClientBuilder::connect_with).
/// Clones reach the same listener.
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    listener: mpsc::Sender<End>,
}

impl super::Connector for MemoryConnector {
    fn connect<'a>(
        &'a self,
        limits: &'a Limits,
    ) -> Pin<Box<dyn Future<Output = Result<Transport, RpcError>> + Send + 'a>> {
        Box::pin(async move {
            let (mine, theirs) = pair();
            self.listener
                .send(theirs)
                .await
                .map_err(|_| RpcError::Connect {
                    addr: "memory".to_owned(),
                    source: io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "the in-memory server is gone",
                    ),
                })?;
            Ok(mine.open(limits.max_frame, limits.max_frame, limits.write_buffer))
        })
    }

    fn target(&self) -> String {
        "memory".to_owned()
    }
}

/// One end of an in-memory connection, not yet running (what the listener
/// hands the server).
#[doc(hidden)]
#[derive(Debug)]
pub struct End {
    rx: mpsc::Receiver<Bytes>,
    tx: mpsc::Sender<Bytes>,
}

/// Two connected ends.
pub(crate) fn pair() -> (End, End) {
    let (a_tx, a_rx) = mpsc::channel(CHANNEL_MESSAGES);
    let (b_tx, b_rx) = mpsc::channel(CHANNEL_MESSAGES);
    (End { rx: a_rx, tx: b_tx }, End { rx: b_rx, tx: a_tx })
}

impl End {
    /// Starts the writer task and returns the transport: messages are at
    /// most `max_inbound` bytes in and `max_outbound` out.
    pub(crate) fn open(
        self,
        max_inbound: usize,
        max_outbound: usize,
        write_buffer: usize,
    ) -> Transport {
        let outbox = Arc::new(Outbox::new(Framing::Delimited, max_outbound, write_buffer));
        let writer = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.run_writer(ChannelDrain(self.tx)).await }
        });
        Transport {
            inbound: Inbound::Memory(Receiver {
                rx: self.rx,
                max_message: max_inbound,
                last_read: Instant::now(),
                timer: Timer::default(),
            }),
            outbox,
            writer,
            info: Arc::new(ConnectionInfo::new("memory")),
        }
    }
}

/// The inbound half: messages from the other end's writer.
pub(crate) struct Receiver {
    rx: mpsc::Receiver<Bytes>,
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
        let received = match self.rx.poll_recv(cx) {
            Poll::Ready(received) => received,
            Poll::Pending => return self.timer.poll_idle(cx, idle_until).map(Err),
        };
        self.last_read = Instant::now();
        Poll::Ready(match received {
            Some(body) if body.len() > self.max_message => {
                Err(ReadError::Frame(crate::frame::FrameError::TooLarge {
                    len: body.len(),
                    max: self.max_message,
                }))
            }
            Some(body) => Ok(Some(Message {
                body,
                reply: None,
                authenticated: false,
            })),
            None => Ok(None),
        })
    }
}

/// Sends each message on the channel, waiting while it is full.
struct ChannelDrain(mpsc::Sender<Bytes>);

impl Drain for ChannelDrain {
    async fn send(&mut self, taken: &mut Taken) -> io::Result<()> {
        for message in taken.messages() {
            self.0.send(message).await.map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the other end was dropped")
            })?;
        }
        Ok(())
    }

    async fn close(&mut self, _: crate::outbox::Closing) -> io::Result<()> {
        // The receiver sees the end once this sender is dropped with the task.
        Ok(())
    }
}
