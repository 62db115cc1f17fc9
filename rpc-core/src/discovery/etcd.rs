//! etcd as a [`Registry`] (feature `etcd`): registrations are keys with
//! leases in an etcd cluster, reached through etcd's v3 JSON gateway over
//! plain HTTP/1.1.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rpc_core::discovery::etcd::{EtcdRegistry, DEFAULT_PREFIX};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let etcd = Arc::new(EtcdRegistry::connect("http://127.0.0.1:2379", DEFAULT_PREFIX).await?);
//! let server = rpc_core::Server::builder()
//!     // .service(...)
//!     .register(etcd.clone())
//!     .bind("127.0.0.1:0")
//!     .await?;
//! # server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout in etcd
//!
//! Each registration is one key, `<prefix>/<name>/<address>`, whose value
//! is the address (plain text, so `etcdctl get --prefix /rpc/services/`
//! reads well), attached to a lease of its own:
//!
//! - `register` grants a lease (`POST /v3/lease/grant`) and puts the key
//!   with it (`/v3/kv/put`); if the put fails the lease is revoked;
//! - `keep_alive` renews it (`/v3/lease/keepalive`); an answer without a
//!   TTL (etcd's way of saying the lease is gone) or the error "requested
//!   lease not found" is [`RegistryError::LeaseNotFound`], and the server
//!   registers again;
//! - `deregister` revokes it (`/v3/lease/revoke`), which deletes the key at
//!   once; etcd deletes it by itself when the lease expires;
//! - `lookup` reads the range `<prefix>/<name>/` (`/v3/kv/range` with a
//!   `range_end`);
//! - `watch` opens `/v3/watch` on that range, a response that never ends,
//!   made of one JSON object per line; after etcd confirms the watch
//!   (`created`), and after each batch of events, the range is read again
//!   and the whole set yielded when it changed.
//!
//! **TTLs are whole seconds in etcd**: a TTL is rounded *up* to the next
//! second, and etcd raises TTLs below its minimum (about 2 s with the
//! default election timeout) to that minimum. The [`Lease`] returned says
//! what etcd granted.
//!
//! # Why the JSON gateway and not the `etcd-client` crate
//!
//! `etcd-client` speaks gRPC through tonic and generates its code from
//! etcd's `.proto` files at build time, which needs `protoc` on every
//! machine that builds this crate and adds minutes (tonic, prost, h2,
//! tower) to every CI run. The five calls a registry needs are plain
//! request/answer JSON over HTTP on etcd's gateway, served on the client
//! port by every etcd since 3.3 and on by default; this module makes them
//! with the hyper client the `http` feature already brings, and pulls in
//! nothing but `base64` (etcd's JSON carries keys and values as base64,
//! and 64-bit integers as strings).
//!
//! # Limits
//!
//! - Plain `http://` only: no TLS and no etcd authentication (put a TLS
//!   proxy in front, or keep etcd on a trusted network).
//! - One etcd endpoint: for a cluster, give the address of a load balancer
//!   or of one member (any member answers every request).
//! - Each request (watch set-up included) is bounded by the registry's
//!   timeout ([`DEFAULT_TIMEOUT`]). A running watch is not: a link that
//!   dies without a FIN or RST leaves it silent until TCP gives up. When
//!   the watch's connection closes, the stream yields an error and ends;
//!   discovering clients then watch again.
//! - The gateway answers under `/v3` (etcd 3.4 and later). For etcd 3.3,
//!   give the API root in the URL: `http://HOST:2379/v3beta`.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Instance, Lease, Registry, RegistryError, RegistryFuture, Watch};
use crate::error::{CloseReason, RpcError};
use crate::transport::connector::Dialer;

/// The key prefix registrations go under unless told otherwise: keys are
/// `/rpc/services/<name>/<address>`.
pub const DEFAULT_PREFIX: &str = "/rpc/services";
/// How long one request to etcd may take, connecting included, unless set
/// with [`EtcdRegistry::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The API root of etcd's JSON gateway when the URL has no path.
pub const DEFAULT_API: &str = "/v3";
/// The largest answer (or watch message) read from etcd, in bytes.
const MAX_ANSWER: usize = 4 << 20;
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 4;

