//! Service discovery: servers register their services under a name in a
//! [`Registry`], with a lease they keep alive; clients look the name up,
//! and follow it as instances come and go.
//!
//! Three registries:
//! - the **binder** ([`binder`]), a `#[service]` of this library that
//!   holds registrations in memory, for one machine or a small cluster;
//! - **etcd** ([`etcd`], feature `etcd`), for more than one machine;
//! - a **static list** of addresses ([`StaticRegistry`]), for tests and
//!   fixed deployments.
//!
//! Leases follow etcd's model: a registration lives for its TTL unless it
//! is renewed (`keep_alive`), and vanishes on its own when its server
//! stops renewing it (a crash, a cut link). Pyro5's name server, by
//! contrast, keeps dead entries until someone removes them.

pub mod binder;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod register;

pub use crate::client::FOLLOW_POLL;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream as FuturesStream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::RpcError;

/// One live instance of a service.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct Instance {
    /// The service's name (a trait's name, such as `Calculator`).
    pub name: String,
    /// Where clients reach it: `HOST:PORT` or a URL
    /// ([`ClientBuilder::connect`](crate::ClientBuilder::connect)'s forms).
    pub address: String,
}

/// A registration's lease: renew it within `ttl_ms` or the registration
/// expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Lease {
    /// The registry's id for the lease.
    pub id: u64,
    /// Its time to live, in milliseconds.
    pub ttl_ms: u64,
}

impl Lease {
    /// The time to live as a `Duration`.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry could not be reached or did not answer: retry later.
    #[error("the registry is unreachable: {0}")]
    Unreachable(#[source] RpcError),
    /// The lease is unknown to the registry: it expired, or the registry
    /// restarted. Register again.
    #[error(
        "lease {0} is unknown to the registry (expired, or the registry restarted); register again"
    )]
    LeaseNotFound(u64),
    /// The registry refused the request.
    #[error("the registry refused: {0}")]
    Refused(String),
    /// The registry answered something this side cannot read.
    #[error("the registry answered something unexpected: {0}")]
    Protocol(String),
}

/// The future of one registry operation.
pub type RegistryFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, RegistryError>> + Send + 'a>>;

/// The live instances of one name, each time they change (the first item
/// is the current set).
pub type Watch = Pin<Box<dyn FuturesStream<Item = Result<Vec<Instance>, RegistryError>> + Send>>;

/// Where servers register and clients look up. Object-safe: held as
/// `Arc<dyn Registry>`.
pub trait Registry: Send + Sync + 'static {
    /// Registers `address` under `name` for `ttl`.
    ///
    /// # Errors
    /// [`RegistryError::Unreachable`] or [`RegistryError::Refused`] (a bad
    /// name, address or TTL).
    fn register<'a>(
        &'a self,
        name: &'a str,
        address: &'a str,
        ttl: Duration,
    ) -> RegistryFuture<'a, Lease>;

    /// Renews `lease` for another TTL.
    ///
    /// # Errors
    /// [`RegistryError::LeaseNotFound`] when the lease is gone (register
    /// again), [`RegistryError::Unreachable`].
    fn keep_alive(&self, lease: Lease) -> RegistryFuture<'_, ()>;

    /// Removes `lease` and its registration at once.
    ///
    /// # Errors
    /// [`RegistryError::Unreachable`]. An unknown lease is not an error.
    fn deregister(&self, lease: Lease) -> RegistryFuture<'_, ()>;

    /// The live instances of `name`, in a stable order.
    ///
    /// # Errors
    /// [`RegistryError::Unreachable`].
    fn lookup<'a>(&'a self, name: &'a str) -> RegistryFuture<'a, Vec<Instance>>;

    /// The live instances of `name` now and after each change. The default
    /// polls [`lookup`](Self::lookup) every `poll` and yields when the set
    /// changes; registries that can push changes (the binder, etcd)
    /// override it.
    ///
    /// # Errors
    /// [`RegistryError::Unreachable`] when the watch cannot start; errors
    /// while it runs are items of the stream.
    fn watch(self: Arc<Self>, name: &str, poll: Duration) -> RegistryFuture<'static, Watch> {
        let name = name.to_owned();
        Box::pin(async move { Ok(poll_lookups(self, name, poll)) })
    }
}

/// A watch made of lookups every `poll`, yielding each new set of
/// instances (and each failure).
pub fn poll_lookups<R: Registry + ?Sized>(registry: Arc<R>, name: String, poll: Duration) -> Watch {
    let state = (registry, name, None::<Vec<Instance>>, true);
    Box::pin(futures_util::stream::unfold(
        state,
        move |(registry, name, mut last, first)| async move {
            if !first {
                tokio::time::sleep(poll).await;
            }
            loop {
                match registry.lookup(&name).await {
                    Ok(now) if last.as_ref() == Some(&now) => {
                        tokio::time::sleep(poll).await;
                    }
                    Ok(now) => {
                        last = Some(now.clone());
                        return Some((Ok(now), (registry, name, last, false)));
                    }
                    Err(e) => return Some((Err(e), (registry, name, last, false))),
                }
            }
        },
    ))
}

/// A fixed list of instances: `lookup` returns it, `register` and the rest
/// do nothing. For tests, and for deployments whose addresses never change.
#[derive(Debug, Clone, Default)]
pub struct StaticRegistry {
    instances: Arc<Vec<Instance>>,
}

impl StaticRegistry {
    /// A registry that knows `addresses` for `name`.
    pub fn new<I, S>(name: &str, addresses: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::default().with(name, addresses)
    }

    /// The same, knowing `addresses` for `name` too.
    pub fn with<I, S>(self, name: &str, addresses: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut instances: Vec<Instance> = (*self.instances).clone();
        instances.extend(addresses.into_iter().map(|address| Instance {
            name: name.to_owned(),
            address: address.into(),
        }));
        instances.sort();
        instances.dedup();
        Self {
            instances: Arc::new(instances),
        }
    }
}

impl Registry for StaticRegistry {
    fn register<'a>(&'a self, _: &'a str, _: &'a str, ttl: Duration) -> RegistryFuture<'a, Lease> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Box::pin(async move { Ok(Lease { id: 0, ttl_ms }) })
    }

    fn keep_alive(&self, _: Lease) -> RegistryFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn deregister(&self, _: Lease) -> RegistryFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn lookup<'a>(&'a self, name: &'a str) -> RegistryFuture<'a, Vec<Instance>> {
        Box::pin(async move {
            Ok(self
                .instances
                .iter()
                .filter(|i| i.name == name)
                .cloned()
                .collect())
        })
    }
}
