//! Policy on every operation, end to end over HTTP: a key restricted to some resources and no prompt sees lists
//! filtered for it, is answered "unknown" for what it may not use exactly as for what does not exist, in both
//! eras; every operation leaves an audit line and a metric; a resource's rate limit counts its reads.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{CONFORMANCE, TestGateway, spawn_with_env};
use mcpgate_config::KeyHash;
use serde_json::{Value, json};

const KEY: &str = "restricted-key-0123";
const OPEN_KEY: &str = "open-key-0123456789";

/// The conformance backend behind two keys: `docs` may use only `test://static-*` resources and no prompt;
/// `ops` may use everything. Reads of `test://static-text` are limited to 3 a minute; audit to `audit`.
fn config(audit: &std::path::Path) -> String {
    format!(
        "security:\n  api_keys:\n    - {{ name: docs, hash: \"{}\", resources: [\"test://static-*\"], prompts: [] }}\n    - {{ name: ops, hash: \"{}\" }}\nrate_limits:\n  resources:\n    \"test://static-text\": {{ requests: 3, per: 1m }}\naudit:\n  file: {}\n{CONFORMANCE}",
        KeyHash::sha256(KEY),
        KeyHash::sha256(OPEN_KEY),
        audit.display()
    )
}

async fn modern(gw: &TestGateway, key: &str, method: &str, name: Option<&str>, params: Value) -> Value {
    let response = gw.modern_request(method, name, params, &[("x-api-key", key)]).send().await.unwrap();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    common::messages(&content_type, &response.text().await.unwrap()).pop().unwrap()
}

