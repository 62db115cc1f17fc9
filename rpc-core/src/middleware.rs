//! Middleware: layers around every call a server serves.
//!
//! A layer sees each call before it is routed and may refuse it
//! ([`Middleware::admit`]), and may wrap the future of each call that goes
//! on ([`Middleware::wrap`]) to time it, count it or run it inside a span.
//! Authentication, metrics, rate limits and trace-context propagation (the
//! request's `traceparent` member) are each a layer; none touches the
//! session. Layers run in the order they were added with
//! [`ServerBuilder::middleware`](crate::ServerBuilder::middleware), after
//! the token check ([`TokenAuth`]), which
//! [`ServerBuilder::token`](crate::ServerBuilder::token) installs first.
//!
//! Why not tower's `Layer` and `Service`: admission here is synchronous and
//! needs the peer's mutable per-session state (is it authenticated?), which
//! tower's `Service::call(&mut self, Request)` would put behind a lock or a
//! clone per call; and a server without layers pays nothing at all, not
//! even a boxed future.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use rpc_core::middleware::{Admit, CallInfo, Middleware, PeerState};
//! use rpc_core::ErrorObject;
//!
//! /// Counts calls by whether they were let through.
//! #[derive(Default)]
//! struct Count(AtomicU64);
//!
//! impl Middleware for Count {
//!     fn admit(&self, _call: &CallInfo<'_>, _peer: &mut PeerState) -> Result<Admit, ErrorObject> {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!         Ok(Admit::Continue)
//!     }
//! }
//!
//! let builder = rpc_core::Server::builder().middleware(Count::default());
//! ```

use std::sync::Arc;

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::message::{ErrorObject, code};
use crate::server::builtins;
use crate::transport::ConnectionInfo;

pub use crate::service::{HandlerFuture, Reply};

/// What a layer knows of one call before it runs. Borrowed from the
/// inbound message.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CallInfo<'a> {
    /// The wire method name.
    pub method: &'a str,
    /// The raw JSON id; `None` for a notification.
    pub id: Option<&'a str>,
    /// The raw params; `None` when absent.
    pub params: Option<&'a RawValue>,
    /// The caller's W3C trace context (`traceparent` member), if sent.
    pub traceparent: Option<&'a str>,
}

/// What the layers know about the peer for the life of its session: what
/// the transport says of it, and whether it authenticated. (State of your
/// own lives in your layer, keyed as you need.)
#[derive(Debug)]
pub struct PeerState {
    info: Arc<ConnectionInfo>,
    authenticated: bool,
}

impl PeerState {
    pub(crate) fn new(info: Arc<ConnectionInfo>) -> Self {
        Self {
            authenticated: info.authenticated,
            info,
        }
    }

    /// The peer's address, TLS identity and headers.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Whether a layer marked the peer authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Marks the peer authenticated for the rest of the session.
    pub fn set_authenticated(&mut self) {
        self.authenticated = true;
    }
}

/// A layer's decision about one call.
#[derive(Debug)]
pub enum Admit {
    /// Let the call go on (to the next layer, then to its handler).
    Continue,
    /// Answer the call with this JSON result without running a handler
    /// (a layer that implements a method itself, as `rpc.auth`).
    Answer(Box<RawValue>),
}

/// A layer around every call; see the [module docs](self).
pub trait Middleware: Send + Sync + 'static {
    /// Decides whether `call` may go on. `Err` answers it with that error
    /// (for a request; a notification is dropped) and no handler runs.
    ///
    /// Called on the session's task for every request and notification,
    /// built-ins included (`rpc.ping`, `rpc.cancel`: check `call.method`
    /// to count only your own methods): keep it quick and non-blocking. A
    /// panic here is a bug in the layer: it closes the connection.
    ///
    /// Which code to refuse with: [`UNAUTHORIZED`](code::UNAUTHORIZED) for
    /// a caller that lacks a credential, [`SERVER_BUSY`](code::SERVER_BUSY)
    /// for a rate limit (clients retry later); for refusals of your own, a
    /// code outside `-32768..=-32000`, which JSON-RPC reserves for the
    /// protocol and this library (and not `1000`, which is
    /// [`APPLICATION_ERROR`](code::APPLICATION_ERROR)).
    fn admit(&self, call: &CallInfo<'_>, peer: &mut PeerState) -> Result<Admit, ErrorObject>;

    /// Wraps the future of an admitted call; by default returns it as is.
    /// The future runs inside the call's deadline and context.
    fn wrap(&self, call: &CallInfo<'_>, future: HandlerFuture) -> HandlerFuture {
        let _ = call;
        future
    }
}

/// A shared layer: keep an `Arc` to read its state (counters, say) while
/// the server runs.
impl<M: Middleware> Middleware for Arc<M> {
    fn admit(&self, call: &CallInfo<'_>, peer: &mut PeerState) -> Result<Admit, ErrorObject> {
        (**self).admit(call, peer)
    }

    fn wrap(&self, call: &CallInfo<'_>, future: HandlerFuture) -> HandlerFuture {
        (**self).wrap(call, future)
    }
}

/// The token check: a peer must present the server's token with
/// `rpc.auth` (params `{"token": "..."}` or `["..."]`) before any call
/// other than `rpc.ping`; until then calls are answered with
/// [`UNAUTHORIZED`](code::UNAUTHORIZED) and no handler runs.
pub struct TokenAuth {
    /// The SHA-256 digest of the token: tokens are compared as digests, so
    /// the comparison takes the same time whatever the lengths.
    digest: [u8; 32],
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth").finish_non_exhaustive()
    }
}

impl TokenAuth {
    /// A check for `token`.
    pub fn new(token: impl AsRef<[u8]>) -> Self {
        Self {
            digest: Sha256::digest(token.as_ref()).into(),
        }
    }

    /// Whether `given` is the token: compares fixed-size digests in
    /// constant time (`subtle`), so neither the length nor a matching prefix
    /// shows in the time taken.
    pub(crate) fn matches(&self, given: &[u8]) -> bool {
        let given: [u8; 32] = Sha256::digest(given).into();
        given.ct_eq(&self.digest).into()
    }

    fn authenticate(
        &self,
        params: Option<&RawValue>,
        peer: &mut PeerState,
    ) -> Result<Admit, ErrorObject> {
        let mut reader = crate::params::ParamReader::new(params, &["token"])?;
        let given: String = reader.arg(0)?;
        if self.matches(given.as_bytes()) {
            peer.set_authenticated();
            Ok(Admit::Answer(crate::service::encode_reply(&true)?))
        } else {
            tracing::warn!("rpc.auth with a wrong token");
            Err(ErrorObject::new(
                code::UNAUTHORIZED,
                "unauthorized: the token is not valid for this server",
            ))
        }
    }
}

impl Middleware for TokenAuth {
    fn admit(&self, call: &CallInfo<'_>, peer: &mut PeerState) -> Result<Admit, ErrorObject> {
        if call.method == builtins::AUTH {
            return self.authenticate(call.params, peer);
        }
        if peer.is_authenticated() || call.method == builtins::PING {
            return Ok(Admit::Continue);
        }
        Err(ErrorObject::new(
            code::UNAUTHORIZED,
            "unauthorized: this server requires a token; call `rpc.auth` with {\"token\": ...} first",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_is_exact() {
        let auth = TokenAuth::new("secret");
        assert!(auth.matches(b"secret"));
        assert!(!auth.matches(b"secreT"));
        assert!(!auth.matches(b"secret!"));
        assert!(!auth.matches(b""));
        assert!(TokenAuth::new("").matches(b""));
    }
}
