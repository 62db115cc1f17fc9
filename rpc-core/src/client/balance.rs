//! A client over every live instance of a service: it follows a
//! [`Registry`], keeps a connection to each instance it uses, spreads
//! calls over them, and sends new calls elsewhere when one fails.
//!
//! - **Balancing**: power of two choices on calls in flight (two instances
//!   picked at random, the less busy one wins), or round robin
//!   ([`Balance`]).
//! - **Failover**: an instance whose connection fails (or cannot be
//!   opened; dialling gets no longer than the [`Keepalive`](super::Keepalive)'s
//!   silence, so a host that drops packets does not hold the call until
//!   its deadline) is marked down for a backoff (50 ms doubling to 5 s) and new
//!   calls go to the others. Calls that were in flight on it fail with
//!   [`RpcError::Closed`], as on any connection; only `#[rpc(idempotent)]`
//!   calls are sent again, once, to another instance.
//! - **Following**: by the registry's watch (the binder and etcd push
//!   changes), else by lookups every [`FOLLOW_POLL`]; a watch that fails is
//!   retried after that long too.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Backoff, ClientBuilder, Link, lock};
use crate::discovery::{Instance, Registry};
use crate::error::RpcError;

/// How often a client without a pushed watch looks the name up again, and
/// how long it waits before retrying a failed watch.
pub const FOLLOW_POLL: Duration = Duration::from_secs(2);

/// How a discovering client picks an instance for each call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Balance {
    /// Two instances at random; the one with fewer calls in flight
    /// (Mitzenmacher's power of two choices): load follows speed.
    #[default]
    PowerOfTwoChoices,
    /// Each instance in turn.
    RoundRobin,
}

/// One instance and the connection to it, once opened.
struct Member {
    address: String,
    link: Mutex<Option<Arc<Link>>>,
    /// Serializes dialing this instance; its backoff after failures.
    dialing: tokio::sync::Mutex<Backoff>,
    /// Not picked before this instant (it failed).
    down_until: Mutex<Option<Instant>>,
}

impl Member {
    fn new(address: String) -> Arc<Self> {
        Arc::new(Self {
            address,
            link: Mutex::new(None),
            dialing: tokio::sync::Mutex::new(Backoff::default()),
            down_until: Mutex::new(None),
        })
    }

    fn is_down(&self, now: Instant) -> bool {
        lock(&self.down_until).is_some_and(|until| until > now)
    }

    /// Calls in flight on its connection (0 without one).
    fn load(&self) -> usize {
        lock(&self.link)
            .as_ref()
            .map_or(0, |link| link.session.calls.in_flight())
    }

    /// Forgets its connection if it closed: `None` if it had none or it is
    /// open, else whether it failed (an I/O error, a dead link) rather than
    /// closed in good order.
    fn drop_closed(&self) -> Option<bool> {
        let mut link = lock(&self.link);
        let closed = link.as_ref().filter(|l| !l.session.calls.usable())?;
        let failed = matches!(
            closed.session.calls.closed_error(),
            RpcError::Closed(crate::error::CloseReason::Io(_))
        );
        *link = None;
        Some(failed)
    }

    /// Its connection if it is open and usable.
    fn usable(&self) -> Option<Arc<Link>> {
        lock(&self.link)
            .as_ref()
            .filter(|link| link.session.calls.usable())
            .cloned()
    }
}

/// The instances of one name, and how calls are spread over them.
pub(crate) struct Balancer {
    name: String,
    config: ClientBuilder,
    policy: Balance,
    members: Mutex<Vec<Arc<Member>>>,
    /// Notified when the set of members changes.
    changed: Notify,
    next: std::sync::atomic::AtomicUsize,
    follower: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(follower) = lock(&self.follower).take() {
            follower.abort();
        }
    }
}

impl Balancer {
    /// A balancer over `instances`, following `registry` from now on.
    pub(crate) fn start(
        config: ClientBuilder,
        policy: Balance,
        registry: Arc<dyn Registry>,
        name: &str,
        instances: Vec<Instance>,
    ) -> Arc<Self> {
        let balancer = Arc::new(Self {
            name: name.to_owned(),
            config,
            policy,
            members: Mutex::new(Vec::new()),
            changed: Notify::new(),
            next: std::sync::atomic::AtomicUsize::new(0),
            follower: Mutex::new(None),
        });
        balancer.update(instances);
        let task = tokio::spawn(follow(Arc::downgrade(&balancer), registry, name.to_owned()));
        *lock(&balancer.follower) = Some(task.abort_handle());
        balancer
    }

    /// Replaces the members with `instances`, keeping the connections of
    /// those that stay. Connections to instances that left close when
    /// their last call ends.
    fn update(&self, instances: Vec<Instance>) {
        let mut members = lock(&self.members);
        let mut next: Vec<Arc<Member>> = Vec::with_capacity(instances.len());
        for instance in instances {
            if next.iter().any(|m| m.address == instance.address) {
                continue;
            }
            match members.iter().find(|m| m.address == instance.address) {
                Some(kept) => next.push(kept.clone()),
                None => next.push(Member::new(instance.address)),
            }
        }
        let (before, after) = (members.len(), next.len());
        *members = next;
        drop(members);
        tracing::debug!(name = %self.name, before, after, "instances updated");
        self.changed.notify_waiters();
    }

