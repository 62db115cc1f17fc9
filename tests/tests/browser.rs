//! The calculator page in a real browser: Debian's `chromium`, headless,
//! driven over the DevTools protocol. It types two numbers, clicks an
//! operation, and reads what the page shows: the result, or the typed
//! division-by-zero error. A screenshot goes to
//! `target/test-output/browser/`.
//!
//! `.ci/run` installs `chromium`; elsewhere, `apt-get install chromium`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::{TestServer, within};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The browser process, killed when the test ends however it ends.
struct Browser {
    child: Child,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
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

/// Starts headless chromium and returns it with its DevTools address.
fn start_browser() -> (Browser, String) {
    let profile = std::env::temp_dir().join(format!("rpc-browser-{}", std::process::id()));
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

    let shot = page
        .command("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/browser");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("calculator.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");

    fx.shutdown().await;
}
