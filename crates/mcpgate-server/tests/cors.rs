//! CORS end to end: a browser's preflight from an allowed origin is answered before any API key is asked for,
//! and the answers to its requests are readable with the MCP headers exposed; a foreign origin gets no CORS
//! headers and its requests are still refused by the `/mcp` Origin check.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{DEMO, spawn_with_env};
use mcpgate_config::KeyHash;
use serde_json::json;

#[tokio::test]
async fn an_allowed_origin_gets_its_preflight_and_readable_answers_a_foreign_one_does_not() {
    let config = format!(
        "security:\n  api_keys:\n    - {{ name: web, hash: \"{}\" }}\n{DEMO}",
        KeyHash::sha256("browser-key")
    );
    let gw = spawn_with_env(&config, &[], "127.0.0.1:0").await;
    let origin = "http://localhost:5173";
    let preflight = |origin: &'static str| {
        gw.http
            .request(reqwest::Method::OPTIONS, &gw.url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, x-api-key, mcp-protocol-version, mcp-param-city",
            )
            .send()
    };
    let answer = preflight(origin).await.unwrap();
    assert_eq!(answer.status(), 200, "a preflight carries no key and must not be refused");
    let header = |response: &reqwest::Response, name: &str| {
        response.headers().get(name).map(|v| v.to_str().unwrap().to_ascii_lowercase())
    };
    assert_eq!(header(&answer, "access-control-allow-origin").as_deref(), Some(origin));
    let allowed = header(&answer, "access-control-allow-headers").unwrap();
    for name in ["x-api-key", "mcp-protocol-version", "mcp-param-city"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    assert!(header(&answer, "access-control-allow-methods").unwrap().contains("post"));

    // The request itself: readable, with the session and rate-limit headers exposed.
    let body = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "web", "version": "1" } } });
    let initialize = |origin: &'static str| {
        let (headers, body) = ([("origin", origin), ("x-api-key", "browser-key")], body.to_string());
        headers
            .into_iter()
            .fold(gw.http.post(&gw.url), |request, (name, value)| request.header(name, value))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
            .send()
    };
    let answer = initialize(origin).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(header(&answer, "access-control-allow-origin").as_deref(), Some(origin));
    assert!(header(&answer, "access-control-expose-headers").unwrap().contains("mcp-session-id"));
    assert!(answer.headers().contains_key("mcp-session-id"));

    // A foreign origin: no CORS headers on the preflight, and /mcp refuses its request.
    let foreign = preflight("https://evil.example").await.unwrap();
    assert!(header(&foreign, "access-control-allow-origin").is_none());
    let refused = initialize("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(header(&refused, "access-control-allow-origin").is_none());
}
