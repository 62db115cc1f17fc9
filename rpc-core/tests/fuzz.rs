//! Property tests (proptest) of the two places where untrusted bytes enter:
//! the frame decoder, and the server's handling of a frame's contents.
//!
//! The server properties run one in-process server per test, reached over a
//! real TCP connection on 127.0.0.1, and send every generated input as one
//! frame. After each input the test sends a ping with a fresh id: the pong
//! proves that the server is alive and that the connection still frames
//! correctly, and for structured inputs it also proves that nothing beyond
//! the expected reply was sent.
//!
//! Inputs that once failed are kept below as named regression tests.

mod fuzzed;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;
use rpc_core::frame::{FrameDecoder, FrameError, HEADER_LEN, encode};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use fuzzed::{FuzzedServer, Impl};

// ------------------------------------------------------- frame decoder ----

/// Feeds `input` to a decoder in chunks ending at `cuts`, decoding after
/// each chunk as a reader would. Returns the frames and the error, if any.
fn decode_in_chunks(
    input: &[u8],
    cuts: &[usize],
    max: usize,
) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut decoder = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    let mut fed = 0;
    for point in points {
        buf.extend_from_slice(&input[fed..point]);
        fed = point;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame.to_vec()),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

proptest! {
    #[test]
    fn decoder_never_panics_and_never_yields_a_frame_over_the_maximum(
        input in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
        max in 0usize..300,
    ) {
        let (frames, error) = decode_in_chunks(&input, &cuts, max);
        let mut consumed = Vec::new();
        for frame in &frames {
            prop_assert!(frame.len() <= max);
            consumed.extend_from_slice(&encode(frame));
        }
        // Frames are exactly the prefix of the input they came from.
        prop_assert_eq!(&input[..consumed.len()], &consumed[..]);
        let rest = &input[consumed.len()..];
        match error {
            None => {
                // Whatever is left is less than one whole frame.
                if rest.len() >= HEADER_LEN {
                    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    prop_assert!(rest.len() < HEADER_LEN + len);
                }
            }
            Some(error) => {
                // Every error is about a header announcing more than the
                // maximum (too large, or another protocol's first bytes).
                let announced = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                prop_assert!(announced > max, "{} for a frame of {} <= {}", error, announced, max);
                if let FrameError::TooLarge { len, max: reported } = error {
                    prop_assert_eq!((len, reported), (announced, max));
                }
            }
        }
    }

    #[test]
    fn decoder_reassembles_valid_frames_however_they_are_split(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
    ) {
        let max = bodies.iter().map(Vec::len).max().unwrap_or(0);
        let stream: Vec<u8> = bodies.iter().flat_map(|b| encode(b)).collect();
        let (frames, error) = decode_in_chunks(&stream, &cuts, max);
        prop_assert!(error.is_none());
        prop_assert_eq!(frames, bodies);
    }
}

#[test]
fn a_frame_one_byte_over_the_maximum_is_rejected_from_its_header_alone() {
    let mut decoder = FrameDecoder::new(10);
    let mut buf = BytesMut::from(&encode(&[b'x'; 11])[..HEADER_LEN]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(FrameError::TooLarge { len: 11, max: 10 })
    ));
    let mut buf = BytesMut::from(&encode(&[b'x'; 10])[..]);
    assert_eq!(&decoder.decode(&mut buf).unwrap().unwrap()[..], &[b'x'; 10]);
}

#[test]
fn the_largest_announced_length_is_rejected_without_reserving_it() {
    let mut decoder = FrameDecoder::new(rpc_core::frame::DEFAULT_MAX_FRAME);
    let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(buf.capacity() < 1024, "reserved {} bytes", buf.capacity());
}

/// Found by the cargo-fuzz target `frame_decoder` (`[0, 0, b'H', b'T',
/// b'T', b'P']`): a header that is the start of an HTTP message is an error
/// of its own kind, and like every decoder error only when the length it
/// announces is over the maximum.
#[test]
fn a_header_that_spells_http_is_an_error_only_above_the_maximum() {
    let mut decoder = FrameDecoder::new(0);
    let mut buf = BytesMut::from(&b"HTTP"[..]);
    match decoder.decode(&mut buf) {
        Err(e) => assert!(e.to_string().contains("HTTP"), "{e}"),
        Ok(frame) => panic!("expected an error, got {frame:?}"),
    }
    let (frames, error) = decode_in_chunks(&encode(b"HTTP"), &[1, 3, 5], 4);
    assert!(error.is_none());
    assert_eq!(frames, vec![b"HTTP".to_vec()]);
}

// ------------------------------------------------------------- server ----

/// A server and one raw connection to it, kept for all the cases of a test.
struct Harness {
    runtime: tokio::runtime::Runtime,
    stream: Mutex<TcpStream>,
    next_ping: AtomicU64,
}