/// A [`Registry`] on etcd's v3 JSON gateway (see the [module](self)).
/// Clones share the connections.
#[derive(Clone)]
pub struct EtcdRegistry {
    inner: Arc<Inner>,
    /// How long one request may take.
    timeout: Duration,
}

struct Inner {
    /// The URL as given, for messages.
    url: String,
    /// `HOST:PORT`, for the `Host` header.
    authority: String,
    /// The gateway's root path, such as `/v3`.
    api: String,
    /// The key prefix, without a trailing `/`.
    prefix: String,
    dialer: Dialer,
    /// Open connections with nothing in flight.
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("url", &self.inner.url)
            .field("api", &self.inner.api)
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdRegistry {
    /// A registry on the etcd at `url`, keeping its keys under `prefix`
    /// ([`DEFAULT_PREFIX`] is a fine choice; a trailing `/` is ignored).
    /// Nothing is sent yet: an unreachable etcd shows in the first
    /// operation ([`connect`](Self::connect) checks at once).
    ///
    /// `url` is `http://HOST:PORT` (port 2379 if left out), optionally
    /// with the gateway's root path (`/v3` if left out; `/v3beta` for
    /// etcd 3.3).
    ///
    /// # Errors
    /// [`RpcError::Connect`] (kind `InvalidInput`) for a URL that is not
    /// `http://` with a host, such as `https://` (not supported).
    pub fn new(url: &str, prefix: &str) -> Result<Self, RpcError> {
        let invalid = |why: &str| RpcError::Connect {
            addr: url.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()),
        };
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(invalid(
                "an etcd URL is http://HOST:PORT (https is not supported: use a TLS proxy)",
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', '?', '#']) {
            return Err(invalid(
                "an etcd URL is http://HOST:PORT, with no user, query or fragment",
            ));
        }
        // A port unless the authority ends with one (IPv6 hosts are
        // bracketed: `[::1]:2379`).
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:2379")
        };
        let api = path.trim_end_matches('/');
        let api = if api.is_empty() { DEFAULT_API } else { api };
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                dialer: Dialer::new(authority.clone()),
                authority,
                api: api.to_owned(),
                prefix: prefix.trim_end_matches('/').to_owned(),
                idle: Mutex::new(Vec::new()),
            }),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// [`new`](Self::new), then one request to check that etcd answers on
    /// its JSON gateway (`POST <api>/maintenance/status`).
    ///
    /// # Errors
    /// [`RpcError::Connect`] for a bad URL or when etcd cannot be reached,
    /// does not answer within the timeout, or has no gateway at that path.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RpcError> {
        let registry = Self::new(url, prefix)?;
        match registry
            .call::<serde_json::Value>("/maintenance/status", json!({}))
            .await
        {
            Ok(_) => Ok(registry),
            Err(RegistryError::Unreachable(RpcError::Connect { addr, source })) => {
                Err(RpcError::Connect { addr, source })
            }
            Err(e) => Err(RpcError::Connect {
                addr: url.to_owned(),
                source: io::Error::other(format!(
                    "{e}; is this etcd's client URL (the gateway's root is {}{}; etcd 3.3 wants {}/v3beta)?",
                    registry.inner.authority, registry.inner.api, registry.inner.authority
                )),
            }),
        }
    }

    /// The same, with each request (connecting, sending, reading the
    /// whole answer; for a watch, up to etcd's `created`) bounded by
    /// `timeout` instead of [`DEFAULT_TIMEOUT`]. Clones made earlier keep
    /// theirs.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key prefix, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The key of one registration.
    fn key(&self, name: &str, address: &str) -> String {
        format!("{}{address}", self.range_start(name))
    }

    /// Where the keys of `name` begin: `<prefix>/<name>/`.
    fn range_start(&self, name: &str) -> String {
        format!("{}/{name}/", self.inner.prefix)
    }

    // ---- HTTP ----

    fn unreachable(&self, source: io::Error) -> RegistryError {
        RegistryError::Unreachable(RpcError::Connect {
            addr: self.inner.url.clone(),
            source,
        })
    }

    /// An idle connection that is still open (`true`: reused), or a new
    /// one.
    async fn connection(&self) -> io::Result<(SendRequest<Full<Bytes>>, bool)> {
        loop {
            let idle = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            match idle {
                Some(mut sender) if !sender.is_closed() => {
                    if sender.ready().await.is_ok() {
                        return Ok((sender, true));
                    }
                }
                Some(_) => {}
                None => return Ok((self.fresh().await?, false)),
            }
        }
    }

    /// A new HTTP/1.1 connection, ready for a request.
    async fn fresh(&self) -> io::Result<SendRequest<Full<Bytes>>> {
        let (dialed, _) = self.inner.dialer.dial().await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(dialed.boxed()))
                .await
                .map_err(io::Error::other)?;
        // Runs until the sender is dropped or etcd closes the connection.
        tokio::spawn(connection);
        sender.ready().await.map_err(io::Error::other)?;
        Ok(sender)
    }

    /// Posts `body` to `<api><path>`; the answer's head, its body still to
    /// read, and the connection it came on. A reused connection that etcd
    /// closed meanwhile fails before sending anything; the request then
    /// goes once more on a new one.
    async fn send(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> io::Result<(Response<Incoming>, SendRequest<Full<Bytes>>)> {
        let (mut sender, mut reused) = self.connection().await?;
        let mut request = Request::post(format!("{}{path}", self.inner.api))
            .header(header::HOST, self.inner.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(io::Error::other)?;
        loop {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => {
                        (sender, reused) = (self.fresh().await?, false);
                        request = unsent;
                    }
                    _ => {
                        return Err(io::Error::other(format!(
                            "the request failed: {}",
                            failed.into_error()
                        )));
                    }
                },
            }
        }
    }

    /// Posts `body` to `<api><path>` and reads the whole answer, within the
    /// timeout.
    async fn exchange(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<(StatusCode, Bytes), RegistryError> {
        let timeout = self.timeout;
        let exchange = async {
            let (response, sender) = self.send(path, &body).await?;
            let status = response.status();
            let answer = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| io::Error::other(format!("the answer could not be read: {e}")))?
                .to_bytes();
            let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(sender);
            }
            Ok::<_, io::Error>((status, answer))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(self.unreachable(e)),
            Err(_) => Err(RegistryError::Unreachable(RpcError::Timeout(timeout))),
        }
    }

    /// One unary call of the gateway: its answer as `T`, or etcd's error.
    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T, RegistryError> {
        let (status, answer) = self.exchange(path, body).await?;
        if status != StatusCode::OK {
            return Err(self.refusal(status, &answer));
        }
        serde_json::from_slice(&answer).map_err(|e| {
            RegistryError::Protocol(format!("etcd's answer to {path} could not be read: {e}"))
        })
    }

    /// The error of a gateway answer that is not `200`: unavailable (5xx,
    /// or gRPC's UNAVAILABLE and kin) is [`RegistryError::Unreachable`],
    /// anything else [`RegistryError::Refused`] with etcd's message.
    fn refusal(&self, status: StatusCode, answer: &[u8]) -> RegistryError {
        let error: GatewayError = serde_json::from_slice(answer).unwrap_or_else(|_| GatewayError {
            code: 0,
            message: String::from_utf8_lossy(&answer[..answer.len().min(256)])
                .trim()
                .to_owned(),
            error: String::new(),
        });
        self.refused(status, &error)
    }

    /// [`refusal`](Self::refusal) of an error already read.
    fn refused(&self, status: StatusCode, error: &GatewayError) -> RegistryError {
        // gRPC: 1 CANCELLED, 4 DEADLINE_EXCEEDED, 8 RESOURCE_EXHAUSTED,
        // 10 ABORTED, 14 UNAVAILABLE: try again later.
        if status.is_server_error() || matches!(error.code, 1 | 4 | 8 | 10 | 14) {
            self.unreachable(io::Error::other(format!(
                "etcd answered {status}: {}",
                error.text()
            )))
        } else if status == StatusCode::NOT_FOUND && error.code == 0 {
            self.unreachable(io::Error::other(format!(
                "no etcd v3 gateway at {}{} (404)",
                self.inner.authority, self.inner.api
            )))
        } else {
            RegistryError::Refused(format!("etcd answered {status}: {}", error.text()))
        }
    }
}

