//! Rate limits end to end over HTTP: the global budget answered with 429, `Retry-After` and the RateLimit headers;
//! tiers (a free key limited, a paid one not); a per-tool limit answered inside `tools/call` on both the fast
//! path and the protocol layer's; the guides' `RATE_LIMIT_*` variables; a refused request that spends no other
//! scope's budget; and the principal the limits key on, carried into the call on both paths.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use common::{DEMO, TestGateway, messages, modern, spawn, spawn_with_env};
use mcpgate_config::KeyHash;
use mcpgate_core::{Backend, BackendError, CallContext, ToolCall, ToolDef, ToolOutcome};
use mcpgate_server::{Gateway, Server, registry::BackendEntry};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const V4: &str = "127.0.0.1:0";

/// One answer: status, headers, the last JSON-RPC message.
struct Answer {
    status: u16,
    headers: HeaderMap,
    message: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn ok(&self) -> bool {
        self.status == 200 && self.message.get("result").is_some()
    }

    /// Refused at the edge by `scope`'s limit.
    fn limited_by(&self, scope: &str) -> bool {
        let error = &self.message["error"];
        self.status == 429
            && error["code"] == -32005
            && error["data"]["kind"] == "rate_limited"
            && error["data"]["scope"] == scope
            && self.header("retry-after").is_some()
    }
}