/// Each test's own server, serving [`fuzzed`]'s service (the one the
/// cargo-fuzz target `request_dispatch` serves), started on first use.
fn harness(cell: &'static OnceLock<Harness>) -> &'static Harness {
    cell.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let stream = runtime.block_on(async {
            // The handle is dropped: the server runs until the process ends.
            let server = rpc_core::Server::builder()
                .service(FuzzedServer::new(Impl))
                .bind("127.0.0.1:0")
                .await
                .expect("the server binds");
            let addr: SocketAddr = server.local_addr();
            TcpStream::connect(addr).await.expect("connect")
        });
        Harness {
            runtime,
            stream: Mutex::new(stream),
            next_ping: AtomicU64::new(0),
        }
    })
}

/// Longest wait for any one frame; a hang is a failure, not a stuck test.
const WAIT: Duration = Duration::from_secs(5);

async fn write_frame(stream: &mut TcpStream, body: &[u8]) -> Result<(), TestCaseError> {
    tokio::time::timeout(WAIT, stream.write_all(&encode(body)))
        .await
        .map_err(|_| TestCaseError::fail("writing a frame timed out"))?
        .map_err(|e| TestCaseError::fail(format!("writing a frame failed: {e}")))
}

/// Reads one frame; it must be UTF-8.
async fn read_frame(stream: &mut TcpStream) -> Result<String, TestCaseError> {
    let read = async {
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).await?;
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        stream.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    let body = tokio::time::timeout(WAIT, read)
        .await
        .map_err(|_| TestCaseError::fail("no frame from the server within 5 s (hang?)"))?
        .map_err(|e| TestCaseError::fail(format!("the server closed the connection: {e}")))?;
    String::from_utf8(body)
        .map_err(|e| TestCaseError::fail(format!("the server sent a frame that is not UTF-8: {e}")))
}

/// One response, read without converting numbers: an id is echoed as sent,
/// and may be a number no `f64` can hold (`1E999` is valid JSON).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Response<'a> {
    jsonrpc: &'a str,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<rpc_core::ErrorObject>,
}

/// A member that is present, even as `null`, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

/// An id in a form that compares equal whenever the JSON values are equal.
fn canonical_id(raw: &str) -> String {
    match serde_json::from_str::<Value>(raw) {
        Ok(value) => value.to_string(),
        Err(_) => raw.to_owned(),
    }
}

/// Checks that `text` is one well-formed JSON-RPC response and returns its
/// id (canonical).
fn response_id(text: &str) -> Result<String, TestCaseError> {
    let response: Response<'_> = serde_json::from_str(text)
        .map_err(|e| TestCaseError::fail(format!("not a well-formed response ({e}): {text}")))?;
    prop_assert_eq!(response.jsonrpc, "2.0", "{}", text);
    let Some(id) = response.id else {
        return Err(TestCaseError::fail(format!(
            "a response always has an id: {text}"
        )));
    };
    prop_assert!(
        response.result.is_some() != response.error.is_some(),
        "exactly one of result and error: {}",
        text
    );
    Ok(canonical_id(id.get()))
}

/// Checks a frame the server sent: one response or a non-empty batch of
/// them. Returns whether it is a batch, and the ids it answers.
fn reply_ids(frame: &str) -> Result<(bool, Vec<String>), TestCaseError> {
    if frame.trim_start().starts_with('[') {
        let members: Vec<&RawValue> = serde_json::from_str(frame)
            .map_err(|e| TestCaseError::fail(format!("not a batch response ({e}): {frame}")))?;
        prop_assert!(!members.is_empty(), "an empty batch response: {}", frame);
        let ids = members
            .iter()
            .map(|m| response_id(m.get()))
            .collect::<Result<_, _>>()?;
        Ok((true, ids))
    } else {
        Ok((false, vec![response_id(frame)?]))
    }
}

/// Sends a ping with a fresh id and returns the id to look for.
async fn send_ping(h: &Harness, stream: &mut TcpStream) -> Result<Value, TestCaseError> {
    let id = json!(format!(
        "ping-{}",
        h.next_ping.fetch_add(1, Ordering::Relaxed)
    ));
    let ping = json!({"jsonrpc": "2.0", "method": "rpc.ping", "id": id});
    write_frame(stream, ping.to_string().as_bytes()).await?;
    Ok(id)
}

fn is_pong(frame: &str, id: &Value) -> bool {
    serde_json::from_str::<Value>(frame).is_ok_and(|v| v["id"] == *id && v["result"] == "pong")
}

