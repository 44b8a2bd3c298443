//! Test helpers for mcpgate's crates.
//!
//! - [`contract`]: the backend contract suite (DESIGN.md, "The Backend contract") — deadline honoured,
//!   cancellation, no leaked child process, error mapping, listing and health. Every backend kind runs it
//!   against a [`contract::Subject`] that says what the kind can offer: a quick tool, a slow one, a failing one,
//!   the processes it starts and how its dependency goes away.
//! - [`process`]: the processes a backend started, found through `/proc` by a marker in their environment, so
//!   tests running side by side in one process never see each other's children.
//! - [`redis`]: a real `redis-server` of the test's own, which the test can kill and start again.
//! - [`free_port`] and [`eventually`]: a port nobody listens on, and a bounded wait for a state change.
//!
//! Waits are bounded polls on a condition, never a sleep followed by an assertion. Durations are measured
//! with `tokio::time::Instant`, so a test of an in-process backend can pause the clock
//! (`#[tokio::test(start_paused = true)]`) and the same rules hold exactly.

#![allow(clippy::unwrap_used)] // test support: a failed unwrap is a failed test

pub mod contract;
pub mod process;
pub mod redis;

use std::{net::TcpListener, time::Duration};

/// A TCP port on 127.0.0.1 that was free a moment ago: bound, read and released. Nothing listens on it, so a
/// connection to it is refused — the address of an HTTP API that is down.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on 127.0.0.1");
    listener.local_addr().expect("the listener's address").port()
}

/// Wait until `condition` holds, looking every 10 ms (tokio time, so a paused clock advances through it), for
/// at most `within`; panics naming `what` when it never does.
pub async fn eventually(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "still not true after {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `program` is installed (it runs with `--version`). When it is not: a loud message saying `what` was
/// skipped and `install` would fix it, and `false` — unless the environment variable `require` is `1` (set by
/// `scripts/test.sh`), which makes a missing program a failure, so CI cannot pass by skipping.
pub fn have_program(what: &str, program: &str, require: &str, install: &str) -> bool {
    let runs = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !runs {
        assert!(std::env::var(require).as_deref() != Ok("1"), "{require}=1 but {program} is not installed");
        eprintln!("\n!!! SKIPPED {what}: {program} is not installed ({install}) !!!\n");
    }
    runs
}

/// The PostgreSQL server the tests may use: `MCPGATE_TEST_POSTGRES_URL` (set by `scripts/test.sh`). Without it,
/// `None` after a loud message saying `what` was skipped — unless `MCPGATE_REQUIRE_POSTGRES=1`, which makes a
/// missing server a failure, so CI cannot pass by skipping.
pub fn postgres_url(what: &str) -> Option<String> {
    match std::env::var("MCPGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("MCPGATE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "MCPGATE_REQUIRE_POSTGRES=1 but MCPGATE_TEST_POSTGRES_URL is not set"
            );
            eprintln!(
                "\n!!! SKIPPED {what}: MCPGATE_TEST_POSTGRES_URL is not set. Run: eval \"$(scripts/postgres.sh start)\" !!!\n"
            );
            None
        }
    }
}
