//! The built-in methods every session answers, all in the reserved `rpc.`
//! namespace (PROTOCOL.md, "Built-in methods"):
//!
//! | name | kind | what |
//! |---|---|---|
//! | `rpc.ping` | request | answers `"pong"`; open without a token, for health checks |
//! | `rpc.discover` | request | the OpenRPC document of the server's methods |
//! | `rpc.auth` | request | presents a token (see [`TokenAuth`](crate::middleware::TokenAuth)); `true` when no token is required |
//! | `rpc.cancel` | request or notification | stops the call with the given id; `true` if it was still running |
//! | `rpc.shutdown` | notification, server to client | the server is draining: send new calls elsewhere |
//!
//! `rpc.auth` with a token is answered by the token layer, which sees every
//! call first; the rest are here.

use rustc_hash::FxHashMap as HashMap;

use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::task::AbortHandle;

use crate::message::ErrorObject;
use crate::params::ParamReader;
use crate::service::{self, HandlerFuture, Reply};
use crate::session::respond::InFlight;

/// The prefix reserved for built-ins: no service may offer such a name.
pub(crate) const PREFIX: &str = "rpc.";
/// Liveness check.
pub(crate) const PING: &str = "rpc.ping";
/// The OpenRPC document.
pub(crate) const DISCOVER: &str = "rpc.discover";
/// Presents a token.
pub(crate) const AUTH: &str = "rpc.auth";
/// Cancels a call in flight.
pub(crate) const CANCEL: &str = "rpc.cancel";
/// The server's notice that it is shutting down.
pub(crate) const SHUTDOWN: &str = "rpc.shutdown";

/// Built-ins answered at once, in the session loop, without a task:
/// `rpc.cancel`, which needs the session's table of running calls, and
/// `rpc.auth` on a server that requires no token.
pub(crate) fn immediate(
    method: &str,
    params: Option<&RawValue>,
    running: &mut HashMap<tokio::task::Id, (Arc<InFlight>, AbortHandle)>,
) -> Option<Reply> {
    match method {
        CANCEL => Some(cancel(running, params)),
        // A token layer, when installed, answered `rpc.auth` already.
        AUTH => Some(service::encode_reply(&true)),
        _ => None,
    }
}

/// The built-ins that run like any method: `rpc.ping` and `rpc.discover`.
pub(crate) fn call<'a>(
    method: &str,
    params: Option<&RawValue>,
    discover: impl FnOnce() -> &'a RawValue,
) -> Result<(&'static str, &'static str, HandlerFuture), ErrorObject> {
    match method {
        PING => {
            ParamReader::new(params, &[])?;
            Ok((
                "rpc",
                PING,
                Box::pin(async { service::encode_reply("pong") }),
            ))
        }
        DISCOVER => {
            ParamReader::new(params, &[])?;
            let doc = discover().to_owned();
            Ok(("rpc", DISCOVER, Box::pin(async move { Ok(doc) })))
        }
        _ => Err(service::method_not_found(method)),
    }
}

/// `rpc.cancel {"id": ID}`: `true` if the call was still running, and then
/// it is stopped and will never be answered; `false` if it is unknown or its
/// answer was already decided (sent, or being sent). Decided once, with the
/// call's own task ([`InFlight`]).
fn cancel(
    running: &mut HashMap<tokio::task::Id, (Arc<InFlight>, AbortHandle)>,
    params: Option<&RawValue>,
) -> Reply {
    let mut reader = ParamReader::new(params, &["id"])?;
    let id: Box<RawValue> = reader.arg(0)?;
    // A linear search: cancellations are rare, and keying the table by
    // task keeps the common path (spawn, reap) to one hash operation each.
    let task = running
        .iter()
        .find(|(_, (call, _))| call.id.as_ref() == id.get().as_bytes())
        .map(|(task, _)| *task);
    let cancelled = match task.and_then(|task| running.remove(&task)) {
        Some((call, handle)) if call.cancel() => {
            tracing::debug!(id = id.get(), "call cancelled by the client");
            handle.abort();
            true
        }
        _ => false,
    };
    service::encode_reply(&cancelled)
}
