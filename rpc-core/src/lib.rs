//! Typed RPC over JSON-RPC 2.0: annotate a trait, get a client and a server.
//!
//! `#[rpc_core::service]` on a trait generates a client proxy you call as if
//! it were a local object and a dispatcher that runs your implementation. On
//! the wire every message is JSON-RPC 2.0, in a length-prefixed frame over
//! TCP (optionally inside TLS; see `PROTOCOL.md`), so a client in any language
//! needs only a socket and a JSON parser. The same services run over any
//! [`transport`], the in-memory one included, for tests without sockets.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! /// A calculator.
//! #[rpc_core::service]
//! pub trait Calculator {
//!     /// Adds two numbers.
//!     async fn add(&self, a: f64, b: f64) -> f64;
//!     /// Divides `a` by `b`.
//!     async fn div(&self, a: f64, b: f64) -> Result<f64, CalcError>;
//! }
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! pub enum CalcError { DivisionByZero }
//!
//! struct Calc;
//!
//! impl Calculator for Calc {
//!     async fn add(&self, a: f64, b: f64) -> f64 { a + b }
//!     async fn div(&self, a: f64, b: f64) -> Result<f64, CalcError> {
//!         if b == 0.0 { Err(CalcError::DivisionByZero) } else { Ok(a / b) }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = rpc_core::Server::builder()
//!     .service(CalculatorServer::new(Calc))
//!     .bind("127.0.0.1:0")
//!     .await?;
//!
//! let calc = CalculatorClient::connect(server.local_addr()).await?;
//! assert_eq!(calc.add(2.0, 3.0).await?, 5.0);
//! assert!(matches!(
//!     calc.div(1.0, 0.0).await,
//!     Err(rpc_core::RpcError::Application(CalcError::DivisionByZero))
//! ));
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What `#[service]` generates
//!
//! For a trait `Foo`:
//! - the trait itself, with every `async fn` rewritten to return
//!   `impl Future<Output = _> + Send`, so implementations write plain
//!   `async fn` and nothing is boxed per call;
//! - `FooClient`, a cheap-to-clone proxy with one `async` method per trait
//!   method, returning `Result<T, RpcError>` (or `Result<T, RpcError<E>>`
//!   for a method declared `-> Result<T, E>`); a streaming method, one
//!   declared `-> Stream<T, F>` or `-> Result<Stream<T, F>, E>` (the type's
//!   last path segment must be `Stream`: see [`Stream`]), returns
//!   `Result<RemoteStream<T, F>, RpcError<E>>` once the stream is open;
//! - `FooServer<S>`, the dispatcher for any `S: Foo`, to hand to
//!   [`Server::builder`]`().service(..)`;
//! - `FooBatch`, from `FooClient::batch()`: the same methods (streaming
//!   ones excepted), collected and sent as one JSON-RPC batch when the batch
//!   is awaited; each call then resolves to its own typed result.
//!
//! # Attributes
//!
//! On the trait, `#[service(...)]`:
//! - `namespace = "ns"` prefixes every wire name with `ns.`;
//! - `crate = "path"` names this crate if it is renamed.
//!
//! On a method, `#[rpc(...)]`:
//! - `name = "wire_name"` renames it on the wire;
//! - `alias = "other"` (any number of times) is another wire name for the
//!   same method, checked for clashes like names (the demo calculator
//!   answers `mul` and `mult`);
//! - `read_only` marks a method that changes nothing: it gets `GET` REST
//!   routes (`/api/mult/4/5`); any other method is `POST` only;
//! - `timeout = "2s"` (units `ms`, `s`, `m`, `h`) is its default time budget,
//!   instead of the client's; a handle's [`Client::with_timeout`] still wins;
//! - `oneway` (for a method returning `()`) sends a JSON-RPC notification:
//!   the call returns once the message is queued, and the server only logs
//!   the handler's errors;
//! - `idempotent` lets the client retry the call once on a fresh connection
//!   if the connection broke before the answer came. No other call is ever
//!   retried, so nothing runs twice by surprise.
//!
//! # Guarantees
//!
//! Every call has a deadline, sent to the server (`timeout_ms`), which stops
//! the handler when it passes; a handler's own calls inherit what remains
//! ([`context`]). Dropping a call's future cancels it on the server. Every
//! server limit has a default and a structured error ([`code`]), and
//! [`ServerHandle::shutdown`] drains calls in flight. See `PROTOCOL.md`.

#![warn(missing_docs)]

mod client;
pub mod context;
pub mod discovery;
mod error;
pub mod frame;
mod json;
mod message;
pub mod metrics;
pub mod middleware;
mod openrpc;
mod outbox;
mod params;
mod server;
mod service;
mod session;
mod stream;
mod time;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transport;

pub use client::{
    Balance, Batch, BatchCall, CallOptions, Client, ClientBuilder, DEFAULT_TIMEOUT, Keepalive,
    RemoteStream,
};
pub use error::{CloseReason, DecodeError, Never, RpcError, ServerError};
pub use message::{ErrorObject, code};
pub use rpc_macros::service;
pub use server::{
    DEFAULT_FRAME_TIMEOUT, DEFAULT_GRACE_PERIOD, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_WRITE_BUFFER, Server, ServerBuilder, ServerHandle,
};
pub use service::Service;
pub use session::Notification;
pub use stream::{DEFAULT_WINDOW, Stream, StreamClosed, StreamSender};
pub use tokio_util::sync::CancellationToken;

/// Items the generated code names. Not part of the public API: they may
/// change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::params::ParamReader;
    pub use crate::service::{
        DisplayText, ErrorText, HandlerFuture, HasSchema, MethodInfo, NoParams, NoSchema, NoText,
        Reply, SchemaFn, SchemaOf, encode_app_error, encode_app_error_with, encode_reply,
        method_not_found,
    };
    pub use crate::session::streams::open_stream;
    pub use schemars::SchemaGenerator;
    pub use serde;
    pub use serde_json::Value;
    pub use serde_json::value::RawValue;
    pub use tokio::net::ToSocketAddrs;
}
