//! The `rpc-demo` binary as a person uses it: the tour, the server, and the
//! interactive clients fed from standard input, including bad input.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, LIMIT, Output, Running, run, serve, serve_with};

fn assert_no_panic(out: &Output) {
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains("panicked") && !text.contains("backtrace"),
            "{text}"
        );
    }
}

#[test]
fn the_tour_calls_every_method_and_exits_zero() {
    let out = run(&[], "");
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    for expected in [
        "add(2, 3)",
        "= 5",
        "pow(2, 10)",
        "DivisionByZero",
        "Olá, João!",
        "timed out",
        "100 results",
        "chat.join event",
        "taking turns between the two servers",
        "all answered by the other server",
        "files.download item: end, 16 bytes",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in:\n{}",
            out.stdout
        );
    }
    // The lines say what is served, in the order it is shown.
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(
        first.ends_with("with Calculator, Greeter, Echo, Chat, Live and Students"),
        "{first}"
    );
    let at = |text: &str| {
        out.stdout
            .find(text)
            .unwrap_or_else(|| panic!("missing {text:?} in:\n{}", out.stdout))
    };
    assert!(at("\nStudents:") < at("\nserver stopped (Calculator"));
    assert!(at("\nserver stopped (Calculator") < at("\nFiles, on a second server"));
}

#[test]
fn the_calculator_answers_and_survives_bad_input() {
    let (_server, addr) = serve(&[]);
    let input = "add\n2\n3\nsoma\nabc\n4\n5\nroot\ndiv\n1\n0\nmult\n8\n5\npow\n10\n400\nfim\n";
    let out = run(&["calc", "--server", &addr], input);
    assert_no_panic(&out);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    for expected in [
        "add(2, 3) = 5",
        "'abc' is not a number",
        "add(4, 5) = 9",
        "unknown operation 'root'",
        "cannot divide by zero",
        "mul(8, 5) = 40",
        "not a finite number",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in:\n{}",
            out.stdout
        );
    }
}

#[test]
fn hello_asks_the_name_and_prints_the_greeting() {
    let (_server, addr) = serve(&[]);
    let out = run(&["hello", "--server", &addr], "\nJoão\n");
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Digite seu nome:"), "{}", out.stdout);
    assert!(
        out.stdout.contains("type a name"),
        "an empty name is refused: {}",
        out.stdout
    );
    assert!(out.stdout.contains("Olá, João!"), "{}", out.stdout);
}

#[test]
fn echo_repeats_each_line_until_fim() {
    let (_server, addr) = serve(&[]);
    let out = run(
        &["echo", "--server", &addr],
        "oi\nolá mundo\nfim\nnot sent\n",
    );
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let echoed: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("Echo at"))
        .collect();
    let text = echoed.join("\n");
    assert!(text.contains("oi") && text.contains("olá mundo"), "{text}");
    assert!(
        !text.contains("not sent"),
        "input after `fim` is not sent: {text}"
    );
}

#[test]
fn a_client_without_a_server_says_so_in_one_line_and_fails() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = run(
        &["calc", "--server", &format!("127.0.0.1:{port}")],
        "add\n1\n2\n",
    );
    assert_no_panic(&out);
    assert!(!out.status.success());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {:?}", out.stderr);
    assert!(
        lines[0].starts_with("error: could not connect"),
        "{}",
        lines[0]
    );
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    let out = run(&["calc", "--timeout=-1"], "");
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("not a positive number of seconds"),
        "{}",
        out.stderr
    );
    let out = run(&["serve", "--tls-cert", "x.pem"], "");
    assert!(!out.status.success());
    assert!(out.stderr.contains("--tls-key"), "{}", out.stderr);
    assert_no_panic(&out);
}

#[test]
fn a_server_with_a_token_refuses_clients_without_it() {
    let (_server, addr) = serve(&["--token", "s3cret"]);
    let out = run(&["hello", "--server", &addr], "Ana\n");
    assert_no_panic(&out);
    assert!(!out.status.success());
    assert!(out.stderr.contains("unauthorized"), "{}", out.stderr);
    let out = run(&["hello", "--server", &addr, "--token", "wrong"], "Ana\n");
    assert!(!out.status.success());
    assert!(out.stderr.contains("not valid"), "{}", out.stderr);
    let out = run(&["hello", "--server", &addr, "--token", "s3cret"], "Ana\n");
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("Olá, Ana!"));
}

#[test]
fn the_server_stops_cleanly_on_sigint() {
    let (mut server, addr) = serve(&[]);
    let out = run(&["hello", "--server", &addr], "Ana\n");
    assert!(out.status.success());
    let pid = server.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            break status;
        }
        assert!(started.elapsed() < LIMIT, "the server did not stop");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "exit status after Ctrl-C: {status}");
}

