//! Parked legacy sessions: a plain `initialize` opens a session without a protocol worker; a request that needs
//! one restores it (replaying the `initialize`), and a quiet session gives it back after `session_park_after` —
//! while an open stream or a resource subscription keeps it. What the client sees never changes.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{TestGateway, event_stream, in_session, initialize, spawn};
use serde_json::json;

const VERSION: &str = "2025-11-25";

async fn gateway() -> TestGateway {
    spawn(
        "server:\n  session_park_after: 150ms\nbackends:\n  demo: { kind: builtin, builtin: demo }\n  \
         c: { kind: builtin, builtin: conformance }\n",
    )
    .await
}

/// `(mcp_active_sessions, mcp_session_workers)`.
async fn sessions(gw: &TestGateway) -> (u64, u64) {
    let text = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    let gauge = |name: &str| {
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() as u64
    };
    (gauge("mcp_active_sessions"), gauge("mcp_session_workers"))
}

/// Wait (at most 10 s) until the gauges read `expected`.
async fn until(gw: &TestGateway, expected: (u64, u64)) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = sessions(gw).await;
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions and workers {now:?}, waiting for {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn tools_listed(gw: &TestGateway, session: &str) -> usize {
    tools_listed_as(gw, session, 5).await
}

/// `tools/list` with JSON-RPC id `id`: how many tools it lists.
async fn tools_listed_as(gw: &TestGateway, session: &str, id: u32) -> usize {
    let body = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" });
    let headers = [("Mcp-Session-Id", session.to_owned()), ("MCP-Protocol-Version", VERSION.to_owned())];
    let (status, ct, text) = gw.post_raw(&headers, body.to_string()).await;
    let answer = common::messages(&ct, &text).pop().unwrap_or_default();
    assert_eq!(status, 200, "{answer}");
    answer["result"]["tools"].as_array().unwrap_or_else(|| panic!("{answer}")).len()
}

#[tokio::test]
async fn a_plain_initialize_opens_a_parked_session_that_is_restored_on_demand_and_parked_again() {
    let gw = gateway().await;
    let (session, init) = initialize(&gw, VERSION).await;
    assert_eq!(init["result"]["protocolVersion"], VERSION, "{init}");
    assert_eq!(sessions(&gw).await, (1, 0), "opened without a worker");

    // A tool call takes the fast path: still no worker.
    let (_, echoed) = in_session(
        &gw,
        &session,
        VERSION,
        "tools/call",
        json!({ "name": "echo", "arguments": { "message": "hi" } }),
    )
    .await;
    assert_eq!(echoed["result"]["content"][0]["text"], "hi", "{echoed}");
    assert_eq!(sessions(&gw).await, (1, 0));

    // A list needs the protocol layer: a worker is restored for it, and the answer is the usual one.
    let tools = tools_listed(&gw, &session).await;
    assert!(tools > 0);
    assert_eq!(sessions(&gw).await, (1, 1));
    // Quiet for the park delay: released again; the session lives on and answers the same.
    until(&gw, (1, 0)).await;
    assert_eq!(tools_listed(&gw, &session).await, tools);
    // The client's log level, set through a worker, outlives it.
    let (status, _) =
        in_session(&gw, &session, VERSION, "logging/setLevel", json!({ "level": "error" })).await;
    assert_eq!(status, 200);
    until(&gw, (1, 0)).await;
    gw.assert_serving().await;
}

#[tokio::test]
async fn concurrent_first_requests_share_one_restore() {
    let gw = gateway().await;
    let (session, _) = initialize(&gw, VERSION).await;
    // A listening stream and eight lists at once, all finding the session parked.
    let stream = event_stream(&gw, &session);
    let lists = futures::future::join_all((0..8).map(|id| tools_listed_as(&gw, &session, id)));
    let (stream, counts) = tokio::join!(stream, lists);
    assert_eq!(stream.status(), 200);
    assert!(counts.iter().all(|n| *n == counts[0] && *n > 0), "{counts:?}");
    assert_eq!(sessions(&gw).await, (1, 1));
}

#[tokio::test]
async fn an_open_stream_or_a_subscription_keeps_a_worker_and_a_quiet_session_does_not() {
    let gw = gateway().await;
    let (listening, _) = initialize(&gw, VERSION).await;
    let (subscribed, _) = initialize(&gw, VERSION).await;
    let (quiet, _) = initialize(&gw, VERSION).await;
    let stream = event_stream(&gw, &listening).await;
    assert_eq!(stream.status(), 200);
    let (status, answer) = in_session(
        &gw,
        &subscribed,
        VERSION,
        "resources/subscribe",
        json!({ "uri": "test://static-binary" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    tools_listed(&gw, &quiet).await;
    assert_eq!(sessions(&gw).await, (3, 3));
    // The quiet one is parked; the other two keep theirs.
    until(&gw, (3, 2)).await;
    // Once its stream is closed, the listening one is parked too; the subscribed one never is.
    drop(stream);
    until(&gw, (3, 1)).await;
}
