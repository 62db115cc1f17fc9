//! Discovery with etcd (feature `etcd` of rpc-core): each test starts its
//! own etcd on free ports of 127.0.0.1 (Debian's `etcd-server`), with its
//! data in a temporary directory, and kills it at the end. Servers
//! register in it and a discovering client spreads calls over them; an
//! unrenewed lease vanishes after its TTL; watches yield each change;
//! deregistering removes at once; a revoked lease cannot be kept alive;
//! a watch whose etcd dies ends with an error.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use futures_util::StreamExt;
use rpc_core::discovery::etcd::{DEFAULT_PREFIX, EtcdRegistry};
use rpc_core::discovery::{Instance, Registry, RegistryError, Watch};
use rpc_core::{Balance, Client, RpcError, Server};

/// Which server answered.
#[rpc_core::service]
trait Whoami {
    /// This server's number.
    #[rpc(idempotent)]
    async fn id(&self) -> u32;
}

#[derive(Clone)]
struct Me(u32);

impl Whoami for Me {
    async fn id(&self) -> u32 {
        self.0
    }
}

/// An etcd of this test's own, killed (by its PID) and its data removed
/// when dropped.
struct Etcd {
    url: String,
    child: Option<Child>,
    dir: PathBuf,
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// Starts etcd and waits (at most 30 s) until its gateway answers.
    async fn start() -> Self {
        if Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            panic!(
                "these tests need the `etcd` binary on the PATH: apt-get install etcd-server (CI's .ci/run installs it)"
            );
        }
        let (client, peer) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!(
            "rpc-etcd-test-{}-{client}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "test"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd starts (apt-get install etcd-server)");
        let mut etcd = Self {
            url,
            child: Some(child),
            dir,
        };
        let started = Instant::now();
        loop {
            if EtcdRegistry::connect(&etcd.url, DEFAULT_PREFIX)
                .await
                .is_ok()
            {
                return etcd;
            }
            let exited = etcd.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || started.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(etcd.dir.join("etcd.log")).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!(
                    "etcd at {} did not answer within 30 s (exit: {exited:?}); its log ends with:\n{tail}",
                    etcd.url
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn registry(&self, prefix: &str) -> Arc<dyn Registry> {
        Arc::new(
            within(
                "the etcd registry",
                EtcdRegistry::connect(&self.url, prefix),
            )
            .await
            .unwrap(),
        )
    }

    /// One HTTP/1.0 exchange with etcd, by hand (no chunking, then the
    /// connection closes): `GET` when `body` is `None`, else `POST`. The
    /// answer's body.
    async fn raw(&self, path: &str, body: Option<&str>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.url.trim_start_matches("http://").parse().unwrap();
        let mut stream = common::connect(addr).await;
        let request = match body {
            None => format!("GET {path} HTTP/1.0\r\n\r\n"),
            Some(body) => format!(
                "POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        };
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        within(path, stream.read_to_string(&mut answer))
            .await
            .unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.0 200"), "{path}: {head}");
        body.to_owned()
    }

    /// The watchers etcd has open (its `/metrics`).
    async fn watchers(&self) -> u64 {
        let metrics = self.raw("/metrics", None).await;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("etcd_debugging_mvcc_watcher_total "))
            .expect("etcd's metrics count its watchers")
            .trim()
            .parse()
            .unwrap()
    }

    /// Revokes every lease: what a registry that lost its state looks like
    /// to the servers.
    async fn revoke_every_lease(&self) -> usize {
        let leases: serde_json::Value =
            serde_json::from_str(&self.raw("/v3/lease/leases", Some("{}")).await).unwrap();
        let leases = leases["leases"].as_array().cloned().unwrap_or_default();
        for lease in &leases {
            let id = lease["ID"].as_str().unwrap();
            self.raw("/v3/lease/revoke", Some(&format!(r#"{{"ID":"{id}"}}"#)))
                .await;
        }
        leases.len()
    }

    /// Kills etcd at once (SIGKILL, by its PID).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The next set a watch yields.
async fn next(watch: &mut Watch, what: &str) -> Vec<Instance> {
    within(what, watch.next())
        .await
        .unwrap_or_else(|| panic!("the watch ended, waiting for {what}"))
        .unwrap_or_else(|e| panic!("the watch failed, waiting for {what}: {e}"))
}

/// Waits until a watch of `name` yields `n` instances.
async fn registered(registry: &Arc<dyn Registry>, name: &str, n: usize) {
    let mut sets = registry
        .clone()
        .watch(name, Duration::from_millis(50))
        .await
        .unwrap();
    within(&format!("{n} instances of {name}"), async {
        while let Some(set) = sets.next().await {
            if set.unwrap().len() == n {
                return;
            }
        }
        panic!("the watch ended");
    })
    .await;
}

fn addresses(set: &[Instance]) -> Vec<&str> {
    set.iter().map(|i| i.address.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_register_and_a_discovering_client_spreads_calls_over_them() {
    let etcd = Etcd::start().await;
    let registry = etcd.registry(DEFAULT_PREFIX).await;
    let mut servers = Vec::new();
    for id in 0..3 {
        servers.push(
            Server::builder()
                .service(WhoamiServer::new(Me(id)))
                .register(registry.clone())
                .registration_ttl(Duration::from_secs(5))
                .leave_delay(Duration::ZERO)
                .bind("127.0.0.1:0")
                .await
                .unwrap(),
        );
    }
    registered(&registry, "Whoami", 3).await;
    let mut listed = registry.lookup("Whoami").await.unwrap();
    let mut expected: Vec<String> = servers.iter().map(|s| s.local_addr().to_string()).collect();
    expected.sort();
    listed.sort();
    assert_eq!(
        listed.iter().map(|i| i.address.clone()).collect::<Vec<_>>(),
        expected
    );

    for balance in [Balance::RoundRobin, Balance::PowerOfTwoChoices] {
        let client = WhoamiClient::new(
            within(
                "a discovering client",
                Client::builder()
                    .balance(balance)
                    .discover(registry.clone(), "Whoami"),
            )
            .await
            .unwrap(),
        );
        let mut seen = [0u32; 3];
        for _ in 0..90 {
            seen[within("a call", client.id()).await.unwrap() as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 0), "{balance:?}: {seen:?}");
        if balance == Balance::RoundRobin {
            assert_eq!(seen, [30, 30, 30]);
        }
    }

    // One server leaves: it deregisters first, and the client, following
    // etcd's watch, stops sending it calls.
    let client = WhoamiClient::new(
        Client::builder()
            .balance(Balance::RoundRobin)
            .discover(registry.clone(), "Whoami")
            .await
            .unwrap(),
    );
    let leaving = servers.remove(1);
    within("the server to leave", leaving.shutdown()).await;
    let left = registry.lookup("Whoami").await.unwrap();
    assert_eq!(left.len(), 2, "deregistered at once: {left:?}");
    // The watch reaches the client within moments.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = [0u32; 3];
    for _ in 0..20 {
        seen[within("a call after the leave", client.id()).await.unwrap() as usize] += 1;
    }
    assert_eq!(seen, [10, 0, 10]);
    for server in servers {
        server.shutdown().await;
    }
    assert!(registry.lookup("Whoami").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrenewed_lease_vanishes_after_its_ttl_and_cannot_be_kept_alive() {
    let etcd = Etcd::start().await;
    let registry = etcd.registry("/expiry").await;
    let before = Instant::now();
    // 1.2 s rounds up to 2 s, which is also etcd's shortest TTL.
    let lease = registry
        .register("Calc", "127.0.0.1:7070", Duration::from_millis(1200))
        .await
        .unwrap();
    assert_eq!(lease.ttl_ms, 2000, "{lease:?}");
    let mut watch = registry
        .clone()
        .watch("Calc", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        addresses(&next(&mut watch, "the registration").await),
        ["127.0.0.1:7070"]
    );
    // Renewed once: alive for a TTL from now.
    registry.keep_alive(lease).await.unwrap();
    let renewed = Instant::now();
    // Never renewed again: gone after the TTL, within etcd's expiry checks.
    let emptied = next(&mut watch, "the expiry").await;
    assert!(emptied.is_empty(), "{emptied:?}");
    let after = renewed.elapsed();
    assert!(
        after >= lease.ttl() - Duration::from_millis(100)
            && after <= lease.ttl() + Duration::from_secs(3),
        "expired {after:?} after the renewal, {:?} after registering",
        before.elapsed()
    );
    assert!(registry.lookup("Calc").await.unwrap().is_empty());
    // Too late: register again.
    match registry.keep_alive(lease).await {
        Err(RegistryError::LeaseNotFound(id)) => assert_eq!(id, lease.id),
        other => panic!("expected LeaseNotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_yield_each_change_deregistering_is_immediate_and_a_dead_etcd_ends_the_watch() {
    let mut etcd = Etcd::start().await;
    let registry = etcd.registry("/watch/").await;
    let mut watch = registry
        .clone()
        .watch("Calc", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(next(&mut watch, "the empty set").await.is_empty());

    let ttl = Duration::from_secs(30);
    let a = registry
        .register("Calc", "10.0.0.1:7070", ttl)
        .await
        .unwrap();
    assert_eq!(a.ttl(), ttl);
    assert_eq!(addresses(&next(&mut watch, "a").await), ["10.0.0.1:7070"]);
    let b = registry
        .register("Calc", "ws://10.0.0.2:7070/ws", ttl)
        .await
        .unwrap();
    assert_eq!(
        addresses(&next(&mut watch, "b").await),
        ["10.0.0.1:7070", "ws://10.0.0.2:7070/ws"]
    );
    // Another name, and a name that begins like this one, are not watched.
    registry
        .register("Calculator", "10.0.0.3:1", ttl)
        .await
        .unwrap();
    registry.register("Other", "10.0.0.4:1", ttl).await.unwrap();
    assert_eq!(registry.lookup("Calculator").await.unwrap().len(), 1);

    // Deregistered: gone from lookups at once, and from the watch.
    registry.deregister(a).await.unwrap();
    assert_eq!(
        addresses(&registry.lookup("Calc").await.unwrap()),
        ["ws://10.0.0.2:7070/ws"]
    );
    assert_eq!(
        addresses(&next(&mut watch, "a's removal").await),
        ["ws://10.0.0.2:7070/ws"]
    );
    // A revoked lease: keep_alive says so (the server registers again), and
    // revoking it twice is no error.
    match registry.keep_alive(a).await {
        Err(RegistryError::LeaseNotFound(id)) => assert_eq!(id, a.id),
        other => panic!("expected LeaseNotFound, got {other:?}"),
    }
    registry.deregister(a).await.unwrap();
    registry.keep_alive(b).await.unwrap();

    // Bad names are refused before anything is sent.
    assert!(matches!(
        registry.register("a/b", "10.0.0.1:1", ttl).await,
        Err(RegistryError::Refused(_))
    ));

    // etcd dies: the watch ends with an error (a discovering client then
    // watches again), and requests fail as unreachable.
    etcd.kill();
    match within("the watch's end", watch.next()).await {
        Some(Err(RegistryError::Unreachable(_))) => {}
        other => panic!("expected the watch to fail, got {other:?}"),
    }
    assert!(within("the end of the watch", watch.next()).await.is_none());
    match within("a lookup", registry.lookup("Calc")).await {
        Err(RegistryError::Unreachable(RpcError::Connect { .. })) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_lease_is_lost_registers_again_at_its_next_heartbeat() {
    let etcd = Etcd::start().await;
    let registry = etcd.registry(DEFAULT_PREFIX).await;
    let server = Server::builder()
        .service(WhoamiServer::new(Me(1)))
        .register(registry.clone())
        .registration_ttl(Duration::from_secs(3))
        .leave_delay(Duration::ZERO)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut watch = registry
        .clone()
        .watch("Whoami", Duration::from_secs(60))
        .await
        .unwrap();
    let mut set = next(&mut watch, "the registration").await;
    if set.is_empty() {
        set = next(&mut watch, "the registration").await;
    }
    assert_eq!(addresses(&set), [server.local_addr().to_string()]);

    assert_eq!(etcd.revoke_every_lease().await, 1);
    assert!(next(&mut watch, "the revocation").await.is_empty());
    // The next heartbeat (every TTL/3) finds the lease gone and registers
    // again.
    let again = next(&mut watch, "the registration again").await;
    assert_eq!(addresses(&again), [server.local_addr().to_string()]);
    server.shutdown().await;
    assert!(next(&mut watch, "the deregistration").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_leaves_etcd() {
    let etcd = Etcd::start().await;
    let registry = etcd.registry(DEFAULT_PREFIX).await;
    assert_eq!(etcd.watchers().await, 0);
    let mut watch = registry
        .clone()
        .watch("Calc", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(next(&mut watch, "the empty set").await.is_empty());
    assert_eq!(etcd.watchers().await, 1);
    drop(watch);
    within("etcd to close the watch", async {
        while etcd.watchers().await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn connecting_to_nothing_or_to_a_bad_url_is_a_clear_error() {
    let url = format!("http://127.0.0.1:{}", free_port());
    match EtcdRegistry::connect(&url, DEFAULT_PREFIX).await {
        Err(RpcError::Connect { addr, .. }) => assert_eq!(addr, url),
        other => panic!("expected a connect error, got {other:?}"),
    }
    match EtcdRegistry::new("https://127.0.0.1:2379", DEFAULT_PREFIX) {
        Err(e) => assert!(e.to_string().contains("https is not supported"), "{e}"),
        Ok(_) => panic!("https accepted"),
    }
}
