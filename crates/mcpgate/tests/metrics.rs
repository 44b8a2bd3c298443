//! The metrics endpoint of the real binary, switched by the guides' environment variables: `PROMETHEUS_PORT`
//! moves it to a listener of its own, `METRICS_ENABLED=false` removes it. (What it serves is checked in
//! `crates/mcpgate-server/tests/metrics.rs`.)

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::{
    io::{Read, Write},
    time::Duration,
};

use serde_json::json;
use support::{dechunk, free_port, modern, serve_with_env};

/// `GET path` on a fresh connection: status, content type, body.
fn get(addr: &str, path: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type =
        head.lines().find_map(|l| l.strip_prefix("content-type: ")).unwrap_or_default().to_owned();
    let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    (status, content_type, body)
}

/// Wait (up to 10 s) until something listens on `addr`.
fn listening(addr: &str) {
    for _ in 0..500 {
        if support::listens(addr) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr}");
}

#[test]
fn prometheus_port_serves_metrics_apart_from_mcp() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let (_gateway, addr) =
        serve_with_env(None, &dir.path().join("log"), Duration::from_secs(20), &[("PROMETHEUS_PORT", &port)]);
    let metrics = format!("127.0.0.1:{port}");
    listening(&metrics);
    let answer =
        modern(&addr, "tools/call", Some("echo"), json!({ "name": "echo", "arguments": { "message": "m" } }));
    assert_eq!(answer.unwrap()["result"]["content"][0]["text"], "m");

    let (status, content_type, body) = get(&metrics, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(body.contains("mcp_requests_total{method=\"tools/call\",status=\"200\"} 1\n"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(get(&metrics, "/mcp").0, 404, "only metrics on the metrics port");
    assert_eq!(get(&addr, "/metrics").0, 404, "no metrics on the main port");
}

#[test]
fn metrics_enabled_false_removes_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (_gateway, addr) =
        serve_with_env(None, &log, Duration::from_secs(20), &[("METRICS_ENABLED", "false")]);
    assert_eq!(get(&addr, "/metrics").0, 404);
    assert_eq!(get(&addr, "/health").0, 200);
    let (_gateway, addr) =
        serve_with_env(None, &log, Duration::from_secs(20), &[("METRICS_ENABLED", "true")]);
    assert_eq!(get(&addr, "/metrics").0, 200);
}
