//! The live catalogue: when a backend's catalogue changes, `tools/list` follows, legacy sessions hear
//! `notifications/tools/list_changed` on their event stream, and calls reach the new tools.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use common::{TestGateway, event_stream, initialize};
use futures::StreamExt;
use mcpgate_core::{Backend, BackendError, CallContext, ToolCall, ToolDef, ToolOutcome};
use mcpgate_server::{Gateway, Server, registry::BackendEntry};
use serde_json::{Value, json};
use tokio::sync::watch;

/// A backend whose tool set the test changes.
struct Shifting {
    tools: Mutex<Vec<String>>,
    changes: watch::Sender<u64>,
}

impl Shifting {
    fn set(&self, tools: &[&str]) {
        *self.tools.lock().unwrap() = tools.iter().map(|t| t.to_string()).collect();
        self.changes.send_modify(|n| *n += 1);
    }
}

#[async_trait]
impl Backend for Shifting {
    fn name(&self) -> &str {
        "shifting"
    }

    fn catalogue_changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.subscribe())
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        let tools = self.tools.lock().unwrap().clone();
        Ok(tools.iter().map(|t| ToolDef::new(t.as_str(), "changes", json!({ "type": "object" }))).collect())
    }

    async fn call_tool(&self, _cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        Ok(ToolOutcome::text(format!("{} answered", call.name)))
    }
}

async fn tool_names(gw: &TestGateway) -> Vec<String> {
    common::tool_names_of(&gw.modern("tools/list", None, json!({})).await.1)
}

#[tokio::test]
async fn a_changed_backend_catalogue_is_served_and_announced() {
    let backend =
        Arc::new(Shifting { tools: Mutex::new(vec!["first".into()]), changes: watch::channel(0).0 });
    let config = mcpgate_config::Config::default();
    let entry = BackendEntry::new(
        "shifting",
        mcpgate_backends::BackendKind::Builtin,
        backend.clone(),
        &config.resilience,
    );
    let gateway = Gateway::with_backends(config, vec![entry]).await.unwrap();
    let server = Server::spawn(gateway, "127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", server.local_addr);
    let gw = TestGateway { url: format!("{base}/mcp"), base, server, http: reqwest::Client::new() };
    assert_eq!(tool_names(&gw).await, ["first"]);

    let (session, init) = initialize(&gw, "2025-11-25").await;
    assert_eq!(init["result"]["capabilities"]["tools"]["listChanged"], true, "{init}");
    let mut events = event_stream(&gw, &session).await.bytes_stream();

    backend.set(&["first", "second"]);
    let announced = tokio::time::timeout(Duration::from_secs(5), async {
        let mut seen = String::new();
        while let Some(chunk) = events.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("notifications/tools/list_changed") {
                return seen;
            }
        }
        seen
    })
    .await
    .expect("list_changed within 5 s");
    assert!(announced.contains("notifications/tools/list_changed"), "{announced}");
    assert_eq!(tool_names(&gw).await, ["first", "second"]);
    let answer = gw.call("second", json!({})).await;
    assert_eq!(answer["result"]["content"][0]["text"], "second answered", "{answer}");

    // A tool that went away is an unknown tool again.
    backend.set(&["second"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tool_names(&gw).await != ["second"] {
        assert!(tokio::time::Instant::now() < deadline, "the catalogue did not follow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone: Value = gw.call("first", json!({})).await;
    assert_eq!(gone["error"]["code"], -32602, "{gone}");
}
