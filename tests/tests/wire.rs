//! The wire protocol as a client in another language sees it: raw frames
//! over a TCP socket, no library client. Each test checks what the server
//! answers and that the connection stays usable (or is closed) afterwards.

mod common;

use rpc_core::{Server, code};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use common::{
    TestServer, exchange, expect_closed, read_frame, read_json, send_frame, send_json, within,
};

/// A valid request for `add(a, b)` with the given id.
fn add(a: f64, b: f64, id: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": "add", "params": [a, b], "id": id})
}

/// Asserts that `response` is a successful response to `id` with `result`.
#[track_caller]
fn assert_result(response: &Value, id: &Value, result: &Value) {
    assert_eq!(response["jsonrpc"], "2.0", "{response}");
    assert_eq!(&response["id"], id, "{response}");
    assert_eq!(&response["result"], result, "{response}");
    assert!(response.get("error").is_none(), "{response}");
}

/// Asserts that `response` is an error response with `code` and `id`, and
/// returns its error object.
#[track_caller]
fn assert_error<'a>(response: &'a Value, code: i64, id: &Value) -> &'a Value {
    assert_eq!(response["jsonrpc"], "2.0", "{response}");
    assert_eq!(&response["id"], id, "{response}");
    assert!(
        response.get("id").is_some(),
        "an error response always has an id member: {response}"
    );
    assert!(response.get("result").is_none(), "{response}");
    let error = &response["error"];
    assert_eq!(error["code"], code, "{response}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error has a message: {response}"
    );
    error
}

/// Proves the connection still frames correctly: a fresh request gets its
/// own, correct response as the very next frame.
async fn assert_still_answers(stream: &mut TcpStream, id: i64) {
    let response = exchange(stream, &add(id as f64, 0.5, json!(id))).await;
    assert_result(&response, &json!(id), &json!(id as f64 + 0.5));
}

