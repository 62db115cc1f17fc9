//! Listeners: where a server gets its new connections.
//!
//! [`ServerBuilder::serve_on`](crate::ServerBuilder::serve_on) accepts from
//! any [`Listener`]: a bound [`tokio::net::TcpListener`] (plain or TLS, as
//! the builder says) or an in-memory
//! [`MemoryListener`]. The server turns each
//! accepted connection into a [`Transport`](super::Transport): for a byte
//! stream, after the TLS handshake, its first bytes choose the adapter
//! ([`super::sniff`]).
//!
//! The trait is sealed: the kinds of connection are the server's to know.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

use super::memory::{End, MemoryListener};

/// A source of new connections for a server. Sealed: implemented for
/// [`tokio::net::TcpListener`] and [`MemoryListener`].
pub trait Listener: private::Accept {}

impl Listener for TcpListener {}
impl Listener for MemoryListener {}

pub(crate) mod private {
    use super::*;

    /// One accepted connection, not yet a transport.
    #[derive(Debug)]
    pub enum Accepted {
        /// A TCP connection and its peer's address.
        Tcp(TcpStream, SocketAddr),
        /// The server's end of an in-memory connection.
        Memory(End),
    }

    /// The sealed part of [`Listener`].
    pub trait Accept: Send + 'static {
        /// Waits for the next connection. An error is usually transient
        /// (out of file descriptors): the server backs off and goes on.
        fn accept(&mut self) -> impl Future<Output = io::Result<Accepted>> + Send;
        /// The bound address; `0.0.0.0:0` for a listener without a socket.
        fn local_addr(&self) -> io::Result<SocketAddr>;
    }

    impl Accept for TcpListener {
        async fn accept(&mut self) -> io::Result<Accepted> {
            let (stream, peer) = TcpListener::accept(self).await?;
            Ok(Accepted::Tcp(stream, peer))
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            TcpListener::local_addr(self)
        }
    }

    impl Accept for MemoryListener {
        async fn accept(&mut self) -> io::Result<Accepted> {
            MemoryListener::accept(self).await.map(Accepted::Memory)
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(SocketAddr::from(([0, 0, 0, 0], 0)))
        }
    }
}
