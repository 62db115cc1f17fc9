//! The `rpc.discover` document: an OpenRPC description of a server's methods.
//!
//! Built once when the server starts, from the [`MethodInfo`] of every
//! service, and served as-is to each caller of `rpc.discover`.

use serde_json::json;
use serde_json::value::RawValue;

use crate::service::MethodInfo;

/// The OpenRPC version of the document.
const OPENRPC_VERSION: &str = "1.3.2";

/// Builds the document for a server hosting `services` with `methods`.
pub(crate) fn document(services: &[&str], methods: &[MethodInfo]) -> Box<RawValue> {
    let title = if services.is_empty() {
        "rpc server".to_owned()
    } else {
        services.join(", ")
    };
    let methods: Vec<serde_json::Value> = methods
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "description": m.docs.trim(),
                "paramStructure": "either",
                "params": m.params.iter().map(|p| json!({"name": p, "schema": {}})).collect::<Vec<_>>(),
                "result": {"name": "result", "schema": {}},
            })
        })
        .collect();
    let doc = json!({
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": env!("CARGO_PKG_VERSION")},
        "methods": methods,
    });
    // A json! value always serializes; the default (`null`) is unreachable.
    serde_json::value::to_raw_value(&doc).unwrap_or_default()
}
