//! Circuit breakers end to end: a backend that keeps failing opens its breaker after the threshold; later
//! calls fail at once without reaching it, and `/status` and `/ready` say so.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, atomic::Ordering};

use common::{Down, TestGateway};
use mcpgate_server::{Gateway, Server, registry::BackendEntry};
use serde_json::{Value, json};

#[tokio::test]
async fn a_failing_backend_opens_its_breaker_and_readiness_says_so() {
    let mut config = mcpgate_config::Config::default();
    config.resilience.circuit_breaker.failure_threshold = 3.try_into().unwrap();
    let backend = Arc::new(Down::default());
    let entry = BackendEntry::new(
        "down",
        mcpgate_backends::BackendKind::Builtin,
        backend.clone(),
        &config.resilience,
    );
    let gateway = Gateway::with_backends(config, vec![entry]).await.unwrap();
    let server = Server::spawn(gateway, "127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", server.local_addr);
    let gw = TestGateway { url: format!("{base}/mcp"), base, server, http: reqwest::Client::new() };

    for _ in 0..3 {
        let answer = gw.call("flaky", json!({})).await;
        assert!(answer["error"]["message"].as_str().unwrap().contains("connection refused"), "{answer}");
    }
    let answer = gw.call("flaky", json!({})).await;
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("circuit breaker open"), "{answer}");
    assert_eq!(backend.0.load(Ordering::SeqCst), 3, "an open breaker must not reach the backend");

    let status: Value =
        gw.http.get(format!("{}/status", gw.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["backends"][0]["breaker"]["state"], "open", "{status}");
    let ready = gw.http.get(format!("{}/ready", gw.base)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"][1]["reason"], "circuit breaker open", "{ready}");
}
