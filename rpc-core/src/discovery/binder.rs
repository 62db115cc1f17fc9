//! The binder: a registry that is itself a `#[service]` of this library
//! (the course's Helium_RPC binder, with leases). Serve a [`Directory`]
//! with [`BinderServer`]; reach it as a [`Registry`] with
//! [`BinderRegistry`].
//!
//! ```
//! use rpc_core::discovery::binder::{BinderServer, Directory};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let binder = rpc_core::Server::builder()
//!     .service(BinderServer::new(Directory::new()))
//!     .bind("127.0.0.1:0")
//!     .await?;
//! # binder.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Registrations live in memory: a binder that restarts comes back empty,
//! and each server registers again at its next heartbeat, when its
//! `keep_alive` fails with [`BinderError::NoSuchLease`].

use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Instance, Lease, Registry, RegistryError, RegistryFuture, Watch};
use crate::error::RpcError;
use crate::stream::Stream;

/// How often a [`Directory`] removes expired leases and tells watchers: an
/// expired registration is gone from `lookup` at once, and from watches
/// within one sweep.
pub const DEFAULT_SWEEP: Duration = Duration::from_secs(1);
/// The shortest TTL a binder accepts.
pub const MIN_TTL: Duration = Duration::from_millis(100);
/// The longest TTL a binder accepts.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// Why the binder refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
pub enum BinderError {
    /// The name is empty, longer than 255 bytes, or has control characters.
    #[error("a service name must be 1 to 255 bytes of printable text")]
    BadName,
    /// The address is empty, longer than 255 bytes, or has no port.
    #[error("an address must be HOST:PORT or a URL with a port, at most 255 bytes")]
    BadAddress,
    /// The TTL is outside the binder's bounds.
    #[error("the TTL must be from {min_ms} to {max_ms} ms")]
    BadTtl {
        /// The shortest TTL accepted, in milliseconds.
        min_ms: u64,
        /// The longest TTL accepted, in milliseconds.
        max_ms: u64,
    },
    /// The lease expired, was removed, or the binder restarted.
    #[error("no lease {0}: it expired, was removed, or the binder restarted; register again")]
    NoSuchLease(u64),
}

/// A name service with leases.
#[crate::service(crate = "crate", namespace = "binder")]
pub trait Binder {
    /// Registers `address` under `name` for `ttl_ms` milliseconds, renewable
    /// with `keep_alive`.
    async fn register(
        &self,
        name: String,
        address: String,
        ttl_ms: u64,
    ) -> Result<Lease, BinderError>;
    /// Renews lease `lease` for another TTL.
    async fn keep_alive(&self, lease: u64) -> Result<Lease, BinderError>;
    /// Removes lease `lease` at once; whether it existed.
    async fn deregister(&self, lease: u64) -> bool;
    /// The live instances of `name`, by address.
    #[rpc(read_only)]
    async fn lookup(&self, name: String) -> Vec<Instance>;
    /// Every live instance, by name and address.
    #[rpc(read_only)]
    async fn list(&self) -> Vec<Instance>;
    /// The live instances of `name` now, then after each change.
    async fn watch(&self, name: String) -> Stream<Vec<Instance>>;
}

/// The binder's state: the registrations and their leases. Clones share
/// it; the expiry sweep runs while any clone lives.
#[derive(Debug, Clone)]
pub struct Directory {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    table: Mutex<Table>,
    /// Bumped on every change; watchers wait on it.
    version: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Table {
    last_lease: u64,
    leases: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    instance: Instance,
    ttl: Duration,
    expires: Instant,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

impl Directory {
    /// An empty directory, swept every [`DEFAULT_SWEEP`]. Must be called
    /// inside a Tokio runtime (the sweep is a task).
    pub fn new() -> Self {
        Self::with_sweep(DEFAULT_SWEEP)
    }

    /// An empty directory swept every `sweep`.
    pub fn with_sweep(sweep: Duration) -> Self {
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
            version: watch::channel(0).0,
        });
        tokio::spawn(sweep_until_dropped(Arc::downgrade(&shared), sweep));
        Self { shared }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.shared.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.shared.version.send_modify(|v| *v += 1);
    }

    /// The live instances, of `name` or of every name.
    fn live(&self, name: Option<&str>) -> Vec<Instance> {
        let now = Instant::now();
        let mut live: Vec<Instance> = self
            .lock()
            .leases
            .values()
            .filter(|e| e.expires > now && name.is_none_or(|n| e.instance.name == n))
            .map(|e| e.instance.clone())
            .collect();
        live.sort();
        live.dedup();
        live
    }
}

