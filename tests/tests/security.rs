//! Who may talk to a server: the `rpc.auth` token and TLS (with and without
//! client certificates), seen from raw frames and from the library's client.
//!
//! Certificates are made in the test with rcgen: a CA, a server certificate
//! for `localhost` and `127.0.0.1` signed by it, client certificates, and a
//! second, unrelated CA that nobody should trust.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rpc_core::tls::{TlsError, client_config, server_config};
use rpc_core::{Client, RpcError, Server, code};
use rpc_demo::services::CalculatorClient;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{TestServer, exchange, read_json, send_json, within};

/// The token of the authenticated servers below.
const TOKEN: &str = "s3cret";

/// A service that counts how often its handler actually ran, so a test can
/// prove that a rejected call ran nothing.
#[rpc_core::service]
trait Counter {
    /// Increments the count and returns the new value.
    async fn bump(&self) -> usize;
}

#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl Counter for Counting {
    async fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// A server with the counting service that requires [`TOKEN`], and the count.
async fn token_server() -> (TestServer, Arc<AtomicUsize>) {
    let counting = Counting::default();
    let runs = counting.0.clone();
    let server = TestServer::start(
        Server::builder()
            .service(CounterServer::new(counting))
            .token(TOKEN),
    )
    .await;
    (server, runs)
}

fn request(method: &str, params: Value, id: i64) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id})
}

/// Asserts that `response` answers `id` with an error of `code`.
#[track_caller]
fn assert_error_code(response: &Value, code: i64, id: &Value) {
    assert_eq!(&response["id"], id, "{response}");
    assert_eq!(response["error"]["code"], code, "{response}");
    assert!(response.get("result").is_none(), "{response}");
}

#[tokio::test]
async fn before_auth_every_call_is_unauthorized_and_runs_no_handler() {
    let (fx, runs) = token_server().await;
    let mut s = fx.raw().await;

    let unauthorized = exchange(&mut s, &request("bump", json!([]), 1)).await;
    assert_error_code(&unauthorized, code::UNAUTHORIZED, &json!(1));
    // The built-ins other than ping are behind the token too: discovery
    // would tell an intruder what to try, cancel could abort others' work.
    for (id, method) in [
        (2, "rpc.discover"),
        (3, "rpc.cancel"),
        (4, "no.such.method"),
    ] {
        let response = exchange(&mut s, &request(method, json!({"id": 1}), id)).await;
        assert_error_code(&response, code::UNAUTHORIZED, &json!(id));
    }
    // A batch is checked member by member.
    send_json(
        &mut s,
        &json!([request("bump", json!([]), 5), request("bump", json!([]), 6)]),
    )
    .await;
    let batch = read_json(&mut s).await;
    let members = batch.as_array().expect("a batch response is an array");
    assert_eq!(members.len(), 2, "{batch}");
    for member in members {
        assert_eq!(member["error"]["code"], code::UNAUTHORIZED, "{batch}");
    }
    // A notification gets no answer either way; the next frame answers the ping.
    send_json(&mut s, &json!({"jsonrpc": "2.0", "method": "bump"})).await;
    let pong = exchange(&mut s, &request("rpc.ping", json!([]), 7)).await;
    assert_eq!(pong["result"], "pong", "rpc.ping stays open: {pong}");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no handler may run");

    fx.shutdown().await;
    // Shutting down waited for every handler the connection started, so a
    // late run of the notification would show here.
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no handler may run");
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_the_right_one_unlocks_the_connection() {
    let (fx, runs) = token_server().await;
    let mut s = fx.raw().await;

    for (id, params) in [
        (1, json!({"token": "wrong"})),
        (2, json!({"token": "s3cre"})),
        (3, json!({"token": "s3cret!"})),
        (4, json!({"token": ""})),
        (5, json!(["S3CRET"])),
    ] {
        let refused = exchange(&mut s, &request("rpc.auth", params, id)).await;
        assert_error_code(&refused, code::UNAUTHORIZED, &json!(id));
    }
    // Malformed auth params are a params error, and unlock nothing.
    for (id, params) in [(6, json!({})), (7, json!({"token": 5})), (8, json!([1, 2]))] {
        let refused = exchange(&mut s, &request("rpc.auth", params, id)).await;
        assert_error_code(&refused, code::INVALID_PARAMS, &json!(id));
    }
    let still_locked = exchange(&mut s, &request("bump", json!([]), 9)).await;
    assert_error_code(&still_locked, code::UNAUTHORIZED, &json!(9));
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    let accepted = exchange(&mut s, &request("rpc.auth", json!({"token": TOKEN}), 10)).await;
    assert_eq!(accepted["result"], true, "{accepted}");
    for (id, expected) in [(11, 1), (12, 2)] {
        let bumped = exchange(&mut s, &request("bump", json!([]), id)).await;
        assert_eq!(bumped["result"], expected, "{bumped}");
    }

    // The token unlocks one connection, not the server.
    let mut other = fx.raw().await;
    let locked = exchange(&mut other, &request("bump", json!([]), 1)).await;
    assert_error_code(&locked, code::UNAUTHORIZED, &json!(1));

    fx.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_client_with_the_token_is_served_and_one_without_gets_unauthorized() {
    let (fx, runs) = token_server().await;
    let with_token = fx
        .client_with(Client::builder().token(TOKEN))
        .await
        .expect("the right token is accepted at connect");
    let counter = CounterClient::new(with_token);
    assert_eq!(within("bump", counter.bump()).await.unwrap(), 1);

    let without = fx
        .client_with(Client::builder())
        .await
        .expect("connecting needs no token; calling does");
    match within("an unauthorized call", CounterClient::new(without).bump()).await {
        Err(RpcError::Server(e)) => assert_eq!(e.code, code::UNAUTHORIZED, "{e}"),
        other => panic!("expected an UNAUTHORIZED server error, got {other:?}"),
    }

    let wrong = fx.client_with(Client::builder().token("not-it")).await;
    match wrong {
        Err(RpcError::Server(e)) => assert_eq!(e.code, code::UNAUTHORIZED, "{e}"),
        other => panic!("a wrong token must fail at connect with UNAUTHORIZED, got {other:?}"),
    }

    fx.shutdown().await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "only the authorized call ran"
    );
}

#[tokio::test]
async fn a_server_without_a_token_accepts_any_auth() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;
    let accepted = exchange(
        &mut s,
        &request("rpc.auth", json!({"token": "anything"}), 1),
    )
    .await;
    assert_eq!(accepted["result"], true, "{accepted}");
    let client = fx
        .client_with(Client::builder().token("anything"))
        .await
        .expect("a token is harmless where none is required");
    let calc = CalculatorClient::new(client);
    assert_eq!(within("add", calc.add(1.0, 2.0)).await.unwrap(), 3.0);
    fx.shutdown().await;
}

