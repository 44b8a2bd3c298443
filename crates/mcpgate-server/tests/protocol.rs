//! Both protocol eras on one endpoint, sessions, pagination, correlation ids, ops endpoints and draining.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{CONFORMANCE, DEMO, event_stream, in_session, initialize, messages, spawn};
use serde_json::{Value, json};

#[tokio::test]
async fn stateless_call_carries_result_type_and_lists_carry_cache_hints() {
    let gw = spawn(DEMO).await;
    let answer = gw.call("echo", json!({ "message": "hi" })).await;
    assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
    assert_eq!(answer["result"]["content"], json!([{ "type": "text", "text": "hi" }]));
    let add = gw.call("add", json!({ "a": 2, "b": 3 })).await;
    assert_eq!(add["result"]["structuredContent"], json!({ "sum": 5 }), "{add}");
    let (status, list) = gw.modern("tools/list", None, json!({})).await;
    assert_eq!(status, 200);
    let result = &list["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["ttlMs"], 60_000);
    assert_eq!(result["cacheScope"], "public");
    let names: Vec<&str> =
        result["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo", "add", "now", "sleep"]);
}

#[tokio::test]
async fn discover_advertises_both_eras() {
    let gw = spawn(DEMO).await;
    let (status, m) = gw.modern("server/discover", None, json!({})).await;
    assert_eq!(status, 200, "{m}");
    let versions = m["result"]["supportedVersions"].as_array().unwrap();
    for v in ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"] {
        assert!(versions.contains(&json!(v)), "{m}");
    }
    assert!(m["result"]["capabilities"]["tools"].is_object(), "{m}");
    assert!(m["result"]["ttlMs"].is_u64() && m["result"]["cacheScope"].is_string(), "{m}");
}

