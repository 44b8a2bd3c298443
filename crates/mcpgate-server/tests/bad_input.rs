//! Bad input, one test per case: each gets the spec's HTTP status and a JSON-RPC error, and the gateway keeps
//! serving.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{DEMO, TestGateway, modern, spawn};
use serde_json::{Value, json};

async fn rejected(
    gw: &TestGateway,
    headers: &[(&str, String)],
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let (status, ct, text) = gw.post_raw(headers, body).await;
    assert!(ct.starts_with("application/json"), "content type {ct:?} for {text}");
    let message: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(message["jsonrpc"], "2.0", "{message}");
    (status, message)
}

fn modern_headers() -> Vec<(&'static str, String)> {
    vec![("MCP-Protocol-Version", "2026-07-28".to_owned())]
}

#[tokio::test]
async fn malformed_json_is_a_parse_error() {
    let gw = spawn(DEMO).await;
    let (status, m) = rejected(&gw, &modern_headers(), r#"{"jsonrpc":"2.0","#).await;
    assert_eq!((status, m["error"]["code"].as_i64()), (400, Some(-32700)), "{m}");
    gw.assert_serving().await;
}

#[tokio::test]
async fn json_that_is_not_json_rpc_is_an_invalid_request() {
    let gw = spawn(DEMO).await;
    for body in [r#"{"hello":"world"}"#, "[1,2,3]", r#"{"jsonrpc":"2.0","id":7}"#, "42"] {
        let (status, m) = rejected(&gw, &modern_headers(), body).await;
        assert_eq!((status, m["error"]["code"].as_i64()), (400, Some(-32600)), "{body}: {m}");
    }
    gw.assert_serving().await;
}

#[tokio::test]
async fn unknown_method_is_method_not_found_with_404() {
    let gw = spawn(DEMO).await;
    let (status, m) = gw.modern("tools/explode", None, json!({})).await;
    assert_eq!((status, m["error"]["code"].as_i64()), (404, Some(-32601)), "{m}");
    assert_eq!(m["id"], 1);
    gw.assert_serving().await;
}

#[tokio::test]
async fn unknown_tool_is_invalid_params_naming_the_tool() {
    let gw = spawn(DEMO).await;
    let (status, m) = gw.modern("tools/call", Some("nope"), json!({ "name": "nope", "arguments": {} })).await;
    assert_eq!((status, m["error"]["code"].as_i64()), (200, Some(-32602)), "{m}");
    assert!(m["error"]["message"].as_str().unwrap().contains("nope"), "{m}");
    gw.assert_serving().await;
}

#[tokio::test]
async fn body_over_max_request_size_is_413() {
    let gw = spawn(&format!("server:\n  max_request_size: 4kb\n{DEMO}")).await;
    let (headers, mut body) = modern("tools/call", Some("echo"), json!({ "name": "echo" }));
    body["params"]["arguments"] = json!({ "message": "x".repeat(5000) });
    let (status, m) = rejected(&gw, &headers, body.to_string()).await;
    assert_eq!((status, m["error"]["code"].as_i64()), (413, Some(-32600)), "{m}");
    assert!(m["error"]["message"].as_str().unwrap().contains("4096"), "{m}");
    gw.assert_serving().await;
}

#[tokio::test]
async fn default_limit_is_one_mebibyte() {
    let gw = spawn(DEMO).await;
    let (headers, mut body) = modern("tools/call", Some("echo"), json!({ "name": "echo" }));
    body["params"]["arguments"] = json!({ "message": "x".repeat(1 << 20) });
    let (status, _) = rejected(&gw, &headers, body.to_string()).await;
    assert_eq!(status, 413);
    body["params"]["arguments"] = json!({ "message": "x".repeat(1000 << 10) });
    let (status, _, text) = gw.post_raw(&headers, body.to_string()).await;
    assert_eq!(status, 200, "{}", &text[..200.min(text.len())]);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let gw = spawn(DEMO).await;
    let response = gw
        .http
        .post(&gw.url)
        .header("content-type", "text/plain")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let m: Value = response.json().await.unwrap();
    assert_eq!(m["error"]["code"], -32600);
    gw.assert_serving().await;
}

#[tokio::test]
async fn unsupported_protocol_version_lists_the_supported_ones() {
    let gw = spawn(DEMO).await;
    let body = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": { "_meta": {
        "io.modelcontextprotocol/protocolVersion": "1999-01-01",
        "io.modelcontextprotocol/clientCapabilities": {} } } });
    let headers =
        [("MCP-Protocol-Version", "1999-01-01".to_owned()), ("Mcp-Method", "tools/list".to_owned())];
    let (status, m) = rejected(&gw, &headers, body.to_string()).await;
    assert_eq!((status, m["error"]["code"].as_i64()), (400, Some(-32022)), "{m}");
    assert_eq!(m["error"]["data"]["requested"], "1999-01-01");
    assert!(m["error"]["data"]["supported"].as_array().unwrap().contains(&json!("2026-07-28")));
    gw.assert_serving().await;
}

