//! `rpc-demo users add` and `rpc-demo files …` against `rpc-demo serve
//! --files-root DIR --users FILE`, as a person (or a script) uses them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

mod common;

use common::tmux::Tmux;
use common::{BIN, LIMIT, Output, Running, run, serve};

/// `rpc-demo serve` with the Files service over `dir/root`, logging at
/// trace level into `dir/serve.log`; the server and its address.
fn serve_files(dir: &Path) -> (Running, String) {
    std::fs::create_dir_all(dir.join("root")).unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut child = Running(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--files-root"])
            .arg(dir.join("root"))
            .arg("--users")
            .arg(dir.join("users.txt"))
            // The student records too, in the test's folder.
            .arg("--db")
            .arg(dir.join("students.db"))
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start rpc-demo serve"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx.recv_timeout(LIMIT).expect("the server announces itself");
    assert!(
        line.contains("serving Calculator, Greeter, Echo, Chat, Live, Students and Files on"),
        "what is served, in order: {line}"
    );
    let addr = line
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .map(|w| w.trim_end_matches([';', ',']).to_owned())
        .expect("an address");
    (child, addr)
}

fn add_user(dir: &Path, name: &str, password: &str) -> Output {
    let users = dir.join("users.txt");
    run(
        &["users", "add", name, "--users", users.to_str().unwrap()],
        &format!("{password}\n"),
    )
}

/// `rpc-demo files ARGS --server ADDR --session-file dir/session.json`.
fn files(dir: &Path, addr: &str, args: &[&str], input: &str) -> Output {
    let session = dir.join("session.json");
    let mut all: Vec<&str> = vec!["files"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--server",
        addr,
        "--session-file",
        session.to_str().unwrap(),
    ]);
    run(&all, input)
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains("panicked"), "{text}");
    }
}

#[test]
fn users_add_stores_a_salted_hash_from_a_piped_password() {
    let dir = tempfile::tempdir().unwrap();
    ok(&add_user(dir.path(), "ana", "segredo"));
    ok(&add_user(dir.path(), "bia", "segredo"));
    let text = std::fs::read_to_string(dir.path().join("users.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("ana:$argon2id$"), "{text}");
    assert!(lines[1].starts_with("bia:$argon2id$"), "{text}");
    assert!(!text.contains("segredo"));
    // The same password, two salts: two different hashes.
    assert_ne!(lines[0]["ana:".len()..], lines[1]["bia:".len()..]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("users.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = add_user(dir.path(), "ana", "nova");
    ok(&again);
    assert!(again.stdout.contains("changed the password of ana"));

    for (name, password, says) in [
        ("../x", "pw", "not a valid user name"),
        ("carla", "", "no password"),
    ] {
        let out = add_user(dir.path(), name, password);
        assert!(!out.status.success());
        assert!(out.stderr.contains(says), "{}", out.stderr);
    }
    let after = std::fs::read_to_string(dir.path().join("users.txt")).unwrap();
    assert_eq!(after.lines().count(), 2, "nothing was added");
}

#[test]
fn login_ls_put_get_and_rm_work_against_serve_and_keep_the_token_out_of_logs() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(&add_user(dir, "ana", "segredo"));
    let (_server, addr) = serve_files(dir);

    let wrong = files(dir, &addr, &["login", "ana"], "errada\n");
    assert!(!wrong.status.success());
    assert_eq!(
        wrong.stderr.trim(),
        "error: wrong user or password",
        "one line"
    );
    let not_yet = files(dir, &addr, &["ls"], "");
    assert!(
        not_yet.stderr.contains("not logged in"),
        "{}",
        not_yet.stderr
    );

    let login = files(dir, &addr, &["login", "ana"], "segredo\n");
    ok(&login);
    assert!(login.stdout.contains("logged in"), "{}", login.stdout);
    let session = std::fs::read_to_string(dir.join("session.json")).unwrap();
    let token = serde_json::from_str::<serde_json::Value>(&session).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(token.len(), 64);

    let content: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i * 7 + i / 1000) as u8)
        .collect();
    let local = dir.join("notas.bin");
    std::fs::write(&local, &content).unwrap();
    let put = files(dir, &addr, &["put", local.to_str().unwrap()], "");
    ok(&put);
    assert!(
        put.stdout.starts_with("stored notas.bin (3000000 bytes"),
        "{}",
        put.stdout
    );
    assert!(
        std::fs::read(dir.join("root/notas.bin")).unwrap() == content,
        "stored byte for byte"
    );

    let ls = files(dir, &addr, &["ls"], "");
    ok(&ls);
    let digest = rpc_demo::services::files::transfer::digest_of(&content);
    assert!(ls.stdout.contains(&digest), "{}", ls.stdout);
    assert!(ls.stdout.contains("3000000"), "{}", ls.stdout);

    let copy = dir.join("copy.bin");
    let get = files(
        dir,
        &addr,
        &["get", "notas.bin", "--to", copy.to_str().unwrap()],
        "",
    );
    ok(&get);
    assert!(get.stdout.contains(&digest), "{}", get.stdout);
    assert!(std::fs::read(&copy).unwrap() == content);

    // Output to a pipe: no progress bar drawn.
    for out in [&put, &get] {
        assert!(
            !out.stdout.contains('\r') && !out.stdout.contains("=>"),
            "{}",
            out.stdout
        );
        assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    }

    // The edit-and-send-back exercise: refused if the file changed.
    std::fs::write(dir.join("root/notas.bin"), b"changed by someone else").unwrap();
    let stale = files(
        dir,
        &addr,
        &["put", local.to_str().unwrap(), "--if-match", &digest],
        "",
    );
    assert!(!stale.status.success());
    assert!(
        stale.stderr.contains("changed since you read it"),
        "{}",
        stale.stderr
    );
    assert_eq!(
        std::fs::read(dir.join("root/notas.bin")).unwrap(),
        b"changed by someone else"
    );

    let traversal = files(dir, &addr, &["get", "../users.txt"], "");
    assert!(!traversal.status.success());
    assert!(
        traversal.stderr.contains("refused path"),
        "{}",
        traversal.stderr
    );

    ok(&files(dir, &addr, &["rm", "notas.bin"], ""));
    assert!(!dir.join("root/notas.bin").exists());
    let gone = files(dir, &addr, &["rm", "notas.bin"], "");
    assert!(gone.stderr.contains("does not exist"), "{}", gone.stderr);

    ok(&files(dir, &addr, &["logout"], ""));
    assert!(!dir.join("session.json").exists());

    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("logged in"), "the log is written: {log}");
    assert!(
        log.contains("peer=127.0.0.1") && !log.contains("peer=Some("),
        "the caller's address, for people: {log}"
    );
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "at trace level"
    );
    assert!(!log.contains(&token), "the token is not logged");
    assert!(!log.contains("segredo"), "nor the password");
}