/// A stateless `tools/call` of `tool` with `extra` headers; through the protocol layer instead of the fast path
/// when `slow` (an allowed `Origin` takes a request off the fast path).
async fn call_as(gw: &TestGateway, tool: &str, extra: &[(&str, &str)], slow: bool) -> Answer {
    let arguments = if tool == "add" { json!({ "a": 1, "b": 2 }) } else { json!({ "message": "hi" }) };
    let params = json!({ "name": tool, "arguments": arguments });
    let mut request = gw.modern_request("tools/call", Some(tool), params, extra);
    if slow {
        request = request.header("origin", format!("http://localhost:{}", gw.server.local_addr.port()));
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let content_type =
        headers.get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let message = messages(&content_type, &response.text().await.unwrap()).pop().unwrap_or(Value::Null);
    Answer { status, headers, message }
}

async fn call(gw: &TestGateway, extra: &[(&str, &str)]) -> Answer {
    call_as(gw, "echo", extra, false).await
}

async fn status(gw: &TestGateway) -> Value {
    gw.http.get(format!("{}/status", gw.base)).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn without_limits_nothing_is_refused_or_announced() {
    let gw = spawn(DEMO).await;
    for _ in 0..50 {
        let answer = call(&gw, &[]).await;
        assert!(answer.ok() && answer.header("ratelimit").is_none(), "{}", answer.message);
    }
    let limits = &status(&gw).await["rate_limits"];
    assert_eq!(limits["global"], Value::Null);
    assert_eq!(limits["buckets"], 0);
}

#[tokio::test]
async fn the_global_limit_answers_429_with_retry_after_and_ratelimit_headers() {
    let gw = spawn(&format!("rate_limits:\n  global: {{ requests: 2, per: 1m }}\n{DEMO}")).await;
    let first = call(&gw, &[]).await;
    assert!(first.ok(), "{}", first.message);
    assert_eq!(first.header("ratelimit-policy"), Some(r#""global";q=2;w=60"#));
    assert_eq!(first.header("ratelimit"), Some(r#""global";r=1;t=30"#));
    // The protocol layer's path (tools/list never takes the fast path) counts and is announced too.
    let (headers, body) = modern("tools/list", None, json!({}));
    let (status_code, _, _) = gw.post_raw(&headers, body.to_string()).await;
    assert_eq!(status_code, 200);

    let refused = call(&gw, &[]).await;
    assert!(refused.limited_by("global"), "{} {:?}", refused.status, refused.message);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry_after), "{retry_after}");
    let retry_ms = refused.message["error"]["data"]["retryAfterMs"].as_u64().unwrap();
    assert!((29_000..=30_000).contains(&retry_ms), "{retry_ms}");
    assert!(
        refused.message["error"]["message"].as_str().unwrap().contains("2 per 1m"),
        "{}",
        refused.message
    );
    assert_eq!(refused.message["id"], Value::Null);
    assert_eq!(refused.header("ratelimit"), Some(r#""global";r=0;t=60"#));
    assert_eq!(refused.header("content-type"), Some("application/json"));

    // Operators' endpoints are not limited, and /status shows the limit and its bucket.
    for path in ["/health", "/ready", "/status"] {
        let code = gw.http.get(format!("{}{path}", gw.base)).send().await.unwrap().status();
        assert_eq!(code, 200, "{path}");
    }
    let limits = &status(&gw).await["rate_limits"];
    assert_eq!(limits["global"], json!({ "requests": 2, "per": "1m" }));
    assert_eq!(limits["buckets"], 1);
}

/// A demo gateway with a free key (`free-key`) and a paid one (`paid-key`), and `limits` (YAML lines indented two
/// spaces) under `rate_limits`.
fn tiered(limits: &str) -> String {
    let key = |name: &str, tier: &str| {
        format!(
            "    - {{ name: {name}, hash: \"{}\", tier: {tier} }}\n",
            KeyHash::sha256(&format!("{tier}-key"))
        )
    };
    format!(
        "security:\n  api_keys:\n{}{}rate_limits:\n{limits}\n{DEMO}",
        key("alice", "free"),
        key("bob", "paid")
    )
}

#[tokio::test]
async fn a_free_key_is_limited_by_its_tier_and_a_paid_key_is_not() {
    let gw =
        spawn(&tiered("  tiers:\n    free: { requests: 3, per: 1m }\n    paid: { requests: 1000, per: 1m }"))
            .await;
    let free = [("x-api-key", "free-key")];
    for _ in 0..3 {
        assert!(call(&gw, &free).await.ok());
    }
    let refused = call(&gw, &free).await;
    assert!(refused.limited_by("tier"), "{} {}", refused.status, refused.message);
    assert_eq!(refused.header("ratelimit-policy"), Some(r#""tier";q=3;w=60"#));
    // The limit is alice's, not the tier's: bob's paid key, on both paths, goes on.
    for i in 0..20 {
        let paid = call_as(&gw, "echo", &[("authorization", "Bearer paid-key")], i % 2 == 1).await;
        assert!(paid.ok(), "{i}: {} {}", paid.status, paid.message);
        assert_eq!(paid.header("ratelimit-policy"), Some(r#""tier";q=1000;w=60"#));
    }
    // A wrong key is refused by authentication before it could spend anyone's budget.
    assert_eq!(call(&gw, &[("x-api-key", "nope")]).await.status, 401);
    assert_eq!(status(&gw).await["rate_limits"]["buckets"], 2);
}

#[tokio::test]
async fn a_refused_request_spends_no_other_scope() {
    // Global 4 per minute, the free tier 1: alice's refused requests must leave the global budget to bob.
    let gw =
        spawn(&tiered("  global: { requests: 4, per: 1m }\n  tiers:\n    free: { requests: 1, per: 1m }"))
            .await;
    let (free, paid) = ([("x-api-key", "free-key")], [("x-api-key", "paid-key")]);
    assert!(call(&gw, &free).await.ok());
    for _ in 0..5 {
        let refused = call(&gw, &free).await;
        assert!(refused.limited_by("tier"), "{}", refused.message);
        assert_eq!(refused.header("ratelimit"), Some(r#""global";r=3;t=15, "tier";r=0;t=60"#));
    }
    // bob (no tier limit, no per_key) is under the global budget only: 3 left of 4, whatever alice tried.
    for left in [2, 1, 0] {
        let answer = call(&gw, &paid).await;
        assert!(answer.ok(), "{}", answer.message);
        assert!(answer.header("ratelimit").unwrap().starts_with(&format!("\"global\";r={left};")));
    }
    assert!(call(&gw, &paid).await.limited_by("global"));
}

#[tokio::test]
async fn a_legacy_session_over_budget_may_still_cancel_and_answer() {
    // initialize, notifications/initialized and one call spend the 3 requests of the minute.
    let gw = spawn(&format!("rate_limits:\n  global: {{ requests: 3, per: 1m }}\n{DEMO}")).await;
    let (session, _) = common::initialize(&gw, "2025-11-25").await;
    let version = "2025-11-25";
    let (status, answer) = common::in_session(
        &gw,
        &session,
        version,
        "tools/call",
        json!({ "name": "echo", "arguments": { "message": "hi" } }),
    )
    .await;
    assert_eq!((status, answer["result"]["content"][0]["text"].as_str()), (200, Some("hi")), "{answer}");
    let (status, answer) = common::in_session(&gw, &session, version, "tools/list", json!({})).await;
    assert_eq!((status, answer["error"]["code"].as_i64()), (429, Some(-32005)), "{answer}");

    // Over budget: a notification and an answer to the server still get through (202), uncharged; a request
    // does not, and neither does a batch or a body that is not JSON-RPC.
    let headers = [("Mcp-Session-Id", session.clone()), ("MCP-Protocol-Version", version.to_owned())];
    let cancel =
        json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 9 } });
    let reply = json!({ "jsonrpc": "2.0", "id": "srv-1", "result": {} });
    for body in [cancel, reply] {
        let (status, _, text) = gw.post_raw(&headers, body.to_string()).await;
        assert_eq!(status, 202, "{body}: {text}");
    }
    let batch =
        json!([{ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 9 } }]);
    for body in [batch.to_string(), "not json".to_owned()] {
        let (status, _, text) = gw.post_raw(&headers, body.clone()).await;
        assert_eq!(status, 429, "{body}: {text}");
    }
}

#[tokio::test]
async fn a_tool_limit_is_a_jsonrpc_error_inside_tools_call_on_both_paths() {
    let gw = spawn(&format!("rate_limits:\n  tools:\n    echo: {{ requests: 2, per: 1m }}\n{DEMO}")).await;
    assert!(call_as(&gw, "echo", &[], false).await.ok());
    assert!(call_as(&gw, "echo", &[], true).await.ok());
    for slow in [false, true] {
        let limited = call_as(&gw, "echo", &[], slow).await;
        assert_eq!(limited.status, 200, "slow={slow}: a tools/call error, not an HTTP refusal");
        let error = &limited.message["error"];
        assert_eq!(error["code"], -32005, "slow={slow}: {}", limited.message);
        assert_eq!(
            (&error["data"]["kind"], &error["data"]["scope"]),
            (&json!("rate_limited"), &json!("tool"))
        );
        let retry_ms = error["data"]["retryAfterMs"].as_u64().unwrap();
        assert!((29_000..=30_000).contains(&retry_ms), "{retry_ms}");
        assert!(limited.message.get("result").is_none(), "not a tool result");
        // Tool limits are not announced in headers (they are not the HTTP request's).
        assert!(limited.header("ratelimit").is_none());
    }
    // Another tool is not limited.
    for _ in 0..5 {
        assert!(call_as(&gw, "add", &[], false).await.ok());
    }
    let metrics = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"mcp_rate_limited_total{scope="tool"} 2"#), "{metrics}");
}

#[tokio::test]
async fn the_guides_variables_limit_each_client_address() {
    let vars = [("RATE_LIMIT_WINDOW_MS", "900000"), ("RATE_LIMIT_MAX_REQUESTS", "3")];
    let gw = spawn_with_env(DEMO, &vars, V4).await;
    for left in [2, 1, 0] {
        let answer = call(&gw, &[]).await;
        assert!(answer.ok());
        assert_eq!(answer.header("ratelimit-policy"), Some(r#""ip";q=3;w=900"#));
        assert!(answer.header("ratelimit").unwrap().starts_with(&format!("\"ip\";r={left};")));
    }
    let refused = call(&gw, &[]).await;
    assert!(refused.limited_by("ip"), "{}", refused.message);
    assert_eq!(refused.header("retry-after"), Some("300"));
    assert_eq!(status(&gw).await["rate_limits"]["per_ip"], json!({ "requests": 3, "per": "15m" }));
    let metrics = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"mcp_rate_limited_total{scope="ip"} 1"#), "{metrics}");
}

/// A backend whose one tool, `whoami`, answers with the principal and whether it has a client address.
struct Whoami;

#[async_trait::async_trait]
impl Backend for Whoami {
    fn name(&self) -> &str {
        "who"
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(vec![ToolDef::new("whoami", "who is calling", json!({ "type": "object" }))])
    }

    async fn call_tool(&self, cx: &CallContext, _call: ToolCall) -> Result<ToolOutcome, BackendError> {
        let principal = &cx.principal;
        Ok(ToolOutcome::text(format!(
            "{} {:?} {}",
            principal.name,
            principal.tier,
            principal.client_ip.is_some()
        )))
    }
}

#[tokio::test]
async fn the_principal_reaches_the_call_on_both_paths() {
    // Per-key limits and later audit read the principal from the call's context: both the fast path and the
    // protocol layer's must carry the one authentication established.
    let yaml = tiered("  per_key: { requests: 100, per: 1m }");
    let config = mcpgate_config::parse_str(&yaml, mcpgate_config::Format::Yaml, "test").unwrap();
    let entry = BackendEntry::new(
        "who",
        mcpgate_backends::BackendKind::Builtin,
        Arc::new(Whoami),
        &config.resilience,
    );
    let gateway = Gateway::with_backends(config, vec![entry]).await.unwrap();
    let server = Server::spawn(gateway, V4).await.unwrap();
    let base = format!("http://{}", server.local_addr);
    let gw = TestGateway { url: format!("{base}/mcp"), base, server, http: reqwest::Client::new() };
    for slow in [false, true] {
        let answer = call_as(&gw, "whoami", &[("x-api-key", "paid-key")], slow).await;
        assert_eq!(answer.message["result"]["content"][0]["text"], r#"bob Some("paid") true"#, "slow={slow}");
    }
}
