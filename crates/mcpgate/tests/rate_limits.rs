//! The guides' `RATE_LIMIT_*` variables on the real binary: they limit each client address of `mcpgate serve`;
//! without them the embedded default config limits nothing.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::time::Duration;

use serde_json::json;
use support::{modern_with, serve_with_env};

/// Status and error code (0 for none) of `n` stateless `echo` calls.
fn echo_n(addr: &str, n: usize) -> Vec<(u16, i64)> {
    let args = json!({ "name": "echo", "arguments": { "message": "hi" } });
    (0..n)
        .map(|_| {
            let (status, message) = modern_with(addr, &[], "tools/call", Some("echo"), args.clone()).unwrap();
            (status, message["error"]["code"].as_i64().unwrap_or(0))
        })
        .collect()
}

#[test]
fn rate_limit_variables_limit_each_address_and_the_default_is_unlimited() {
    let dir = tempfile::tempdir().unwrap();
    let limited = [("RATE_LIMIT_WINDOW_MS", "60000"), ("RATE_LIMIT_MAX_REQUESTS", "2")];
    let (_gateway, addr) =
        serve_with_env(None, &dir.path().join("limited"), Duration::from_secs(20), &limited);
    assert_eq!(echo_n(&addr, 3), [(200, 0), (200, 0), (429, -32005)]);

    let (_gateway, addr) = serve_with_env(None, &dir.path().join("default"), Duration::from_secs(20), &[]);
    assert!(echo_n(&addr, 30).iter().all(|answer| *answer == (200, 0)));
}