/// What the server must answer to a frame holding the JSON value `v`:
/// `None` for nothing, or the ids of the replies (one frame; a batch if `v`
/// is a non-empty array). Derived from the JSON-RPC 2.0 specification.
fn predicted(v: &Value) -> Option<(bool, Vec<Value>)> {
    match v {
        Value::Array(members) if members.is_empty() => Some((false, vec![Value::Null])),
        Value::Array(members) => {
            let ids: Vec<Value> = members.iter().filter_map(member_reply).collect();
            (!ids.is_empty()).then_some((true, ids))
        }
        single => member_reply(single).map(|id| (false, vec![id])),
    }
}

/// The id a reply to one request object carries, or `None` if it is a
/// valid notification (which gets no reply, even when the call fails).
fn member_reply(v: &Value) -> Option<Value> {
    let Value::Object(m) = v else {
        return Some(Value::Null);
    };
    let id = m.get("id");
    let id_valid = matches!(
        id,
        None | Some(Value::String(_) | Value::Number(_) | Value::Null)
    );
    let valid = id_valid
        && m.get("jsonrpc") == Some(&json!("2.0"))
        && matches!(m.get("method"), Some(Value::String(_)))
        && matches!(
            m.get("params"),
            None | Some(Value::Null | Value::Array(_) | Value::Object(_))
        )
        && m.get("timeout_ms")
            .is_none_or(|t| t.is_null() || t.is_u64());
    match id {
        None if valid => None,
        Some(id) if id_valid => Some(id.clone()),
        _ => Some(Value::Null),
    }
}

/// Sends `v` as one frame and checks the reply against [`predicted`], then
/// that the very next frame answers a fresh ping.
fn check_structured(h: &Harness, v: &Value) -> Result<(), TestCaseError> {
    let text = v.to_string();
    // Predict from what the server will parse: serde_json's float parsing
    // need not give back the exact f64 that was printed.
    let sent: Value = serde_json::from_str(&text).expect("serde_json reads its own output");
    let mut stream = h.stream.lock().unwrap_or_else(|p| p.into_inner());
    h.runtime.block_on(async {
        write_frame(&mut stream, text.as_bytes()).await?;
        if let Some((batch, expected)) = predicted(&sent) {
            let frame = read_frame(&mut stream).await?;
            let (is_batch, mut got) = reply_ids(&frame)?;
            prop_assert_eq!(is_batch, batch, "sent {}, got {}", text, frame);
            let mut expected: Vec<String> = expected.iter().map(Value::to_string).collect();
            got.sort();
            expected.sort();
            prop_assert_eq!(got, expected, "sent {}, got {}", text, frame);
        }
        let ping = send_ping(h, &mut stream).await?;
        let frame = read_frame(&mut stream).await?;
        prop_assert!(
            is_pong(&frame, &ping),
            "after {}, expected the pong {}, got {}",
            text,
            ping,
            frame
        );
        Ok(())
    })
}

/// Sends arbitrary bytes as one frame, then a ping; every frame until the
/// pong must be a well-formed response (a reply to the bytes may also come
/// after the pong: replies to calls are written as they complete).
fn check_bytes(h: &Harness, bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut stream = h.stream.lock().unwrap_or_else(|p| p.into_inner());
    h.runtime.block_on(async {
        write_frame(&mut stream, bytes).await?;
        let ping = send_ping(h, &mut stream).await?;
        let mut first = true;
        for _ in 0..4 {
            let frame = read_frame(&mut stream).await?;
            if is_pong(&frame, &ping) {
                return Ok(());
            }
            reply_ids(&frame)?;
            if first && std::str::from_utf8(bytes).is_err() {
                // Not UTF-8: a parse error, answered before the ping is read.
                let response: Response<'_> = serde_json::from_str(&frame)
                    .map_err(|e| TestCaseError::fail(format!("{e}: {frame}")))?;
                prop_assert_eq!(response.error.map(|e| e.code), Some(-32700), "{}", frame);
                prop_assert_eq!(response.id.map(RawValue::get), Some("null"), "{}", frame);
            }
            first = false;
        }
        Err(TestCaseError::fail("no pong after 4 frames"))
    })
}

/// Any JSON value, small.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::String),
        Just(json!("2.0")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,4}|id|method|params|jsonrpc", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Params that fit the fuzzed methods, or not.
fn params() -> impl Strategy<Value = Value> {
    prop_oneof![
        (any::<i64>(), any::<i64>()).prop_map(|(a, b)| json!([a, b])),
        (any::<i64>(), any::<i64>()).prop_map(|(a, b)| json!({"b": b, "a": a})),
        "\\PC{0,16}".prop_map(|t| json!([t])),
        "\\PC{0,16}".prop_map(|t| json!({"text": t})),
        (json_value(), json_value()).prop_map(|(l, m)| json!([[l], {"k": m}])),
        json_value(),
    ]
}

