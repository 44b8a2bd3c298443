//! The backend contract suite (`mcpgate_testkit::contract`) for an upstream MCP server over stdio: this
//! crate's own binary as `mcpgate serve --stdio`, serving the demo tools (its `sleep` is the slow tool). The
//! other kinds run the suite in `crates/mcpgate-backends/tests/contract.rs`; this one lives here because the
//! binary it starts is built for this crate's tests only.
//!
//! The child carries a marker in its environment (`env` of the upstream), so each test finds its own child
//! among those of the tests running beside it: it must be gone after `shutdown()`, and killing it is the
//! outage — calls must then fail as unavailable, the upstream's fault, worth a retry.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Duration;

use mcpgate_config::{Source, UpstreamConfig};
use mcpgate_testkit::{
    contract::{HookFuture, Outage, Running, Subject, call},
    contract_tests,
    process::{MARKER_VARIABLE, Marker, kill},
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_mcpgate");

/// Kill the upstream's child process under its backend.
fn kill_child(subject: &Subject) -> HookFuture<'_> {
    let marker = subject.marker().unwrap();
    let children = marker.processes();
    assert!(!children.is_empty(), "the upstream runs no marked child to kill");
    kill(&children);
    Box::pin(async {})
}

async fn stdio_upstream() -> Subject {
    let marker = Marker::unique("upstream");
    let config: UpstreamConfig = serde_json::from_value(json!({
        "command": BIN,
        "args": ["serve", "--stdio"],
        "env": { MARKER_VARIABLE: marker.value() },
        // Calls of a dead upstream fail naming it, rather than its tools vanishing.
        "when_down": "error",
        "max_retries": 0
    }))
    .unwrap();
    let backend = mcpgate_backends::start("up", Source::Upstream(&config)).await.unwrap();
    Subject::new(
        "upstream",
        backend,
        call("up__echo", json!({ "message": "hi" })),
        call("up__sleep", json!({ "ms": 30_000 })),
        // The upstream's own gateway refuses the arguments as a tool error.
        call("up__echo", json!({})),
    )
    .spawns(marker)
    // Nothing outside the child shows that the call arrived: give it time to cross the pipe.
    .running(Running::After(Duration::from_millis(300)))
    .outage(Outage::unavailable(call("up__echo", json!({ "message": "anyone?" }))).caused_by(kill_child))
}

mod stdio {
    use super::*;
    contract_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        stdio_upstream,
        outage
    );
}

/// Every rule in one run on one upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_upstream_passes_the_whole_contract_in_one_run() {
    mcpgate_testkit::contract::run_contract(&stdio_upstream().await).await;
}
