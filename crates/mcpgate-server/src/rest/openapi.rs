//! `GET /openapi.json`: an OpenAPI 3.1 document of the facade as the caller sees it — one path per tool and per
//! prompt it may use, made from the live catalogue on each request, so it follows reloads and upstream changes.
//! Request bodies are the tools' input schemas (JSON Schema, which OpenAPI 3.1 takes as it is), 200 answers their
//! output schemas when they declare one.

use std::{collections::BTreeSet, sync::Arc};

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use mcpgate_core::{PromptDef, ToolDef};
use serde_json::{Map, Value, json};

use super::Caller;
use crate::gateway::Gateway;

/// The statuses a tool call may answer besides 200, each with what it means (`docs/errors.md`).
const TOOL_FAILURES: [(&str, &str); 10] = [
    ("400", "Invalid arguments, or a body that is not a JSON object"),
    ("404", "No such tool for this caller"),
    ("413", "Body over server.max_request_size"),
    ("422", "The tool ran and reported an error (its content in error.data)"),
    ("429", "Over a rate limit (Retry-After)"),
    ("501", "The tool needs the client (sampling, elicitation), which plain HTTP cannot be"),
    ("502", "The upstream or backend failed"),
    ("503", "The backend is unavailable (down, circuit open)"),
    ("504", "The call ran past its timeout"),
    ("500", "The gateway failed"),
];

/// The door's refusals, on every path.
const DOOR_FAILURES: [(&str, &str); 2] =
    [("401", "No credential, or one that does not verify"), ("403", "Host, address or key not allowed")];

pub(super) async fn document(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (tools, prompts) = Caller::tools_and_prompts(&gateway, &parts).await;
    axum::Json(build(&gateway.config.server.name, &tools, &prompts)).into_response()
}

/// The document for these tools and prompts.
pub(super) fn build(server: &str, tools: &[ToolDef], prompts: &[PromptDef]) -> Value {
    let mut paths = Map::new();
    let mut ids = OperationIds::default();
    let mut schemas = Map::new();
    schemas.insert("Error".into(), error_schema());
    paths.insert("/api/tools".into(), listing("listTools", "The tools this caller may call", "tools"));
    for tool in tools {
        let post = call(tool, &mut ids, &mut schemas);
        paths.insert(format!("/api/tools/{}", segment(&tool.name)), json!({ "post": post }));
    }
    paths.insert(
        "/api/resources".into(),
        listing("listResources", "The resources this caller may read", "resources"),
    );
    paths.insert(
        "/api/resources/read".into(),
        json!({ "get": {
            "operationId": "readResource",
            "summary": "Read a resource",
            "parameters": [{ "name": "uri", "in": "query", "required": true, "schema": { "type": "string" } }],
            "responses": responses(
                json!({ "description": "The resource's contents (MCP ReadResourceResult)", "content": json_content(json!({
                    "type": "object", "properties": { "contents": { "type": "array" } }, "required": ["contents"]
                })) }),
                &[("400", "No ?uri="), ("404", "No such resource for this caller"), ("429", "Over a rate limit"),
                  ("502", "The backend failed"), ("503", "The backend is unavailable"), ("504", "Timed out"),
                  ("500", "The gateway failed")],
            ),
        } }),
    );
    paths.insert("/api/prompts".into(), listing("listPrompts", "The prompts this caller may get", "prompts"));
    for prompt in prompts {
        paths.insert(
            format!("/api/prompts/{}", segment(&prompt.name)),
            json!({ "post": get_prompt(prompt, &mut ids) }),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("{server} REST API"),
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The gateway's tools, resources and prompts over plain HTTP, as this caller may use \
                them. Every call goes through the same policy as MCP.",
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }, { "apiKey": [] }, {}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "An API key or a JWT" },
                "apiKey": { "type": "apiKey", "in": "header", "name": "x-api-key" },
            },
            "schemas": schemas,
        },
    })
}

/// The body of every failure.
fn error_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "error": {
            "type": "object",
            "properties": {
                "code": { "type": "integer", "description": "The JSON-RPC code MCP would answer" },
                "message": { "type": "string" },
                "data": {},
            },
            "required": ["message"],
        } },
        "required": ["error"],
    })
}

