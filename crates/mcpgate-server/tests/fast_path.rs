//! The fast path answers exactly what the protocol layer answers, stateless and in legacy sessions. Each request
//! is sent twice: once as the fast path takes it, once with an `Origin` header (allowed, but outside the fast
//! path's conditions) so rmcp serves it; the answers must match and the fast-path counter must show which path
//! ran.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{TestGateway, event_stream, in_session, initialize, messages, modern, spawn};
use serde_json::{Value, json};

const BOTH: &str = "backends:\n  demo:\n    kind: builtin\n    builtin: demo\n  c:\n    kind: builtin\n    builtin: conformance\n";

async fn fast_calls(gw: &TestGateway) -> u64 {
    let status: Value =
        gw.http.get(format!("{}/status", gw.base)).send().await.unwrap().json().await.unwrap();
    status["calls"]["fast_path"].as_u64().unwrap()
}

async fn send(gw: &TestGateway, params: Value, tool: &str, slow: bool, meta: Option<Value>) -> (u16, Value) {
    let (mut headers, mut body) = modern("tools/call", Some(tool), params);
    if let Some(meta) = meta {
        body["params"]["_meta"] = meta;
    }
    if slow {
        headers.push(("Origin", format!("http://localhost:{}", gw.server.local_addr.port())));
    }
    let (status, ct, text) = gw.post_raw(&headers, body.to_string()).await;
    (status, messages(&ct, &text).pop().unwrap_or(Value::Null))
}

/// Send on both paths; assert equal answers and that the first went fast (`expect_fast`).
async fn same_on_both_paths(
    gw: &TestGateway,
    tool: &str,
    arguments: Value,
    meta: Option<Value>,
    expect_fast: bool,
) -> Value {
    let params = json!({ "name": tool, "arguments": arguments });
    let before = fast_calls(gw).await;
    let fast = send(gw, params.clone(), tool, false, meta.clone()).await;
    let after = fast_calls(gw).await;
    assert_eq!(after - before, u64::from(expect_fast), "{tool}: fast path taken?");
    let slow = send(gw, params, tool, true, meta).await;
    assert_eq!(fast_calls(gw).await, after, "{tool}: the Origin request must not take the fast path");
    assert_eq!(fast, slow, "{tool}: fast and protocol-layer answers differ");
    fast.1
}

#[tokio::test]
async fn results_and_tool_errors_match_the_protocol_layer() {
    let gw = spawn(BOTH).await;
    let echo = same_on_both_paths(&gw, "echo", json!({ "message": "hi" }), None, true).await;
    assert_eq!(echo["result"]["resultType"], "complete");
    same_on_both_paths(&gw, "add", json!({ "a": 2, "b": 3.5 }), None, true).await;
    same_on_both_paths(&gw, "echo", json!({ "wrong": 1 }), None, true).await;
    for tool in [
        "test_simple_text",
        "test_image_content",
        "test_audio_content",
        "test_multiple_content_types",
        "test_error_handling",
    ] {
        same_on_both_paths(&gw, tool, json!({}), None, true).await;
    }
}

#[tokio::test]
async fn protocol_errors_match_with_their_status() {
    let gw = spawn(BOTH).await;
    // -32021 with HTTP 400, from the backend.
    let m = same_on_both_paths(&gw, "test_missing_capability", json!({}), None, true).await;
    assert_eq!(m["error"]["code"], -32021, "{m}");
    // An unknown tool is left to the protocol layer.
    let m = same_on_both_paths(&gw, "no_such_tool", json!({}), None, false).await;
    assert_eq!(m["error"]["code"], -32602, "{m}");
}

