//! The demo's pages in a real browser: Debian's `chromium`, headless,
//! driven over the DevTools protocol.
//!
//! - The calculator: it types two numbers, clicks an operation, and reads
//!   what the page shows: the result, or the typed division-by-zero error.
//! - `/live`: posts published from Rust, and lines typed at `rpc-demo
//!   serve`'s terminal (tmux), appear on the page, in order.
//! - `/chat`: the page and `rpc-demo chat` in a terminal (tmux) talk both
//!   ways.
//! - `/rpc.js` streams themselves, from a script in the page: credit holds
//!   the server back and counts UTF-8 bytes exactly, leaving the loop or
//!   an idle timeout unsubscribes, errors carry their code and data.
//!
//! A screenshot per test goes to `target/test-output/browser/`.
//!
//! `.ci/run` installs `chromium` and `tmux`; elsewhere, `apt-get install
//! chromium tmux`. The chat test runs the `rpc-demo` binary next to this
//! test binary (or `$RPC_DEMO_BIN`): `cargo build -p rpc-demo` first when
//! running this test alone.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{LIMIT, TestServer, within};
use futures_util::{SinkExt, StreamExt};
use rpc_demo::services::{ChatClient, Event, LiveClient};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The browser process, killed when the test ends however it ends.
struct Browser {
    child: Child,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group (chromium and its helpers, which would
        // otherwise go on writing into the profile as it is removed).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop (the browser's profile).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One browser at a time: the tests share two cores with everything else,
/// and each step has a bounded time.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts headless chromium and returns it with its DevTools address.
fn start_browser() -> (Browser, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Under the target directory: should chromium's helpers still write as
    // the profile is removed, what is left does not litter /tmp.
    let profile = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "rpc-browser-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::create_dir_all(&profile);
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=800,600",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("chromium starts (apt-get install chromium; .ci/run installs it)");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let browser = Browser {
        child,
        _profile: TempDir(profile),
    };
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromium announces its DevTools address");
    (browser, url)
}

/// A DevTools connection to one page (flattened session).
struct Page {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
    next_id: u64,
}

impl Page {
    async fn open(browser_url: &str, url: &str) -> Page {
        let (socket, _) = within("DevTools", tokio_tungstenite::connect_async(browser_url))
            .await
            .expect("a DevTools connection");
        let mut page = Page {
            socket,
            session: String::new(),
            next_id: 1,
        };
        let target = page
            .command("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = page
            .command(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        page.session = attached["sessionId"].as_str().unwrap().to_owned();
        page.command("Page.enable", json!({})).await;
        page.command("Page.navigate", json!({"url": url})).await;
        page
    }

    /// Sends one command and returns its result.
    async fn command(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        within(
            "a DevTools command",
            self.socket.send(Message::text(message.to_string())),
        )
        .await
        .unwrap();
        loop {
            let Some(Ok(Message::Text(text))) =
                within("a DevTools answer", self.socket.next()).await
            else {
                panic!("the DevTools connection closed")
            };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns
    /// its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits (polling in the page, bounded) until `condition` is true.
    async fn wait_for(&mut self, condition: &str) {
        let expression = format!(
            "new Promise((done, fail) => {{ const start = Date.now(); const t = setInterval(() => {{ \
               if ({condition}) {{ clearInterval(t); done(true); }} \
               else if (Date.now() - start > 10000) {{ clearInterval(t); fail(new Error('timed out: ' + {condition:?})); }} \
             }}, 20); }})"
        );
        self.eval(&expression).await;
    }

    /// Types `text` into the field `id`, as a person would.
    async fn type_into(&mut self, id: &str, text: &str) {
        self.eval(&format!(
            "(() => {{ const e = document.getElementById('{id}'); e.focus(); e.select(); return true; }})()"
        ))
        .await;
        self.command("Input.insertText", json!({"text": text}))
            .await;
    }

    /// The text of every element matching `selector`, in document order.
    async fn texts(&mut self, selector: &str) -> Vec<String> {
        let texts = self
            .eval(&format!(
                "[...document.querySelectorAll({selector:?})].map(e => e.textContent)"
            ))
            .await;
        serde_json::from_value(texts).unwrap()
    }

    /// Saves a screenshot as `name` in `target/test-output/browser/`.
    async fn screenshot(&mut self, name: &str) {
        let shot = self
            .command("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/browser");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &png).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    }

    /// Clicks the element matching `selector` with the mouse, at its centre.
    async fn click(&mut self, selector: &str) {
        let at = self
            .eval(&format!(
                "(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect(); \
                   return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .await;
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.command(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calculator_page_computes_and_shows_the_division_by_zero_error() {
    let _one = ONE_BROWSER.lock().await;
    let fx = TestServer::demo().await;
    let (_browser, devtools) = start_browser();
    let url = format!("http://127.0.0.1:{}/", fx.addr().port());
    let mut page = Page::open(&devtools, &url).await;
    page.wait_for("document.body && document.body.dataset.ready === 'true'")
        .await;

    page.type_into("a", "6").await;
    page.type_into("b", "7").await;
    page.eval("document.getElementById('result').textContent = ''")
        .await;
    page.click("button[data-op=mul]").await;
    page.wait_for("document.getElementById('result').textContent !== ''")
        .await;
    let product = page
        .eval("document.getElementById('result').textContent")
        .await;
    assert_eq!(product, "42", "6 × 7 on the page");

    page.type_into("b", "0").await;
    page.eval("document.getElementById('result').textContent = ''")
        .await;
    page.click("button[data-op=div]").await;
    page.wait_for("document.getElementById('result').textContent !== ''")
        .await;
    let error = page
        .eval("document.getElementById('result').textContent")
        .await;
    let error = error.as_str().unwrap();
    assert!(
        error.contains("1000") && error.contains("division by zero"),
        "the typed error is shown: {error}"
    );
    let class = page
        .eval("document.getElementById('result').className")
        .await;
    assert_eq!(class, "error");

    page.screenshot("calculator.png").await;

    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_each_post_as_it_is_published_in_order() {
    let _one = ONE_BROWSER.lock().await;
    let fx = TestServer::demo().await;
    let (browser, devtools) = start_browser();
    let url = format!("http://127.0.0.1:{}/live", fx.addr().port());
    let mut page = Page::open(&devtools, &url).await;
    // The page marks itself once `live.watch` has answered: from then on,
    // the server has it among the watchers.
    page.wait_for("document.body && document.body.dataset.watching === 'true'")
        .await;

    let live = LiveClient::new(fx.client().await);
    let posts = ["Olá", "Bom dia", "Boa tarde"];
    for post in posts {
        let watchers = within("a post", live.publish(post.into())).await.unwrap();
        assert_eq!(watchers, 1, "the page is the one watcher");
    }
    page.wait_for("document.querySelectorAll('#posts li.post').length >= 3")
        .await;
    assert_eq!(page.texts("#posts li.post .text").await, posts, "in order");
    for time in page.texts("#posts li.post .time").await {
        let digits: Vec<&str> = time.split(':').collect();
        assert!(
            digits.len() == 3 && digits.iter().all(|d| d.len() == 2),
            "each post shows the server's time as HH:MM:SS: {time:?}"
        );
    }
    page.screenshot("live.png").await;

    drop(live);
    drop(browser);
    fx.shutdown().await;
}

/// The `rpc-demo` binary: `$RPC_DEMO_BIN`, else next to this test binary.
fn demo_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RPC_DEMO_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the path of this test binary");
    // target/<profile>/deps/browser-HASH -> target/<profile>/rpc-demo
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("this test binary lives in target/<profile>/deps")
        .join(format!("rpc-demo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: `cargo build -p rpc-demo` (or set RPC_DEMO_BIN)",
        binary.display()
    );
    binary
}

/// A private tmux server (its own socket) whose windows are terminals,
/// killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        Self {
            socket: format!(
                "rpc-browser-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
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

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("could not run tmux ({e}); the chat test runs `rpc-demo chat` in a pseudo-terminal: apt-get install tmux")
            });
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What window `name` shows.
    fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", name])
    }

    /// Waits until window `name` shows `text`. tmux has no event for a
    /// change on screen: the screen is read every 20 ms, within [`LIMIT`].
    async fn wait_for(&self, name: &str, text: &str) {
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
            tokio::time::sleep(Duration::from_millis(20)).await;
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

/// The course's example 2 as it was shown: the operator types lines at the
/// server's terminal (`rpc-demo serve`, prompting `Mensagem: `), and the
/// page lists them as they come; when the server dies, the page's stream
/// fails and the page says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_typed_at_the_servers_terminal_appear_on_the_live_page() {
    let _one = ONE_BROWSER.lock().await;
    let tmux = Tmux::new();
    tmux.start(
        "server",
        // Student records go to a temporary data folder, not the home.
        &format!(
            "XDG_DATA_HOME={} {} serve --listen 127.0.0.1:0",
            std::env::temp_dir().join("rpc-demo-tests").display(),
            demo_binary().display()
        ),
    );
    // (tmux drops the prompt's trailing space.)
    tmux.wait_for("server", "Mensagem:").await;
    let screen = tmux.screen("server");
    let port = screen
        .split_once(" on 127.0.0.1:")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("the server names its address: {screen}"));

    let (browser, devtools) = start_browser();
    let mut page = Page::open(&devtools, &format!("http://127.0.0.1:{port}/live")).await;
    page.wait_for("document.body && document.body.dataset.watching === 'true'")
        .await;
    let lines = ["Olá", "Bom dia", "Boa tarde"];
    for line in lines {
        tmux.run(&["send-keys", "-t", "server", line, "Enter"]);
    }
    page.wait_for("document.querySelectorAll('#posts li.post').length >= 3")
        .await;
    assert_eq!(page.texts("#posts li.post .text").await, lines, "in order");

    // The server dies with its terminal: the page's stream fails with the
    // lost connection, and the page says so.
    tmux.run(&["kill-session", "-t", "server"]);
    page.wait_for("document.getElementById('status').className === 'error'")
        .await;
    let status = page
        .eval("document.getElementById('status').textContent")
        .await;
    assert_eq!(status, "the connection to the server closed");
    page.screenshot("live-typed.png").await;
    drop(browser);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_and_a_terminal_chat_talk_both_ways() {
    let _one = ONE_BROWSER.lock().await;
    let fx = TestServer::demo().await;
    let addr = fx.addr();

    // Bia, at a terminal: `rpc-demo chat` in a pseudo-terminal.
    let tmux = Tmux::new();
    tmux.start(
        "bia",
        &format!(
            "{} chat --nick bia --room lab --server {addr}",
            demo_binary().display()
        ),
    );
    tmux.wait_for("bia", "In room lab as bia").await;

    // Ana, in the browser.
    let (browser, devtools) = start_browser();
    let url = format!("http://127.0.0.1:{}/chat", addr.port());
    let mut page = Page::open(&devtools, &url).await;
    page.wait_for("document.body && document.body.dataset.ready === 'true'")
        .await;
    page.type_into("nick", "ana").await;
    page.type_into("room", "lab").await;
    page.click("#enter").await;
    page.wait_for("document.body.dataset.joined === 'true'")
        .await;
    tmux.wait_for("bia", "* ana joined").await;
    let chat = ChatClient::new(fx.client().await);
    assert_eq!(
        within("who", chat.who("lab".into())).await.unwrap(),
        ["ana", "bia"]
    );

    // Terminal to page.
    tmux.run(&["send-keys", "-t", "bia", "olá, ana", "Enter"]);
    page.wait_for("[...document.querySelectorAll('#messages li.message')].some(li => li.dataset.nick === 'bia')")
        .await;
    assert_eq!(
        page.texts("#messages li.message[data-nick=bia] .text")
            .await,
        ["olá, ana"]
    );

    // Page to terminal: typed into the field, sent with the button.
    page.type_into("text", "oi, bia! tudo bem?").await;
    page.click("#send").await;
    tmux.wait_for("bia", "ana: oi, bia! tudo bem?").await;
    page.wait_for("document.getElementById('text').value === ''")
        .await;
    page.wait_for("[...document.querySelectorAll('#messages li.message')].some(li => li.dataset.nick === 'ana')")
        .await;
    assert_eq!(
        page.texts("#messages li.message .text").await,
        ["olá, ana", "oi, bia! tudo bem?"],
        "the page shows the conversation in order"
    );

    // Bia leaves; the page says so.
    tmux.run(&["send-keys", "-t", "bia", "fim", "Enter"]);
    page.wait_for("[...document.querySelectorAll('#messages li.left')].some(li => li.textContent.includes('bia saiu'))")
        .await;
    page.screenshot("chat.png").await;

    drop(chat);
    drop(browser);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_js_streams_hold_the_server_to_their_credit_and_leaving_the_loop_unsubscribes() {
    let _one = ONE_BROWSER.lock().await;
    let fx = TestServer::demo().await;
    let (browser, devtools) = start_browser();
    let url = format!("http://127.0.0.1:{}/", fx.addr().port());
    let mut page = Page::open(&devtools, &url).await;
    page.wait_for("document.body && document.body.dataset.ready === 'true'")
        .await;

    // A member in Rust watches the room, to see carlos (the page) leave.
    let chat = ChatClient::new(fx.client().await);
    let mut watcher = within("rust joins", chat.join("js".into(), "rust".into()))
        .await
        .unwrap();

    // The page joins with a 512-byte window, then sends 1,000 messages
    // before it reads anything. The server may send only about 512 bytes
    // (some eight events) and waits for credit, so carlos's member falls
    // more than the room's 256 events behind: it gets a `lagged` event.
    // Were credit granted as items arrive rather than as the loop takes
    // them, nothing would hold the server back. The loop leaves at the
    // first message after the lag, with the connection still open.
    let seen = page
        .eval(
            r#"(async () => {
                const { Client } = await import("/rpc.js");
                const rpc = await Client.connect();
                window.streamTest = rpc;
                const events = await rpc.stream("chat.join", ["js", "carlos"], { window: 512 });
                let refused;
                try { await rpc.stream("chat.join", ["js", "carlos"]); }
                catch (e) { refused = { name: e.name, code: e.code, data: e.data }; }
                // In rounds of 250 calls at once: under the server's limit
                // of calls in flight on one connection (1024).
                for (let round = 0; round < 1000; round += 250) {
                    await Promise.all(Array.from({ length: 250 },
                        (_, i) => rpc.call("chat.send", ["js", "carlos", `m${round + i}`])));
                }
                const seen = [];
                let lagged = false;
                for await (const e of events) {
                    if (e.kind === "message") seen.push(e.text);
                    else if (e.kind === "lagged") { seen.push(`lagged ${e.skipped}`); lagged = true; continue; }
                    else seen.push(`${e.kind} ${e.nick}`);
                    if (lagged) break;
                    if (seen.length > 1100) break;
                }
                return { refused, seen, open: rpc.streams.size };
            })()"#,
        )
        .await;
    assert_eq!(
        seen["refused"],
        json!({"name": "RpcError", "code": 1000, "data": "NickTaken"}),
        "a refused opening rejects with the error's code and data"
    );
    assert_eq!(seen["open"], 0, "the client forgot the stream it left");
    let seen: Vec<String> = serde_json::from_value(seen["seen"].clone()).unwrap();
    assert!(seen.len() >= 4, "{seen:?}");
    assert_eq!(seen[0], "joined carlos");
    let before_lag = seen
        .iter()
        .position(|s| s.starts_with("lagged"))
        .unwrap_or_else(|| {
            panic!("the page's member never lagged: credit did not hold the server back: {seen:?}")
        });
    // The calls of a round were in flight at once, so the server may have run
    // them in any order: the messages are some of them.
    for text in &seen[1..before_lag] {
        assert!(text.starts_with('m'), "{seen:?}");
    }
    // Some 65 bytes an event: eight fit the window, and one more the
    // server had read ahead goes out with the first credit.
    assert!(
        before_lag <= 12,
        "the server sent {before_lag} events before the page read any, more than a 512-byte window: {seen:?}"
    );
    let skipped: u64 = seen[before_lag]["lagged ".len()..].parse().unwrap();
    assert!(skipped > 500, "{seen:?}");
    assert_eq!(
        seen.len(),
        before_lag + 2,
        "the loop left at once: {seen:?}"
    );

    // The unsubscribe reached the server: carlos's member left the room,
    // while the page's connection stays open.
    within("carlos to leave", async {
        while let Some(event) = watcher.next().await {
            if let Event::Left { nick, .. } = event.unwrap() {
                assert_eq!(nick, "carlos");
                return;
            }
        }
        panic!("rust's stream ended");
    })
    .await;
    let after = page
        .eval(
            r#"(async () => {
                const rpc = window.streamTest;
                const who = await rpc.call("chat.who", ["js"]);
                const send = await rpc.call("chat.send", ["js", "carlos", "still here?"])
                    .then(() => "sent", (e) => ({ code: e.code, data: e.data }));
                return { who, send };
            })()"#,
        )
        .await;
    assert_eq!(
        after,
        json!({"who": ["rust"], "send": {"code": 1000, "data": "NotInRoom"}})
    );

    // Credit counts the bytes of UTF-8 (accents, a 4-byte emoji, escapes)
    // in full: with a 128-byte window, about one post fits, so a count one
    // byte short per item would stall the stream within these 60 posts.
    // (A count over would only widen the window.)
    page.eval(
        r#"(async () => {
            const events = await window.streamTest.stream("live.watch", [], { window: 128 });
            window.utf = (async () => {
                const texts = [];
                for await (const e of events) { texts.push(e.text); if (texts.length === 60) break; }
                return texts;
            })().catch((e) => `failed: ${e.message}`);
            return true;
        })()"#,
    )
    .await;
    let live = LiveClient::new(fx.client().await);
    let texts: Vec<String> = (0..60)
        .map(|i| format!("{i} olá, ação € 🎉 \"aspas\" \\ \t fim"))
        .collect();
    for text in &texts {
        within("a post", live.publish(text.clone())).await.unwrap();
    }
    assert_eq!(page.eval("window.utf").await, json!(texts));

    // An idle timeout fails the loop and unsubscribes: asked afterwards on
    // the same connection, the server says the stream is no longer open.
    let idle = page
        .eval(
            r#"(async () => {
                const rpc = window.streamTest;
                const quiet = await rpc.stream("live.watch", [], { idleTimeoutMs: 300 });
                let error;
                try { for await (const e of quiet) {} } catch (e) { error = e.message; }
                const open = await rpc.call("rpc.unsubscribe", { stream: quiet.id });
                return { error, open, streams: rpc.streams.size };
            })()"#,
        )
        .await;
    assert_eq!(
        idle,
        json!({"error": "no item from live.watch within 300 ms", "open": false, "streams": 0})
    );

    // A stream the server ends with an error throws it from the loop: at
    // shutdown, every stream ends with -32005.
    page.eval(
        r#"(async () => {
            const events = await window.streamTest.stream("live.watch", []);
            window.streamEnd = (async () => {
                try { for await (const e of events) {} return "no error"; }
                catch (e) { return { name: e.name, code: e.code }; }
            })();
            return true;
        })()"#,
    )
    .await;
    drop(watcher);
    drop(chat);
    drop(live);
    let stopping = tokio::spawn(fx.shutdown());
    let end = page.eval("window.streamEnd").await;
    assert_eq!(end, json!({"name": "RpcError", "code": -32005}));
    page.screenshot("rpc-js-streams.png").await;
    drop(browser);
    within("the shutdown", stopping).await.unwrap();
}