#[tokio::test]
async fn add_accepts_params_by_position_and_by_name() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    for (id, params) in [
        (1, json!([2, 3])),
        (2, json!({"a": 2, "b": 3})),
        (3, json!({"b": 3, "a": 2})),
        (4, json!([2.0, 3.0])),
    ] {
        let request = json!({"jsonrpc": "2.0", "method": "add", "params": params, "id": id});
        let response = exchange(&mut s, &request).await;
        assert_result(&response, &json!(id), &json!(5.0));
    }
    let hello = json!({"jsonrpc": "2.0", "method": "hello", "params": {"name": "Zoë"}, "id": 5});
    assert_result(
        &exchange(&mut s, &hello).await,
        &json!(5),
        &json!("Olá, Zoë!"),
    );

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn response_ids_echo_request_ids_exactly() {
    /// The id of a response, as the raw JSON text the server wrote.
    #[derive(Deserialize)]
    struct RawId<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
    }

    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    // Numbers come back as written: no rounding through a float, no
    // reformatting. A 23-digit id would lose precision as an f64.
    let ids = [
        "0",
        "7",
        "-42",
        "1.5",
        "1e3",
        "12345678901234567890123",
        "18446744073709551616",
        r#""abc""#,
        r#""""#,
        r#""ünï 🦀""#,
        r#""with \"quotes\" and \\""#,
        r#""\u00e9""#,
        "null",
    ];
    for id in ids {
        let text = format!(r#"{{"jsonrpc":"2.0","method":"add","params":[1,1],"id":{id}}}"#);
        send_frame(&mut s, text.as_bytes()).await;
        let body = read_frame(&mut s).await.expect("a response");
        let response: RawId<'_> = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            response.id.get(),
            id,
            "the id must come back exactly; response: {}",
            String::from_utf8_lossy(&body)
        );
        let response: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(response["result"], 2.0, "an id of {id} is a request");
    }

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn notifications_get_no_response_even_when_they_fail() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    let notifications = [
        json!({"jsonrpc": "2.0", "method": "add", "params": [1, 2]}),
        json!({"jsonrpc": "2.0", "method": "echo", "params": {"text": "quiet"}}),
        json!({"jsonrpc": "2.0", "method": "no_such_method", "params": []}),
        json!({"jsonrpc": "2.0", "method": "add", "params": [1]}),
        json!({"jsonrpc": "2.0", "method": "div", "params": [1, 0]}),
        json!({"jsonrpc": "2.0", "method": "rpc.ping"}),
    ];
    for (i, notification) in notifications.iter().enumerate() {
        send_json(&mut s, notification).await;
        // The very next frame must be the answer to this request, not
        // something about the notification.
        let id = 100 + i as i64;
        let response = exchange(&mut s, &add(id as f64, 1.0, json!(id))).await;
        assert_result(&response, &json!(id), &json!(id as f64 + 1.0));
    }

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_batch_gets_one_array_with_a_response_per_request_and_none_per_notification() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    let batch = json!([
        {"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1},
        {"jsonrpc": "2.0", "method": "echo", "params": ["not answered"]},
        {"jsonrpc": "2.0", "method": "hello", "params": {"name": "Lua"}, "id": "two"},
        {"jsonrpc": "2.0", "method": "no_such_method", "params": []},
        {"jsonrpc": "2.0", "method": "div", "params": [1, 0], "id": 3},
        {"jsonrpc": "2.0", "method": "mul", "params": [6, 7], "id": 4},
        {"jsonrpc": "2.0", "method": "no_such_method", "id": 5},
        {"jsonrpc": "2.0", "method": "add", "params": [1]},
    ]);
    let response = exchange(&mut s, &batch).await;
    let members = response
        .as_array()
        .expect("a batch is answered with an array");
    assert_eq!(members.len(), 5, "one response per request: {response}");
    let by_id: BTreeMap<String, &Value> =
        members.iter().map(|m| (m["id"].to_string(), m)).collect();
    assert_eq!(by_id.len(), 5, "distinct ids: {response}");
    assert_result(by_id["1"], &json!(1), &json!(3.0));
    assert_result(by_id[r#""two""#], &json!("two"), &json!("Olá, Lua!"));
    let div = assert_error(by_id["3"], code::APPLICATION_ERROR, &json!(3));
    assert_eq!(div["data"], "DivisionByZero");
    assert_result(by_id["4"], &json!(4), &json!(42.0));
    assert_error(by_id["5"], code::METHOD_NOT_FOUND, &json!(5));

    assert_still_answers(&mut s, 6).await;
    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_batch_of_only_notifications_gets_no_response() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    let batch = json!([
        {"jsonrpc": "2.0", "method": "add", "params": [1, 2]},
        {"jsonrpc": "2.0", "method": "echo", "params": ["x"]},
        {"jsonrpc": "2.0", "method": "no_such_method"},
    ]);
    send_json(&mut s, &batch).await;
    // The next frame must be the plain response to this request, not an
    // (empty) array.
    let response = exchange(&mut s, &add(1.0, 1.0, json!(99))).await;
    assert_result(&response, &json!(99), &json!(2.0));

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn an_empty_batch_is_a_single_invalid_request_with_null_id() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    for empty in [&b"[]"[..], b" [ ] "] {
        send_frame(&mut s, empty).await;
        let response = read_json(&mut s).await;
        assert!(response.is_object(), "not an array: {response}");
        assert_error(&response, code::INVALID_REQUEST, &Value::Null);
        assert_still_answers(&mut s, 1).await;
    }

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_batch_of_non_objects_gets_an_invalid_request_per_member() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    send_frame(&mut s, b"[1,2]").await;
    let response = read_json(&mut s).await;
    let members = response.as_array().expect("an array");
    assert_eq!(members.len(), 2, "{response}");
    for member in members {
        assert_error(member, code::INVALID_REQUEST, &Value::Null);
    }
    assert_still_answers(&mut s, 1).await;

    drop(s);
    fx.shutdown().await;
}

/// One malformed or failing request, what the server must answer, and a
/// word the error message must contain (if any).
struct Case {
    what: &'static str,
    frame: Vec<u8>,
    code: i64,
    id: Value,
    mentions: Option<&'static str>,
}

fn case(what: &'static str, frame: &[u8], code: i64, id: Value, mentions: &'static str) -> Case {
    Case {
        what,
        frame: frame.to_vec(),
        code,
        id,
        mentions: (!mentions.is_empty()).then_some(mentions),
    }
}

#[tokio::test]
async fn every_malformed_request_gets_its_error_code_and_the_connection_goes_on() {
    use code::*;
    // One line per case reads as a table.
    #[rustfmt::skip]
    let cases = [
        case(
            "truncated JSON",
            br#"{"jsonrpc":"2.0","method":"#,
            PARSE_ERROR,
            Value::Null,
            "",
        ),
        case("a truncated batch", b"[1,", PARSE_ERROR, Value::Null, ""),
        case(
            "invalid UTF-8",
            b"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[\"\xff\xfe\"],\"id\":1}",
            PARSE_ERROR,
            Value::Null,
            "UTF-8",
        ),
        case(
            "a lone continuation byte",
            b"\x80",
            PARSE_ERROR,
            Value::Null,
            "UTF-8",
        ),
        case(
            "missing method",
            br#"{"jsonrpc":"2.0","id":1}"#,
            INVALID_REQUEST,
            json!(1),
            "method",
        ),
        case(
            "jsonrpc 1.0",
            br#"{"jsonrpc":"1.0","method":"add","params":[1,2],"id":2}"#,
            INVALID_REQUEST,
            json!(2),
            "2.0",
        ),
        case(
            "jsonrpc as a number",
            br#"{"jsonrpc":2.0,"method":"add","params":[1,2],"id":3}"#,
            INVALID_REQUEST,
            json!(3),
            "",
        ),
        case(
            "no jsonrpc member",
            br#"{"method":"add","params":[1,2],"id":4}"#,
            INVALID_REQUEST,
            json!(4),
            "2.0",
        ),
        case(
            "method is a number",
            br#"{"jsonrpc":"2.0","method":5,"id":5}"#,
            INVALID_REQUEST,
            json!(5),
            "",
        ),
        case(
            "method is null",
            br#"{"jsonrpc":"2.0","method":null,"id":6}"#,
            INVALID_REQUEST,
            json!(6),
            "",
        ),
        case(
            "params is a number",
            br#"{"jsonrpc":"2.0","method":"add","params":3,"id":7}"#,
            INVALID_REQUEST,
            json!(7),
            "params",
        ),
        case(
            "params is a string",
            br#"{"jsonrpc":"2.0","method":"echo","params":"x","id":8}"#,
            INVALID_REQUEST,
            json!(8),
            "params",
        ),
        case(
            "id is an object",
            br#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":{}}"#,
            INVALID_REQUEST,
            Value::Null,
            "id",
        ),
        case(
            "id is a boolean",
            br#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":true}"#,
            INVALID_REQUEST,
            Value::Null,
            "id",
        ),
        case("a bare number", b"42", INVALID_REQUEST, Value::Null, ""),
        case(
            "a bare string",
            br#""add""#,
            INVALID_REQUEST,
            Value::Null,
            "",
        ),
        case(
            "unknown method",
            br#"{"jsonrpc":"2.0","method":"modulo","params":[7,2],"id":9}"#,
            METHOD_NOT_FOUND,
            json!(9),
            "modulo",
        ),
        case(
            "method names are case-sensitive",
            br#"{"jsonrpc":"2.0","method":"Add","params":[1,2],"id":10}"#,
            METHOD_NOT_FOUND,
            json!(10),
            "Add",
        ),
        case(
            "missing parameter",
            br#"{"jsonrpc":"2.0","method":"add","params":[2],"id":11}"#,
            INVALID_PARAMS,
            json!(11),
            "`b`",
        ),
        case(
            "missing named parameter",
            br#"{"jsonrpc":"2.0","method":"add","params":{"b":2},"id":12}"#,
            INVALID_PARAMS,
            json!(12),
            "`a`",
        ),
        case(
            "no params at all",
            br#"{"jsonrpc":"2.0","method":"hello","id":13}"#,
            INVALID_PARAMS,
            json!(13),
            "`name`",
        ),
        case(
            "wrong type by position",
            br#"{"jsonrpc":"2.0","method":"add","params":[2,"three"],"id":14}"#,
            INVALID_PARAMS,
            json!(14),
            "`b`",
        ),
        case(
            "wrong type by name",
            br#"{"jsonrpc":"2.0","method":"hello","params":{"name":42},"id":15}"#,
            INVALID_PARAMS,
            json!(15),
            "`name`",
        ),
        case(
            "unknown named parameter",
            br#"{"jsonrpc":"2.0","method":"add","params":{"a":1,"b":2,"c":3},"id":16}"#,
            INVALID_PARAMS,
            json!(16),
            "`c`",
        ),
        case(
            "too many positional parameters",
            br#"{"jsonrpc":"2.0","method":"add","params":[1,2,3],"id":17}"#,
            INVALID_PARAMS,
            json!(17),
            "at most 2",
        ),
        case(
            "a parameter given twice",
            br#"{"jsonrpc":"2.0","method":"add","params":{"a":1,"a":2,"b":3},"id":18}"#,
            INVALID_PARAMS,
            json!(18),
            "`a`",
        ),
        case(
            "params for rpc.ping",
            br#"{"jsonrpc":"2.0","method":"rpc.ping","params":[1],"id":19}"#,
            INVALID_PARAMS,
            json!(19),
            "",
        ),
        case(
            "division by zero",
            br#"{"jsonrpc":"2.0","method":"div","params":[1,0],"id":20}"#,
            APPLICATION_ERROR,
            json!(20),
            "division by zero",
        ),
        case(
            "pow overflow",
            br#"{"jsonrpc":"2.0","method":"pow","params":[10,400],"id":21}"#,
            APPLICATION_ERROR,
            json!(21),
            "not a finite number",
        ),
    ];

    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;
    for (n, case) in cases.iter().enumerate() {
        send_frame(&mut s, &case.frame).await;
        let response = read_json(&mut s).await;
        assert_eq!(
            response["error"]["code"], case.code,
            "{}: wrong code in {response}",
            case.what
        );
        let error = assert_error(&response, case.code, &case.id);
        if let Some(word) = case.mentions {
            let message = error["message"].as_str().unwrap();
            assert!(
                message.contains(word),
                "{}: the message should mention {word}: {message}",
                case.what
            );
        }
        // Framing is intact: the same connection answers the next request.
        assert_still_answers(&mut s, 1000 + n as i64).await;
    }

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn valid_json_with_an_undecodable_member_keeps_its_id_and_names_the_member() {
    use code::*;
    // Valid JSON text (RFC 8259 allows a lone surrogate escape, and Python's
    // `json.dumps` writes one) whose member does not decode to the type
    // expected: never a parse error, always the id kept.
    #[rustfmt::skip]
    let cases = [
        case("lone surrogate in method", br#"{"jsonrpc":"2.0","method":"\udc00","id":5}"#, INVALID_REQUEST, json!(5), "method"),
        case("lone surrogate in jsonrpc", br#"{"jsonrpc":"\udc00","method":"add","id":6}"#, INVALID_REQUEST, json!(6), "jsonrpc"),
        case("a number for method", br#"{"jsonrpc":"2.0","method":12,"id":7}"#, INVALID_REQUEST, json!(7), "method"),
        case("a string for timeout_ms", br#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":8,"timeout_ms":"5"}"#, INVALID_REQUEST, json!(8), "timeout_ms"),
        case("a negative timeout_ms", br#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":9,"timeout_ms":-5}"#, INVALID_REQUEST, json!(9), "timeout_ms"),
        case("lone surrogate in a param value", br#"{"jsonrpc":"2.0","method":"hello","params":["\udc00"],"id":10}"#, INVALID_PARAMS, json!(10), "name"),
        case("lone surrogate in a param name", br#"{"jsonrpc":"2.0","method":"hello","params":{"\udc00":"x"},"id":11}"#, INVALID_PARAMS, json!(11), ""),
    ];
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;
    for (n, case) in cases.iter().enumerate() {
        send_frame(&mut s, &case.frame).await;
        let response = read_json(&mut s).await;
        let error = assert_error(&response, case.code, &case.id);
        if let Some(word) = case.mentions {
            let message = error["message"].as_str().unwrap();
            assert!(
                message.contains(word),
                "{}: the message should name {word}: {message}",
                case.what
            );
        }
        assert_still_answers(&mut s, 2000 + n as i64).await;
    }

    // Inside a batch, the member keeps its id too.
    send_frame(
        &mut s,
        br#"[{"jsonrpc":"2.0","method":"\udc00","id":21},{"jsonrpc":"2.0","method":"add","params":[1,1],"id":22}]"#,
    )
    .await;
    let batch = read_json(&mut s).await;
    let members = batch.as_array().expect("a batch answer");
    let bad = members
        .iter()
        .find(|m| m["id"] == 21)
        .expect("member 21 answered");
    assert_error(bad, INVALID_REQUEST, &json!(21));
    let good = members
        .iter()
        .find(|m| m["id"] == 22)
        .expect("member 22 answered");
    assert_result(good, &json!(22), &json!(2.0));

    // An id that is a string with a lone surrogate is echoed byte for byte.
    send_frame(
        &mut s,
        br#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":"\udc00"}"#,
    )
    .await;
    let raw = String::from_utf8(read_frame(&mut s).await.unwrap()).unwrap();
    assert!(raw.contains(r#""id":"\udc00""#), "{raw}");

    // A trace context that is not a string is ignored, as W3C says.
    let response = exchange(
        &mut s,
        &json!({"jsonrpc":"2.0","method":"add","params":[1,2],"id":30,"traceparent":5}),
    )
    .await;
    assert_result(&response, &json!(30), &json!(3.0));

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn error_messages_quote_at_most_256_bytes_of_what_the_client_sent() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;
    let long = "x".repeat(10_000);
    for (what, request) in [
        (
            "an unknown method",
            json!({"jsonrpc":"2.0","method":long,"id":1}),
        ),
        (
            "a param of the wrong type",
            json!({"jsonrpc":"2.0","method":"add","params":[long, 1],"id":1}),
        ),
        (
            "an unknown param name",
            json!({"jsonrpc":"2.0","method":"add","params":{long.clone(): 1},"id":1}),
        ),
    ] {
        let response = exchange(&mut s, &request).await;
        let message = response["error"]["message"].as_str().expect("an error");
        assert!(
            message.len() < 600 && message.contains("xxx…"),
            "{what}: {} bytes: {message}",
            message.len()
        );
    }
    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn text_that_is_not_json_is_a_parse_error_whatever_its_first_character() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    let not_json: [&[u8]; 8] = [
        b"hello?",
        b"",
        b"   ",
        b"nul",
        b"tru",
        b"1.2.3",
        br#""unterminated"#,
        br#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1} trailing"#,
    ];
    for (n, body) in not_json.into_iter().enumerate() {
        send_frame(&mut s, body).await;
        let response = read_json(&mut s).await;
        assert_eq!(
            response["error"]["code"],
            code::PARSE_ERROR,
            "{:?} is not JSON: expected -32700, got {response}",
            String::from_utf8_lossy(body)
        );
        assert_error(&response, code::PARSE_ERROR, &Value::Null);
        assert_still_answers(&mut s, n as i64).await;
    }

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn application_errors_carry_the_error_value_in_data() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    let div = json!({"jsonrpc": "2.0", "method": "div", "params": {"a": 1, "b": 0}, "id": "d"});
    let response = exchange(&mut s, &div).await;
    let error = assert_error(&response, 1000, &json!("d"));
    assert_eq!(error["data"], "DivisionByZero", "{response}");
    assert_eq!(
        error["message"], "division by zero",
        "the message is the error's Display text: {response}"
    );

    let pow = json!({"jsonrpc": "2.0", "method": "pow", "params": [10, 400], "id": "p"});
    let response = exchange(&mut s, &pow).await;
    let error = assert_error(&response, 1000, &json!("p"));
    assert_eq!(
        error["data"],
        json!({"NotFinite": {"operation": "pow"}}),
        "{response}"
    );
    assert_eq!(error["message"], "the result of pow is not a finite number");

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn an_overflowing_result_is_a_not_finite_error_never_a_null_result() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    // Each of these is ±infinity or NaN in f64, which JSON cannot carry.
    let overflows = [
        ("add", 1e308, 1e308),
        ("sub", -1e308, 1e308),
        ("mul", 1e308, 10.0),
        ("div", 1e308, 1e-308),
        ("pow", 10.0, 400.0),
        ("pow", 0.0, -1.0),
    ];
    for (id, (method, a, b)) in overflows.into_iter().enumerate() {
        let request = json!({"jsonrpc": "2.0", "method": method, "params": [a, b], "id": id});
        let response = exchange(&mut s, &request).await;
        let error = assert_error(&response, code::APPLICATION_ERROR, &json!(id));
        assert_eq!(
            error["data"],
            json!({"NotFinite": {"operation": method}}),
            "{method}({a:e}, {b:e}): {response}"
        );
    }

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn an_oversize_length_prefix_gets_an_error_and_the_connection_closes() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;
    assert_still_answers(&mut s, 1).await;

    // Announce a 4 GiB frame; send only the header.
    within("the header", s.write_all(&[0xff, 0xff, 0xff, 0xff]))
        .await
        .unwrap();
    let response = read_json(&mut s).await;
    let error = assert_error(&response, code::FRAME_TOO_LARGE, &Value::Null);
    assert!(
        error["message"].as_str().unwrap().contains("4294967295"),
        "the message names the announced size: {response}"
    );
    expect_closed(&mut s).await;

    // Other clients are unaffected.
    let mut fresh = fx.raw().await;
    assert_still_answers(&mut fresh, 2).await;

    drop(fresh);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_frame_at_the_configured_maximum_is_served_and_one_byte_more_closes_the_connection() {
    let fx = TestServer::start(Server::builder().max_frame_size(1024).service(
        rpc_demo::services::EchoServer::new(rpc_demo::services::Echoer),
    ))
    .await;

    /// A valid echo request padded with trailing whitespace to `len` bytes.
    fn padded_request(len: usize) -> Vec<u8> {
        let mut body =
            br#"{"jsonrpc":"2.0","method":"echo","params":["at the limit"],"id":1}"#.to_vec();
        body.resize(len, b' ');
        body
    }

    let mut s = fx.raw().await;
    send_frame(&mut s, &padded_request(1024)).await;
    let response = read_json(&mut s).await;
    assert_result(&response, &json!(1), &json!("at the limit"));

    send_frame(&mut s, &padded_request(1025)).await;
    let response = read_json(&mut s).await;
    let error = assert_error(&response, code::FRAME_TOO_LARGE, &Value::Null);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("1025") && message.contains("1024"),
        "the message names both sizes: {message}"
    );
    expect_closed(&mut s).await;

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn calls_in_flight_still_answer_after_an_oversize_frame() {
    use common::gated::Gate;

    let gate = Gate::default();
    let fx = common::gated::serve(&gate, Server::builder()).await;
    let mut s = fx.raw().await;

    send_json(
        &mut s,
        &json!({"jsonrpc": "2.0", "method": "slow", "id": "slow"}),
    )
    .await;
    within("the slow call to start", gate.entered.notified()).await;
    within("the header", s.write_all(&u32::MAX.to_be_bytes()))
        .await
        .unwrap();
    assert_error(
        &read_json(&mut s).await,
        code::FRAME_TOO_LARGE,
        &Value::Null,
    );

    gate.open.notify_one();
    assert_result(&read_json(&mut s).await, &json!("slow"), &json!("done"));
    expect_closed(&mut s).await;

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_client_that_half_closes_after_sending_still_gets_every_response() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;

    for id in 1..=3 {
        send_json(&mut s, &add(f64::from(id), 10.0, json!(id))).await;
    }
    send_json(
        &mut s,
        &json!({"jsonrpc": "2.0", "method": "echo", "params": ["bye"], "id": 4}),
    )
    .await;
    within("half-close", s.shutdown()).await.unwrap();

    // Responses may come in any order: collect them by id.
    let mut by_id = BTreeMap::new();
    for _ in 0..4 {
        let response = read_json(&mut s).await;
        by_id.insert(response["id"].as_i64().expect("a numeric id"), response);
    }
    for id in 1..=3 {
        assert_result(&by_id[&id], &json!(id), &json!(f64::from(id as i32) + 10.0));
    }
    assert_result(&by_id[&4], &json!(4), &json!("bye"));
    expect_closed(&mut s).await;

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_truncated_frame_closes_only_its_own_connection() {
    let fx = TestServer::demo().await;

    let mut s = fx.raw().await;
    let mut partial = 100u32.to_be_bytes().to_vec();
    partial.extend_from_slice(br#"{"jsonrpc"#);
    within("the partial frame", s.write_all(&partial))
        .await
        .unwrap();
    within("half-close", s.shutdown()).await.unwrap();
    // The server gives up on the unfinishable frame and closes, without
    // answering anything.
    expect_closed(&mut s).await;

    let mut fresh = fx.raw().await;
    assert_still_answers(&mut fresh, 1).await;

    drop(fresh);
    fx.shutdown().await;
}

#[tokio::test]
async fn the_server_keeps_serving_new_clients_after_abusive_connections() {
    let fx = TestServer::demo().await;

    // A connection that announces 4 GiB.
    let mut s = fx.raw().await;
    within("write", s.write_all(&u32::MAX.to_be_bytes()))
        .await
        .unwrap();
    assert_error(
        &read_json(&mut s).await,
        code::FRAME_TOO_LARGE,
        &Value::Null,
    );
    expect_closed(&mut s).await;

    // A connection that stops in the middle of a header.
    let mut s = fx.raw().await;
    within("write", s.write_all(&[0, 0])).await.unwrap();
    drop(s);

    // A connection that stops in the middle of a body.
    let mut s = fx.raw().await;
    within("write", s.write_all(&[0, 0, 0, 100, b'{']))
        .await
        .unwrap();
    drop(s);

    // A connection that sends garbage frames and leaves without reading.
    let mut s = fx.raw().await;
    for garbage in [&b"\xff\xff"[..], b"{{{{", b"[]", b"[1,2,3]", b"null"] {
        send_frame(&mut s, garbage).await;
    }
    drop(s);

    // A connection that opens and closes without a byte.
    drop(fx.raw().await);

    // A connection with a request in flight that leaves without reading.
    let mut s = fx.raw().await;
    send_json(&mut s, &add(1.0, 2.0, json!(1))).await;
    drop(s);

    // The next client is served normally, on several connections.
    for id in 0..3 {
        let mut s = fx.raw().await;
        assert_still_answers(&mut s, id).await;
    }

    fx.shutdown().await;
}

/// A service whose method panics, next to one that does not.
mod panicking {
    #[rpc_core::service]
    pub trait Fragile {
        async fn explode(&self, why: String) -> u32;
        async fn steady(&self) -> u32;
    }

    pub struct Glass;
    impl Fragile for Glass {
        async fn explode(&self, why: String) -> u32 {
            panic!("{why}")
        }
        async fn steady(&self) -> u32 {
            7
        }
    }
}

#[tokio::test]
async fn a_panicking_handler_yields_an_internal_error_and_the_server_goes_on() {
    use panicking::{FragileServer, Glass};

    let fx = TestServer::start(Server::builder().service(FragileServer::new(Glass))).await;
    let mut s = fx.raw().await;

    let explode = json!({"jsonrpc": "2.0", "method": "explode", "params": ["kaboom"], "id": 1});
    let response = exchange(&mut s, &explode).await;
    let error = assert_error(&response, code::INTERNAL_ERROR, &json!(1));
    assert!(
        error["message"].as_str().unwrap().contains("kaboom"),
        "the message carries the panic message: {response}"
    );

    let steady = json!({"jsonrpc": "2.0", "method": "steady", "id": 2});
    assert_result(&exchange(&mut s, &steady).await, &json!(2), &json!(7));

    // Inside a batch, a panic fails only its own member.
    let batch = json!([
        {"jsonrpc": "2.0", "method": "explode", "params": ["again"], "id": 3},
        {"jsonrpc": "2.0", "method": "steady", "id": 4},
    ]);
    let response = exchange(&mut s, &batch).await;
    let members = response.as_array().expect("an array");
    assert_eq!(members.len(), 2, "{response}");
    let by_id: BTreeMap<String, &Value> =
        members.iter().map(|m| (m["id"].to_string(), m)).collect();
    assert_error(by_id["3"], code::INTERNAL_ERROR, &json!(3));
    assert_result(by_id["4"], &json!(4), &json!(7));

    // A panicking notification is simply not answered.
    send_json(
        &mut s,
        &json!({"jsonrpc": "2.0", "method": "explode", "params": ["quietly"]}),
    )
    .await;
    assert_result(&exchange(&mut s, &steady).await, &json!(2), &json!(7));

    // New connections are served too.
    let mut fresh = fx.raw().await;
    assert_result(&exchange(&mut fresh, &steady).await, &json!(2), &json!(7));

    drop((s, fresh));
    fx.shutdown().await;
}

/// Handlers that panic at different points of their life: on their first
/// poll (which the server makes inline, in the session loop) or after they
/// first waited (in the call's own task).
mod brittle {
    use std::sync::Arc;
    use tokio::sync::Notify;

    #[rpc_core::service]
    pub trait Brittle {
        /// Returns 1 once the gate opens.
        async fn wait(&self) -> u32;
        /// Panics before it ever waits.
        async fn boom(&self) -> u32;
        /// Waits once (yields), then panics.
        async fn late_boom(&self) -> u32;
        /// Returns 7 at once.
        async fn steady(&self) -> u32;
    }

    pub struct Vase(pub Arc<Notify>);
    impl Brittle for Vase {
        async fn wait(&self) -> u32 {
            self.0.notified().await;
            1
        }
        async fn boom(&self) -> u32 {
            panic!("on the first poll")
        }
        async fn late_boom(&self) -> u32 {
            tokio::task::yield_now().await;
            panic!("after waiting")
        }
        async fn steady(&self) -> u32 {
            7
        }
    }
}

#[tokio::test]
async fn a_panic_on_a_handlers_first_poll_fails_only_its_own_call() {
    use brittle::{BrittleServer, Vase};

    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let fx =
        TestServer::start(Server::builder().service(BrittleServer::new(Vase(gate.clone())))).await;
    let mut s = fx.raw().await;

    // Every request in one write, so the session loop handles them in one
    // burst: a panic escaping the inline poll would take the loop, the
    // call waiting in its task and the calls after it down with it.
    let requests = [
        json!({"jsonrpc": "2.0", "method": "wait", "id": 1}),
        json!({"jsonrpc": "2.0", "method": "boom", "id": 2}),
        json!({"jsonrpc": "2.0", "method": "steady", "id": 3}),
        json!({"jsonrpc": "2.0", "method": "late_boom", "id": 4}),
        json!({"jsonrpc": "2.0", "method": "boom"}),
        json!({"jsonrpc": "2.0", "method": "steady", "id": 5}),
    ];
    let mut bytes = Vec::new();
    for request in &requests {
        let body = serde_json::to_vec(request).unwrap();
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
    }
    s.write_all(&bytes).await.unwrap();

    let mut answers = BTreeMap::new();
    while answers.len() < 4 {
        let response = read_json(&mut s).await;
        answers.insert(response["id"].to_string(), response);
    }
    assert_error(&answers["2"], code::INTERNAL_ERROR, &json!(2));
    assert!(
        answers["2"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("on the first poll"),
        "{}",
        answers["2"]
    );
    assert_result(&answers["3"], &json!(3), &json!(7));
    assert_error(&answers["4"], code::INTERNAL_ERROR, &json!(4));
    assert_result(&answers["5"], &json!(5), &json!(7));
    assert!(
        !answers.contains_key("1"),
        "`wait` still waits: {answers:?}"
    );

    // The call that was waiting in its own task is still served.
    gate.notify_one();
    assert_result(&read_json(&mut s).await, &json!(1), &json!(1));
    assert_result(
        &exchange(
            &mut s,
            &json!({"jsonrpc": "2.0", "method": "steady", "id": 6}),
        )
        .await,
        &json!(6),
        &json!(7),
    );

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_call_beyond_the_in_flight_limit_gets_server_busy_and_the_connection_survives() {
    use common::gated::Gate;

    let gate = Gate::default();
    let fx = common::gated::serve(&gate, Server::builder().max_in_flight(1)).await;
    let mut s = fx.raw().await;

    let slow = json!({"jsonrpc": "2.0", "method": "slow", "id": "slow"});
    let quick = |id: i64| json!({"jsonrpc": "2.0", "method": "quick", "id": id});
    send_json(&mut s, &slow).await;
    within("the slow call to start", gate.entered.notified()).await;

    // The one slot is taken: the next call is refused, not queued.
    let busy = exchange(&mut s, &quick(1)).await;
    let error = assert_error(&busy, code::SERVER_BUSY, &json!(1));
    assert!(
        error["message"].as_str().unwrap().contains("server busy"),
        "{busy}"
    );

    // Let the slow call finish; its response arrives on the same connection.
    gate.open.notify_one();
    assert_result(&read_json(&mut s).await, &json!("slow"), &json!("done"));

    // The slot is free again.
    assert_result(&exchange(&mut s, &quick(2)).await, &json!(2), &json!(1));

    drop(s);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_member_name_with_a_lone_surrogate_is_an_invalid_request_that_keeps_its_id() {
    let fx = TestServer::demo().await;
    let mut s = fx.raw().await;
    send_frame(
        &mut s,
        br#"{"jsonrpc":"2.0","method":"rpc.ping","\udc00":1,"id":5}"#,
    )
    .await;
    let response = read_json(&mut s).await;
    assert_error(&response, code::INVALID_REQUEST, &json!(5));
    assert_still_answers(&mut s, 6).await;
    drop(s);
    fx.shutdown().await;
}
