//! `rpc.discover` answers an OpenRPC 1.3.2 document with real schemas: it
//! validates against the OpenRPC meta-schema (the npm package
//! `@open-rpc/meta-schema`, checked with Python's `jsonschema`; `.ci/run`
//! installs both), and every `$ref` in it resolves.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{TestServer, within};
use serde_json::Value;

/// Where `.ci/run` unpacks `@open-rpc/meta-schema` and the JSON Schema
/// meta-schema it refers to, `@json-schema-tools/meta-schema`.
fn meta_schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/openrpc-meta-schema")
}

async fn discover() -> Value {
    let fx = TestServer::demo().await;
    let client = fx.client().await;
    let doc: Value = within("rpc.discover", client.call("rpc.discover", &[(); 0]))
        .await
        .unwrap();
    drop(client);
    fx.shutdown().await;
    doc
}

/// Every `$ref` under `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_has_schemas_and_every_ref_resolves() {
    let doc = discover().await;
    let add = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "add")
        .unwrap();
    assert_eq!(add["params"][0]["schema"]["type"], "number", "{add}");
    assert_eq!(add["params"][0]["required"], true);
    assert_eq!(add["result"]["schema"]["type"], "number");
    assert_eq!(add["x-aliases"], serde_json::json!(["soma"]));
    assert_eq!(add["errors"][0]["code"], 1000);
    let error_ref = add["x-application-error"]["$ref"].as_str().unwrap();
    assert_eq!(error_ref, "#/components/schemas/CalcError");

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a $ref outside components/schemas: {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} does not resolve"
        );
    }
}

/// Validates argv[2] against the OpenRPC meta-schema argv[1], resolving its
/// references to the JSON Schema meta-schema argv[3] locally: the validator
/// may not fetch anything over the network.
const VALIDATE: &str = r#"
import json, sys, jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
meta, doc, tools = (json.load(open(path)) for path in sys.argv[1:4])
def offline(uri):
    raise LookupError("not available offline: " + uri)
registry = Registry(retrieve=offline).with_resources([
    (uri, Resource.from_contents(schema, default_specification=DRAFT7))
    for uri, schema in [
        ("https://meta.json-schema.tools", tools),
        ("https://meta.json-schema.tools/", tools),
        ("https://meta.open-rpc.org/", meta),
    ]
])
errors = sorted(jsonschema.Draft7Validator(meta, registry=registry).iter_errors(doc), key=str)
for error in errors:
    print(list(error.absolute_path), error.message)
sys.exit(1 if errors else 0)
"#;

#[tokio::test]
async fn the_document_validates_against_the_openrpc_meta_schema() {
    let module = meta_schema_dir().join("package/index.js");
    let tools = meta_schema_dir().join("tools/package/schema.json");
    assert!(
        module.is_file() && tools.is_file(),
        "missing {} or {}: .ci/run unpacks `npm pack @open-rpc/meta-schema@1.14.9` and `@json-schema-tools/meta-schema@1.7.5` there",
        module.display(),
        tools.display()
    );
    let meta = Command::new("node")
        .arg("-e")
        .arg(format!(
            "process.stdout.write(JSON.stringify(require({:?}).openrpcDocument))",
            module.display().to_string()
        ))
        .output()
        .expect("node runs (it reads the meta-schema package)");
    assert!(
        meta.status.success(),
        "{}",
        String::from_utf8_lossy(&meta.stderr)
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/openrpc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("meta-schema.json"), &meta.stdout).unwrap();
    let doc = discover().await;
    std::fs::write(dir.join("document.json"), doc.to_string()).unwrap();
    let check = Command::new("python3")
        .arg("-c")
        .arg(VALIDATE)
        .arg(dir.join("meta-schema.json"))
        .arg(dir.join("document.json"))
        .arg(&tools)
        .output()
        .expect("python3 runs (with jsonschema: pip install jsonschema)");
    assert!(
        check.status.success(),
        "the document does not validate:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
