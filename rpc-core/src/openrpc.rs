//! The `rpc.discover` document: an OpenRPC 1.3.2 description of a server's
//! methods, with the JSON Schema of every parameter, result and
//! application error.
//!
//! Names, parameters and docs are fixed at compile time (the macro's
//! `MethodInfo`); the schemas come from `schemars` for types that implement
//! `JsonSchema` (an empty schema otherwise), generated in JSON Schema draft 7
//! as the OpenRPC meta-schema expects, with every definition under
//! `components/schemas` and every `$ref` pointing there. The document is
//! built when it is first asked for, then kept.

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
    let mut settings = schemars::generate::SchemaSettings::draft07();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    let methods: Vec<serde_json::Value> =
        methods.iter().map(|m| method(m, &mut generator)).collect();
    let schemas = generator.take_definitions(true);
    let doc = json!({
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": env!("CARGO_PKG_VERSION")},
        "methods": methods,
        "components": {"schemas": schemas},
    });
    // A json! value always serializes; the default (`null`) is unreachable.
    serde_json::value::to_raw_value(&doc).unwrap_or_default()
}

/// One method object.
fn method(m: &MethodInfo, generator: &mut schemars::SchemaGenerator) -> serde_json::Value {
    let docs = m.docs.trim();
    let params: Vec<serde_json::Value> = m
        .params
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let schema = m
                .param_schemas
                .get(i)
                .map_or_else(|| json!({}), |schema| schema(generator));
            json!({
                "name": name,
                "required": m.required.get(i).copied().unwrap_or(true),
                "schema": schema,
            })
        })
        .collect();
    let mut method = json!({
        "name": m.name,
        "paramStructure": "either",
        "params": params,
        "result": {"name": "result", "schema": (m.result_schema)(generator)},
    });
    let object = method.as_object_mut().expect("an object");
    if let Some(summary) = docs.lines().next().filter(|l| !l.is_empty()) {
        object.insert("summary".into(), json!(summary));
        object.insert("description".into(), json!(docs));
    }
    if m.deprecated {
        object.insert("deprecated".into(), json!(true));
    }
    if let Some(error) = m.error_schema {
        // OpenRPC's error object takes no schema: the application error's
        // goes in a specification extension, where the meta-schema allows.
        object.insert(
            "errors".into(),
            json!([{"code": crate::code::APPLICATION_ERROR, "message": "application error: the method's own error, in `data`"}]),
        );
        object.insert("x-application-error".into(), error(generator));
    }
    if !m.aliases.is_empty() {
        object.insert("x-aliases".into(), json!(m.aliases));
    }
    if m.streaming {
        // The result opens a stream; the schema above is its items'.
        object.insert("x-stream".into(), json!(true));
    }
    method
}