#[tokio::test]
async fn legacy_session_negotiates_versions_and_serves_calls() {
    let gw = spawn(DEMO).await;
    for version in ["2025-11-25", "2025-06-18", "2025-03-26"] {
        let (session, init) = initialize(&gw, version).await;
        assert_eq!(init["result"]["protocolVersion"], version, "{init}");
        assert!(init["result"].get("resultType").is_none(), "legacy results keep their old shape: {init}");
        let (status, answer) = in_session(
            &gw,
            &session,
            version,
            "tools/call",
            json!({ "name": "echo", "arguments": { "message": "m" } }),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(answer["result"]["content"][0]["text"], "m", "{answer}");
        let (_, pong) = in_session(&gw, &session, version, "ping", json!({})).await;
        assert_eq!(pong["result"], json!({}), "{pong}");
    }
}

#[tokio::test]
async fn an_unknown_version_negotiates_the_newest_with_initialize() {
    let gw = spawn(DEMO).await;
    let (_, init) = initialize(&gw, "2031-01-01").await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
}

#[tokio::test]
async fn delete_ends_a_session_and_its_id_then_answers_404() {
    let gw = spawn(DEMO).await;
    let (session, _) = initialize(&gw, "2025-11-25").await;
    let deleted = gw.http.delete(&gw.url).header("Mcp-Session-Id", &session).send().await.unwrap();
    // 200, as the reference servers answer: the Python SDK logs a 202 as a failed termination.
    assert_eq!(deleted.status(), 200, "a closed session answers 200");
    let (status, m) = in_session(&gw, &session, "2025-11-25", "tools/list", json!({})).await;
    assert_eq!(status, 404, "{m}");
}

#[tokio::test]
async fn get_opens_a_session_event_stream() {
    let gw = spawn(DEMO).await;
    let (session, _) = initialize(&gw, "2025-11-25").await;
    let response = event_stream(&gw, &session).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
}

#[tokio::test]
async fn tools_list_pages_with_an_opaque_cursor() {
    let gw = spawn(&format!("server:\n  page_size: 2\n{DEMO}")).await;
    let (_, first) = gw.modern("tools/list", None, json!({})).await;
    assert_eq!(first["result"]["tools"].as_array().unwrap().len(), 2);
    let cursor = first["result"]["nextCursor"].as_str().expect("a next cursor").to_owned();
    let (_, second) = gw.modern("tools/list", None, json!({ "cursor": cursor })).await;
    assert_eq!(second["result"]["tools"][0]["name"], "now");
    assert!(second["result"].get("nextCursor").is_none_or(Value::is_null), "{second}");
    let (_, bad) = gw.modern("tools/list", None, json!({ "cursor": "forged" })).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
}

#[tokio::test]
async fn the_request_id_is_echoed_or_generated() {
    let gw = spawn(DEMO).await;
    let given =
        gw.http.get(format!("{}/health", gw.base)).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");
    let generated = gw.http.get(format!("{}/health", gw.base)).send().await.unwrap();
    assert_eq!(generated.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn ready_and_status_describe_the_backends() {
    let gw = spawn(&format!("{DEMO}  conf:\n    kind: builtin\n    builtin: conformance\n  off:\n    kind: builtin\n    builtin: demo\n    enabled: false\n")).await;
    let ready = gw.http.get(format!("{}/ready", gw.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let names: Vec<&str> =
        ready["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["config", "backend:conf", "backend:demo", "state:memory"]);
    let status: Value =
        gw.http.get(format!("{}/status", gw.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        status["state"],
        json!({ "backend": "memory", "at": null, "up": true, "seal_key": "per-process" }),
        "{status}"
    );
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let demo = status["backends"].as_array().unwrap().iter().find(|b| b["name"] == "demo").unwrap();
    assert_eq!((demo["state"].as_str(), demo["tools"].as_u64()), (Some("up"), Some(4)));
    assert!(status["uptime_seconds"].is_u64());
}

#[tokio::test]
async fn draining_lets_in_flight_calls_finish_and_refuses_new_connections() {
    let gw = spawn(CONFORMANCE).await;
    // test_tool_with_logging takes ~100 ms: start it, then ask the server to stop.
    let name = "test_tool_with_logging";
    let request = gw.modern_request("tools/call", Some(name), json!({ "name": name }), &[]);
    let in_flight = tokio::spawn(async move {
        let response = request.send().await.unwrap();
        let ct = response.headers()["content-type"].to_str().unwrap().to_owned();
        messages(&ct, &response.text().await.unwrap()).pop().unwrap()
    });
    // Mid-call: the tool logs at 0, 50 and 100 ms.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let addr = gw.server.local_addr;
    gw.server.shutdown.cancel();
    let answer = in_flight.await.unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "Tool with logging executed successfully", "{answer}");
    tokio::time::timeout(Duration::from_secs(5), gw.server.join)
        .await
        .expect("drains in time")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn a_request_id_reused_while_in_flight_in_a_session_is_refused_and_the_first_call_completes() {
    let gw = spawn(CONFORMANCE).await;
    let (session, _) = initialize(&gw, "2025-11-25").await;
    let slow = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "test_tool_with_logging", "arguments": {} } });
    let headers =
        vec![("Mcp-Session-Id", session.clone()), ("MCP-Protocol-Version", "2025-11-25".to_owned())];
    let first = {
        let (http, url, headers, body) = (gw.http.clone(), gw.url.clone(), headers.clone(), slow.to_string());
        tokio::spawn(async move {
            let mut request = http
                .post(url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(body);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let response = request.send().await.unwrap();
            let ct = response.headers()["content-type"].to_str().unwrap().to_owned();
            messages(&ct, &response.text().await.unwrap()).pop().unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(40)).await;
    let echo = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "test_simple_text", "arguments": {} } });
    let (status, ct, text) = gw.post_raw(&headers, echo.to_string()).await;
    let refused = messages(&ct, &text).pop().unwrap();
    assert_eq!((status, refused["error"]["code"].as_i64()), (400, Some(-32600)), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("already in flight"), "{refused}");
    let answer = first.await.unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "Tool with logging executed successfully", "{answer}");
    // Once answered, the id may be used again.
    let (status, ct, text) = gw.post_raw(&headers, echo.to_string()).await;
    let again = messages(&ct, &text).pop().unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        again["result"]["content"][0]["text"], "This is a simple text response for testing.",
        "{again}"
    );
}

#[tokio::test]
async fn sessions_are_capped_per_client_and_in_all() {
    // Two seats per client, three in all: a client's third initialize is refused until one of its sessions
    // closes; another client fills the last seat, then the gateway is full for everyone.
    let a = "client-a-key-0123456789";
    let b = "client-b-key-0123456789";
    let yaml = format!(
        "server:\n  max_sessions: 3\n  max_sessions_per_client: 2\nsecurity:\n  api_keys:\n    - {{ name: a, hash: \"{}\" }}\n    - {{ name: b, hash: \"{}\" }}\n{DEMO}",
        mcpgate_config::KeyHash::sha256(a),
        mcpgate_config::KeyHash::sha256(b)
    );
    let gw = spawn(&yaml).await;
    let open = |key: &'static str| {
        let gw = &gw;
        async move {
            let response = common::post_initialize(gw, "2025-11-25", json!({}), &[("x-api-key", key)]).await;
            let status = response.status().as_u16();
            let session = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
            let ct = response.headers()["content-type"].to_str().unwrap().to_owned();
            (status, session, messages(&ct, &response.text().await.unwrap()).pop().unwrap_or(Value::Null))
        }
    };
    let (first, second) = (open(a).await, open(a).await);
    assert_eq!((first.0, second.0), (200, 200));
    let (status, _, refused) = open(a).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(
        refused["error"]["data"],
        json!({ "kind": "too_many_sessions", "scope": "client" }),
        "{refused}"
    );
    // Closing one gives its seat back.
    let closed =
        gw.http.delete(&gw.url).header("Mcp-Session-Id", first.1.unwrap()).header("x-api-key", a).send();
    assert_eq!(closed.await.unwrap().status(), 200);
    assert_eq!(open(a).await.0, 200, "a's seat came back");
    // b takes the third seat; then the gateway is full, and b's second is refused as the gateway's.
    assert_eq!(open(b).await.0, 200);
    let (status, _, full) = open(b).await;
    assert_eq!(status, 429, "the gateway holds 3 already: {full}");
    assert_eq!(full["error"]["data"]["scope"], "gateway", "{full}");
    let metrics = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"mcp_sessions_refused_total{scope="client"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"mcp_sessions_refused_total{scope="gateway"} 1"#), "{metrics}");
}