    /// Whether the registry lists no instance.
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.members).is_empty()
    }

    /// The connection for the next call: an instance picked by the policy
    /// among those not down (all of them if every one is down), dialled if
    /// needed. An instance that cannot be dialled is marked down and
    /// another is tried, until `deadline`.
    pub(crate) async fn pick(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Arc<Link>, RpcError> {
        let mut last_error = None;
        loop {
            let changed = self.changed.notified();
            let Some(member) = self.choose() else {
                // Nobody registered (yet): wait for the registry, within the
                // call's time.
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    return Err(last_error.unwrap_or_else(|| self.none_registered()));
                }
                continue;
            };
            if let Some(link) = member.usable() {
                return Ok(link);
            }
            if let Some(failed) = member.drop_closed() {
                // Its connection closed: down for a moment, so the next calls
                // go to the others; for a while if it failed (a dead link
                // would make the next dial wait for its whole limit).
                let pause = if failed {
                    super::BACKOFF_MAX
                } else {
                    super::BACKOFF_BASE
                };
                lock(&member.down_until).get_or_insert(Instant::now() + pause);
                if self
                    .choose()
                    .is_some_and(|other| !Arc::ptr_eq(&other, &member))
                {
                    continue;
                }
            }
            match self.dial(&member, deadline).await {
                Ok(link) => return Ok(link),
                Err(RpcError::Timeout(_)) if Instant::now() >= deadline => {
                    return Err(RpcError::Timeout(timeout));
                }
                Err(e) => {
                    tracing::debug!(address = %member.address, error = %e, "instance down; trying another");
                    last_error = Some(e);
                    if Instant::now() >= deadline {
                        return Err(last_error.unwrap_or(RpcError::Timeout(timeout)));
                    }
                }
            }
        }
    }

    fn none_registered(&self) -> RpcError {
        RpcError::Connect {
            addr: self.name.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no live instance of `{}` in the registry; start a server that registers it",
                    self.name
                ),
            ),
        }
    }

    /// An instance by the policy, preferring those not down.
    fn choose(&self) -> Option<Arc<Member>> {
        let members = lock(&self.members);
        if members.is_empty() {
            return None;
        }
        let now = Instant::now();
        let up: Vec<&Arc<Member>> = members.iter().filter(|m| !m.is_down(now)).collect();
        let pool: Vec<&Arc<Member>> = if up.is_empty() {
            // Every instance failed lately: try the one that comes back first.
            let soonest = members
                .iter()
                .min_by_key(|m| *lock(&m.down_until))
                .expect("not empty");
            return Some(soonest.clone());
        } else {
            up
        };
        let chosen = match self.policy {
            Balance::RoundRobin => {
                let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                pool[n % pool.len()]
            }
            Balance::PowerOfTwoChoices => {
                if pool.len() == 1 {
                    pool[0]
                } else {
                    let a = fastrand::usize(..pool.len());
                    let b = (a + 1 + fastrand::usize(..pool.len() - 1)) % pool.len();
                    if pool[b].load() < pool[a].load() {
                        pool[b]
                    } else {
                        pool[a]
                    }
                }
            }
        };
        Some(chosen.clone())
    }

    /// Opens a connection to `member` (once at a time), marking it down on
    /// failure.
    async fn dial(&self, member: &Member, deadline: Instant) -> Result<Arc<Link>, RpcError> {
        let Ok(mut backoff) = tokio::time::timeout_at(deadline, member.dialing.lock()).await else {
            return Err(RpcError::Timeout(self.config.timeout));
        };
        // Another call may have dialled meanwhile.
        if let Some(link) = member.usable() {
            return Ok(link);
        }
        // An instance whose host went silent (its link cut, powered off)
        // drops the SYN: connecting would wait for the whole call's
        // deadline while other instances could answer. Dialling gets the
        // keepalive's silence, as a call in flight does, then the instance
        // is down and another is tried.
        let dial_deadline = match self.config.keepalive {
            Some(keepalive) => deadline.min(crate::time::after(keepalive.silence())),
            None => deadline,
        };
        let opened = match self.config.connector_for(&member.address) {
            Ok(connector) => match self.config.open(&*connector, dial_deadline).await {
                Err(RpcError::Timeout(_)) if dial_deadline < deadline => Err(RpcError::Connect {
                    addr: member.address.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no answer within {:?} (the keepalive's silence)",
                            self.config
                                .keepalive
                                .map(|k| k.silence())
                                .unwrap_or_default()
                        ),
                    ),
                }),
                other => other,
            },
            Err(e) => Err(e),
        };
        match opened {
            Ok(link) => {
                backoff.succeeded();
                *lock(&member.down_until) = None;
                *lock(&member.link) = Some(link.clone());
                Ok(link)
            }
            Err(e) => {
                backoff.failed();
                *lock(&member.down_until) = backoff.next_attempt;
                Err(e)
            }
        }
    }
}

/// Follows the registry for `name` while the balancer lives: by watch,
/// else by lookups every [`FOLLOW_POLL`].
async fn follow(balancer: Weak<Balancer>, registry: Arc<dyn Registry>, name: String) {
    loop {
        match registry.clone().watch(&name, FOLLOW_POLL).await {
            Ok(mut sets) => {
                while let Some(set) = sets.next().await {
                    let Some(balancer) = balancer.upgrade() else {
                        return;
                    };
                    match set {
                        Ok(instances) => balancer.update(instances),
                        Err(e) => {
                            tracing::warn!(%name, error = %e, "the registry's watch failed; retrying");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(%name, error = %e, "could not watch the registry; retrying"),
        }
        if balancer.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}