/// Removes expired leases every `sweep` and tells watchers, until the
/// directory is dropped.
async fn sweep_until_dropped(shared: Weak<Shared>, sweep: Duration) {
    let mut ticks = tokio::time::interval(sweep);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let removed = {
            let mut table = shared.table.lock().unwrap_or_else(|e| e.into_inner());
            let before = table.leases.len();
            table.leases.retain(|_, e| e.expires > now);
            before - table.leases.len()
        };
        if removed > 0 {
            tracing::info!(removed, "expired registrations removed");
            shared.version.send_modify(|v| *v += 1);
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.chars().any(char::is_control)
}

fn valid_address(address: &str) -> bool {
    // The port: after the last `:`, up to a path (`ws://host:7070/ws`).
    let port = address
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next());
    address.len() <= 255
        && !address.chars().any(|c| c.is_control() || c.is_whitespace())
        && port.is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Binder for Directory {
    async fn register(
        &self,
        name: String,
        address: String,
        ttl_ms: u64,
    ) -> Result<Lease, BinderError> {
        if !valid_name(&name) {
            return Err(BinderError::BadName);
        }
        if !valid_address(&address) {
            return Err(BinderError::BadAddress);
        }
        let ttl = Duration::from_millis(ttl_ms);
        if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
            return Err(BinderError::BadTtl {
                min_ms: millis(MIN_TTL),
                max_ms: millis(MAX_TTL),
            });
        }
        let lease = {
            let mut table = self.lock();
            table.last_lease += 1;
            let id = table.last_lease;
            table.leases.insert(
                id,
                Entry {
                    instance: Instance { name, address },
                    ttl,
                    expires: Instant::now() + ttl,
                },
            );
            Lease { id, ttl_ms }
        };
        self.changed();
        Ok(lease)
    }

    async fn keep_alive(&self, lease: u64) -> Result<Lease, BinderError> {
        let now = Instant::now();
        let mut table = self.lock();
        match table.leases.get_mut(&lease) {
            Some(entry) if entry.expires > now => {
                entry.expires = now + entry.ttl;
                Ok(Lease {
                    id: lease,
                    ttl_ms: millis(entry.ttl),
                })
            }
            _ => Err(BinderError::NoSuchLease(lease)),
        }
    }

    async fn deregister(&self, lease: u64) -> bool {
        let removed = self.lock().leases.remove(&lease).is_some();
        if removed {
            self.changed();
        }
        removed
    }

    async fn lookup(&self, name: String) -> Vec<Instance> {
        self.live(Some(&name))
    }

    async fn list(&self) -> Vec<Instance> {
        self.live(None)
    }

    async fn watch(&self, name: String) -> Stream<Vec<Instance>> {
        let versions = self.shared.version.subscribe();
        let directory = self.clone();
        // The current set first, then each set that differs from the last.
        let sets = futures_util::stream::unfold(
            (directory, versions, name, None::<Vec<Instance>>),
            |(directory, mut versions, name, last)| async move {
                loop {
                    let now = directory.live(Some(&name));
                    if last.as_ref() != Some(&now) {
                        return Some((now.clone(), (directory, versions, name, Some(now))));
                    }
                    versions.changed().await.ok()?;
                }
            },
        );
        Stream::new(sets)
    }
}

/// A binder reached over the network, as a [`Registry`].
#[derive(Debug, Clone)]
pub struct BinderRegistry {
    client: BinderClient,
}

impl BinderRegistry {
    /// A registry on a binder reached with `client`.
    pub fn new(client: crate::Client) -> Self {
        Self {
            client: BinderClient::new(client),
        }
    }

    /// Connects to the binder at `addr` (any form
    /// [`ClientBuilder::connect`](crate::ClientBuilder::connect) takes).
    /// The client reconnects by itself when the binder restarts.
    ///
    /// # Errors
    /// [`RpcError::Connect`] when the binder cannot be reached.
    pub async fn connect(addr: &str) -> Result<Self, RpcError> {
        Ok(Self::new(crate::Client::builder().connect(addr).await?))
    }
}

/// A binder's refusal or failure as a registry error.
fn registry_error(e: RpcError<BinderError>) -> RegistryError {
    match e.into_application() {
        Ok(BinderError::NoSuchLease(id)) => RegistryError::LeaseNotFound(id),
        Ok(refused) => RegistryError::Refused(refused.to_string()),
        Err(e) => RegistryError::Unreachable(e),
    }
}

impl Registry for BinderRegistry {
    fn register<'a>(
        &'a self,
        name: &'a str,
        address: &'a str,
        ttl: Duration,
    ) -> RegistryFuture<'a, Lease> {
        Box::pin(async move {
            self.client
                .register(name.to_owned(), address.to_owned(), millis(ttl))
                .await
                .map_err(registry_error)
        })
    }

    fn keep_alive(&self, lease: Lease) -> RegistryFuture<'_, ()> {
        Box::pin(async move {
            self.client
                .keep_alive(lease.id)
                .await
                .map(drop)
                .map_err(registry_error)
        })
    }

    fn deregister(&self, lease: Lease) -> RegistryFuture<'_, ()> {
        Box::pin(async move {
            self.client
                .deregister(lease.id)
                .await
                .map(drop)
                .map_err(RegistryError::Unreachable)
        })
    }

    fn lookup<'a>(&'a self, name: &'a str) -> RegistryFuture<'a, Vec<Instance>> {
        Box::pin(async move {
            self.client
                .lookup(name.to_owned())
                .await
                .map_err(RegistryError::Unreachable)
        })
    }

    fn watch(self: Arc<Self>, name: &str, _poll: Duration) -> RegistryFuture<'static, Watch> {
        let name = name.to_owned();
        Box::pin(async move {
            let sets = self
                .client
                .watch(name)
                .await
                .map_err(RegistryError::Unreachable)?;
            let watch: Watch = Box::pin(sets.map(|set| set.map_err(RegistryError::Unreachable)));
            Ok(watch)
        })
    }
}