/// A request object whose members are each right, wrong or missing.
fn request() -> impl Strategy<Value = Value> {
    let jsonrpc = prop_oneof![4 => Just(json!("2.0")), 1 => json_value()];
    let method = prop_oneof![
        3 => prop::sample::select(vec![
            "add", "echo", "pack", "rpc.ping", "rpc.discover", "rpc.cancel", "rpc.auth",
            "rpc.shutdown", "no.such", "", "ADD",
        ])
        .prop_map(Value::from),
        1 => json_value(),
    ];
    let id = prop_oneof![
        2 => any::<i64>().prop_map(Value::from),
        1 => "\\PC{0,8}".prop_map(Value::String),
        1 => Just(Value::Null),
        1 => json_value(),
    ];
    let timeout_ms = prop_oneof![
        3 => (0u64..10_000).prop_map(Value::from),
        1 => json_value(),
    ];
    (
        prop::option::weighted(0.95, jsonrpc),
        prop::option::weighted(0.9, method),
        prop::option::weighted(0.8, params()),
        prop::option::weighted(0.7, id),
        prop::option::weighted(0.2, timeout_ms),
        prop::option::weighted(0.1, ("[a-z]{1,6}", json_value())),
    )
        .prop_map(|(jsonrpc, method, params, id, timeout_ms, extra)| {
            let mut m = serde_json::Map::new();
            let members = [
                ("jsonrpc", jsonrpc),
                ("method", method),
                ("params", params),
                ("id", id),
                ("timeout_ms", timeout_ms),
            ];
            if let Some((key, value)) = extra {
                m.insert(key, value);
            }
            for (key, value) in members {
                if let Some(value) = value {
                    m.insert(key.to_owned(), value);
                }
            }
            Value::Object(m)
        })
}

/// What one frame holds: a request, a batch, or any JSON at all.
fn frame_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => request(),
        3 => prop::collection::vec(prop_oneof![4 => request(), 1 => json_value()], 0..6)
            .prop_map(Value::Array),
        1 => json_value(),
    ]
}

/// Bytes near valid JSON-RPC: a request's text cut short or with one byte
/// changed, or plain random bytes.
fn frame_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (frame_value(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, at, byte)| {
            let mut bytes = v.to_string().into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            bytes
        }),
        (frame_value(), any::<prop::sample::Index>()).prop_map(|(v, at)| {
            let mut bytes = v.to_string().into_bytes();
            bytes.truncate(at.index(bytes.len()));
            bytes
        }),
        prop::collection::vec(any::<u8>(), 0..256),
    ]
}

static STRUCTURED: OnceLock<Harness> = OnceLock::new();
static BYTES: OnceLock<Harness> = OnceLock::new();

proptest! {
    #[test]
    fn every_request_or_batch_gets_exactly_the_replies_the_spec_requires(v in frame_value()) {
        check_structured(harness(&STRUCTURED), &v)?;
    }

    #[test]
    fn arbitrary_bytes_in_a_frame_get_well_formed_errors_and_the_server_stays_up(
        bytes in frame_bytes()
    ) {
        check_bytes(harness(&BYTES), &bytes)?;
    }
}

// -------------------------------------------------- found by the above ----

static REGRESSIONS: OnceLock<Harness> = OnceLock::new();

/// Found by `every_request_or_batch_gets_exactly_the_replies_the_spec_requires`
/// (a harness bug, kept as a property of the server): a float id comes back
/// as the same text, so it compares equal after the same parse.
#[test]
fn a_float_id_in_a_batch_is_echoed_as_sent() {
    let v = json!([{"id": -3.654087362921988e287}]);
    check_structured(harness(&REGRESSIONS), &v).expect("the reply echoes the id");
}

/// Found by `arbitrary_bytes_in_a_frame_get_well_formed_errors_and_the_server_stays_up`:
/// an id that is valid JSON but beyond any `f64` is echoed verbatim (the
/// server never converts ids), so a reply can hold a number that
/// `serde_json::Value` refuses.
#[test]
fn an_id_beyond_the_range_of_f64_is_echoed_verbatim() {
    let h = harness(&REGRESSIONS);
    let mut stream = h.stream.lock().unwrap_or_else(|p| p.into_inner());
    h.runtime.block_on(async {
        for id in ["-55596E159966839305", "1e999999", &"9".repeat(5000)] {
            let request = format!(r#"{{"jsonrpc":"2.0","method":"rpc.ping","id":{id}}}"#);
            write_frame(&mut stream, request.as_bytes()).await.unwrap();
            let frame = read_frame(&mut stream).await.unwrap();
            let response: Response<'_> = serde_json::from_str(&frame).unwrap();
            assert_eq!(response.id.map(RawValue::get), Some(id));
            assert_eq!(response.result.map(RawValue::get), Some(r#""pong""#));
        }
    });
}