#[tokio::test]
async fn header_and_body_mismatch_is_400_header_mismatch() {
    let gw = spawn(DEMO).await;
    let (mut headers, body) =
        modern("tools/call", Some("echo"), json!({ "name": "echo", "arguments": {"message": "x"} }));
    headers.retain(|(k, _)| *k != "Mcp-Name");
    headers.push(("Mcp-Name", "add".to_owned()));
    let (status, m) = rejected(&gw, &headers, body.to_string()).await;
    assert_eq!((status, m["error"]["code"].as_i64()), (400, Some(-32020)), "{m}");
    let (mut headers, body) = modern("tools/list", None, json!({}));
    headers.retain(|(k, _)| *k != "Mcp-Method");
    headers.push(("Mcp-Method", "tools/call".to_owned()));
    let (status, m) = rejected(&gw, &headers, body.to_string()).await;
    assert_eq!((status, m["error"]["code"].as_i64()), (400, Some(-32020)), "{m}");
    gw.assert_serving().await;
}

#[tokio::test]
async fn unknown_session_id_is_404() {
    let gw = spawn(DEMO).await;
    let headers =
        [("Mcp-Session-Id", "no-such-session".to_owned()), ("MCP-Protocol-Version", "2025-11-25".to_owned())];
    let (status, m) = rejected(&gw, &headers, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await;
    assert_eq!((status, m["error"]["code"].as_i64()), (404, Some(-32001)), "{m}");
    gw.assert_serving().await;
}

#[tokio::test]
async fn foreign_host_is_403() {
    let gw = spawn(DEMO).await;
    // A list goes to the protocol layer; a plain call is the fast path's shape, and its Host check refuses it
    // too (it hands it to the protocol layer, which answers 403), in both eras.
    let call = json!({ "name": "echo", "arguments": { "message": "hi" } });
    let (session, _) = common::initialize(&gw, "2025-11-25").await;
    let legacy = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call });
    let legacy_headers = vec![("Mcp-Session-Id", session), ("MCP-Protocol-Version", "2025-11-25".to_owned())];
    let cases = [
        modern("tools/list", None, json!({})),
        modern("tools/call", Some("echo"), call.clone()),
        (legacy_headers, legacy),
    ];
    for (mut headers, body) in cases {
        headers.push(("Host", "evil.example.com".to_owned()));
        let (status, m) = rejected(&gw, &headers, body.to_string()).await;
        assert_eq!(status, 403, "{body}: {m}");
        assert!(m["error"]["message"].as_str().unwrap().contains("Host"), "{m}");
    }
    let status: Value =
        gw.http.get(format!("{}/status", gw.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["calls"]["fast_path"], 0, "no call ran: {status}");
    gw.assert_serving().await;
}

#[tokio::test]
async fn foreign_origin_is_403_and_loopback_origins_pass() {
    let gw = spawn(DEMO).await;
    let (mut headers, body) = modern("tools/list", None, json!({}));
    headers.push(("Origin", "http://evil.example.com".to_owned()));
    let (status, m) = rejected(&gw, &headers, body.to_string()).await;
    assert_eq!(status, 403, "{m}");
    assert!(m["error"]["message"].as_str().unwrap().contains("Origin"), "{m}");
    let (mut headers, body) = modern("tools/list", None, json!({}));
    headers.push(("Origin", format!("http://localhost:{}", gw.server.local_addr.port())));
    let (status, _, _) = gw.post_raw(&headers, body.to_string()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn configured_hosts_and_origins_are_honoured() {
    let gw = spawn(&format!(
        "server:\n  allowed_hosts: [mcp.example.com]\n  allowed_origins: ['https://app.example.com']\n{DEMO}"
    ))
    .await;
    let (mut headers, body) = modern("tools/list", None, json!({}));
    headers.push(("Host", "mcp.example.com".to_owned()));
    headers.push(("Origin", "https://app.example.com".to_owned()));
    assert_eq!(gw.post_raw(&headers, body.to_string()).await.0, 200);
    let (headers, body) = modern("tools/list", None, json!({}));
    assert_eq!(gw.post_raw(&headers, body.to_string()).await.0, 403, "loopback Host is no longer allowed");
}

#[tokio::test]
async fn deeply_nested_json_is_a_parse_error() {
    let gw = spawn(DEMO).await;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"x":{}{}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let (status, m) = rejected(&gw, &modern_headers(), body).await;
    assert_eq!((status, m["error"]["code"].as_i64()), (400, Some(-32700)), "{m}");
    gw.assert_serving().await;
}

#[tokio::test]
async fn invalid_utf8_is_a_parse_error() {
    let gw = spawn(DEMO).await;
    let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}}"#);
    let (status, m) = rejected(&gw, &modern_headers(), body).await;
    assert_eq!((status, m["error"]["code"].as_i64()), (400, Some(-32700)), "{m}");
    gw.assert_serving().await;
}

#[tokio::test]
async fn missing_request_meta_is_invalid_params_400() {
    let gw = spawn(DEMO).await;
    let headers =
        [("MCP-Protocol-Version", "2026-07-28".to_owned()), ("Mcp-Method", "server/discover".to_owned())];
    let (status, m) =
        rejected(&gw, &headers, r#"{"jsonrpc":"2.0","id":9,"method":"server/discover","params":{}}"#).await;
    assert_eq!((status, m["error"]["code"].as_i64()), (400, Some(-32602)), "{m}");
    gw.assert_serving().await;
}
