//! `rpc-demo list` and `rpc-demo call`: a generic client for any server of
//! this protocol, like grpcurl for gRPC. `list` reads the server's
//! `rpc.discover` document; `call` sends one call with arguments given on
//! the command line and prints the result as JSON, or, for a streaming
//! method, each item as a line of JSON as it arrives.

use serde_json::Value;

use crate::DemoError;

/// Prints each method with its parameters and the first line of its docs.
pub async fn list(client: rpc_core::Client) -> Result<(), DemoError> {
    let document: Value = client.call("rpc.discover", &[(); 0]).await?;
    let methods = document["methods"].as_array().cloned().unwrap_or_default();
    for method in &methods {
        let name = method["name"].as_str().unwrap_or("?");
        let params: Vec<String> = method["params"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        let name = p["name"].as_str()?;
                        Some(match type_name(&p["schema"]) {
                            Some(ty) => format!("{name}: {ty}"),
                            None => name.to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let streaming = method["x-stream"] == Value::Bool(true);
        let result = match (type_name(&method["result"]["schema"]), streaming) {
            (Some(ty), true) => format!(" -> stream of {ty}"),
            (None, true) => " -> stream".to_owned(),
            (Some(ty), false) => format!(" -> {ty}"),
            (None, false) => String::new(),
        };
        let summary = summary(method["description"].as_str().unwrap_or(""));
        let aliases: Vec<&str> = method["x-aliases"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let aliases = if aliases.is_empty() {
            String::new()
        } else {
            format!(" (also {})", aliases.join(", "))
        };
        say!(
            "{name}({}){result}{aliases}{}{summary}",
            params.join(", "),
            if summary.is_empty() { "" } else { "  " }
        );
    }
    Ok(())
}

/// The first sentence of a method's description, on one line, with
/// rustdoc's link brackets taken off (`[`X`]` reads as `X`).
fn summary(description: &str) -> String {
    let paragraph: Vec<&str> = description
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    let text = paragraph.join(" ").replace("[`", "`").replace("`]", "`");
    match text.find(". ") {
        Some(end) => text[..=end].to_owned(),
        None => text,
    }
}

/// A short name for the type a JSON Schema describes, as `list` prints it:
/// the JSON type (`number`, `string`, `integer`, `[string]` for an array),
/// the name of a `$ref` into `components/schemas`, `a | b` for a choice of
/// types; `None` when the schema says nothing (`{}`: the type has no
/// schema).
fn type_name(schema: &Value) -> Option<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        return Some(reference.rsplit('/').next().unwrap_or(reference).to_owned());
    }
    match &schema["type"] {
        Value::String(ty) if ty == "array" => Some(format!(
            "[{}]",
            type_name(&schema["items"]).unwrap_or_else(|| "any".to_owned())
        )),
        Value::String(ty) => Some(ty.clone()),
        Value::Array(types) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            (!names.is_empty()).then(|| names.join(" | "))
        }
        _ => {
            let choices = schema["anyOf"].as_array().or(schema["oneOf"].as_array())?;
            let names: Option<Vec<String>> = choices.iter().map(type_name).collect();
            names.map(|names| names.join(" | "))
        }
    }
}

/// Calls `method` with `args` (each read as JSON, a bare word as a string)
/// or with `params` (JSON, all at once), and prints the result as JSON.
pub async fn call(
    client: rpc_core::Client,
    method: &str,
    args: &[String],
    params: Option<&str>,
) -> Result<(), DemoError> {
    let params: Value = match params {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| DemoError::Usage(format!("--params is not JSON: {e}")))?,
        None => Value::Array(args.iter().map(|a| argument(a)).collect()),
    };
    if !params.is_array() && !params.is_object() {
        return Err(DemoError::Usage(
            "--params must be a JSON array (by position) or object (by name)".to_owned(),
        ));
    }
    if is_streaming(&client, method).await {
        let mut items = client
            .open_stream::<_, Value, rpc_core::Never, rpc_core::Never>(
                method,
                &params,
                Default::default(),
            )
            .await?;
        while let Some(item) = futures_util::StreamExt::next(&mut items).await {
            say!("{}", item?);
        }
        return Ok(());
    }
    let result: Value = client.call(method, &params).await?;
    say!("{result}");
    Ok(())
}

/// Whether the server's `rpc.discover` document marks `method` (a name or
/// an alias) as streaming. A server without the document (another
/// implementation of JSON-RPC) has plain methods only.
async fn is_streaming(client: &rpc_core::Client, method: &str) -> bool {
    let Ok(document) = client.call::<_, Value>("rpc.discover", &[(); 0]).await else {
        return false;
    };
    document["methods"].as_array().is_some_and(|methods| {
        methods.iter().any(|m| {
            let named = m["name"] == method
                || m["x-aliases"]
                    .as_array()
                    .is_some_and(|aliases| aliases.iter().any(|a| a == method));
            named && m["x-stream"] == Value::Bool(true)
        })
    })
}

/// One command-line argument as a JSON value: JSON if it parses (`3`,
/// `true`, `"x"`, `[1,2]`), else the word itself as a string.
pub fn argument(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_json_or_bare_strings() {
        assert_eq!(argument("3"), Value::from(3));
        assert_eq!(argument("2.5"), Value::from(2.5));
        assert_eq!(argument("true"), Value::from(true));
        assert_eq!(argument("Ana"), Value::from("Ana"));
        assert_eq!(argument("\"123\""), Value::from("123"));
        assert_eq!(argument("[1,2]"), serde_json::json!([1, 2]));
        assert_eq!(argument("Olá mundo"), Value::from("Olá mundo"));
    }

    #[test]
    fn summaries_are_the_first_sentence_on_one_line() {
        assert_eq!(summary("Returns `a + b`."), "Returns `a + b`.");
        assert_eq!(
            summary(
                "Returns `a / b`; dividing by zero is a\n[`CalcError::DivisionByZero`]. More.\n\nDetails."
            ),
            "Returns `a / b`; dividing by zero is a `CalcError::DivisionByZero`."
        );
        assert_eq!(
            summary("Sleeps, a slow call,\nto watch.\n\nMore."),
            "Sleeps, a slow call, to watch."
        );
        assert_eq!(summary(""), "");
    }

    #[test]
    fn schemas_read_as_short_type_names() {
        use serde_json::json;
        let name = |schema: Value| type_name(&schema);
        assert_eq!(
            name(json!({"type": "number", "format": "double"})).as_deref(),
            Some("number")
        );
        assert_eq!(
            name(json!({"$ref": "#/components/schemas/CalcError"})).as_deref(),
            Some("CalcError")
        );
        assert_eq!(
            name(json!({"type": "array", "items": {"type": "string"}})).as_deref(),
            Some("[string]")
        );
        assert_eq!(name(json!({"type": "array"})).as_deref(), Some("[any]"));
        assert_eq!(
            name(json!({"type": ["integer", "null"]})).as_deref(),
            Some("integer | null")
        );
        assert_eq!(
            name(json!({"anyOf": [{"$ref": "#/components/schemas/Point"}, {"type": "null"}]}))
                .as_deref(),
            Some("Point | null")
        );
        assert_eq!(name(json!({})), None);
        assert_eq!(name(Value::Null), None);
    }
}