/// The body of a gateway error (gRPC's status as JSON: etcd 3.4 sends
/// both `error` and `message`, with the same text).
#[derive(Debug, Deserialize)]
struct GatewayError {
    #[serde(default)]
    code: i32,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error: String,
}

impl GatewayError {
    fn text(&self) -> &str {
        if self.message.is_empty() {
            &self.error
        } else {
            &self.message
        }
    }
}

/// One message of a streaming answer (keep-alive, watch).
#[derive(Debug, Deserialize)]
struct StreamMessage<T> {
    result: Option<T>,
    error: Option<GatewayError>,
}

#[derive(Debug, Deserialize)]
struct GrantAnswer {
    #[serde(rename = "ID", deserialize_with = "number")]
    id: u64,
    #[serde(rename = "TTL", default, deserialize_with = "number")]
    ttl: u64,
    #[serde(default)]
    error: String,
}

#[derive(Debug, Deserialize)]
struct KeepAliveAnswer {
    #[serde(rename = "TTL", default, deserialize_with = "number")]
    ttl: u64,
}

#[derive(Debug, Deserialize)]
struct RangeAnswer {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
struct KeyValue {
    #[serde(default)]
    value: String,
}

#[derive(Debug, Default, Deserialize)]
struct WatchAnswer {
    #[serde(default)]
    created: bool,
    #[serde(default)]
    canceled: bool,
    #[serde(default)]
    cancel_reason: String,
    #[serde(default)]
    compact_revision: serde_json::Value,
    #[serde(default)]
    events: Vec<serde_json::Value>,
}

/// A 64-bit integer, which etcd's JSON carries as a string (a number is
/// taken too).
fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Text(String),
        Number(u64),
    }
    match Number::deserialize(d)? {
        Number::Number(n) => Ok(n),
        Number::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

/// The first key after every key that starts with `start` (etcd's
/// `range_end` for a prefix).
fn prefix_end(start: &[u8]) -> Vec<u8> {
    let mut end = start.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: the range goes to the end of the key space.
    vec![0]
}

/// Refuses what would not make a well-formed key: a name must be one path
/// segment (no `/`), an address one line.
fn check(name: &str, address: &str) -> Result<(), RegistryError> {
    if name.is_empty() || name.len() > 255 || name.contains('/') || name.contains(char::is_control)
    {
        return Err(RegistryError::Refused(format!(
            "a service name must be 1 to 255 bytes of printable text without `/`, not {name:?}"
        )));
    }
    if address.is_empty()
        || address.len() > 255
        || address.contains(|c: char| c.is_control() || c.is_whitespace())
    {
        return Err(RegistryError::Refused(format!(
            "an address must be 1 to 255 bytes without spaces, not {address:?}"
        )));
    }
    Ok(())
}

/// `ttl` in etcd's whole seconds, rounded up, at least 1.
fn ttl_seconds(ttl: Duration) -> u64 {
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    seconds.clamp(1, i64::MAX as u64 / 1000)
}

fn lease_not_found(e: &RegistryError) -> bool {
    matches!(e, RegistryError::Refused(message) if message.contains("lease not found"))
}

impl Registry for EtcdRegistry {
    fn register<'a>(
        &'a self,
        name: &'a str,
        address: &'a str,
        ttl: Duration,
    ) -> RegistryFuture<'a, Lease> {
        Box::pin(async move {
            check(name, address)?;
            let granted: GrantAnswer = self
                .call(
                    "/lease/grant",
                    json!({ "TTL": ttl_seconds(ttl).to_string() }),
                )
                .await?;
            if !granted.error.is_empty() {
                return Err(RegistryError::Refused(granted.error));
            }
            let lease = Lease {
                id: granted.id,
                ttl_ms: granted.ttl.saturating_mul(1000),
            };
            let put = self
                .call::<serde_json::Value>(
                    "/kv/put",
                    json!({
                        "key": BASE64.encode(self.key(name, address)),
                        "value": BASE64.encode(address),
                        "lease": lease.id.to_string(),
                    }),
                )
                .await;
            if let Err(e) = put {
                // Without its key the lease is useless; if the revocation
                // fails too, it expires by itself.
                let _ = self.deregister(lease).await;
                return Err(e);
            }
            Ok(lease)
        })
    }

    fn keep_alive(&self, lease: Lease) -> RegistryFuture<'_, ()> {
        Box::pin(async move {
            // A streaming call: the answer is one message per line, here one.
            let (status, answer) = self
                .exchange("/lease/keepalive", json!({ "ID": lease.id.to_string() }))
                .await?;
            if status != StatusCode::OK {
                let e = self.refusal(status, &answer);
                return Err(if lease_not_found(&e) {
                    RegistryError::LeaseNotFound(lease.id)
                } else {
                    e
                });
            }
            let first = answer
                .split(|&b| b == b'\n')
                .find(|line| !line.iter().all(u8::is_ascii_whitespace))
                .unwrap_or_default();
            let message: StreamMessage<KeepAliveAnswer> = serde_json::from_slice(first)
                .map_err(|e| RegistryError::Protocol(format!("etcd's keep-alive answer: {e}")))?;
            match (message.result, message.error) {
                (Some(alive), _) if alive.ttl > 0 => Ok(()),
                // No TTL (0): the lease expired or was revoked.
                (Some(_), _) => Err(RegistryError::LeaseNotFound(lease.id)),
                (None, Some(error)) if error.text().contains("lease not found") => {
                    Err(RegistryError::LeaseNotFound(lease.id))
                }
                (None, Some(error)) => Err(self.refused(status, &error)),
                (None, None) => Err(RegistryError::Protocol(
                    "etcd's keep-alive answer has neither a result nor an error".into(),
                )),
            }
        })
    }

    fn deregister(&self, lease: Lease) -> RegistryFuture<'_, ()> {
        Box::pin(async move {
            match self
                .call::<serde_json::Value>("/lease/revoke", json!({ "ID": lease.id.to_string() }))
                .await
            {
                Ok(_) => Ok(()),
                // Gone already: what deregistering wanted.
                Err(e) if lease_not_found(&e) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn lookup<'a>(&'a self, name: &'a str) -> RegistryFuture<'a, Vec<Instance>> {
        Box::pin(async move {
            let start = self.range_start(name);
            let range: RangeAnswer = self
                .call(
                    "/kv/range",
                    json!({
                        "key": BASE64.encode(&start),
                        "range_end": BASE64.encode(prefix_end(start.as_bytes())),
                    }),
                )
                .await?;
            let mut instances = range
                .kvs
                .into_iter()
                .map(|kv| {
                    let address = BASE64
                        .decode(kv.value.as_bytes())
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .ok_or_else(|| {
                            RegistryError::Protocol(format!(
                                "a value under {start} is not base64 of UTF-8 text"
                            ))
                        })?;
                    Ok(Instance {
                        name: name.to_owned(),
                        address,
                    })
                })
                .collect::<Result<Vec<_>, RegistryError>>()?;
            instances.sort();
            instances.dedup();
            Ok(instances)
        })
    }

    fn watch(self: Arc<Self>, name: &str, _poll: Duration) -> RegistryFuture<'static, Watch> {
        let name = name.to_owned();
        Box::pin(async move {
            let start = self.range_start(&name);
            let body = json!({
                "create_request": {
                    "key": BASE64.encode(&start),
                    "range_end": BASE64.encode(prefix_end(start.as_bytes())),
                }
            });
            let timeout = self.timeout;
            // Set up within the timeout: the answer's head, then `created`.
            let opened = tokio::time::timeout(timeout, async {
                let (response, sender) = self
                    .send("/watch", &body)
                    .await
                    .map_err(|e| self.unreachable(e))?;
                let status = response.status();
                if status != StatusCode::OK {
                    let answer = Limited::new(response.into_body(), MAX_ANSWER)
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    return Err(self.refusal(status, &answer));
                }
                let mut lines = Lines {
                    body: response.into_body(),
                    buffer: Vec::new(),
                    _sender: sender,
                };
                let first = self.watch_message(&mut lines).await?;
                if !first.created {
                    return Err(RegistryError::Protocol(
                        "etcd's watch did not begin with `created`".into(),
                    ));
                }
                Ok(lines)
            })
            .await;
            let lines = match opened {
                Ok(Ok(lines)) => lines,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(RegistryError::Unreachable(RpcError::Timeout(timeout))),
            };
            let state = WatchState {
                registry: self,
                name,
                lines,
                last: None,
                stale: true,
                ended: false,
            };
            let watch: Watch = Box::pin(futures_util::stream::unfold(state, next_set));
            Ok(watch)
        })
    }
}

/// A watch between items.
struct WatchState {
    registry: Arc<EtcdRegistry>,
    name: String,
    lines: Lines,
    /// The set last yielded.
    last: Option<Vec<Instance>>,
    /// Whether something changed since the range was last read.
    stale: bool,
    /// Whether the error that ends the stream was yielded.
    ended: bool,
}

/// The watch's next item: the set when it changed, or the error that ends
/// the stream.
async fn next_set(
    mut state: WatchState,
) -> Option<(Result<Vec<Instance>, RegistryError>, WatchState)> {
    if state.ended {
        return None;
    }
    loop {
        if state.stale {
            state.stale = false;
            match state.registry.lookup(&state.name).await {
                Ok(now) if state.last.as_ref() == Some(&now) => {}
                Ok(now) => {
                    state.last = Some(now.clone());
                    return Some((Ok(now), state));
                }
                Err(e) => {
                    state.ended = true;
                    return Some((Err(e), state));
                }
            }
        }
        match state.registry.watch_message(&mut state.lines).await {
            Ok(message) if message.canceled => {
                state.ended = true;
                let why = if message.compact_revision.is_null() {
                    message.cancel_reason
                } else {
                    format!("compacted at revision {}", message.compact_revision)
                };
                return Some((
                    Err(RegistryError::Refused(format!(
                        "etcd cancelled the watch: {why}"
                    ))),
                    state,
                ));
            }
            Ok(message) => state.stale |= !message.events.is_empty(),
            Err(e) => {
                state.ended = true;
                return Some((Err(e), state));
            }
        }
    }
}

impl EtcdRegistry {
    /// The watch's next message, or why there is none.
    async fn watch_message(&self, lines: &mut Lines) -> Result<WatchAnswer, RegistryError> {
        let closed = |why: io::Error| {
            RegistryError::Unreachable(RpcError::Closed(CloseReason::Io(Arc::new(why))))
        };
        let line = match lines.next().await {
            Ok(Some(line)) => line,
            Ok(None) => {
                return Err(closed(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("etcd at {} ended the watch", self.inner.url),
                )));
            }
            Err(e) => return Err(closed(e)),
        };
        let message: StreamMessage<WatchAnswer> = serde_json::from_slice(&line)
            .map_err(|e| RegistryError::Protocol(format!("a message of etcd's watch: {e}")))?;
        match (message.result, message.error) {
            (Some(result), _) => Ok(result),
            (None, Some(error)) => Err(self.refused(StatusCode::OK, &error)),
            (None, None) => Ok(WatchAnswer::default()),
        }
    }
}

