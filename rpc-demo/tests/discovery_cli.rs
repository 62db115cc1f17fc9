//! The course's three-terminal demo, as commands: a binder, two servers
//! that register with it, and clients that find them by name; one server
//! killed, and the clients still answered.

mod common;

use common::{binder, serve};

/// `rpc-demo ARGS` with `input`: whether it succeeded, its output.
fn run(args: &[&str], input: &str) -> (bool, String, String) {
    let out = common::run(args, input);
    (out.status.success(), out.stdout, out.stderr)
}

#[test]
fn servers_register_with_the_binder_and_clients_find_them_by_name() {
    let (_binder, binder_addr) = binder();
    let (mut first, first_addr) = serve(&["--binder", &binder_addr]);
    let (_second, second_addr) = serve(&["--binder", &binder_addr]);

    // Both registered every service; `lookup` polls until they have.
    let started = std::time::Instant::now();
    let listing = loop {
        let (ok, out, err) = run(&["lookup", "Calculator", "--binder", &binder_addr], "");
        assert!(ok, "{err}");
        if out.contains(&first_addr) && out.contains(&second_addr) {
            break out;
        }
        assert!(started.elapsed() < common::LIMIT, "not registered: {out}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(listing.lines().count(), 2, "{listing}");
    let (ok, all, _) = run(&["lookup", "--binder", &binder_addr], "");
    assert!(
        ok && all.contains("Greeter") && all.contains("Chat"),
        "{all}"
    );

    let (ok, out, err) = run(
        &[
            "call",
            "Calculator",
            "add",
            "2",
            "3",
            "--binder",
            &binder_addr,
        ],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "5.0");
    let (ok, out, err) = run(&["calc", "--binder", &binder_addr], "mult\n4\n5\nfim\n");
    assert!(ok, "{err}");
    assert!(out.contains("= 20"), "{out}");
    let (ok, out, _) = run(&["health", &first_addr], "");
    assert!(ok && out.contains("serving"), "{out}");

    // One server dies without deregistering: clients still get answers.
    first.0.kill().expect("kill a server");
    first.0.wait().expect("reap it");
    for _ in 0..5 {
        let (ok, out, err) = run(
            &[
                "call",
                "Calculator",
                "add",
                "1",
                "1",
                "--binder",
                &binder_addr,
            ],
            "",
        );
        assert!(ok, "{err}");
        assert_eq!(out.trim(), "2.0");
    }
    let (ok, _, err) = run(&["health", &first_addr], "");
    assert!(!ok && err.contains("no answer"), "{err}");
}

#[test]
fn without_a_binder_a_client_says_how_to_start_one() {
    // A port nothing listens on (bound, then released).
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (ok, _, err) = run(&["lookup", "--binder", &free], "");
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
