//! Discovery with the binder: servers register and keep their leases, a
//! discovering client spreads calls over them and fails over when one
//! dies, expired leases vanish within the sweep, a restarted binder is
//! repopulated by the next heartbeats, a leaving server deregisters first,
//! and a connection that dies silently is found by its pings.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::within;
use futures_util::StreamExt;
use rpc_core::discovery::binder::{Binder, BinderRegistry, BinderServer, Directory};
use rpc_core::discovery::{Registry, StaticRegistry};
use rpc_core::{Balance, Client, Keepalive, RpcError, Server, ServerHandle};

/// Which server answered.
#[rpc_core::service]
trait Whoami {
    /// This server's number.
    #[rpc(idempotent)]
    async fn id(&self) -> u32;
    /// Waits `ms`, then answers.
    async fn slow(&self, ms: u64) -> u32;
}

#[derive(Clone)]
struct Me(u32);

impl Whoami for Me {
    async fn id(&self) -> u32 {
        self.0
    }

    async fn slow(&self, ms: u64) -> u32 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.0
    }
}

async fn binder() -> ServerHandle {
    Server::builder()
        .service(BinderServer::new(Directory::new()))
        .bind("127.0.0.1:0")
        .await
        .expect("the binder binds")
}

async fn registry(binder: SocketAddr) -> Arc<dyn Registry> {
    Arc::new(
        within("the registry", BinderRegistry::connect(&binder.to_string()))
            .await
            .unwrap(),
    )
}