#[test]
fn get_resumes_from_the_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(&add_user(dir, "ana", "segredo"));
    let (_server, addr) = serve_files(dir);
    ok(&files(dir, &addr, &["login", "ana"], "segredo\n"));
    let content: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("root/big.bin"), &content).unwrap();
    let to = dir.join("big.bin");
    std::fs::write(dir.join("big.bin.part"), &content[..1_234_567]).unwrap();
    let get = files(
        dir,
        &addr,
        &["get", "big.bin", "--to", to.to_str().unwrap()],
        "",
    );
    ok(&get);
    assert!(
        get.stdout.contains("resumed from byte 1234567"),
        "{}",
        get.stdout
    );
    assert!(std::fs::read(&to).unwrap() == content);
    assert!(!dir.join("big.bin.part").exists());
}

#[test]
fn serve_without_files_root_does_not_serve_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = serve(&[]);
    let out = files(dir.path(), &addr, &["login", "ana"], "segredo\n");
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("does not serve Files"),
        "{}",
        out.stderr
    );
    let half = run(
        &["serve", "--listen", "127.0.0.1:0", "--files-root", "."],
        "",
    );
    assert!(!half.status.success());
    assert!(half.stderr.contains("--users"), "{}", half.stderr);
}

#[test]
fn at_a_terminal_passwords_are_not_echoed_and_transfers_draw_a_progress_bar() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let users = dir.join("users.txt");
    let tmux = Tmux::new();
    tmux.start(
        "users",
        &format!("{BIN} users add ana --users {}; sleep 60", users.display()),
    );
    tmux.wait_for("users", "Password for ana:");
    tmux.keys("users", &["segredo", "Enter"]);
    tmux.wait_for("users", "Again:");
    tmux.keys("users", &["segredo", "Enter"]);
    tmux.wait_for("users", "added ana");
    assert!(
        !tmux.screen("users").contains("segredo"),
        "{}",
        tmux.screen("users")
    );

    let (_server, addr) = serve_files(dir);
    let session = dir.join("session.json");
    let local = dir.join("big.bin");
    std::fs::write(&local, vec![7u8; 5_000_000]).unwrap();
    tmux.start(
        "files",
        &format!(
            // The terminal says it is narrower than the window: the bar
            // does not fill the row, so what follows it must start a line.
            "stty cols 100 && {BIN} files login ana --server {addr} --session-file {s} && {BIN} files put {l} --server {addr} --session-file {s}; sleep 60",
            s = session.display(),
            l = local.display()
        ),
    );
    tmux.wait_for("files", "Password for ana:");
    tmux.keys("files", &["segredo", "Enter"]);
    tmux.wait_for("files", "stored big.bin");
    let screen = tmux.screen("files");
    assert!(!screen.contains("segredo"), "{screen}");
    assert!(
        screen.contains("[==============================] 4.77 MiB/4.77 MiB"),
        "the bar, full: {screen}"
    );
    assert!(
        screen.contains("/s, 0s left"),
        "the rate and the time left: {screen}"
    );
    assert!(
        screen
            .lines()
            .any(|line| line.starts_with("stored big.bin")),
        "the last line starts a line of its own: {screen}"
    );

    // A big file gets a bar while it is hashed (here refused after
    // hashing, by `begin`: nothing is at that name to match).
    let bigger = dir.join("bigger.bin");
    std::fs::File::create(&bigger)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    tmux.start(
        "hash",
        &format!(
            "{BIN} files put {l} --session-file {s} --if-match {d}; sleep 60",
            s = session.display(),
            l = bigger.display(),
            d = "0".repeat(64),
        ),
    );
    tmux.wait_for("hash", "changed since you read it");
    let screen = tmux.screen("hash");
    assert!(
        screen.contains("hashing [==============================] 64.00 MiB/64.00 MiB"),
        "the hashing bar, full: {screen}"
    );
}

