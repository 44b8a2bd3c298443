//! Spawn a gateway on an ephemeral port and talk MCP to it over HTTP.

#![allow(dead_code, clippy::unwrap_used)]

use mcpgate_config::{Config, Format, apply_env, parse_str, parse_str_unchecked, validate};
use mcpgate_server::{Gateway, Server};
use serde_json::{Value, json};

pub const DEMO: &str = "backends:\n  demo:\n    kind: builtin\n    builtin: demo\n";
pub const CONFORMANCE: &str = "backends:\n  c:\n    kind: builtin\n    builtin: conformance\n";

/// A backend whose every call fails as an unreachable upstream would; it counts the calls that reached it.
#[derive(Default)]
pub struct Down(pub std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl mcpgate_core::Backend for Down {
    fn name(&self) -> &str {
        "down"
    }

    async fn list_tools(&self) -> Result<Vec<mcpgate_core::ToolDef>, mcpgate_core::BackendError> {
        Ok(vec![mcpgate_core::ToolDef::new("flaky", "always fails", json!({ "type": "object" }))])
    }

    async fn call_tool(
        &self,
        _cx: &mcpgate_core::CallContext,
        _call: mcpgate_core::ToolCall,
    ) -> Result<mcpgate_core::ToolOutcome, mcpgate_core::BackendError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(mcpgate_core::BackendError::unavailable("down", "connection refused"))
    }
}

pub struct TestGateway {
    pub server: Server,
    pub url: String,
    pub base: String,
    pub http: reqwest::Client,
}

pub async fn spawn(yaml: &str) -> TestGateway {
    let config = parse_str(yaml, Format::Yaml, "test").expect("valid test config");
    spawn_config(config, "127.0.0.1:0").await
}

/// Spawn as `mcpgate serve` would: `yaml`, then the environment `vars` over it, validated; listening on `addr`
/// (`127.0.0.1:0`, `[::1]:0`).
pub async fn spawn_with_env(yaml: &str, vars: &[(&str, &str)], addr: &str) -> TestGateway {
    let mut config = parse_str_unchecked(yaml, Format::Yaml, "test").expect("test config parses");
    let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
    let mut problems = apply_env(&mut config, lookup);
    problems.extend(validate(&config));
    assert!(problems.is_empty(), "{problems:?}");
    spawn_config(config, addr).await
}

pub async fn spawn_config(config: Config, addr: &str) -> TestGateway {
    let gateway = Gateway::build(config).await.expect("gateway builds");
    let server = Server::spawn(gateway, addr).await.expect("binds");
    let base = format!("http://{}", server.local_addr);
    TestGateway { url: format!("{base}/mcp"), base, server, http: reqwest::Client::new() }
}

pub fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// The names of a `tools/list` answer's tools.
pub fn tool_names_of(answer: &Value) -> Vec<String> {
    let tools =
        answer["result"]["tools"].as_array().unwrap_or_else(|| panic!("not a tools/list answer: {answer}"));
    tools.iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

/// A 2026-07-28 request with matching headers.
pub fn modern(method: &str, name: Option<&str>, mut params: Value) -> (Vec<(&'static str, String)>, Value) {
    params["_meta"] = meta();
    let mut headers =
        vec![("MCP-Protocol-Version", "2026-07-28".to_owned()), ("Mcp-Method", method.to_owned())];
    if let Some(name) = name {
        headers.push(("Mcp-Name", name.to_owned()));
    }
    (headers, json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }))
}

/// The JSON-RPC messages of a response, whether it came as JSON or as an SSE stream.
pub fn messages(content_type: &str, body: &str) -> Vec<Value> {
    if content_type.starts_with("text/event-stream") {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_str(body).map(|v| vec![v]).unwrap_or_default()
    }
}