#[tokio::test]
async fn requests_that_may_notify_take_the_protocol_layer() {
    let gw = spawn(BOTH).await;
    let mut meta = common::meta();
    meta["progressToken"] = json!("p1");
    let before = fast_calls(&gw).await;
    let (status, m) = send(
        &gw,
        json!({ "name": "test_tool_with_progress", "arguments": {} }),
        "test_tool_with_progress",
        false,
        Some(meta),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(m["result"]["content"][0]["text"], "p1", "{m}");
    assert_eq!(fast_calls(&gw).await, before, "a progress token needs the streaming path");
}

#[tokio::test]
async fn notifications_asked_of_a_quiet_tool_do_not_leave_the_fast_path() {
    let gw = spawn(BOTH).await;
    let mut meta = common::meta();
    meta["progressToken"] = json!("p2");
    meta["io.modelcontextprotocol/logLevel"] = json!("debug");
    let m = same_on_both_paths(&gw, "echo", json!({ "message": "quiet" }), Some(meta), true).await;
    assert_eq!(m["result"]["content"][0]["text"], "quiet", "{m}");
}

#[tokio::test]
async fn multi_round_calls_work_across_paths() {
    let gw = spawn(BOTH).await;
    let tool = "test_input_required_result_multi_round";
    let mut meta = common::meta();
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({ "elicitation": {} });
    let meta = Some(meta);
    let (status, r1) = send(&gw, json!({ "name": tool, "arguments": {} }), tool, false, meta.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(r1["result"]["resultType"], "input_required", "{r1}");
    assert!(r1["result"]["inputRequests"]["step1"].is_object(), "{r1}");
    let state = r1["result"]["requestState"].as_str().unwrap().to_owned();
    // Round two on the protocol layer, with the state the fast path sealed.
    let params = json!({ "name": tool, "arguments": {}, "requestState": state,
        "inputResponses": { "step1": { "action": "accept", "content": { "name": "Alice" } } } });
    let (_, r2) = send(&gw, params, tool, true, meta.clone()).await;
    assert!(r2["result"]["inputRequests"]["step2"].is_object(), "{r2}");
    let state2 = r2["result"]["requestState"].as_str().unwrap().to_owned();
    assert_ne!(state, state2);
    // Round three back on the fast path.
    let params = json!({ "name": tool, "arguments": {}, "requestState": state2,
        "inputResponses": { "step2": { "action": "accept", "content": { "color": "blue" } } } });
    let (_, r3) = send(&gw, params.clone(), tool, false, meta.clone()).await;
    assert_eq!(r3["result"]["content"][0]["text"], "Multi-round complete for Alice who likes blue", "{r3}");
    // A tampered state is refused on both paths alike.
    let mut tampered = params;
    tampered["requestState"] = json!(format!("{}-TAMPERED", tampered["requestState"].as_str().unwrap()));
    let fast = send(&gw, tampered.clone(), tool, false, meta.clone()).await;
    let slow = send(&gw, tampered, tool, true, meta).await;
    assert_eq!(fast, slow);
    assert_eq!(fast.1["error"]["code"], -32602, "{:?}", fast);
}

#[tokio::test]
async fn nodes_sharing_a_seal_key_accept_each_others_rounds() {
    // Two nodes behind one balancer: round one on node A, round two on node B. With the same
    // MCPGATE_SEAL_KEY, B opens A's requestState; a third node with a key of its own refuses it.
    let key = ("MCPGATE_SEAL_KEY", "k".repeat(40));
    let a = common::spawn_with_env(BOTH, &[(key.0, &key.1)], "127.0.0.1:0").await;
    let b = common::spawn_with_env(BOTH, &[(key.0, &key.1)], "127.0.0.1:0").await;
    let stranger = spawn(BOTH).await;
    let tool = "test_input_required_result_multi_round";
    let mut meta = common::meta();
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({ "elicitation": {} });
    let (_, r1) = send(&a, json!({ "name": tool, "arguments": {} }), tool, false, Some(meta.clone())).await;
    let params = json!({ "name": tool, "arguments": {}, "requestState": r1["result"]["requestState"],
        "inputResponses": { "step1": { "action": "accept", "content": { "name": "Alice" } } } });
    for slow in [false, true] {
        let (_, r2) = send(&b, params.clone(), tool, slow, Some(meta.clone())).await;
        assert!(r2["result"]["inputRequests"]["step2"].is_object(), "slow={slow}: {r2}");
        let (_, refused) = send(&stranger, params.clone(), tool, slow, Some(meta.clone())).await;
        assert_eq!(refused["error"]["code"], -32602, "slow={slow}: {refused}");
    }
}

/// A `tools/call` in a legacy session: `(status, answer)`. `slow` adds an allowed `Origin`, which the fast
/// path leaves to the protocol layer.
async fn send_in_session(
    gw: &TestGateway,
    session: &str,
    version: &str,
    id: u64,
    params: Value,
    slow: bool,
) -> (u16, Value) {
    let body = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params });
    let mut headers =
        vec![("Mcp-Session-Id", session.to_owned()), ("MCP-Protocol-Version", version.to_owned())];
    if slow {
        headers.push(("Origin", format!("http://localhost:{}", gw.server.local_addr.port())));
    }
    let (status, ct, text) = gw.post_raw(&headers, body.to_string()).await;
    (status, messages(&ct, &text).pop().unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_first_call_after_initialized_already_takes_the_fast_path() {
    // What the fast path needs of the client is learnt from `initialize` itself: once
    // `notifications/initialized` is answered, a call of a tool that may contact the client is served here.
    // (It was learnt in the protocol layer's task after that answer, so such a call could race it, take the
    // protocol layer, and have its log messages sent to a listening stream the client may not have.)
    let gw = spawn(BOTH).await;
    for round in 0..10 {
        let (session, _) = initialize(&gw, "2025-11-25").await;
        let before = fast_calls(&gw).await;
        let params = json!({ "name": "test_simple_text", "arguments": {} });
        let (status, m) = send_in_session(&gw, &session, "2025-11-25", 1, params, false).await;
        assert_eq!(status, 200, "{m}");
        assert_eq!(fast_calls(&gw).await - before, 1, "round {round}: the call took the protocol layer");
    }
    // A client that may be asked something still goes to the protocol layer.
    let (session, _) = common::initialize_with(&gw, "2025-11-25", json!({ "sampling": {} })).await;
    let before = fast_calls(&gw).await;
    let params = json!({ "name": "test_simple_text", "arguments": {} });
    send_in_session(&gw, &session, "2025-11-25", 1, params, false).await;
    assert_eq!(fast_calls(&gw).await, before);
}

#[tokio::test]
async fn legacy_session_calls_match_the_protocol_layer() {
    let gw = spawn(BOTH).await;
    let (session, _) = initialize(&gw, "2025-11-25").await;
    let cases = [
        (json!({ "name": "echo", "arguments": { "message": "hi" } }), true),
        (json!({ "name": "add", "arguments": { "a": 2, "b": 3.5 } }), true),
        (json!({ "name": "echo", "arguments": { "wrong": 1 } }), true),
        (json!({ "name": "sleep", "arguments": { "ms": 0 } }), true),
        (json!({ "name": "echo", "arguments": { "message": "m" }, "_meta": { "trace": "x" } }), true),
        // A tool whose backend may talk to the client, for a client that cannot be asked anything: it sends
        // nothing, so its answer is plain JSON as on the protocol layer. Unknown tools take the protocol layer.
        (json!({ "name": "test_simple_text", "arguments": {} }), true),
        (json!({ "name": "no_such_tool", "arguments": {} }), false),
        // A progress token leads nowhere for a tool that never contacts the client: still the fast path.
        (json!({ "name": "echo", "arguments": { "message": "p" }, "_meta": { "progressToken": 7 } }), true),
    ];
    for (i, (params, expect_fast)) in cases.into_iter().enumerate() {
        let before = fast_calls(&gw).await;
        let fast = send_in_session(&gw, &session, "2025-11-25", i as u64, params.clone(), false).await;
        assert_eq!(fast_calls(&gw).await - before, u64::from(expect_fast), "{params}: fast path taken?");
        let slow = send_in_session(&gw, &session, "2025-11-25", 100 + i as u64, params.clone(), true).await;
        assert_eq!(fast.0, slow.0, "{params}");
        let strip_id = |mut m: Value| {
            m.as_object_mut().unwrap().remove("id");
            m
        };
        assert_eq!(strip_id(fast.1), strip_id(slow.1), "{params}: fast and protocol-layer answers differ");
    }
    // A version other than the negotiated one is the protocol layer's to judge.
    let before = fast_calls(&gw).await;
    let params = json!({ "name": "echo", "arguments": { "message": "v" } });
    send_in_session(&gw, &session, "2025-06-18", 50, params, false).await;
    assert_eq!(fast_calls(&gw).await, before);
}

#[tokio::test]
async fn legacy_fast_calls_keep_the_session_alive_and_can_be_cancelled() {
    let gw = spawn(&format!("server:\n  session_idle_timeout: 1s\n{BOTH}")).await;
    let (session, _) = initialize(&gw, "2025-11-25").await;
    let before = fast_calls(&gw).await;
    // Calls on the fast path count as activity: the session outlives several idle timeouts.
    for i in 0..8 {
        let params = json!({ "name": "sleep", "arguments": { "ms": 350 } });
        let (status, m) = send_in_session(&gw, &session, "2025-11-25", i, params, false).await;
        assert_eq!((status, m["result"]["content"][0]["text"].as_str()), (200, Some("slept 350 ms")), "{m}");
    }
    assert_eq!(fast_calls(&gw).await - before, 8);
    // notifications/cancelled stops a call in flight on the fast path.
    let call = {
        let (gw_url, http, session) = (gw.url.clone(), gw.http.clone(), session.clone());
        tokio::spawn(async move {
            let body = json!({ "jsonrpc": "2.0", "id": "long", "method": "tools/call",
                "params": { "name": "sleep", "arguments": { "ms": 30_000 } } });
            let response = http
                .post(gw_url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("Mcp-Session-Id", session)
                .header("MCP-Protocol-Version", "2025-11-25")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": { "requestId": "long", "reason": "test" } });
    let headers = [("Mcp-Session-Id", session.clone()), ("MCP-Protocol-Version", "2025-11-25".to_owned())];
    let (status, _, _) = gw.post_raw(&headers, cancel.to_string()).await;
    assert_eq!(status, 202);
    let answer =
        tokio::time::timeout(Duration::from_secs(5), call).await.expect("cancel ends the call").unwrap();
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    // Expiry once nothing goes on: `sessions::tests`, under a paused clock.
}

/// Log messages of the session's listening stream, read for `wait`.
async fn log_messages(mut stream: reqwest::Response, wait: Duration) -> Vec<Value> {
    let mut text = String::new();
    let _ = tokio::time::timeout(wait, async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    messages("text/event-stream", &text)
        .into_iter()
        .filter(|m| m["method"] == "notifications/message")
        .collect()
}

/// Post a `tools/call` in `session`; the content type and every JSON-RPC message of the answer.
async fn call_in_session(gw: &TestGateway, session: &str, id: u64, params: Value) -> (String, Vec<Value>) {
    let body = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params });
    let headers = [("Mcp-Session-Id", session.to_owned()), ("MCP-Protocol-Version", "2025-11-25".to_owned())];
    let (status, ct, text) = gw.post_raw(&headers, body.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let messages = messages(&ct, &text);
    (ct, messages)
}

#[tokio::test]
async fn what_a_fast_call_sends_the_client_comes_on_its_own_stream_before_its_answer() {
    let gw = spawn(BOTH).await;
    let (session, _) = initialize(&gw, "2025-11-25").await;
    let listening = event_stream(&gw, &session).await;
    assert_eq!(listening.status(), 200);

    let before = fast_calls(&gw).await;
    let params = json!({ "name": "test_tool_with_logging", "arguments": {} });
    let (ct, messages) = call_in_session(&gw, &session, 1, params.clone()).await;
    assert_eq!(fast_calls(&gw).await - before, 1, "a client that cannot be asked anything: fast path");
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let (answer, logs) = messages.split_last().unwrap();
    assert_eq!(logs.len(), 3, "{messages:?}");
    assert!(logs.iter().all(|m| m["method"] == "notifications/message"), "{messages:?}");
    assert_eq!(answer["id"], 1, "the answer comes last: {messages:?}");
    assert!(answer["result"]["content"].is_array(), "a result: {answer}");
    let (_, slow) = send_in_session(&gw, &session, "2025-11-25", 2, params, true).await;
    assert_eq!(answer["result"], slow["result"], "fast and protocol-layer answers differ: {slow}");
    // Nothing of the fast call went to the session's listening stream (the protocol layer's call sent its 3).
    assert_eq!(log_messages(listening, Duration::from_millis(300)).await.len(), 3);

    // Progress, for a client that asked for it with a token: increasing, then the answer.
    let params =
        json!({ "name": "test_tool_with_progress", "arguments": {}, "_meta": { "progressToken": "p" } });
    let (_, messages) = call_in_session(&gw, &session, 3, params).await;
    let (answer, progress) = messages.split_last().unwrap();
    assert!(!progress.is_empty(), "{messages:?}");
    let values: Vec<f64> = progress
        .iter()
        .map(|m| {
            assert_eq!(
                (&m["method"], &m["params"]["progressToken"]),
                (&json!("notifications/progress"), &json!("p"))
            );
            m["params"]["progress"].as_f64().unwrap()
        })
        .collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
    assert_eq!(answer["id"], 3, "{messages:?}");

    // The session's log level applies: above every message the tool sends, only the answer comes, as JSON.
    let (status, m) =
        in_session(&gw, &session, "2025-11-25", "logging/setLevel", json!({ "level": "emergency" })).await;
    assert_eq!(status, 200, "{m}");
    let (ct, messages) =
        call_in_session(&gw, &session, 4, json!({ "name": "test_tool_with_logging", "arguments": {} })).await;
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!((messages.len(), &messages[0]["id"]), (1, &json!(4)), "{messages:?}");

    // A client that declared sampling may be asked mid-call, and its answer comes back through the session's
    // worker: protocol layer.
    let (askable, _) = common::initialize_with(&gw, "2025-11-25", json!({ "sampling": {} })).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = fast_calls(&gw).await;
    let params = json!({ "name": "test_simple_text", "arguments": {} });
    let (_, answer) = send_in_session(&gw, &askable, "2025-11-25", 1, params, false).await;
    assert_eq!(answer["result"]["content"][0]["type"], "text", "{answer}");
    assert_eq!(fast_calls(&gw).await, before, "a client that can be asked: protocol layer");
}