/// `rpc-demo serve` with Files over `dir/root` and these extra options.
fn serve_files_with(dir: &Path, extra: &[&str]) -> (Running, String) {
    std::fs::create_dir_all(dir.join("root")).unwrap();
    let mut args = vec!["--files-root", dir.join("root").to_str().unwrap()]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    args.extend([
        "--users".to_owned(),
        dir.join("users.txt").display().to_string(),
    ]);
    args.extend([
        "--db".to_owned(),
        dir.join("students.db").display().to_string(),
    ]);
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    serve(&args)
}

/// A sparse file of `size` bytes: reading it all takes minutes.
fn sparse(path: &Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

#[test]
fn put_is_refused_for_size_and_space_before_the_file_is_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(&add_user(dir, "ana", "segredo"));
    let huge = dir.join("huge.bin");
    // 1 TiB: hashing it would take far longer than `run`'s limit.
    sparse(&huge, 1 << 40);
    {
        let (_server, addr) = serve_files_with(dir, &["--files-max-size", "1000000"]);
        ok(&files(dir, &addr, &["login", "ana"], "segredo\n"));
        let put = files(dir, &addr, &["put", huge.to_str().unwrap()], "");
        assert_eq!(put.status.code(), Some(1), "{}", put.stderr);
        assert!(
            put.stderr
                .contains("1099511627776 bytes is over the server's limit of 1000000 bytes"),
            "{}",
            put.stderr
        );
    }
    // Under the limit, but the disk cannot keep 2^62 bytes free.
    let (_server, addr) = serve_files_with(
        dir,
        &[
            "--files-max-size",
            "2199023255552",
            "--files-min-free",
            "4611686018427387904",
        ],
    );
    ok(&files(dir, &addr, &["login", "ana"], "segredo\n"));
    let put = files(dir, &addr, &["put", huge.to_str().unwrap()], "");
    assert_eq!(put.status.code(), Some(1), "{}", put.stderr);
    assert!(
        put.stderr.contains("not enough disk space"),
        "{}",
        put.stderr
    );
    assert_eq!(
        std::fs::read_dir(dir.join("root")).unwrap().count(),
        0,
        "nothing was written"
    );
}

