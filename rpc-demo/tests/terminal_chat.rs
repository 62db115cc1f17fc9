//! `rpc-demo chat` as people use it: two terminals (pseudo-terminals of a
//! private tmux server) chat through `rpc-demo serve`, one of them while
//! typing, and the other leaves with `fim`.
//!
//! Needs `tmux` (`.ci/run` installs it); without it the test fails and
//! says so.

mod common;

use std::process::Command;

use common::tmux::Tmux;
use common::{BIN, serve};

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
