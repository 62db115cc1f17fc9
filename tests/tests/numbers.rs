//! JSON numbers decode to the exact nearest double, on both sides of the
//! wire: the server reading params, the client reading results.

mod common;

use common::{TestServer, exchange, within};
use proptest::prelude::*;
use rpc_demo::services::CalculatorClient;
use serde_json::json;

/// Shortest round-trip texts (what Python's `repr`, JavaScript and Go
/// print) that a fast but inexact decoder gets one unit in the last place
/// wrong.
const HARD: &[&str] = &[
    "117.63331139400017",
    "0.9215686321258545",
    "2.2250738585072014e-308",
    "9007199254740993",
    "1.7976931348623157e308",
    "5e-324",
];

#[tokio::test]
async fn hard_cases_come_back_exactly_over_the_wire() {
    let fx = TestServer::demo().await;
    let mut raw = fx.raw().await;
    for (id, text) in HARD.iter().enumerate() {
        let request =
            format!(r#"{{"jsonrpc":"2.0","method":"add","params":[{text},0],"id":{id}}}"#);
        common::send_frame(&mut raw, request.as_bytes()).await;
        let body = common::read_frame(&mut raw).await.expect("a response");
        let response = String::from_utf8(body).unwrap();
        let expected: f64 = text.parse().unwrap();
        let got: serde_json::Value = serde_json::from_str(&response).unwrap();
        assert_eq!(
            got["result"].as_f64(),
            Some(expected),
            "{text} came back as {response}"
        );
    }
    // The same through the library's client, reading the result back.
    let calc = CalculatorClient::new(fx.client().await);
    for text in HARD {
        let x: f64 = text.parse().unwrap();
        let params = json!([serde_json::Number::from_f64(x).unwrap(), 0]);
        let sum = within(
            "add",
            exchange(
                &mut raw,
                &json!({"jsonrpc":"2.0","method":"add","params":params,"id":"x"}),
            ),
        )
        .await;
        assert_eq!(sum["result"].as_f64(), Some(x));
        assert_eq!(within("add", calc.add(x, 0.0)).await.unwrap(), x, "{text}");
    }
    drop(calc);
    fx.shutdown().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// `add(x, 0) == x` for arbitrary finite doubles, through the Rust
    /// client and the server: every number is decoded twice, once on each
    /// side.
    #[test]
    fn any_finite_double_survives_a_round_trip(bits in any::<u64>()) {
        let x = f64::from_bits(bits);
        prop_assume!(x.is_finite());
        let got = RUNTIME.with(|(rt, calc)| rt.block_on(calc.add(x, 0.0))).unwrap();
        // -0.0 + 0.0 is 0.0; compare values, not bits.
        prop_assert_eq!(got, x);
    }
}

thread_local! {
    /// One server and one client for every case of the property.
    static RUNTIME: (tokio::runtime::Runtime, CalculatorClient) = {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let calc = rt.block_on(async {
            let fx = TestServer::demo().await;
            let calc = CalculatorClient::new(fx.client().await);
            std::mem::forget(fx); // lives as long as the runtime
            calc
        });
        (rt, calc)
    };
}
