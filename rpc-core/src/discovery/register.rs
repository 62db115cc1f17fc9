//! The server's side of discovery: registering each service, keeping the
//! leases alive, registering again when a lease is lost (a registry that
//! restarted, a link that was down past the TTL), and deregistering first
//! when the server leaves.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Lease, Registry, RegistryError};

/// The TTL of a server's registrations unless set: a crashed server's
/// entries vanish within this (plus the registry's sweep).
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// How long a leaving server that was registered keeps serving, with
/// `/health` answering 503, before it stops accepting connections: time for
/// clients and load balancers to notice it is leaving.
pub const DEFAULT_LEAVE_DELAY: Duration = Duration::from_secs(2);

/// What a server registers, and where.
#[derive(Clone)]
pub(crate) struct Registrations {
    pub(crate) registries: Vec<Arc<dyn Registry>>,
    /// The address clients reach the server at; the bound address if unset.
    pub(crate) advertise: Option<String>,
    pub(crate) ttl: Duration,
    pub(crate) leave_delay: Option<Duration>,
}

impl Default for Registrations {
    fn default() -> Self {
        Self {
            registries: Vec::new(),
            advertise: None,
            ttl: DEFAULT_TTL,
            leave_delay: None,
        }
    }
}

impl std::fmt::Debug for Registrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrations")
            .field("registries", &self.registries.len())
            .field("advertise", &self.advertise)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// One name in one registry, and its lease once registered.
struct Slot {
    registry: Arc<dyn Registry>,
    name: &'static str,
    lease: Option<Lease>,
}

/// Registers `names` at `address` in every registry and keeps them
/// registered until `leaving` is cancelled; then deregisters them all.
/// Renews every TTL/3; each registry call is bounded by that too, so a hung
/// registry delays no other.
pub(crate) async fn keep_registered(
    registries: Vec<Arc<dyn Registry>>,
    names: Vec<&'static str>,
    address: String,
    ttl: Duration,
    leaving: CancellationToken,
) {
    let heartbeat = (ttl / 3).max(Duration::from_millis(10));
    let mut slots: Vec<Slot> = registries
        .iter()
        .flat_map(|registry| {
            names.iter().map(|name| Slot {
                registry: registry.clone(),
                name,
                lease: None,
            })
        })
        .collect();
    loop {
        for slot in &mut slots {
            renew(slot, &address, ttl, heartbeat).await;
        }
        tokio::select! {
            _ = leaving.cancelled() => break,
            _ = tokio::time::sleep(heartbeat) => {}
        }
    }
    for slot in &slots {
        if let Some(lease) = slot.lease {
            match tokio::time::timeout(heartbeat, slot.registry.deregister(lease)).await {
                Ok(Ok(())) => tracing::info!(name = slot.name, %address, "deregistered"),
                Ok(Err(e)) => {
                    tracing::warn!(name = slot.name, error = %e, "could not deregister; the entry expires with its lease")
                }
                Err(_) => tracing::warn!(
                    name = slot.name,
                    "the registry did not answer the deregistration; the entry expires with its lease"
                ),
            }
        }
    }
}

/// Renews the slot's lease, or registers it if it has none or lost it.
async fn renew(slot: &mut Slot, address: &str, ttl: Duration, bound: Duration) {
    if let Some(lease) = slot.lease {
        match tokio::time::timeout(bound, slot.registry.keep_alive(lease)).await {
            Ok(Ok(())) => {
                crate::metrics::renewal("ok");
                return;
            }
            Ok(Err(RegistryError::LeaseNotFound(_))) => {
                crate::metrics::renewal("lost");
                tracing::info!(
                    name = slot.name,
                    "lease lost (expired, or the registry restarted); registering again"
                );
                slot.lease = None;
            }
            Ok(Err(e)) => {
                crate::metrics::renewal("failed");
                // Kept: the registry may come back before the lease ends.
                tracing::warn!(name = slot.name, error = %e, "could not renew the lease");
                return;
            }
            Err(_) => {
                crate::metrics::renewal("failed");
                tracing::warn!(
                    name = slot.name,
                    "the registry did not answer the renewal in time"
                );
                return;
            }
        }
    }
    match tokio::time::timeout(bound, slot.registry.register(slot.name, address, ttl)).await {
        Ok(Ok(lease)) => {
            tracing::info!(name = slot.name, %address, lease = lease.id, "registered");
            slot.lease = Some(lease);
        }
        Ok(Err(e)) => tracing::warn!(name = slot.name, error = %e, "could not register; retrying"),
        Err(_) => tracing::warn!(
            name = slot.name,
            "the registry did not answer the registration in time; retrying"
        ),
    }
}