impl TestGateway {
    /// A stateless (2026-07-28) request, ready to send: its body, the protocol headers, then `extra` headers.
    pub fn modern_request(
        &self,
        method: &str,
        name: Option<&str>,
        params: Value,
        extra: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let (headers, body) = modern(method, name, params);
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (k, v) in headers.iter().map(|(k, v)| (*k, v.as_str())).chain(extra.iter().copied()) {
            request = request.header(k, v);
        }
        request
    }

    /// POST raw bytes with headers; returns status, content type, body text.
    pub async fn post_raw(
        &self,
        headers: &[(&str, String)],
        body: impl Into<reqwest::Body>,
    ) -> (u16, String, String) {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let ct =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        (status, ct, response.text().await.unwrap_or_default())
    }

    /// A 2026-07-28 request; returns status and the final JSON-RPC message.
    pub async fn modern(&self, method: &str, name: Option<&str>, params: Value) -> (u16, Value) {
        let (headers, body) = modern(method, name, params);
        let (status, ct, text) = self.post_raw(&headers, body.to_string()).await;
        (status, messages(&ct, &text).pop().unwrap_or(Value::Null))
    }

    /// Call a tool statelessly; returns the final message.
    pub async fn call(&self, tool: &str, arguments: Value) -> Value {
        self.modern("tools/call", Some(tool), json!({ "name": tool, "arguments": arguments })).await.1
    }

    /// Proof the gateway still serves: health is 200 and echo answers.
    pub async fn assert_serving(&self) {
        let health = self.http.get(format!("{}/health", self.base)).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let answer = self.call("echo", json!({ "message": "still here" })).await;
        assert_eq!(answer["result"]["content"][0]["text"], "still here", "{answer}");
    }
}

/// Open a legacy session at `version`: `initialize`, then `notifications/initialized`. Returns the session id
/// and the `initialize` answer.
pub async fn initialize(gw: &TestGateway, version: &str) -> (String, Value) {
    initialize_with(gw, version, json!({})).await
}

/// POST an `initialize` at `version` declaring `capabilities`, with `extra` headers (an API key, say); the raw
/// response, whatever its status.
pub async fn post_initialize(
    gw: &TestGateway,
    version: &str,
    capabilities: Value,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let body = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": capabilities, "clientInfo": { "name": "test", "version": "1" } } });
    let mut request = gw
        .http
        .post(&gw.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// [`initialize`] declaring the client `capabilities`.
pub async fn initialize_with(gw: &TestGateway, version: &str, capabilities: Value) -> (String, Value) {
    let response = post_initialize(gw, version, capabilities, &[]).await;
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let ct = response.headers()["content-type"].to_str().unwrap().to_owned();
    let result = messages(&ct, &response.text().await.unwrap()).pop().unwrap();
    let negotiated = result["result"]["protocolVersion"].as_str().unwrap_or(version).to_owned();
    let (status, _, _) = gw
        .post_raw(
            &[("Mcp-Session-Id", session.clone()), ("MCP-Protocol-Version", negotiated)],
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .await;
    assert_eq!(status, 202);
    (session, result)
}

/// Send request `method` (id 5) in a legacy session.
pub async fn in_session(
    gw: &TestGateway,
    session: &str,
    version: &str,
    method: &str,
    params: Value,
) -> (u16, Value) {
    let body = json!({ "jsonrpc": "2.0", "id": 5, "method": method, "params": params });
    let headers = [("Mcp-Session-Id", session.to_owned()), ("MCP-Protocol-Version", version.to_owned())];
    let (status, ct, text) = gw.post_raw(&headers, body.to_string()).await;
    (status, messages(&ct, &text).pop().unwrap_or(Value::Null))
}

/// Open a legacy session's listening stream (GET /mcp).
pub async fn event_stream(gw: &TestGateway, session: &str) -> reqwest::Response {
    gw.http
        .get(&gw.url)
        .header("accept", "text/event-stream")
        .header("Mcp-Session-Id", session)
        .header("MCP-Protocol-Version", "2025-11-25")
        .send()
        .await
        .unwrap()
}
