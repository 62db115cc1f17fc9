//! The Files service over TCP: whole files both ways, broken connections,
//! traversal attempts, bad sessions, lockouts, limits and races. Each test
//! starts its own server on a free port of 127.0.0.1, over a temporary
//! folder.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rpc_core::RpcError;
use rpc_demo::services::files::transfer::{self, TransferError, digest_of, partial_path};
use rpc_demo::services::files::{Limits, Users};
use rpc_demo::services::{FileStore, FilesClient, FilesError, FilesServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "ana";
const PASSWORD: &str = "segredo";
const MIB: usize = 1024 * 1024;

/// A Files server over a temporary folder.
struct Served {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// A folder outside the root, for local files and escape targets.
    outside: PathBuf,
    store: FileStore,
    server: rpc_core::ServerHandle,
}

impl Served {
    async fn start(limits: Limits) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let store = FileStore::open(&root, users(), limits).expect("open the store");
        let server = rpc_core::Server::builder()
            .service(FilesServer::new(store.clone()))
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self {
            _dir: dir,
            root,
            outside,
            store,
            server,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A client, logged in: the client and the token.
    async fn login(&self) -> (FilesClient, String) {
        login_at(self.addr()).await
    }

    /// Every name in the root folder, temporary files included.
    fn names(&self) -> Vec<String> {
        names_in(&self.root)
    }
}

fn users() -> Users {
    let mut users = Users::default();
    users.set(USER, PASSWORD).unwrap();
    users.set("bia", "outra-senha").unwrap();
    users
}

async fn login_at(addr: SocketAddr) -> (FilesClient, String) {
    let files = FilesClient::connect(addr).await.expect("connect");
    let session = files
        .login(USER.into(), PASSWORD.into())
        .await
        .expect("login");
    (files, session.token)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `len` bytes that differ with `seed`.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes);
    bytes
}

fn no_progress(_: u64) {}
fn no_progress2(_: u64, _: u64) {}

fn refused<T: std::fmt::Debug>(result: Result<T, RpcError<FilesError>>) -> FilesError {
    match result {
        Err(RpcError::Application(e)) => e,
        other => panic!("expected a FilesError, got {other:?}"),
    }
}

/// A relay between a client and the server that cuts the connection once
/// `cut_after` bytes have gone one way (`upstream`: client to server).
async fn relay(server: SocketAddr, upstream: bool, cut_after: u64) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // One connection only: a client that redials finds nobody.
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        drop(listener);
        let Ok(upstream_socket) = tokio::net::TcpStream::connect(server).await else {
            return;
        };
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = upstream_socket.into_split();
        let (counted_read, counted_write, other_read, other_write): (
            &mut (dyn tokio::io::AsyncRead + Unpin + Send),
            &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
            &mut (dyn tokio::io::AsyncRead + Unpin + Send),
            &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        ) = if upstream {
            (
                &mut client_read,
                &mut server_write,
                &mut server_read,
                &mut client_write,
            )
        } else {
            (
                &mut server_read,
                &mut client_write,
                &mut client_read,
                &mut server_write,
            )
        };
        let counted = async {
            let mut passed = 0u64;
            let mut buf = vec![0; 64 * 1024];
            loop {
                let room = (cut_after - passed).min(buf.len() as u64) as usize;
                if room == 0 {
                    return;
                }
                match counted_read.read(&mut buf[..room]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if counted_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        passed += n as u64;
                    }
                }
            }
        };
        let other = tokio::io::copy(other_read, other_write);
        // Whichever ends first ends both: the sockets drop, the
        // connection is cut on both sides.
        tokio::select! {
            () = counted => {}
            _ = other => {}
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_file_round_trips_byte_for_byte_both_ways() {
    let served = Served::start(Limits {
        min_free_space: 0,
        ..Limits::default()
    })
    .await;
    let (files, token) = served.login().await;
    let content = random_bytes(100 * MIB, 1);
    let local = served.outside.join("big.bin");
    std::fs::write(&local, &content).unwrap();

    let started = Instant::now();
    let up = transfer::upload(&files, &token, &local, "big.bin", None, 0, &no_progress)
        .await
        .expect("upload");
    let upload_time = started.elapsed();
    assert_eq!(up.entry.size, content.len() as u64);
    assert_eq!(
        up.entry.sha256.as_deref(),
        Some(digest_of(&content).as_str())
    );
    assert_eq!(up.resumed_from, 0);
    assert!(std::fs::read(served.root.join("big.bin")).unwrap() == content);
    assert_eq!(served.names(), ["big.bin"], "no temporary file is left");

    let started = Instant::now();
    let copy = served.outside.join("copy.bin");
    let down = transfer::download(&files, &token, "big.bin", &copy, 0, &no_progress2)
        .await
        .expect("download");
    let download_time = started.elapsed();
    assert_eq!(down.sha256, digest_of(&content));
    assert!(std::fs::read(&copy).unwrap() == content);
    assert!(!partial_path(&copy).exists());
    eprintln!("100 MiB: upload {upload_time:?}, download {download_time:?}");
}

#[tokio::test]
async fn a_cut_in_the_middle_of_an_upload_leaves_the_old_file_and_resumes() {
    let served = Served::start(Limits::default()).await;
    let old = b"the old notes, intact".to_vec();
    std::fs::write(served.root.join("notes.bin"), &old).unwrap();
    let (_, token) = served.login().await;
    let new = random_bytes(8 * MIB, 2);
    let local = served.outside.join("notes.bin");
    std::fs::write(&local, &new).unwrap();

    // Cut after about 3 MB have gone up: two chunks arrive, the third is
    // cut in the middle.
    let through = FilesClient::connect(relay(served.addr(), true, 3_000_000).await)
        .await
        .unwrap();
    let cut = transfer::upload(&through, &token, &local, "notes.bin", None, 0, &no_progress).await;
    assert!(
        matches!(cut, Err(TransferError::Rpc(RpcError::Closed(_)))),
        "{cut:?}"
    );
    assert_eq!(std::fs::read(served.root.join("notes.bin")).unwrap(), old);
    assert_eq!(
        served.store.uploads().len(),
        1,
        "the upload waits to resume"
    );

    let (files, _) = served.login().await;
    let resumed = transfer::upload(&files, &token, &local, "notes.bin", None, 0, &no_progress)
        .await
        .expect("resume");
    assert_eq!(resumed.resumed_from, 2 * MIB as u64, "what arrived is kept");
    assert_eq!(resumed.entry.sha256, Some(digest_of(&new)));
    assert!(std::fs::read(served.root.join("notes.bin")).unwrap() == new);
    assert_eq!(served.names(), ["notes.bin"]);
    assert!(served.store.uploads().is_empty());
}

#[tokio::test]
async fn a_resumed_download_is_byte_identical() {
    let served = Served::start(Limits::default()).await;
    let content = random_bytes(6 * MIB + 12345, 3);
    std::fs::write(served.root.join("data.bin"), &content).unwrap();
    let (_, token) = served.login().await;
    let to = served.outside.join("data.bin");

    let through = FilesClient::connect(relay(served.addr(), false, 2_500_000).await)
        .await
        .unwrap();
    let cut = transfer::download(&through, &token, "data.bin", &to, 0, &no_progress2).await;
    assert!(
        matches!(cut, Err(TransferError::Rpc(RpcError::Closed(_)))),
        "{cut:?}"
    );
    assert!(!to.exists(), "nothing at the destination until it is whole");
    let partial = std::fs::read(partial_path(&to)).unwrap();
    assert!(!partial.is_empty() && partial.len() < content.len());
    assert_eq!(partial[..], content[..partial.len()]);

    let (files, _) = served.login().await;
    let resumed = transfer::download(&files, &token, "data.bin", &to, 0, &no_progress2)
        .await
        .expect("resume");
    assert_eq!(resumed.resumed_from, partial.len() as u64);
    assert_eq!(resumed.sha256, digest_of(&content));
    assert!(std::fs::read(&to).unwrap() == content);
    assert!(!partial_path(&to).exists());
}

#[tokio::test]
async fn a_partial_file_of_another_version_is_replaced_by_the_whole_file() {
    let served = Served::start(Limits::default()).await;
    let content = random_bytes(300_000, 4);
    std::fs::write(served.root.join("v.bin"), &content).unwrap();
    let (files, token) = served.login().await;
    let to = served.outside.join("v.bin");
    // A partial file whose bytes are not the server's, and one longer
    // than the server's file: both end as the server's file.
    for stale in [random_bytes(1000, 5), random_bytes(400_000, 6)] {
        std::fs::write(partial_path(&to), &stale).unwrap();
        let got = transfer::download(&files, &token, "v.bin", &to, 0, &no_progress2)
            .await
            .expect("download");
        assert_eq!(got.sha256, digest_of(&content));
        assert!(std::fs::read(&to).unwrap() == content);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn every_traversal_attempt_is_refused_and_touches_nothing() {
    let served = Served::start(Limits::default()).await;
    std::fs::write(served.outside.join("secret.txt"), b"secret").unwrap();
    std::fs::write(served.root.join("mine.txt"), b"mine").unwrap();
    std::os::unix::fs::symlink(&served.outside, served.root.join("escape")).unwrap();
    std::os::unix::fs::symlink(
        served.outside.join("secret.txt"),
        served.root.join("secret-link"),
    )
    .unwrap();
    let (files, token) = served.login().await;
    let digest = digest_of(b"x");
    let outside_before = names_in(&served.outside);

    let bad = [
        "../outside/secret.txt",
        "a/../../outside/secret.txt",
        "/etc/passwd",
        "escape/secret.txt",
        "escape/new.txt",
        "secret-link",
        "mine\0.txt",
        ".upload-0123",
    ];
    for name in bad {
        let attempts = [
            files
                .begin(token.clone(), name.into(), 1, digest.clone(), None)
                .await
                .map(drop),
            files.delete(token.clone(), name.into()).await,
            files
                .rename(token.clone(), "mine.txt".into(), name.into())
                .await,
            files
                .rename(token.clone(), name.into(), "moved.txt".into())
                .await,
            files
                .download(token.clone(), name.into(), 0)
                .await
                .map(drop),
        ];
        for attempt in attempts {
            assert!(
                matches!(refused(attempt), FilesError::BadPath { .. }),
                "{name:?}"
            );
        }
    }
    for dir in ["..", "escape", "/tmp", "escape/.."] {
        assert!(
            matches!(
                refused(files.list(token.clone(), dir.into()).await),
                FilesError::BadPath { .. }
            ),
            "{dir:?}"
        );
    }
    // The listing does not show the link that leads out.
    let listed: Vec<String> = files
        .list(token.clone(), "".into())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(listed, ["mine.txt"]);
    assert_eq!(names_in(&served.outside), outside_before);
    assert_eq!(
        std::fs::read(served.outside.join("secret.txt")).unwrap(),
        b"secret"
    );
    assert_eq!(served.names(), ["escape", "mine.txt", "secret-link"]);
    assert!(served.store.uploads().is_empty());
}

#[tokio::test]
async fn a_wrong_password_or_a_missing_or_unknown_token_gets_a_typed_error_and_touches_nothing() {
    let served = Served::start(Limits::default()).await;
    std::fs::write(served.root.join("keep.txt"), b"keep").unwrap();
    let files = FilesClient::connect(served.addr()).await.unwrap();
    assert_eq!(
        refused(files.login(USER.into(), "wrong".into()).await),
        FilesError::BadCredentials
    );
    assert_eq!(
        refused(files.login("nobody".into(), PASSWORD.into()).await),
        FilesError::BadCredentials
    );
    for (token, error) in [
        ("", FilesError::NoSession),
        ("0123456789abcdef", FilesError::UnknownSession),
    ] {
        let token = token.to_owned();
        let digest = digest_of(b"x");
        let results = [
            files.list(token.clone(), "".into()).await.map(drop),
            files
                .begin(token.clone(), "new.txt".into(), 1, digest, None)
                .await
                .map(drop),
            files.delete(token.clone(), "keep.txt".into()).await,
            files
                .rename(token.clone(), "keep.txt".into(), "gone.txt".into())
                .await,
            files
                .download(token.clone(), "keep.txt".into(), 0)
                .await
                .map(drop),
            files
                .put(token.clone(), "id".into(), 0, "eA==".into(), 0)
                .await
                .map(drop),
            files.commit(token.clone(), "id".into()).await.map(drop),
        ];
        for result in results {
            assert_eq!(refused(result), error);
        }
    }
    // A call without the token at all is refused by the parameters check.
    match files
        .inner()
        .call::<_, serde_json::Value>("files.list", &serde_json::json!({}))
        .await
    {
        Err(RpcError::Server(e)) => assert_eq!(e.code, rpc_core::code::INVALID_PARAMS),
        other => panic!("{other:?}"),
    }
    // Logging out ends the session.
    let (files, token) = served.login().await;
    files.logout(token.clone()).await.unwrap();
    assert_eq!(
        refused(files.list(token, "".into()).await),
        FilesError::UnknownSession
    );
    assert_eq!(served.names(), ["keep.txt"]);
    assert_eq!(
        std::fs::read(served.root.join("keep.txt")).unwrap(),
        b"keep"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_gets_a_typed_error_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), b"keep").unwrap();
    let limits = Limits {
        session_ttl: Duration::from_secs(60),
        ..Limits::default()
    };
    let store = FileStore::open(dir.path(), users(), limits).unwrap();
    let session = store.login_from(None, USER, PASSWORD.into()).await.unwrap();
    assert_eq!(session.expires_in_ms, 60_000);
    assert!(store.logins().user(&session.token).is_ok());
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(store.logins().user(&session.token).is_ok());
    tokio::time::advance(Duration::from_secs(1)).await;
    use rpc_demo::services::Files as _;
    let token = session.token.clone();
    assert_eq!(
        store.delete(token.clone(), "keep.txt".into()).await,
        Err(FilesError::SessionExpired)
    );
    assert_eq!(
        store
            .begin(token.clone(), "new.txt".into(), 1, digest_of(b"x"), None)
            .await,
        Err(FilesError::SessionExpired)
    );
    assert_eq!(
        store
            .rename(token.clone(), "keep.txt".into(), "b.txt".into())
            .await,
        Err(FilesError::SessionExpired)
    );
    assert_eq!(names_in(dir.path()), ["keep.txt"]);
    store.sweep();
    assert_eq!(store.logins().sessions(), 0, "the sweep drops it");
}

#[tokio::test(start_paused = true)]
async fn five_wrong_passwords_lock_the_user_and_the_peer_out_until_the_cool_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), users(), Limits::default()).unwrap();
    let peer = |n| Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)));

    // Per user: five wrong passwords from five addresses lock ana out,
    // even with the right password and from a new address.
    for n in 1..=5 {
        assert_eq!(
            store.login_from(peer(n), USER, "wrong".into()).await,
            Err(FilesError::BadCredentials)
        );
    }
    assert_eq!(
        store.login_from(peer(9), USER, PASSWORD.into()).await,
        Err(FilesError::LockedOut {
            retry_after_secs: 60
        })
    );
    // Other users are not affected.
    assert!(
        store
            .login_from(peer(9), "bia", "outra-senha".into())
            .await
            .is_ok()
    );
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        store.login_from(peer(9), USER, PASSWORD.into()).await,
        Err(FilesError::LockedOut {
            retry_after_secs: 1
        })
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(
        store
            .login_from(peer(9), USER, PASSWORD.into())
            .await
            .is_ok()
    );

    // Per peer: five failures from one address, over several names (known
    // or not), lock that address out for every user, not the others.
    for name in ["bia", "nobody", "x", "y", "z"] {
        assert_eq!(
            store.login_from(peer(7), name, "wrong".into()).await,
            Err(FilesError::BadCredentials)
        );
    }
    assert!(matches!(
        store.login_from(peer(7), USER, PASSWORD.into()).await,
        Err(FilesError::LockedOut { .. })
    ));
    assert!(
        store
            .login_from(peer(8), USER, PASSWORD.into())
            .await
            .is_ok()
    );

    // In a row: a right password forgives the failures before it (bia
    // has one from above).
    assert!(
        store
            .login_from(peer(3), "bia", "outra-senha".into())
            .await
            .is_ok()
    );
    for _ in 0..4 {
        assert!(
            store
                .login_from(peer(3), "bia", "wrong".into())
                .await
                .is_err()
        );
    }
    assert!(
        store
            .login_from(peer(3), "bia", "outra-senha".into())
            .await
            .is_ok()
    );
    for _ in 0..4 {
        assert_eq!(
            store.login_from(peer(3), "bia", "wrong".into()).await,
            Err(FilesError::BadCredentials)
        );
    }
    assert!(
        store
            .login_from(peer(3), "bia", "outra-senha".into())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_peer_is_locked_out_over_tcp_by_its_address() {
    let served = Served::start(Limits::default()).await;
    let files = FilesClient::connect(served.addr()).await.unwrap();
    // Unknown names are counted against the peer only: the lockout that
    // follows comes from the peer's address, which the handler learns
    // from the connection.
    for n in 0..5 {
        assert_eq!(
            refused(files.login(format!("guess{n}"), "x".into()).await),
            FilesError::BadCredentials
        );
    }
    let again = FilesClient::connect(served.addr()).await.unwrap();
    assert!(matches!(
        refused(again.login(USER.into(), PASSWORD.into()).await),
        FilesError::LockedOut { .. }
    ));
}

#[tokio::test]
async fn two_uploaders_of_one_name_end_with_one_whole_file() {
    let served = Served::start(Limits::default()).await;
    let a = random_bytes(5 * MIB + 1, 10);
    let b = random_bytes(4 * MIB + 7, 11);
    let (path_a, path_b) = (served.outside.join("a"), served.outside.join("b"));
    std::fs::write(&path_a, &a).unwrap();
    std::fs::write(&path_b, &b).unwrap();
    for round in 0..3 {
        let (one, token_one) = served.login().await;
        let (two, token_two) = served.login().await;
        let (first, second) = tokio::join!(
            transfer::upload(&one, &token_one, &path_a, "same.bin", None, 0, &no_progress),
            transfer::upload(&two, &token_two, &path_b, "same.bin", None, 0, &no_progress),
        );
        first.expect("the first upload");
        second.expect("the second upload");
        let stored = std::fs::read(served.root.join("same.bin")).unwrap();
        assert!(
            stored == a || stored == b,
            "round {round}: a mix of {} bytes",
            stored.len()
        );
        assert_eq!(served.names(), ["same.bin"]);
    }
}

#[tokio::test]
async fn if_match_refuses_to_overwrite_a_file_that_changed() {
    let served = Served::start(Limits::default()).await;
    std::fs::write(served.root.join("notes.txt"), b"version 1").unwrap();
    let (files, token) = served.login().await;
    let read = digest_of(b"version 1");
    // Someone else changes it after we read it.
    std::fs::write(served.root.join("notes.txt"), b"version 2 (theirs)").unwrap();
    let local = served.outside.join("notes.txt");
    std::fs::write(&local, b"version 2 (mine)").unwrap();
    match transfer::upload(
        &files,
        &token,
        &local,
        "notes.txt",
        Some(&read),
        0,
        &no_progress,
    )
    .await
    {
        Err(TransferError::Refused(FilesError::Changed { current })) => {
            assert_eq!(current, Some(digest_of(b"version 2 (theirs)")));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read(served.root.join("notes.txt")).unwrap(),
        b"version 2 (theirs)"
    );
    // Changed between begin and commit: refused at commit.
    let theirs = digest_of(b"version 2 (theirs)");
    let begun = files
        .begin(
            token.clone(),
            "notes.txt".into(),
            16,
            digest_of(b"version 3 (mine)"),
            Some(theirs.clone()),
        )
        .await
        .unwrap();
    std::fs::write(served.root.join("notes.txt"), b"version 3 (theirs)").unwrap();
    let data = "dmVyc2lvbiAzIChtaW5lKQ==".to_owned();
    files
        .put(
            token.clone(),
            begun.upload_id.clone(),
            0,
            data,
            crc32fast::hash(b"version 3 (mine)"),
        )
        .await
        .unwrap();
    assert!(matches!(
        refused(files.commit(token.clone(), begun.upload_id).await),
        FilesError::Changed { .. }
    ));
    assert_eq!(
        std::fs::read(served.root.join("notes.txt")).unwrap(),
        b"version 3 (theirs)"
    );
    assert_eq!(served.names(), ["notes.txt"], "the upload was discarded");
    // With the right digest it goes through.
    let now = digest_of(b"version 3 (theirs)");
    std::fs::write(&local, b"version 4 (mine)").unwrap();
    transfer::upload(
        &files,
        &token,
        &local,
        "notes.txt",
        Some(&now),
        0,
        &no_progress,
    )
    .await
    .expect("upload");
    assert_eq!(
        std::fs::read(served.root.join("notes.txt")).unwrap(),
        b"version 4 (mine)"
    );
}

#[tokio::test]
async fn size_and_space_limits_refuse_before_any_byte_is_written() {
    let served = Served::start(Limits {
        max_file_size: 1000,
        min_free_space: u64::MAX / 2,
        ..Limits::default()
    })
    .await;
    let (files, token) = served.login().await;
    let digest = digest_of(b"x");
    assert_eq!(
        refused(
            files
                .begin(token.clone(), "big.bin".into(), 1001, digest.clone(), None)
                .await
        ),
        FilesError::TooLarge {
            size: 1001,
            max: 1000
        }
    );
    match refused(
        files
            .begin(token.clone(), "sub/small.bin".into(), 10, digest, None)
            .await,
    ) {
        FilesError::NoSpace { needed, available } => assert!(needed > available),
        other => panic!("{other:?}"),
    }
    assert!(served.names().is_empty(), "not even the folder was made");
    assert!(served.store.uploads().is_empty());
}

#[tokio::test]
async fn damaged_misplaced_or_oversize_chunks_are_refused() {
    let served = Served::start(Limits::default()).await;
    let (files, token) = served.login().await;
    let content = b"hello, files";
    let begun = files
        .begin(
            token.clone(),
            "c.txt".into(),
            content.len() as u64,
            digest_of(content),
            None,
        )
        .await
        .unwrap();
    let id = begun.upload_id.clone();
    let put = |offset: u64, data: String, crc: u32| {
        files.put(token.clone(), id.clone(), offset, data, crc)
    };
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let good = crc32fast::hash(&content[..5]);
    assert!(matches!(
        refused(put(0, b64(&content[..5]), good ^ 1).await),
        FilesError::Damaged { .. }
    ));
    assert_eq!(
        refused(put(0, "not base64!".into(), good).await),
        FilesError::BadData
    );
    assert_eq!(put(0, b64(&content[..5]), good).await.unwrap(), 5);
    assert_eq!(
        refused(put(3, b64(&content[5..]), crc32fast::hash(&content[5..])).await),
        FilesError::WrongOffset {
            got: 3,
            expected: 5
        }
    );
    let big = vec![0u8; 1024 * 1024 + 1];
    assert!(matches!(
        refused(put(5, b64(&big), crc32fast::hash(&big)).await),
        FilesError::ChunkTooLarge { .. }
    ));
    let past = b"far too much data";
    assert_eq!(
        refused(put(5, b64(past), crc32fast::hash(past)).await),
        FilesError::PastSize { size: 12 }
    );
    assert!(matches!(
        refused(files.commit(token.clone(), id.clone()).await),
        FilesError::Incomplete {
            received: 5,
            size: 12
        }
    ));
    // Resuming with begin gives the offset to go on from.
    let again = files
        .begin(
            token.clone(),
            "c.txt".into(),
            content.len() as u64,
            digest_of(content),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        rpc_demo::services::files::Begun {
            upload_id: id.clone(),
            offset: 5
        }
    );
    assert_eq!(
        put(5, b64(&content[5..]), crc32fast::hash(&content[5..]))
            .await
            .unwrap(),
        12
    );
    let entry = files.commit(token.clone(), id.clone()).await.unwrap();
    assert_eq!(entry.name, "c.txt");
    assert_eq!(std::fs::read(served.root.join("c.txt")).unwrap(), content);
    assert_eq!(
        refused(files.commit(token.clone(), id).await),
        FilesError::UnknownUpload
    );
}

#[tokio::test]
async fn a_digest_mismatch_discards_the_upload_and_keeps_the_old_file() {
    let served = Served::start(Limits::default()).await;
    std::fs::write(served.root.join("f.txt"), b"old").unwrap();
    let (files, token) = served.login().await;
    let begun = files
        .begin(token.clone(), "f.txt".into(), 3, digest_of(b"new"), None)
        .await
        .unwrap();
    files
        .put(
            token.clone(),
            begun.upload_id.clone(),
            0,
            "TkVX".into(), // "NEW", not what begin declared
            crc32fast::hash(b"NEW"),
        )
        .await
        .unwrap();
    assert!(matches!(
        refused(files.commit(token.clone(), begun.upload_id).await),
        FilesError::DigestMismatch { .. }
    ));
    assert_eq!(std::fs::read(served.root.join("f.txt")).unwrap(), b"old");
    assert_eq!(served.names(), ["f.txt"]);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_upload_is_cleaned_up_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        abandon_after: Duration::from_secs(600),
        min_free_space: 0,
        ..Limits::default()
    };
    let store = FileStore::open(dir.path(), users(), limits).unwrap();
    use rpc_demo::services::Files as _;
    let token = store
        .login_from(None, USER, PASSWORD.into())
        .await
        .unwrap()
        .token;
    let begun = store
        .begin(
            token.clone(),
            "left.bin".into(),
            10,
            digest_of(b"0123456789"),
            None,
        )
        .await
        .unwrap();
    store
        .put(
            token.clone(),
            begun.upload_id.clone(),
            0,
            "MDEyMw==".into(),
            crc32fast::hash(b"0123"),
        )
        .await
        .unwrap();
    let temporary = names_in(dir.path());
    assert_eq!(temporary.len(), 1);
    assert!(temporary[0].starts_with(".upload-"), "{temporary:?}");

    tokio::time::advance(Duration::from_secs(599)).await;
    assert_eq!(store.sweep(), 0, "not yet");
    assert_eq!(names_in(dir.path()).len(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(store.sweep(), 1);
    assert!(
        names_in(dir.path()).is_empty(),
        "the temporary file is gone"
    );
    assert_eq!(
        store
            .put(
                token.clone(),
                begun.upload_id,
                4,
                "NDU2Nzg5".into(),
                crc32fast::hash(b"456789")
            )
            .await,
        Err(FilesError::UnknownUpload)
    );

    // A restart removes what a previous run left.
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/.upload-feed"), b"partial").unwrap();
    let _again = FileStore::open(dir.path(), users(), limits).unwrap();
    assert!(names_in(&dir.path().join("sub")).is_empty());
}

#[tokio::test]
async fn list_rename_and_delete_work_inside_the_root() {
    let served = Served::start(Limits::default()).await;
    std::fs::create_dir(served.root.join("docs")).unwrap();
    std::fs::write(served.root.join("docs/a.txt"), b"aaa").unwrap();
    std::fs::write(served.root.join("b.txt"), b"b").unwrap();
    let (files, token) = served.login().await;
    let top = files.list(token.clone(), ".".into()).await.unwrap();
    let names: Vec<(&str, u64)> = top.iter().map(|e| (e.name.as_str(), e.size)).collect();
    assert_eq!(names, [("b.txt", 1), ("docs", 0)]);
    assert_eq!(top[0].sha256, Some(digest_of(b"b")));
    assert_eq!(top[1].sha256, None);
    let docs = files.list(token.clone(), "docs/".into()).await.unwrap();
    assert_eq!(docs[0].name, "docs/a.txt");
    assert_eq!(docs[0].sha256, Some(digest_of(b"aaa")));

    assert_eq!(
        refused(
            files
                .rename(token.clone(), "b.txt".into(), "docs/a.txt".into())
                .await
        ),
        FilesError::AlreadyExists {
            name: "docs/a.txt".into()
        }
    );
    files
        .rename(token.clone(), "b.txt".into(), "docs/b.txt".into())
        .await
        .unwrap();
    assert_eq!(std::fs::read(served.root.join("docs/b.txt")).unwrap(), b"b");
    assert!(matches!(
        refused(files.delete(token.clone(), "docs".into()).await),
        FilesError::WrongKind { .. }
    ));
    files
        .delete(token.clone(), "docs/a.txt".into())
        .await
        .unwrap();
    assert_eq!(
        refused(files.delete(token.clone(), "docs/a.txt".into()).await),
        FilesError::NotFound {
            name: "docs/a.txt".into()
        }
    );
    assert_eq!(names_in(&served.root.join("docs")), ["b.txt"]);
    assert!(matches!(
        refused(
            files
                .download(token.clone(), "docs/b.txt".into(), 2)
                .await
                .map(drop)
        ),
        FilesError::OffsetPastEnd { offset: 2, size: 1 }
    ));
}

#[tokio::test]
async fn a_user_has_at_most_16_uploads_in_progress() {
    let served = Served::start(Limits::default()).await;
    let (files, token) = served.login().await;
    let mut ids = Vec::new();
    for n in 0..16 {
        let begun = files
            .begin(token.clone(), format!("f{n}"), 1, digest_of(b"x"), None)
            .await
            .unwrap();
        ids.push(begun.upload_id);
    }
    assert_eq!(
        refused(
            files
                .begin(token.clone(), "f16".into(), 1, digest_of(b"x"), None)
                .await
        ),
        FilesError::TooManyUploads { max: 16 }
    );
    files
        .abort(token.clone(), ids.pop().unwrap())
        .await
        .unwrap();
    files
        .begin(token.clone(), "f16".into(), 1, digest_of(b"x"), None)
        .await
        .expect("room again after an abort");
    assert_eq!(served.names().len(), 16, "16 temporary files, no more");
}

#[tokio::test]
async fn check_upload_gives_the_refusals_of_begin_without_a_digest() {
    let served = Served::start(Limits {
        max_file_size: 1000,
        min_free_space: 0,
        ..Limits::default()
    })
    .await;
    std::fs::create_dir(served.root.join("sub")).unwrap();
    let (files, token) = served.login().await;
    let check = |name: &str, size: u64| files.check_upload(token.clone(), name.into(), size);
    check("a.bin", 1000).await.expect("at the limit");
    check("new/folder/a.bin", 0)
        .await
        .expect("in folders to be made");
    assert_eq!(
        refused(check("a.bin", 1001).await),
        FilesError::TooLarge {
            size: 1001,
            max: 1000
        }
    );
    assert!(matches!(
        refused(check("../a.bin", 1).await),
        FilesError::BadPath { .. }
    ));
    assert_eq!(
        refused(check("sub", 1).await),
        FilesError::WrongKind {
            name: "sub".into(),
            is: rpc_demo::services::files::Kind::Dir
        }
    );
    assert!(matches!(
        refused(
            files
                .check_upload("not-a-token".into(), "a.bin".into(), 1)
                .await
        ),
        FilesError::UnknownSession
    ));

    let full = Served::start(Limits {
        min_free_space: u64::MAX / 2,
        ..Limits::default()
    })
    .await;
    let (files, token) = full.login().await;
    match refused(files.check_upload(token, "a.bin".into(), 10).await) {
        FilesError::NoSpace { needed, available } => assert!(needed > available),
        other => panic!("{other:?}"),
    }
    assert!(served.names().iter().all(|n| n == "sub"), "nothing written");
    assert!(full.names().is_empty(), "nothing written");
}
