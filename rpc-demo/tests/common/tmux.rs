//! Programs in pseudo-terminals: a private tmux server per test, to type
//! into them and read their screens. Needs `tmux` (`.ci/run` installs it).

use std::process::Command;
use std::time::{Duration, Instant};

use super::LIMIT;

/// A tmux server of the test's own (its own socket), killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("rpc-demo-test-{}-{n}", std::process::id());
        Self { socket }
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("could not run tmux ({e}); this test runs rpc-demo in pseudo-terminals, install tmux to run it")
            });
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `command` in a new window named `name`, 160 columns wide.
    pub fn start(&self, name: &str, command: &str) {
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
    pub fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// What window `name` shows.
    pub fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", name])
    }

    /// Waits until window `name` shows `text`. tmux offers no event for a
    /// change on screen, so the screen is read every 20 ms, within the
    /// test's limit.
    pub fn wait_for(&self, name: &str, text: &str) {
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

impl Default for Tmux {
    fn default() -> Self {
        Self::new()
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
