//! The service the fuzzed server offers, shared by the property tests
//! (`rpc-core/tests/fuzz.rs`, as `mod fuzzed;`) and the cargo-fuzz target
//! `fuzz/fuzz_targets/request_dispatch.rs` (through `#[path]`, since `fuzz/`
//! is a workspace of its own). Both depend on `rpc-core`, `serde` and
//! `serde_json`, which is all this file needs.
//!
//! Quick methods only, with varied argument types, so every call is
//! answered before the test moves on.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// What the fuzzed server offers besides the built-in `rpc.*` methods.
#[rpc_core::service]
pub trait Fuzzed {
    /// Adds two integers (overflow is an application error, not a panic).
    async fn add(&self, a: i64, b: i64) -> Result<i64, Overflow>;
    /// Returns `text` unchanged.
    async fn echo(&self, text: String) -> String;
    /// Returns the arguments as one JSON value.
    async fn pack(&self, list: Vec<Value>, map: BTreeMap<String, Value>) -> Value;
}

/// The error of an `add` whose sum does not fit an `i64`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Overflow;

/// The implementation: `FuzzedServer::new(Impl)`.
pub struct Impl;

impl Fuzzed for Impl {
    async fn add(&self, a: i64, b: i64) -> Result<i64, Overflow> {
        a.checked_add(b).ok_or(Overflow)
    }

    async fn echo(&self, text: String) -> String {
        text
    }

    async fn pack(&self, list: Vec<Value>, map: BTreeMap<String, Value>) -> Value {
        json!({"list": list, "map": map})
    }
}