/// `schema` as the component `name`, referred to from where it is used. Its own references (`#/$defs/x`) point
/// into the schema, so they are rewritten to point into the component (`#/components/schemas/NAME/$defs/x`).
fn component(schemas: &mut Map<String, Value>, name: String, mut schema: Value) -> Value {
    fn rebase(value: &mut Value, base: &str) {
        match value {
            Value::Object(object) => {
                for (key, inner) in object.iter_mut() {
                    match inner {
                        Value::String(target) if key == "$ref" && target.starts_with('#') => {
                            *target = format!("{base}{}", &target[1..]);
                        }
                        _ => rebase(inner, base),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| rebase(item, base)),
            _ => {}
        }
    }
    let reference = format!("#/components/schemas/{name}");
    rebase(&mut schema, &reference);
    schemas.insert(name, schema);
    json!({ "$ref": reference })
}

/// A path segment for a name: RFC 3986 unreserved characters as they are, the rest percent-encoded.
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `operationId`s unique in the document, made from names.
#[derive(Default)]
struct OperationIds(BTreeSet<String>);

impl OperationIds {
    fn make(&mut self, prefix: &str, name: &str) -> String {
        let base: String = format!("{prefix}_{name}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut id = base.clone();
        let mut n = 1;
        while !self.0.insert(id.clone()) {
            n += 1;
            id = format!("{base}_{n}");
        }
        id
    }
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// `success` as 200, each of `failures`, and the door's refusals, all failures with the `Error` body.
fn responses(success: Value, failures: &[(&str, &str)]) -> Value {
    let mut all = Map::new();
    all.insert("200".into(), success);
    for (status, description) in failures.iter().chain(&DOOR_FAILURES) {
        let error = json_content(json!({ "$ref": "#/components/schemas/Error" }));
        all.insert((*status).into(), json!({ "description": description, "content": error }));
    }
    Value::Object(all)
}

fn listing(id: &str, summary: &str, field: &str) -> Value {
    let schema =
        json!({ "type": "object", "properties": { field: { "type": "array" } }, "required": [field] });
    let ok = json!({ "description": summary, "content": json_content(schema) });
    json!({ "get": { "operationId": id, "summary": summary, "responses": responses(ok, &[("429", "Over a rate limit")]) } })
}

fn call(tool: &ToolDef, ids: &mut OperationIds, schemas: &mut Map<String, Value>) -> Value {
    let id = ids.make("call", &tool.name);
    let input = component(schemas, format!("{id}_input"), Value::Object((*tool.input_schema).clone()));
    let output = (tool.output_schema.as_ref())
        .map(|s| component(schemas, format!("{id}_output"), Value::Object((**s).clone())));
    let success = json!({
        "description": "The tool's result: its structuredContent, else its content (one item alone; text that is \
            JSON parsed)",
        "content": json_content(output.unwrap_or_else(|| json!({}))),
    });
    let mut operation = json!({
        "operationId": id,
        "summary": tool.title.clone().unwrap_or_else(|| tool.name.clone()),
        // No body is `{}`: a tool without required arguments needs none.
        "requestBody": { "required": false, "content": json_content(input) },
        "responses": responses(success, &TOOL_FAILURES),
    });
    if let Some(description) = &tool.description {
        operation["description"] = Value::String(description.clone());
    }
    operation
}

fn get_prompt(prompt: &PromptDef, ids: &mut OperationIds) -> Value {
    let properties: Map<String, Value> = (prompt.arguments.iter())
        .map(|a| {
            let mut schema = json!({ "type": "string" });
            if let Some(description) = &a.description {
                schema["description"] = Value::String(description.clone());
            }
            (a.name.clone(), schema)
        })
        .collect();
    let required: Vec<&str> =
        prompt.arguments.iter().filter(|a| a.required).map(|a| a.name.as_str()).collect();
    let success = json!({
        "description": "The prompt's messages (MCP GetPromptResult)",
        "content": json_content(json!({
            "type": "object", "properties": { "messages": { "type": "array" } }, "required": ["messages"]
        })),
    });
    let failures = [
        ("400", "Invalid arguments (prompt arguments are strings)"),
        ("404", "No such prompt for this caller"),
        ("413", "Body over server.max_request_size"),
        ("429", "Over a rate limit"),
        ("501", "The prompt needs the client, which plain HTTP cannot be"),
        ("502", "The backend failed"),
        ("503", "The backend is unavailable"),
        ("504", "Timed out"),
        ("500", "The gateway failed"),
    ];
    let mut operation = json!({
        "operationId": ids.make("prompt", &prompt.name),
        "summary": prompt.title.clone().unwrap_or_else(|| prompt.name.clone()),
        "requestBody": {
            "required": !required.is_empty(),
            "content": json_content(json!({
                "type": "object", "properties": properties, "required": required,
            })),
        },
        "responses": responses(success, &failures),
    });
    if let Some(description) = &prompt.description {
        operation["description"] = Value::String(description.clone());
    }
    operation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_safe_segments_and_unique_operation_ids() {
        assert_eq!(segment("demo__echo"), "demo__echo");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        let mut ids = OperationIds::default();
        assert_eq!(ids.make("call", "a.b"), "call_a_b");
        assert_eq!(ids.make("call", "a-b"), "call_a_b_2");
    }

    #[test]
    fn each_tool_is_a_path_whose_body_is_its_input_schema() {
        let tool: ToolDef = serde_json::from_value(json!({
            "name": "add", "description": "Add", "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}}},
            "outputSchema": {"type": "object", "properties": {"sum": {"type": "number"}}}
        }))
        .unwrap();
        let doc = build("gw", &[tool], &[]);
        assert_eq!(doc["openapi"], "3.1.0");
        let post = &doc["paths"]["/api/tools/add"]["post"];
        let input = &post["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(input, "#/components/schemas/call_add_input");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["call_add_input"]["properties"]["a"]["type"], "number");
        assert_eq!(schemas["call_add_output"]["properties"]["sum"]["type"], "number");
        assert!(post["responses"]["422"].is_object() && post["responses"]["401"].is_object());
    }

    #[test]
    fn references_inside_a_schema_point_into_its_component() {
        let mut schemas = Map::new();
        let schema = json!({"properties": {"home": {"$ref": "#/$defs/address"}}, "$defs": {"address": {}},
                            "items": [{"$ref": "#"}], "other": {"$ref": "https://example.com/s.json"}});
        let used = component(&mut schemas, "t".into(), schema);
        assert_eq!(used, json!({"$ref": "#/components/schemas/t"}));
        let t = &schemas["t"];
        assert_eq!(t["properties"]["home"]["$ref"], "#/components/schemas/t/$defs/address");
        assert_eq!(t["items"][0]["$ref"], "#/components/schemas/t");
        assert_eq!(t["other"]["$ref"], "https://example.com/s.json");
    }
}