#[test]
fn files_commands_use_the_server_of_the_session_and_take_options_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(&add_user(dir, "ana", "segredo"));
    let (_server, addr) = serve_files(dir);
    let session = dir.join("session.json");
    let session = session.to_str().unwrap();
    // Options before the action.
    ok(&run(
        &[
            "files",
            "--server",
            &addr,
            "--session-file",
            session,
            "login",
            "ana",
        ],
        "segredo\n",
    ));
    std::fs::write(dir.join("root/a.txt"), b"a").unwrap();
    // No --server: the session's.
    let ls = run(&["files", "ls", "--session-file", session], "");
    ok(&ls);
    assert!(ls.stdout.contains("a.txt"), "{}", ls.stdout);
    let before = run(&["files", "--session-file", session, "ls"], "");
    ok(&before);
    assert_eq!(before.stdout, ls.stdout);
    // Another --server than the session's: refused, saying both.
    let other = run(
        &[
            "files",
            "ls",
            "--session-file",
            session,
            "--server",
            "127.0.0.1:9",
        ],
        "",
    );
    assert_eq!(other.status.code(), Some(1));
    assert!(
        other
            .stderr
            .contains(&format!("is for {addr}, not 127.0.0.1:9")),
        "{}",
        other.stderr
    );
    // Not logged in: the hint names the session file given.
    let missing = dir.join("none.json");
    let out = run(
        &["files", "ls", "--session-file", missing.to_str().unwrap()],
        "",
    );
    assert!(
        out.stderr.contains(&format!(
            "run `rpc-demo files login USER --server ADDR --session-file {}`",
            missing.display()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn get_refuses_to_overwrite_a_local_file_unless_forced_and_saves_into_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(&add_user(dir, "ana", "segredo"));
    let (_server, addr) = serve_files(dir);
    ok(&files(dir, &addr, &["login", "ana"], "segredo\n"));
    std::fs::create_dir(dir.join("root/sub")).unwrap();
    std::fs::write(dir.join("root/sub/notes.txt"), b"server's").unwrap();

    let mine = dir.join("mine.txt");
    std::fs::write(&mine, b"my edits").unwrap();
    let refused = files(
        dir,
        &addr,
        &["get", "sub/notes.txt", "--to", mine.to_str().unwrap()],
        "",
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        refused.stderr.contains("already exists") && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read(&mine).unwrap(), b"my edits", "kept");
    ok(&files(
        dir,
        &addr,
        &[
            "get",
            "sub/notes.txt",
            "--to",
            mine.to_str().unwrap(),
            "--force",
        ],
        "",
    ));
    assert_eq!(std::fs::read(&mine).unwrap(), b"server's");
    // The same bytes already there: nothing to lose, nothing to download.
    let same = files(
        dir,
        &addr,
        &["get", "sub/notes.txt", "--to", mine.to_str().unwrap()],
        "",
    );
    ok(&same);
    assert!(
        same.stdout.contains("already holds sub/notes.txt"),
        "{}",
        same.stdout
    );

    let folder = dir.join("downloads");
    std::fs::create_dir(&folder).unwrap();
    let into = files(
        dir,
        &addr,
        &["get", "sub/notes.txt", "--to", folder.to_str().unwrap()],
        "",
    );
    ok(&into);
    assert_eq!(
        std::fs::read(folder.join("notes.txt")).unwrap(),
        b"server's"
    );

    let nowhere = dir.join("no/such/dir/x");
    let out = files(
        dir,
        &addr,
        &["get", "sub/notes.txt", "--to", nowhere.to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains(&format!("--to {}", nowhere.display()))
            && !out.stderr.contains(".part"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_get_resumed_over_a_shorter_server_file_says_it_started_over() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(&add_user(dir, "ana", "segredo"));
    let (_server, addr) = serve_files(dir);
    ok(&files(dir, &addr, &["login", "ana"], "segredo\n"));
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
    std::fs::write(dir.join("root/f.bin"), &content).unwrap();
    let to = dir.join("f.bin");
    std::fs::write(dir.join("f.bin.part"), vec![1u8; 300_000]).unwrap();
    let get = files(
        dir,
        &addr,
        &["get", "f.bin", "--to", to.to_str().unwrap()],
        "",
    );
    ok(&get);
    assert!(
        get.stdout.contains("changed on the server") && get.stdout.contains("from the start"),
        "{}",
        get.stdout
    );
    assert!(!get.stdout.contains("resumed"), "{}", get.stdout);
    assert!(std::fs::read(&to).unwrap() == content);
}

#[test]
fn ls_of_an_empty_folder_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(&add_user(dir, "ana", "segredo"));
    let (_server, addr) = serve_files(dir);
    ok(&files(dir, &addr, &["login", "ana"], "segredo\n"));
    let ls = files(dir, &addr, &["ls"], "");
    ok(&ls);
    assert_eq!(ls.stdout.trim(), "the served folder is empty");
    std::fs::create_dir(dir.join("root/sub")).unwrap();
    let ls = files(dir, &addr, &["ls", "sub"], "");
    ok(&ls);
    assert_eq!(ls.stdout.trim(), "folder sub is empty");
}