// ---------------------------------------------------------------- TLS ----

/// A certificate authority: its certificate (PEM) and what it signs with.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a self-signed CA");
        Ca { cert, key }
    }

    fn pem(&self) -> Vec<u8> {
        self.cert.pem().into_bytes()
    }

    /// A certificate for `names` signed by this CA: `(chain PEM, key PEM)`.
    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (Vec<u8>, Vec<u8>) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![purpose];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("a leaf signed by the CA");
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }

    fn server_cert(&self) -> (Vec<u8>, Vec<u8>) {
        self.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client_cert(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The demo services over TLS with a certificate from `ca`; with
/// `client_ca`, clients must present a certificate signed by it.
async fn tls_server(ca: &Ca, client_ca: Option<&Ca>) -> TestServer {
    let (cert, key) = ca.server_cert();
    let client_ca_pem = client_ca.map(Ca::pem);
    let config = server_config(&cert, &key, client_ca_pem.as_deref()).expect("a server TLS config");
    TestServer::start(
        rpc_demo::services::all_services()
            // A handshake that goes nowhere must not hold a connection for
            // the default 30 s.
            .frame_timeout(Duration::from_secs(2))
            .tls(config),
    )
    .await
}

/// Connects over TLS trusting `trust`, presenting `identity` if given, and
/// checking the server's certificate against `name`.
async fn tls_client(
    server: &TestServer,
    trust: &Ca,
    identity: Option<&(Vec<u8>, Vec<u8>)>,
    name: &str,
) -> Result<Client, RpcError> {
    let identity = identity.map(|(cert, key)| (&cert[..], &key[..]));
    let config = client_config(&trust.pem(), identity).expect("a client TLS config");
    server
        .client_with(
            Client::builder()
                .timeout(Duration::from_secs(5))
                .tls(config, name)
                .expect("a valid server name"),
        )
        .await
}

/// A call that proves a connection works end to end.
async fn assert_adds(client: &Client) {
    let calc = CalculatorClient::new(client.clone());
    assert_eq!(
        within("add over TLS", calc.add(2.0, 3.0)).await.unwrap(),
        5.0
    );
}

#[tokio::test]
async fn a_client_trusting_the_ca_calls_over_tls_by_name_and_by_ip() {
    let ca = Ca::new("test CA");
    let fx = tls_server(&ca, None).await;
    for name in ["localhost", "127.0.0.1"] {
        let client = tls_client(&fx, &ca, None, name)
            .await
            .unwrap_or_else(|e| panic!("TLS connect as {name}: {e}"));
        assert_adds(&client).await;
        let calc = CalculatorClient::new(client);
        // Many calls in flight on one TLS connection, each answered.
        let sums = within(
            "concurrent calls over TLS",
            futures_util::future::join_all((0..50).map(|i| calc.add(f64::from(i), 1.0))),
        )
        .await;
        for (i, sum) in sums.into_iter().enumerate() {
            assert_eq!(sum.unwrap(), i as f64 + 1.0);
        }
    }
    fx.shutdown().await;
}

#[tokio::test]
async fn https_and_wss_urls_reach_a_tls_server_on_its_one_port() {
    let ca = Ca::new("test CA");
    let fx = tls_server(&ca, None).await;
    let config = || client_config(&ca.pem(), None).expect("a client TLS config");
    for url in [
        format!("https://{}/rpc", fx.addr()),
        format!("wss://{}/ws", fx.addr()),
    ] {
        let client = within(
            "a TLS client by URL",
            Client::builder()
                .tls(config(), "localhost")
                .expect("a valid server name")
                .connect(url.as_str()),
        )
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_adds(&client).await;
    }
    // Without TLS configured, such a URL is refused before dialling.
    match within(
        "an https URL without TLS",
        Client::builder().connect(format!("https://{}/rpc", fx.addr())),
    )
    .await
    {
        Err(e) => assert!(e.to_string().contains("ClientBuilder::tls"), "{e}"),
        Ok(_) => panic!("an https:// URL connected without TLS"),
    }
    fx.shutdown().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_server_fails_to_connect_and_the_server_goes_on() {
    let ca = Ca::new("test CA");
    let stranger = Ca::new("someone else's CA");
    let fx = tls_server(&ca, None).await;

    match tls_client(&fx, &stranger, None, "localhost").await {
        Err(RpcError::Connect { source, .. }) => {
            assert!(
                source.to_string().to_lowercase().contains("certificate"),
                "the error says why: {source}"
            );
        }
        Err(other) => panic!("expected a Connect error (handshake), got {other}"),
        Ok(_) => panic!("a certificate from an unknown CA must be refused"),
    }
    // Right CA, wrong name: the certificate is not for this host.
    match tls_client(&fx, &ca, None, "example.com").await {
        Err(RpcError::Connect { .. }) => {}
        Err(other) => panic!("expected a Connect error (name mismatch), got {other}"),
        Ok(_) => panic!("a certificate for another name must be refused"),
    }

    let client = tls_client(&fx, &ca, None, "localhost")
        .await
        .expect("a trusting client still connects after failed handshakes");
    assert_adds(&client).await;
    fx.shutdown().await;
}

#[tokio::test]
async fn a_plain_client_against_a_tls_server_fails_cleanly_and_quickly() {
    let ca = Ca::new("test CA");
    let fx = tls_server(&ca, None).await;

    // The library's client: TCP connects (no token, so nothing is sent yet);
    // the first call reads the server's TLS alert as a bogus frame header,
    // or the close, and fails at once instead of waiting for its timeout.
    let plain = fx
        .client_with(Client::builder().timeout(Duration::from_secs(30)))
        .await
        .expect("the TCP connection itself succeeds");
    let call = plain.call::<_, f64>("add", &(1.0, 2.0));
    match within("a plain call to a TLS server", call).await {
        Err(RpcError::Closed(_)) => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }

    // Raw frames: no JSON-RPC answer, and the server hangs up (it may send a
    // TLS alert first, which is not a frame we can use).
    let mut raw = fx.raw().await;
    raw.write_all(&rpc_core::frame::encode(
        br#"{"jsonrpc":"2.0","method":"rpc.ping","id":1}"#,
    ))
    .await
    .expect("writing a plain frame");
    let mut received = Vec::new();
    let read = within("the TLS server to hang up on plain bytes", async {
        let mut chunk = [0u8; 1024];
        loop {
            match raw.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    });
    read.await;
    assert!(
        !String::from_utf8_lossy(&received).contains("pong"),
        "a plain request must not be served by a TLS server"
    );

    let client = tls_client(&fx, &ca, None, "localhost").await.unwrap();
    assert_adds(&client).await;
    fx.shutdown().await;
}

#[tokio::test]
async fn a_tls_handshake_that_never_starts_is_dropped_at_the_frame_timeout() {
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server_cert();
    let config = server_config(&cert, &key, None).unwrap();
    let fx = TestServer::start(
        rpc_demo::services::all_services()
            .frame_timeout(Duration::from_millis(300))
            .tls(config),
    )
    .await;

    // A TCP connection that never sends a ClientHello.
    let mut silent = fx.raw().await;
    let started = tokio::time::Instant::now();
    let mut byte = [0u8; 1];
    let read = within(
        "the server to drop a silent TLS peer",
        silent.read(&mut byte),
    )
    .await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "no data, only a close: {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "dropped after {:?}: too early for a 300 ms handshake limit",
        started.elapsed()
    );

    let client = tls_client(&fx, &ca, None, "localhost").await.unwrap();
    assert_adds(&client).await;
    fx.shutdown().await;
}

#[tokio::test]
async fn a_tls_client_against_a_plain_server_fails_at_connect() {
    let ca = Ca::new("test CA");
    let fx = TestServer::demo().await;
    match tls_client(&fx, &ca, None, "localhost").await {
        Err(RpcError::Connect { .. }) => {}
        Err(other) => panic!("expected a Connect error, got {other}"),
        Ok(_) => panic!("a plain server cannot complete a TLS handshake"),
    }
    fx.shutdown().await;
}

/// Connects and makes one call; with TLS 1.3 a refused client certificate
/// may surface at connect or only at the first call.
async fn connect_and_add(
    server: &TestServer,
    trust: &Ca,
    identity: Option<&(Vec<u8>, Vec<u8>)>,
) -> Result<f64, RpcError> {
    let client = tls_client(server, trust, identity, "localhost").await?;
    let call = client.call::<_, f64>("add", &(2.0, 3.0));
    within("a call with client authentication", call).await
}

#[tokio::test]
async fn mutual_tls_accepts_only_clients_with_a_certificate_from_the_client_ca() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger = Ca::new("someone else's CA");
    let fx = tls_server(&server_ca, Some(&client_ca)).await;

    match connect_and_add(&fx, &server_ca, None).await {
        Err(RpcError::Connect { .. } | RpcError::Closed(_)) => {}
        other => panic!("a client without a certificate must be refused, got {other:?}"),
    }
    let forged = stranger.client_cert("mallory");
    match connect_and_add(&fx, &server_ca, Some(&forged)).await {
        Err(RpcError::Connect { .. } | RpcError::Closed(_)) => {}
        other => panic!("a certificate from another CA must be refused, got {other:?}"),
    }
    let identity = client_ca.client_cert("alice");
    assert_eq!(
        connect_and_add(&fx, &server_ca, Some(&identity))
            .await
            .expect("a client certificate from the client CA is accepted"),
        5.0
    );
    fx.shutdown().await;
}

#[test]
fn an_invalid_server_name_is_refused_when_tls_is_configured() {
    let ca = Ca::new("test CA");
    let config = client_config(&ca.pem(), None).expect("a client TLS config");
    match Client::builder().tls(config, "not a host name!") {
        Err(TlsError::ServerName { name, .. }) => assert_eq!(name, "not a host name!"),
        Err(other) => panic!("expected TlsError::ServerName, got {other}"),
        Ok(_) => panic!("an invalid server name must be refused by `tls`, before connecting"),
    }
}

#[test]
fn bad_pem_input_is_a_tls_error_not_a_panic() {
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server_cert();
    let (_, other_key) = ca.server_cert();
    let garbage = b"\x00\xffthis is not PEM at all\n-----BEGIN nothing".to_vec();
    let corrupt =
        b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n".to_vec();

    let server_cases: [(&str, &[u8], &[u8]); 7] = [
        ("empty certificate", b"", &key),
        ("empty key", &cert, b""),
        ("garbage certificate", &garbage, &key),
        ("corrupt base64 certificate", &corrupt, &key),
        ("a key passed as the certificate", &key, &key),
        ("a certificate passed as the key", &cert, &cert),
        (
            "a key that does not match the certificate",
            &cert,
            &other_key,
        ),
    ];
    for (what, cert_pem, key_pem) in server_cases {
        let result = server_config(cert_pem, key_pem, None);
        assert!(
            matches!(
                result,
                Err(TlsError::Missing { .. } | TlsError::Pem { .. } | TlsError::Config(_))
            ),
            "{what}: expected a TlsError, got {:?}",
            result.map(|_| "a config")
        );
    }
    assert!(matches!(
        server_config(&cert, &key, Some(b"")),
        Err(TlsError::Missing { .. })
    ));
    assert!(matches!(
        server_config(&cert, &key, Some(&key)),
        Err(TlsError::Missing { .. })
    ));

    for (what, ca_pem) in [
        ("empty", &b""[..]),
        ("garbage", &garbage),
        ("corrupt", &corrupt),
        ("a key", &key),
    ] {
        assert!(
            client_config(ca_pem, None).is_err(),
            "{what} CA must be rejected"
        );
    }
    assert!(client_config(&ca.pem(), Some((&key, &key))).is_err());
    assert!(client_config(&ca.pem(), Some((&cert, b""))).is_err());

    let missing = rpc_core::tls::read_pem("/nonexistent/rpc-tests/server.crt");
    assert!(matches!(missing, Err(TlsError::Read { .. })));
    // Every error explains itself.
    let message = server_config(b"", &key, None).unwrap_err().to_string();
    assert!(message.contains("certificate"), "{message}");
}
