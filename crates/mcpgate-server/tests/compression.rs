//! The HTTP edge's response compression and request limits, end to end: a large answer is gzip-encoded for a
//! client that accepts gzip and decodes to the JSON-RPC result; small answers, event streams and clients that do
//! not ask are left alone; `COMPRESSION_ENABLED=false` switches it off. `MAX_REQUEST_SIZE` and `REQUEST_TIMEOUT`
//! from the environment are honoured on both protocol eras.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::{io::Read, time::Duration};

use common::{CONFORMANCE, DEMO, TestGateway, initialize, modern, spawn_with_env};
use serde_json::{Value, json};

const V4: &str = "127.0.0.1:0";

/// A stateless `echo` of `size` characters, sent with `accept_encoding` (if any): status, `Content-Encoding`,
/// `Content-Type`, and the raw body.
async fn echo(
    gw: &TestGateway,
    size: usize,
    accept_encoding: Option<&str>,
) -> (u16, Option<String>, String, Vec<u8>) {
    let params = json!({ "name": "echo", "arguments": { "message": "x".repeat(size) } });
    let extra: Vec<(&str, &str)> =
        accept_encoding.map(|encoding| ("accept-encoding", encoding)).into_iter().collect();
    let response = gw.modern_request("tools/call", Some("echo"), params, &extra).send().await.unwrap();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (status, encoding, content_type) =
        (response.status().as_u16(), header("content-encoding"), header("content-type").unwrap_or_default());
    (status, encoding, content_type, response.bytes().await.unwrap().to_vec())
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut text).unwrap();
    text
}

#[tokio::test]
async fn large_answers_are_gzipped_for_clients_that_accept_it_and_small_ones_never() {
    let gw = spawn_with_env(DEMO, &[], V4).await;
    let (status, encoding, content_type, body) = echo(&gw, 20_000, Some("gzip, br")).await;
    assert_eq!((status, encoding.as_deref()), (200, Some("gzip")), "{content_type}");
    assert!(body.len() < 2_000, "20 kB of one letter compresses well: {}", body.len());
    let message: Value = serde_json::from_str(&gunzip(&body)).unwrap();
    assert_eq!(message["jsonrpc"], "2.0");
    assert_eq!(message["result"]["content"][0]["text"].as_str().unwrap().len(), 20_000);

    // Under the 1 KiB threshold: as it is, even when gzip is welcome.
    let (status, encoding, _, body) = echo(&gw, 100, Some("gzip")).await;
    assert_eq!((status, encoding), (200, None));
    assert!(serde_json::from_slice::<Value>(&body).is_ok());
    // A client that does not ask gets plain JSON.
    let (_, encoding, _, body) = echo(&gw, 20_000, None).await;
    assert_eq!(encoding, None);
    assert!(serde_json::from_slice::<Value>(&body).is_ok());

    // The Prometheus scrape (several KiB) is compressed too, and still reads as the exposition format.
    let response =
        gw.http.get(format!("{}/metrics", gw.base)).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert!(gunzip(&response.bytes().await.unwrap()).contains("mcp_requests_total"));
}

#[tokio::test]
async fn event_streams_are_never_compressed() {
    let gw =
        spawn_with_env(&format!("{DEMO}{}", CONFORMANCE.trim_start_matches("backends:\n")), &[], V4).await;
    // A call with a progress token is answered as an event stream (progress, then the result), whose length is
    // unknown up front: only its content type keeps it out of gzip's buffer.
    let (headers, mut body) = modern("tools/call", Some("test_tool_with_progress"), json!({}));
    body["params"]["name"] = json!("test_tool_with_progress");
    body["params"]["arguments"] = json!({});
    body["params"]["_meta"]["progressToken"] = json!("p1");
    let mut request = gw
        .http
        .post(&gw.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("accept-encoding", "gzip")
        .body(body.to_string());
    for (k, v) in &headers {
        request = request.header(*k, v);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    assert!(response.headers().get("content-encoding").is_none());
    let messages = common::messages(&content_type, &response.text().await.unwrap());
    assert_eq!(messages.last().unwrap()["result"]["content"][0]["text"], "p1", "{messages:?}");

    // A legacy session's listening stream (GET) likewise.
    let (session, _) = initialize(&gw, "2025-11-25").await;
    let stream = gw
        .http
        .get(&gw.url)
        .header("accept", "text/event-stream")
        .header("accept-encoding", "gzip")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert!(stream.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn compression_enabled_false_switches_it_off() {
    let gw = spawn_with_env(DEMO, &[("COMPRESSION_ENABLED", "false")], V4).await;
    let (status, encoding, _, body) = echo(&gw, 20_000, Some("gzip")).await;
    assert_eq!((status, encoding), (200, None));
    assert!(serde_json::from_slice::<Value>(&body).is_ok());
}

#[tokio::test]
async fn max_request_size_from_the_environment_is_honoured_in_both_eras() {
    let gw = spawn_with_env(DEMO, &[("MAX_REQUEST_SIZE", "4kb")], V4).await;
    let (status, _, _, body) = echo(&gw, 5_000, None).await;
    let message: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, &message["error"]["code"]), (413, &json!(-32600)), "{message}");
    assert_eq!(echo(&gw, 3_000, None).await.0, 200);

    let (session, _) = initialize(&gw, "2025-11-25").await;
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "message": "y".repeat(5_000) } } });
    let headers = [("Mcp-Session-Id", session.clone()), ("MCP-Protocol-Version", "2025-11-25".to_owned())];
    let (status, _, _) = gw.post_raw(&headers, body.to_string()).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn request_timeout_from_the_environment_cuts_a_slow_call_short() {
    // The guides' unit: milliseconds.
    let gw = spawn_with_env(DEMO, &[("REQUEST_TIMEOUT", "300")], V4).await;
    let started = tokio::time::Instant::now();
    let answer = gw.call("sleep", json!({ "ms": 5_000 })).await;
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(answer["error"]["code"], -32006, "{answer}");
    assert_eq!(answer["error"]["data"]["kind"], "timeout", "{answer}");
    // A quick call is unaffected.
    let quick = gw.call("sleep", json!({ "ms": 10 })).await;
    assert!(quick["result"].is_object() && quick["result"]["isError"] != true, "{quick}");
}