/// The lines of a streaming answer.
struct Lines {
    body: Incoming,
    buffer: Vec<u8>,
    /// The connection's sender, kept while the answer is read.
    _sender: SendRequest<Full<Bytes>>,
}

impl Lines {
    /// The next non-empty line, `None` at the end of the answer.
    async fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(at) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            match self.body.frame().await {
                None if self.buffer.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                None => return Ok(Some(std::mem::take(&mut self.buffer))),
                Some(Err(e)) => return Err(io::Error::other(e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                    if self.buffer.len() > MAX_ANSWER {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("a message of etcd's watch exceeds {MAX_ANSWER} bytes"),
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(ttl_seconds(Duration::from_secs(10)), 10);
    }

    #[test]
    fn the_range_of_a_prefix_ends_after_its_last_key() {
        assert_eq!(prefix_end(b"/rpc/Calc/"), b"/rpc/Calc0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }

    #[test]
    fn urls_give_the_authority_and_the_api_root() {
        let etcd = EtcdRegistry::new("http://127.0.0.1:2379", "/p/").unwrap();
        assert_eq!(
            (etcd.inner.authority.as_str(), etcd.inner.api.as_str()),
            ("127.0.0.1:2379", "/v3")
        );
        assert_eq!(etcd.prefix(), "/p");
        assert_eq!(etcd.key("Calc", "h:1"), "/p/Calc/h:1");
        let old = EtcdRegistry::new("http://etcd/v3beta/", DEFAULT_PREFIX).unwrap();
        assert_eq!(
            (old.inner.authority.as_str(), old.inner.api.as_str()),
            ("etcd:2379", "/v3beta")
        );
        let v6 = EtcdRegistry::new("http://[::1]:2380", DEFAULT_PREFIX).unwrap();
        assert_eq!(v6.inner.authority, "[::1]:2380");
        for bad in [
            "https://etcd:2379",
            "etcd:2379",
            "http://",
            "http://u@etcd:1",
        ] {
            assert!(EtcdRegistry::new(bad, DEFAULT_PREFIX).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_with_a_slash_and_addresses_with_spaces_are_refused() {
        assert!(check("Calc", "127.0.0.1:7070").is_ok());
        assert!(check("Calc", "ws://h:1/ws").is_ok());
        assert!(check("a/b", "h:1").is_err());
        assert!(check("", "h:1").is_err());
        assert!(check("Calc", "h 1").is_err());
    }

    #[test]
    fn integers_come_as_strings() {
        let grant: GrantAnswer =
            serde_json::from_str(r#"{"ID":"2324035730878021893","TTL":"2"}"#).unwrap();
        assert_eq!((grant.id, grant.ttl), (2324035730878021893, 2));
        let gone: StreamMessage<KeepAliveAnswer> =
            serde_json::from_str(r#"{"result":{"header":{},"ID":"12345"}}"#).unwrap();
        assert_eq!(gone.result.unwrap().ttl, 0);
    }

    #[test]
    fn gateway_errors_are_read_with_both_their_texts() {
        let etcd = EtcdRegistry::new("http://127.0.0.1:2379", DEFAULT_PREFIX).unwrap();
        let body = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        let e = etcd.refusal(StatusCode::NOT_FOUND, body);
        assert!(lease_not_found(&e), "{e:?}");
        let e = etcd.refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"error":"etcdserver: no leader","code":14}"#,
        );
        assert!(matches!(e, RegistryError::Unreachable(_)), "{e:?}");
        assert!(e.to_string().contains("no leader") || format!("{e:?}").contains("no leader"));
        let e = etcd.refusal(StatusCode::NOT_FOUND, b"404 page not found");
        assert!(format!("{e:?}").contains("no etcd v3 gateway"), "{e:?}");
    }
}
