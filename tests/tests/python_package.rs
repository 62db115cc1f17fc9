//! The Python client package (`clients/python`, `framedrpc`) passes its own
//! `unittest` suite against real `rpc-demo serve` processes, which the suite
//! starts, restarts and stops itself.
//!
//! This test builds nothing. It hands the suite:
//! - `RPC_DEMO_BIN`: the `rpc-demo` binary, found next to this test's own
//!   binary (`target/<profile>/rpc-demo`, built by `cargo test --workspace`
//!   or `cargo build -p rpc-demo`), or taken from `RPC_DEMO_BIN` if set;
//! - `FRAMEDRPC_TLS_CA`, `FRAMEDRPC_TLS_CERT`, `FRAMEDRPC_TLS_KEY`: a CA and
//!   a certificate for `localhost` and `127.0.0.1` signed by it, made here
//!   with rcgen.
//!
//! It fails, rather than skips, when `python3` or the binary is missing,
//! and kills the suite if it outlives [`SUITE_LIMIT`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// How long the whole Python suite may run before it is killed.
const SUITE_LIMIT: Duration = Duration::from_secs(300);

/// The fewest tests the suite must report: fewer means tests were lost.
const MIN_TESTS: usize = 50;

/// The `rpc-demo` binary: `$RPC_DEMO_BIN`, else next to this test binary.
fn demo_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RPC_DEMO_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the path of this test binary");
    // target/<profile>/deps/python_package-HASH -> target/<profile>/rpc-demo
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("this test binary lives in target/<profile>/deps");
    profile_dir.join(format!("rpc-demo{}", std::env::consts::EXE_SUFFIX))
}

/// Writes a CA and a server certificate for `localhost` and `127.0.0.1`
/// into `dir`; returns the paths `(ca, cert, key)`.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "framedrpc test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca = ca_params.self_signed(&ca_key).expect("a self-signed CA");

    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let mut params = CertificateParams::new(names).expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("a server key");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("a server certificate signed by the CA");

    let paths = (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("writing ca.crt");
    std::fs::write(&paths.1, cert.pem()).expect("writing server.crt");
    std::fs::write(&paths.2, key.serialize_pem()).expect("writing server.key");
    paths
}

/// Removes its directory when dropped, even if the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("framedrpc-test-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_python_package_passes_its_unittest_suite_against_rpc_demo() {
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/python");
    assert!(
        package.join("framedrpc/__init__.py").is_file(),
        "missing the package at {}",
        package.display()
    );
    let demo = demo_binary();
    assert!(
        demo.is_file(),
        "the rpc-demo binary is not at {} (this test builds nothing): run `cargo build -p rpc-demo` \
         first (`cargo test --workspace` builds it too), or set RPC_DEMO_BIN",
        demo.display()
    );
    let certs = TempDir::new();
    let (ca, cert, key) = make_certificates(&certs.0);

    let mut child = match Command::new("python3")
        .args(["-m", "unittest", "discover", "-v", "-s", "tests", "-t", "."])
        .current_dir(&package)
        .env("PYTHONPATH", &package)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("RPC_DEMO_BIN", &demo)
        .env("FRAMEDRPC_TLS_CA", &ca)
        .env("FRAMEDRPC_TLS_CERT", &cert)
        .env("FRAMEDRPC_TLS_KEY", &key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`python3` is not on PATH ({e}); this test runs the Python package's suite, install Python 3 (>= 3.9) to run it"
        ),
        Err(e) => panic!("could not start `python3 -m unittest`: {e}"),
    };
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));

    let started = Instant::now();
    let status = loop {
        match child.try_wait().expect("waiting for python3") {
            Some(status) => break Some(status),
            None if started.elapsed() > SUITE_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    // unittest reports on stderr.
    let report = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    let Some(status) = status else {
        panic!("the Python suite did not finish within {SUITE_LIMIT:?} and was killed\n{report}");
    };
    assert!(
        status.success(),
        "the Python suite failed ({status})\n{report}"
    );
    println!("{report}");

    let ran: usize = stderr
        .lines()
        .find_map(|line| line.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no `Ran N tests` line in the suite's output\n{report}"));
    assert!(
        ran >= MIN_TESTS,
        "the suite ran {ran} tests, fewer than {MIN_TESTS}: were some lost?\n{report}"
    );
    assert!(
        !stderr.contains("skipped"),
        "the suite skipped tests; every test must run here\n{report}"
    );
}