fn uris(list: &Value, field: &str, key: &str) -> Vec<String> {
    list["result"][field].as_array().unwrap().iter().map(|i| i[key].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_restricted_key_sees_and_uses_only_what_it_is_granted_and_every_operation_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let gw = spawn_with_env(&config(&audit), &[], "127.0.0.1:0").await;

    // Lists: filtered for the restricted key, whole for the open one; a filtered list is private.
    let resources = modern(&gw, KEY, "resources/list", None, json!({})).await;
    assert_eq!(uris(&resources, "resources", "uri"), ["test://static-text", "test://static-binary"]);
    assert_eq!(resources["result"]["cacheScope"], "private", "{resources}");
    let all = modern(&gw, OPEN_KEY, "resources/list", None, json!({})).await;
    assert!(uris(&all, "resources", "uri").len() > 2, "{all}");
    assert_eq!(all["result"]["cacheScope"], "public", "{all}");
    let prompts = modern(&gw, KEY, "prompts/list", None, json!({})).await;
    assert!(prompts["result"]["prompts"].as_array().unwrap().is_empty(), "{prompts}");
    let templates = modern(&gw, KEY, "resources/templates/list", None, json!({})).await;
    assert!(templates["result"]["resourceTemplates"].as_array().unwrap().is_empty(), "{templates}");

    // A granted read works; a forbidden one is answered exactly as one that does not exist.
    let read = |uri: &'static str, key: &'static str| {
        let gw = &gw;
        async move { modern(gw, key, "resources/read", Some(uri), json!({ "uri": uri })).await }
    };
    let granted = read("test://static-text", KEY).await;
    assert!(granted["result"]["contents"][0]["text"].is_string(), "{granted}");
    let forbidden = read("test://watched-resource", KEY).await;
    let missing = read("test://no-such-thing", KEY).await;
    let strip = |mut m: Value, uri: &str| {
        let text = m["error"].to_string().replace(uri, "URI");
        m["error"] = serde_json::from_str(&text).unwrap();
        m["error"].clone()
    };
    assert_eq!(forbidden["error"]["code"], -32602, "{forbidden}");
    assert_eq!(strip(forbidden, "test://watched-resource"), strip(missing, "test://no-such-thing"));
    assert!(read("test://watched-resource", OPEN_KEY).await["result"].is_object());

    // Prompts: none for the restricted key, in a legacy session too (the protocol layer's path).
    let prompt = json!({ "name": "test_simple_prompt" });
    let refused = modern(&gw, KEY, "prompts/get", Some("test_simple_prompt"), prompt.clone()).await;
    assert_eq!(refused["error"]["message"], "Unknown prompt: test_simple_prompt", "{refused}");
    let got = modern(&gw, OPEN_KEY, "prompts/get", Some("test_simple_prompt"), prompt).await;
    assert!(got["result"]["messages"].is_array(), "{got}");

    // The read limit counts reads of that resource from everyone (3 a minute): one more read of it by the
    // restricted key and one by the open key fill it; the next is refused whoever asks.
    assert!(read("test://static-text", KEY).await["result"].is_object());
    assert!(read("test://static-text", OPEN_KEY).await["result"].is_object());
    let limited = read("test://static-text", OPEN_KEY).await;
    assert_eq!(limited["error"]["code"], -32005, "{limited}");
    assert_eq!(limited["error"]["data"]["scope"], "resource", "{limited}");
    assert!(read("test://static-binary", KEY).await["result"].is_object(), "other resources are not limited");

    // A completion of a prompt the key may not see suggests nothing, as for a prompt that does not exist.
    let complete = |name: &str| json!({ "ref": { "type": "ref/prompt", "name": name }, "argument": { "name": "arg1", "value": "a" } });
    let forbidden =
        modern(&gw, KEY, "completion/complete", None, complete("test_prompt_with_arguments")).await;
    let unknown = modern(&gw, KEY, "completion/complete", None, complete("no_such_prompt")).await;
    assert_eq!(forbidden["result"]["completion"]["values"], json!([]), "{forbidden}");
    assert_eq!(forbidden, unknown);

    // Subscriptions (legacy sessions only) are authorized too.
    let response = common::post_initialize(&gw, "2025-11-25", json!({}), &[("x-api-key", KEY)]).await;
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let subscribe = |uri: &str| {
        let body =
            json!({ "jsonrpc": "2.0", "id": 9, "method": "resources/subscribe", "params": { "uri": uri } });
        let headers = [
            ("Mcp-Session-Id", session.clone()),
            ("MCP-Protocol-Version", "2025-11-25".to_owned()),
            ("x-api-key", KEY.to_owned()),
        ];
        let gw = &gw;
        async move {
            gw.post_raw(&headers, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
            let (_, ct, text) = gw.post_raw(&headers, body.to_string()).await;
            common::messages(&ct, &text).pop().unwrap()
        }
    };
    let denied = subscribe("test://watched-resource").await;
    let unknown = subscribe("test://no-such-thing").await;
    // The legacy wire's code for a missing resource: forbidden and missing alike.
    assert_eq!(
        (&denied["error"]["code"], &unknown["error"]["code"]),
        (&json!(-32002), &json!(-32002)),
        "{denied}"
    );
    let allowed = subscribe("test://static-binary").await;
    assert!(allowed["result"].is_object(), "{allowed}");

    // Every operation has its audit line naming it, refusals included.
    let lines: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let find = |operation: &str, target: &str, outcome: &str| {
        lines.iter().any(|l| l["operation"] == operation && l["target"] == target && l["outcome"] == outcome)
    };
    for (operation, target, outcome) in [
        ("resources/read", "test://static-text", "ok"),
        ("resources/read", "test://watched-resource", "error"),
        ("resources/read", "test://no-such-thing", "error"),
        ("prompts/get", "test_simple_prompt", "error"),
        ("prompts/get", "test_simple_prompt", "ok"),
        ("completion/complete", "test_prompt_with_arguments", "error"),
        ("resources/subscribe", "test://watched-resource", "error"),
        ("resources/subscribe", "test://static-binary", "ok"),
    ] {
        assert!(find(operation, target, outcome), "no {operation} {target} {outcome} line in {lines:#?}");
    }
    let limited_line = lines.iter().find(|l| l["error_kind"] == "rate_limited").unwrap();
    assert_eq!((&limited_line["principal"], &limited_line["tool"]), (&json!("ops"), &Value::Null));

    // And its metrics.
    let metrics = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    for series in [
        r#"mcp_operations_total{operation="resources/read",status="ok"}"#,
        r#"mcp_operations_total{operation="resources/read",status="not_found"}"#,
        r#"mcp_operations_total{operation="resources/read",status="rate_limited"} 1"#,
        r#"mcp_operations_total{operation="prompts/get",status="ok"} 1"#,
        r#"mcp_operations_total{operation="resources/subscribe",status="ok"} 1"#,
        r#"mcp_rate_limited_total{scope="resource"} 1"#,
        r#"mcp_operation_duration_seconds_count{operation="prompts/get"} 2"#,
    ] {
        assert!(metrics.contains(series), "no {series} in\n{metrics}");
    }
    let echo =
        modern(&gw, OPEN_KEY, "tools/call", Some("test_simple_text"), json!({ "name": "test_simple_text" }));
    assert!(echo.await["result"]["content"].is_array(), "still serving");
}

/// Another crate's surface (code mode's inner calls, the REST facade) holds the gateway as a `Dispatch` and
/// calls it with its caller's principal: the same grants, limits and audit apply as on `/mcp`.
#[tokio::test]
async fn the_dispatch_trait_is_the_same_door() {
    use std::sync::Arc;

    use mcpgate_core::{Answer, BackendError, CallContext, Dispatch, ListKind, Operation, Principal};

    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let config = mcpgate_config::parse_str(&config(&audit), mcpgate_config::Format::Yaml, "t").unwrap();
    let gateway = mcpgate_server::Gateway::build(config).await.unwrap();
    let door: &dyn Dispatch = &*gateway;
    let docs = Principal::named("docs", "default", &["*".into()])
        .with_grants(Arc::new(["test://static-*".into()]), Arc::new([]));
    let cx = || CallContext { principal: Arc::new(docs.clone()), ..CallContext::detached("inner-1") };

    let call = Operation::CallTool { name: "test_simple_text".into(), arguments: Default::default() };
    let Ok(Answer::Tool(outcome)) = door.dispatch(cx(), call).await else { panic!("a tool outcome") };
    assert!(!outcome.is_error, "{outcome:?}");
    let Ok(Answer::Resources(listed)) = door.dispatch(cx(), Operation::List(ListKind::Resources)).await
    else {
        panic!("a resource list")
    };
    let uris: Vec<&str> = listed.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(uris, ["test://static-text", "test://static-binary"]);
    let forbidden =
        door.dispatch(cx(), Operation::ReadResource { uri: "test://watched-resource".into() }).await;
    assert!(matches!(forbidden, Err(BackendError::NotFound { kind: "resource", .. })), "{forbidden:?}");
    let prompt = Operation::GetPrompt { name: "test_simple_prompt".into(), arguments: Default::default() };
    assert!(matches!(door.dispatch(cx(), prompt).await, Err(BackendError::NotFound { kind: "prompt", .. })));

    let lines = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "a call, a refused read and a refused prompt: {lines:#?}");
    assert!(lines.iter().all(|l| l["request_id"] == "inner-1" && l["principal"] == "docs"), "{lines:#?}");
}

/// A resource's contents and a prompt's messages are held to the token/size budget as tool results are: cut
/// with a marker, or refused as invalid params naming the size.
#[tokio::test]
async fn reads_and_prompts_are_held_to_the_budget() {
    let config = |on_exceed: &str| {
        let hash = KeyHash::sha256(OPEN_KEY);
        format!(
            "security:\n  api_keys:\n    - {{ name: ops, hash: \"{hash}\" }}\nbudget:\n  max_bytes: 1KiB\n  on_exceed: {on_exceed}\n{CONFORMANCE}"
        )
    };
    // A template resource whose text carries its id, and a prompt whose text carries its argument: 2 KB each.
    let uri = format!("test://template/{}/data", "x".repeat(2000));
    let read = json!({ "uri": uri });
    let prompt = json!({ "name": "test_prompt_with_arguments", "arguments": { "arg1": "y".repeat(2000), "arg2": "z" } });
    let gw = spawn_with_env(&config("truncate"), &[], "127.0.0.1:0").await;
    let cut = modern(&gw, OPEN_KEY, "resources/read", Some(&uri), read.clone()).await;
    let contents = cut["result"]["contents"].as_array().unwrap();
    assert!(contents[0]["text"].as_str().unwrap().len() <= 1024, "{cut}");
    let marker = contents.last().unwrap()["text"].as_str().unwrap();
    assert!(marker.starts_with("[truncated by mcpgate:"), "{cut}");
    let got = modern(&gw, OPEN_KEY, "prompts/get", Some("test_prompt_with_arguments"), prompt.clone()).await;
    let messages = got["result"]["messages"].as_array().unwrap();
    let last = messages.last().unwrap()["content"]["text"].as_str().unwrap();
    assert!(last.starts_with("[truncated by mcpgate:"), "{got}");

    let gw = spawn_with_env(&config("refuse"), &[], "127.0.0.1:0").await;
    let refused = modern(&gw, OPEN_KEY, "resources/read", Some(&uri), read).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("result refused by mcpgate:") && message.contains("limit 1024"), "{refused}");
    let refused = modern(&gw, OPEN_KEY, "prompts/get", Some("test_prompt_with_arguments"), prompt).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
}