/// A server on a runtime of its own, so that killing it (dropping that
/// runtime) closes its sockets at once, with no goodbye: what a crash does.
struct Killable {
    addr: SocketAddr,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Killable {
    fn start(id: u32, binder: SocketAddr, ttl: Duration) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _server = runtime.block_on(async {
                let registry = registry(binder).await;
                let server = Server::builder()
                    .service(WhoamiServer::new(Me(id)))
                    .register(registry)
                    .registration_ttl(ttl)
                    .bind("127.0.0.1:0")
                    .await
                    .unwrap();
                addr_tx.send(server.local_addr()).unwrap();
                server
            });
            // Serves (on this thread) until told to die.
            runtime.block_on(async {
                let _ = tokio::task::spawn_blocking(move || killed.recv()).await;
            });
            // Dropping the runtime drops every task and socket at once.
        });
        let addr = addr_rx
            .recv_timeout(common::LIMIT)
            .expect("the server starts");
        Self {
            addr,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        drop(self.kill.take());
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the server thread ends");
        }
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until the binder lists `n` instances of `name`.
async fn registered(binder: &Arc<dyn Registry>, name: &str, n: usize) {
    let mut sets = binder
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_every_instance_and_survive_one_killed() {
    let binder = binder().await;
    let mut servers: Vec<Killable> = (0..3)
        .map(|id| Killable::start(id, binder.local_addr(), Duration::from_secs(10)))
        .collect();
    let registry = registry(binder.local_addr()).await;
    registered(&registry, "Whoami", 3).await;

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

    // One server dies without a word; every later call still succeeds.
    let client = WhoamiClient::new(
        within(
            "a client",
            Client::builder().discover(registry.clone(), "Whoami"),
        )
        .await
        .unwrap(),
    );
    for _ in 0..9 {
        within("a call", client.id()).await.unwrap();
    }
    servers[1].kill();
    let mut seen = [0u32; 3];
    for _ in 0..60 {
        seen[within("a call after the kill", client.id()).await.unwrap() as usize] += 1;
    }
    assert!(seen[0] > 0 && seen[1] == 0 && seen[2] > 0, "{seen:?}");
    // Its lease is still alive (10 s): the client avoided it by itself.
    let listed = registry.lookup("Whoami").await.unwrap();
    assert!(
        listed
            .iter()
            .any(|i| i.address == servers[1].addr.to_string()),
        "{listed:?}"
    );
    drop(servers);
    binder.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_unrenewed_lease_expires_no_earlier_than_its_ttl_and_within_one_sweep() {
    let sweep = Duration::from_millis(500);
    let directory = Directory::with_sweep(sweep);
    let lease = directory
        .register("Calc".into(), "127.0.0.1:7070".into(), 3000)
        .await
        .unwrap();
    let mut watch = directory.watch("Calc".into()).await;
    assert_eq!(watch.next().await.unwrap().unwrap().len(), 1);
    let registered = tokio::time::Instant::now();

    // Renewed once at 2 s: alive until 5 s.
    tokio::time::advance(Duration::from_secs(2)).await;
    directory.keep_alive(lease.id).await.unwrap();
    tokio::time::advance(Duration::from_millis(2990)).await;
    assert_eq!(
        directory.lookup("Calc".into()).await.len(),
        1,
        "alive before its TTL"
    );
    tokio::time::advance(Duration::from_millis(20)).await;
    assert!(
        directory.lookup("Calc".into()).await.is_empty(),
        "gone from lookups at its TTL"
    );
    // Watchers learn it within one sweep.
    let emptied = watch.next().await.unwrap().unwrap();
    assert!(emptied.is_empty());
    let after = registered.elapsed();
    assert!(
        after >= Duration::from_secs(5) && after <= Duration::from_secs(5) + sweep,
        "removed after {after:?}"
    );
    // Too late to renew: register again.
    assert!(directory.keep_alive(lease.id).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_binder_is_repopulated_by_the_next_heartbeats() {
    let first = binder().await;
    let addr = first.local_addr();
    let registry = registry(addr).await;
    let server = Server::builder()
        .service(WhoamiServer::new(Me(7)))
        .register(registry.clone())
        .registration_ttl(Duration::from_millis(600))
        .leave_delay(Duration::ZERO)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    registered(&registry, "Whoami", 1).await;

    first.shutdown().await;
    // A new, empty binder on the same port.
    let second = within("the binder to restart", async {
        loop {
            match Server::builder()
                .service(BinderServer::new(Directory::new()))
                .bind(addr)
                .await
            {
                Ok(binder) => return binder,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    let fresh = self::registry(addr).await;
    registered(&fresh, "Whoami", 1).await;
    assert_eq!(
        fresh.lookup("Whoami").await.unwrap()[0].address,
        server.local_addr().to_string()
    );
    server.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_server_deregisters_then_serves_with_health_503_then_stops() {
    let binder = binder().await;
    let registry = registry(binder.local_addr()).await;
    let server = Server::builder()
        .service(WhoamiServer::new(Me(1)))
        .register(registry.clone())
        .leave_delay(Duration::from_secs(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    registered(&registry, "Whoami", 1).await;
    assert!(health(addr).await.starts_with("HTTP/1.1 200"));
    let direct = WhoamiClient::new(Client::connect(addr).await.unwrap());

    let mut sets = registry
        .clone()
        .watch("Whoami", Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(sets.next().await.unwrap().unwrap().len(), 1);
    let leaving = tokio::spawn(server.shutdown());
    // Phase 1: gone from the registry...
    let set = within("the deregistration", sets.next())
        .await
        .unwrap()
        .unwrap();
    assert!(set.is_empty());
    // ...phase 2: still serving, and saying it is leaving.
    assert!(!leaving.is_finished());
    assert_eq!(
        within("a call while leaving", direct.id()).await.unwrap(),
        1
    );
    let answer = health(addr).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after"),
        "{answer}"
    );
    // Phases 3 and 4: stopped.
    within("the shutdown", leaving).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    binder.shutdown().await;
}

/// `GET /health` on `addr`: the whole response.
async fn health(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = common::connect(addr).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    within("the health answer", stream.read_to_string(&mut answer))
        .await
        .unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_connection_is_found_by_its_pings_before_the_deadline() {
    let server = Server::builder()
        .service(WhoamiServer::new(Me(3)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let relay = Relay::start(server.local_addr()).await;
    let keepalive = Keepalive {
        interval: Duration::from_millis(100),
        misses: 2,
    };
    let client = WhoamiClient::new(
        Client::builder()
            .keepalive(Some(keepalive))
            .timeout(Duration::from_secs(60))
            .connect(relay.addr)
            .await
            .unwrap(),
    );
    assert_eq!(client.id().await.unwrap(), 3);
    // The link goes silent, no FIN, no RST: a cable pulled.
    relay.freeze();
    let started = std::time::Instant::now();
    match within("the call on a dead link", client.slow(10)).await {
        Err(RpcError::Closed(why)) => assert!(why.to_string().contains("dead"), "{why}"),
        other => panic!("expected the connection declared dead, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

/// A TCP relay that can stop passing bytes while keeping both sockets open.
struct Relay {
    addr: SocketAddr,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = frozen.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let (a_read, a_write) = inbound.into_split();
                let (b_read, b_write) = outbound.into_split();
                tokio::spawn(pass(a_read, b_write, flag.clone()));
                tokio::spawn(pass(b_read, a_write, flag.clone()));
            }
        });
        Self { addr, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until frozen; then keeps both open and silent.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(std::sync::atomic::Ordering::SeqCst) {
            // Swallow everything from now on, holding the sockets.
            let _keep = to;
            while from.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_nobody_registered_is_a_clear_error_and_a_static_list_works() {
    let binder = binder().await;
    let registry = registry(binder.local_addr()).await;
    match Client::builder()
        .timeout(Duration::from_millis(300))
        .discover(registry, "Nobody")
        .await
    {
        Err(e) => assert!(
            e.to_string().contains("no live instance of `Nobody`"),
            "{e}"
        ),
        Ok(_) => panic!("a client for a name with no instance"),
    }
    let server = Server::builder()
        .service(WhoamiServer::new(Me(5)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let fixed: Arc<dyn Registry> = Arc::new(StaticRegistry::new(
        "Whoami",
        [server.local_addr().to_string()],
    ));
    let client = WhoamiClient::discover(fixed, "Whoami").await.unwrap();
    assert_eq!(client.id().await.unwrap(), 5);
    server.shutdown().await;
    binder.shutdown().await;
}

/// An address where connecting hangs: a listener whose accept queue is
/// full (it never accepts), so the kernel drops every new SYN, as a host
/// whose link was cut does. The listener and the queued connections.
async fn black_hole() -> (
    SocketAddr,
    tokio::net::TcpListener,
    Vec<std::net::TcpStream>,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => queued.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("filling the accept queue: {e}"),
        }
        assert!(queued.len() < 64, "the accept queue never fills");
    }
    (addr, listener, queued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_cannot_be_dialled_is_left_for_another_by_the_ping_rule() {
    let server = Server::builder()
        .service(WhoamiServer::new(Me(7)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let (hole, _listener, _queued) = black_hole().await;
    // The dead instance first: round robin dials it first.
    let fixed: Arc<dyn Registry> = Arc::new(StaticRegistry::new(
        "Whoami",
        [hole.to_string(), server.local_addr().to_string()],
    ));
    let keepalive = Keepalive {
        interval: Duration::from_millis(100),
        misses: 2,
    };
    let started = std::time::Instant::now();
    let client = WhoamiClient::new(
        within(
            "a discovering client",
            Client::builder()
                .balance(Balance::RoundRobin)
                .keepalive(Some(keepalive))
                .timeout(Duration::from_secs(20))
                .discover(fixed, "Whoami"),
        )
        .await
        .unwrap(),
    );
    for _ in 0..4 {
        assert_eq!(within("a call", client.id()).await.unwrap(), 7);
    }
    // Each dial of the dead instance gave up after the keepalive's
    // silence (300 ms), not the 20 s call timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}