#[test]
fn out_of_file_descriptors_every_connection_is_answered_or_refused_never_left_silent() {
    // 64 descriptors at most, soft and hard: far fewer than the 120 peers.
    let mut prlimit = Command::new("prlimit");
    prlimit.args(["--nofile=64:64", BIN]);
    let (_server, addr) = serve_with(prlimit, &[]);
    let ping = |id: usize| {
        let body = format!(r#"{{"jsonrpc":"2.0","method":"rpc.ping","id":{id}}}"#);
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body.as_bytes());
        frame
    };
    // Every peer connects and sends its ping before any reads: they are all
    // open at once.
    let mut peers: Vec<std::net::TcpStream> = (0..120)
        .map(|id| {
            let mut peer = std::net::TcpStream::connect(&addr).expect("connect");
            peer.set_read_timeout(Some(LIMIT)).unwrap();
            let _ = peer.write_all(&ping(id));
            peer
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for (id, peer) in peers.iter_mut().enumerate() {
        let mut header = [0u8; 4];
        match peer.read_exact(&mut header) {
            Ok(()) => {}
            // A refused peer's ping may reset the connection after the
            // refusal was read by the kernel; never a timeout.
            Err(e)
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                refused += 1;
                continue;
            }
            Err(e) => panic!("peer {id} got no answer within {LIMIT:?}: {e}"),
        }
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        peer.read_exact(&mut body).expect("a whole frame");
        let answer = String::from_utf8_lossy(&body);
        if answer.contains(r#""result":"pong""#) {
            served += 1;
        } else {
            assert!(answer.contains("-32004"), "peer {id}: {answer}");
            refused += 1;
        }
    }
    assert_eq!(served + refused, 120);
    assert!(served > 0, "some peers are served");
    assert!(refused > 0, "the rest are refused: {served} served");
}

#[test]
fn list_and_call_speak_to_any_server_of_the_protocol() {
    let (_server, addr) = serve(&[]);
    let out = run(&["list", &addr], "");
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("add(a: number, b: number) -> number"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("hello(name: string) -> string"),
        "{}",
        out.stdout
    );

    let out = run(&["call", &addr, "add", "2", "3"], "");
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "5.0");
    // A bare word is a string; a quoted number stays a string.
    let out = run(&["call", &format!("tcp://{addr}"), "hello", "Ana"], "");
    assert_eq!(out.stdout.trim(), "\"Olá, Ana!\"");
    let out = run(&["call", &addr, "hello", "\"123\""], "");
    assert_eq!(out.stdout.trim(), "\"Olá, 123!\"");
    let out = run(&["call", &addr, "add", "--params", r#"{"a":1,"b":2}"#], "");
    assert_eq!(out.stdout.trim(), "3.0");
    // The same port over WebSocket.
    let out = run(&["call", &format!("ws://{addr}/ws"), "mult", "4", "5"], "");
    assert_eq!(out.stdout.trim(), "20.0", "{}", out.stderr);
    let out = run(&["list", &format!("ws://{addr}/ws")], "");
    assert!(
        out.stdout
            .contains("add(a: number, b: number) -> number (also soma)"),
        "{}",
        out.stderr
    );
    // And over HTTP, one POST per call.
    let out = run(
        &["call", &format!("http://{addr}/rpc"), "pot", "2", "10"],
        "",
    );
    assert_eq!(out.stdout.trim(), "1024.0", "{}", out.stderr);
    let out = run(&["list", &format!("http://{addr}")], "");
    assert!(out.stdout.contains("hello(name: string)"), "{}", out.stderr);

    // An error: one line with the code and the message, status 1.
    let out = run(&["call", &addr, "div", "1", "0"], "");
    assert!(!out.status.success());
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("1000") && line.contains("division by zero"),
        "{line}"
    );
    let out = run(&["call", &addr, "nope"], "");
    assert!(!out.status.success());
    assert!(out.stderr.contains("-32601"), "{}", out.stderr);
    assert_no_panic(&out);
}

#[test]
fn call_prints_a_streams_items_as_they_come_and_live_send_feeds_them() {
    let (_server, addr) = serve(&[]);
    let out = run(&["list", &addr], "");
    assert!(
        out.stdout.contains("live.watch() -> stream of LiveEvent"),
        "{}",
        out.stdout
    );
    let mut watcher = Running(
        Command::new(BIN)
            .args(["call", &addr, "live.watch"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rpc-demo call"),
    );
    let stdout = watcher.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Until the watcher's stream is open, a post reaches nobody: send the
    // first until it reaches one watcher.
    let started = Instant::now();
    loop {
        let out = run(&["live-send", "--server", &addr, "primeiro"], "");
        assert!(out.status.success(), "{}", out.stderr);
        if out.stdout.contains("published to 1 watcher") {
            break;
        }
        assert!(started.elapsed() < LIMIT, "the watcher never subscribed");
    }
    for text in ["segundo", "terceiro"] {
        let out = run(&["live-send", "--server", &addr, text], "");
        assert!(
            out.stdout.contains("published to 1 watcher"),
            "{}",
            out.stdout
        );
    }
    for expected in ["primeiro", "segundo", "terceiro"] {
        let line = rx.recv_timeout(LIMIT).expect("an item from the watcher");
        let item: serde_json::Value =
            serde_json::from_str(&line).expect("each item is a line of JSON");
        assert_eq!(item["kind"], "post", "{line}");
        assert_eq!(item["text"], expected, "{line}");
        assert!(item["at"].as_u64().is_some_and(|at| at > 0), "{line}");
    }
    // A bad post is refused in one line.
    let out = run(&["live-send", "--server", &addr, " "], "");
    assert!(!out.status.success());
    assert!(out.stderr.contains("1 to 4096 bytes"), "{}", out.stderr);
}
