//! The errors a caller and a server operator can see.
//!
//! [`RpcError<E>`] is what every client call returns. Its type parameter is
//! the method's own error type: a method declared `-> Result<T, E>` returns
//! `Result<T, RpcError<E>>`, and the server's `E` arrives as
//! [`RpcError::Application`], a value the caller can `match` on, kept apart
//! from transport and protocol failures. Methods without an error type use
//! the default `E = Never`.

use std::sync::Arc;
use std::time::Duration;

use crate::frame::FrameError;
use crate::message::ErrorObject;

/// Why a call did not produce the method's `Ok` value.
///
/// ```no_run
/// # #[rpc_core::service] trait Calculator {
/// #     async fn div(&self, a: f64, b: f64) -> Result<f64, CalcError>;
/// # }
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] enum CalcError { DivisionByZero }
/// # async fn demo(calc: CalculatorClient) {
/// use rpc_core::RpcError;
/// match calc.div(1.0, 0.0).await {
///     Ok(q) => println!("{q}"),
///     Err(RpcError::Application(CalcError::DivisionByZero)) => println!("cannot divide by zero"),
///     Err(other) => eprintln!("the call failed: {other}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError<E = Never> {
    /// The method ran and returned its own error value.
    #[error("the method returned an error: {0:?}")]
    Application(E),
    /// The server answered with a JSON-RPC error (method not found, invalid
    /// params, internal error, ...; or, for an untyped call, the method's own
    /// error with code [`APPLICATION_ERROR`](crate::code::APPLICATION_ERROR)
    /// and the error value in `data`). The object says which.
    #[error("the call failed on the server: {0}")]
    Server(ErrorObject),
    /// The connection could not be opened.
    #[error("could not connect to {addr}: {source}{}", connect_hint(source))]
    Connect {
        /// The address that was tried.
        addr: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The connection is closed (or broke) and the call got no response. The
    /// call may or may not have run on the server.
    #[error(
        "the connection to the server is closed ({0}); the call may or may not have run; new calls reconnect when the server is back"
    )]
    Closed(CloseReason),
    /// No response arrived within the call's time limit. The call may or may
    /// not have run on the server.
    #[error("no response within {0:?}; raise the timeout if the method is slow")]
    Timeout(Duration),
    /// The call's arguments could not be serialized to JSON.
    #[error("could not serialize the call's parameters: {0}")]
    Encode(#[source] serde_json::Error),
    /// The server's response did not have the shape the client expected.
    #[error(
        "could not decode the server's response: {0}; do client and server agree on the interface?"
    )]
    Decode(DecodeError),
    /// The request is larger than the connection's maximum frame size.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl<E> RpcError<E> {
    /// Separates the method's own error from every other failure: `Ok(e)`
    /// for [`Application`](RpcError::Application), else `Err` with the
    /// failure as an `RpcError` without an application type.
    ///
    /// # Errors
    /// Every variant but `Application`, unchanged.
    pub fn into_application(self) -> Result<E, RpcError> {
        Err(match self {
            RpcError::Application(e) => return Ok(e),
            RpcError::Server(e) => RpcError::Server(e),
            RpcError::Connect { addr, source } => RpcError::Connect { addr, source },
            RpcError::Closed(why) => RpcError::Closed(why),
            RpcError::Timeout(d) => RpcError::Timeout(d),
            RpcError::Encode(e) => RpcError::Encode(e),
            RpcError::Decode(e) => RpcError::Decode(e),
            RpcError::Frame(e) => RpcError::Frame(e),
        })
    }
}

impl RpcError<Never> {
    /// Widens an error that cannot be [`Application`](RpcError::Application)
    /// into one of any application error type.
    pub fn widen<E>(self) -> RpcError<E> {
        match self {
            RpcError::Application(never) => match never {},
            RpcError::Server(e) => RpcError::Server(e),
            RpcError::Connect { addr, source } => RpcError::Connect { addr, source },
            RpcError::Closed(why) => RpcError::Closed(why),
            RpcError::Timeout(d) => RpcError::Timeout(d),
            RpcError::Encode(e) => RpcError::Encode(e),
            RpcError::Decode(e) => RpcError::Decode(e),
            RpcError::Frame(e) => RpcError::Frame(e),
        }
    }
}

/// Why a connection closed, as [`RpcError::Closed`] reports it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed the connection. If it sent an error about no
    /// particular call just before (too many connections, a message too
    /// large), that error.
    #[error("the peer closed the connection{}", last_words(.last_error))]
    PeerClosed {
        /// The peer's last error without an id, if it sent one.
        last_error: Option<ErrorObject>,
    },
    /// The server announced a shutdown (`rpc.shutdown`) or is shutting down:
    /// it takes no new calls on this connection.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Reading from or writing to the connection failed.
    #[error("connection error: {0}")]
    Io(Arc<std::io::Error>),
    /// The peer broke the protocol (a frame too large, another protocol
    /// such as TLS on a plain connection, a message cut short); the text
    /// says how.
    #[error("{0}")]
    Protocol(String),
    /// The call belongs to a batch that was not sent: `send` was not
    /// called, or it failed.
    #[error("the batch was not sent: `Batch::send` was not called, or it failed")]
    BatchNotSent,
}

fn last_words(error: &Option<ErrorObject>) -> String {
    match error {
        Some(e) => format!("; the server's last message was: {}", e.message),
        None => String::new(),
    }
}

/// Why a response could not be decoded, as [`RpcError::Decode`] reports it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The result does not have the type the caller expects.
    #[error("the result of `{method}` has an unexpected shape: {source}")]
    Result {
        /// The method called.
        method: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The response itself breaks the protocol; the text says how.
    #[error("invalid response: {0}")]
    InvalidResponse(&'static str),
}

/// The application error type of methods that have none: it has no values,
/// so [`RpcError::Application`] cannot occur for them.
///
/// (Unlike [`std::convert::Infallible`] it implements `Deserialize`, which
/// the client's decoding needs; deserializing it always fails.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Never {}

impl std::fmt::Display for Never {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

impl std::error::Error for Never {}

impl<'de> serde::Deserialize<'de> for Never {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "this method has no application error type",
        ))
    }
}

impl serde::Serialize for Never {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        match *self {}
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding the listening socket failed.
    #[error("could not listen on {addr}: {source}; is another program using that port?")]
    Bind {
        /// The address that was asked for.
        addr: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Two services registered the same wire method name.
    #[error(
        "method `{method}` is offered by both service `{first}` and service `{second}`; give one of them a namespace (#[service(namespace = \"...\")]) or rename the method (#[rpc(name = \"...\")])"
    )]
    DuplicateMethod {
        /// The wire name offered twice.
        method: String,
        /// The service registered first.
        first: &'static str,
        /// The service registered second.
        second: &'static str,
    },
    /// A service offers a method in the reserved `rpc.` namespace.
    #[error("service `{service}` offers `{method}`, but names starting with `rpc.` are reserved")]
    ReservedName {
        /// The offending wire name.
        method: String,
        /// The service offering it.
        service: &'static str,
    },
    /// Reading the local address of the listener failed.
    #[error("could not read the listening address: {0}")]
    LocalAddr(#[source] std::io::Error),
}

/// The advice after a connect error: none for an address the client could
/// not use (its message says what to write instead), else to check the
/// server.
fn connect_hint(source: &std::io::Error) -> &'static str {
    if source.kind() == std::io::ErrorKind::InvalidInput {
        ""
    } else {
        "; is the server running and listening there?"
    }
}
