//! `rpc-demo chat` as people use it: two terminals (pseudo-terminals of a
//! private tmux server) chat through `rpc-demo serve`, one of them while
//! typing, and the other leaves with `fim`.
//!
//! Needs `tmux` (`.ci/run` installs it); without it the test fails and
//! says so.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, LIMIT, serve};

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("rpc-demo-chat-{}-{n}", std::process::id());
        Self { socket }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("could not run tmux ({e}); this test runs the chat in pseudo-terminals, install tmux to run it")
            });
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `command` in a new window named `name`, 160 columns wide.
    fn start(&self, name: &str, command: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "160",
            "-y",
            "40",
            command,
        ]);
    }

    /// Types `keys` (tmux key names, such as `Enter`) into window `name`.
    fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// What window `name` shows.
    fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", name])
    }

    /// Waits until window `name` shows `text`. tmux offers no event for a
    /// change on screen, so the screen is read every 20 ms, within the
    /// test's limit.
    fn wait_for(&self, name: &str, text: &str) {
        let started = Instant::now();
        loop {
            let screen = self.screen(name);
            if screen.contains(text) {
                return;
            }
            assert!(
                started.elapsed() < LIMIT,
                "window {name} never showed {text:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

#[test]
fn two_terminals_chat_while_typing_and_one_leaves_with_fim() {
    let (_server, addr) = serve(&[]);
    let tmux = Tmux::new();
    for nick in ["ana", "bia"] {
        tmux.start(
            nick,
            &format!("{BIN} chat --nick {nick} --room lab --server {addr}"),
        );
        tmux.wait_for(nick, &format!("In room lab as {nick}"));
    }
    tmux.wait_for("ana", "* bia joined");

    tmux.keys("ana", &["olá, bia", "Enter"]);
    tmux.wait_for("bia", "ana: olá, bia");

    // Bia is halfway through a line when ana's next message arrives: it is
    // printed at once, and bia's line is still hers to finish.
    tmux.keys("bia", &["oi a"]);
    tmux.keys("ana", &["tudo bem?", "Enter"]);
    tmux.wait_for("bia", "ana: tudo bem?");
    tmux.keys("bia", &["na", "Enter"]);
    tmux.wait_for("ana", "bia: oi ana");

    tmux.keys("bia", &["fim", "Enter"]);
    tmux.wait_for("ana", "* bia left");
    // Ana's terminal goes on.
    assert!(
        !tmux.screen("ana").contains("error"),
        "{}",
        tmux.screen("ana")
    );
}

#[test]
fn a_taken_nick_is_refused_in_one_line() {
    let (_server, addr) = serve(&[]);
    let tmux = Tmux::new();
    tmux.start("first", &format!("{BIN} chat --nick ana --server {addr}"));
    tmux.wait_for("first", "In room geral as ana");
    let second = Command::new(BIN)
        .args(["chat", "--nick", "ana", "--server", &addr])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run rpc-demo chat");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("nick is taken"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
