//! The legacy HTTP+SSE transport (2024-11-05) end to end: a gateway process fronting a real
//! `@modelcontextprotocol/server-everything` in `sse` mode (`GET /sse`, `POST /message?sessionId=…`), driven by
//! a client over HTTP (2026-07-28 stateless requests) — including the server going away and coming back on
//! the same port.
//!
//! The server is installed, pinned, by `scripts/upstreams.sh`: `eval "$(scripts/upstreams.sh)"`. Without it the
//! test says loudly that it skips, and passes — unless `MCPGATE_REQUIRE_UPSTREAMS=1`, when it fails.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::time::Instant;

mod support;

use support::{Process, free_port};

/// server-everything serving the SSE transport on `port`, once it listens.
fn everything_sse(node: &str, everything: &str, port: u16, log: &Path) -> Process {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let process = Process(
        Command::new(node)
            .args([everything, "sse"])
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !support::listens(("127.0.0.1", port)) {
        assert!(Instant::now() < deadline, "server-everything did not listen on {port} within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}

/// Ask `ask` until `done` accepts the answer; the accepted answer, or a failure naming `what` after `within`.
fn poll(
    what: &str,
    within: Duration,
    log: &Path,
    ask: impl Fn() -> Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let answer = ask();
        if done(&answer) {
            return answer;
        }
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert!(Instant::now() < deadline, "{what} not within {within:?}; last answer {answer}\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The text of a result's first content item, if any.
fn first_text(answer: &Value) -> Option<&str> {
    answer["result"]["content"][0]["text"].as_str()
}

#[test]
fn an_sse_upstream_is_federated_and_comes_back_after_a_restart() {
    let test = "an_sse_upstream_is_federated_and_comes_back_after_a_restart";
    let Some([node, everything]) =
        support::upstream_vars(test, ["MCPGATE_TEST_NODE", "MCPGATE_TEST_EVERYTHING"])
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let upstream_log = dir.path().join("everything.log");
    let port = free_port();
    let server = everything_sse(&node, &everything, port, &upstream_log);

    // `when_down: error` keeps the tools listed while the server is away, so a call names the upstream; a
    // short breaker reset keeps the recovery below quick.
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "resilience:\n  circuit_breaker: {{ failure_threshold: 3, reset_timeout: 1s }}\n\
             upstreams:\n  everything:\n    type: sse\n    url: http://127.0.0.1:{port}/sse\n    \
             timeout: 20s\n    when_down: error\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("gateway.log");
    let (_gateway, addr) = support::serve(Some(&config), &log, Duration::from_secs(30));
    let request = |method: &str, name: Option<&str>, params: Value| {
        support::modern(&addr, method, name, params)
            .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()))
    };
    let echo = |message: &str| {
        let name = "everything__echo";
        request("tools/call", Some(name), json!({ "name": name, "arguments": { "message": message } }))
    };

    // tools/list: the upstream's tools under its prefix.
    let listed = poll(
        "everything__echo listed",
        Duration::from_secs(30),
        &log,
        || request("tools/list", None, json!({})),
        |listed| listed.to_string().contains("\"everything__echo\""),
    );
    let names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    for expected in ["everything__echo", "everything__get-sum", "everything__get-tiny-image"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    assert!(names.iter().all(|n| n.starts_with("everything__")), "{names:?}");

    // tools/call: the response comes back over the event stream.
    let answer = echo("over server-sent events");
    assert_eq!(first_text(&answer), Some("Echo: over server-sent events"), "{answer}");
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    let sum = "everything__get-sum";
    let answer = request("tools/call", Some(sum), json!({ "name": sum, "arguments": { "a": 17, "b": 25 } }));
    assert!(first_text(&answer).is_some_and(|t| t.contains("42")), "{answer}");

    // A prompt and a resource pass through.
    let prompt = "everything__simple-prompt";
    let got = request("prompts/get", Some(prompt), json!({ "name": prompt }));
    assert_eq!(
        got["result"]["messages"][0]["content"]["text"], "This is a simple prompt without arguments.",
        "{got}"
    );
    let uri = "demo://resource/static/document/architecture.md";
    let read = request("resources/read", Some(uri), json!({ "uri": uri }));
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["uri"], uri, "{read}");
    assert!(contents["text"].as_str().is_some_and(|t| t.contains("Everything Server")), "{read}");

    // The server goes away: its event stream ends, and calls fail naming the upstream.
    drop(server);
    let failed = poll(
        "a call failing once the server is gone",
        Duration::from_secs(10),
        &log,
        || echo("while away"),
        |answer| first_text(answer).is_none(),
    );
    let message = failed["error"]["message"].as_str().unwrap_or_else(|| panic!("not an error: {failed}"));
    assert!(message.contains("backend everything unavailable"), "{failed}");

    // Back on the same port: the supervisor reconnects (a new event stream, a new session) and calls succeed.
    let _server = everything_sse(&node, &everything, port, &upstream_log);
    let answer = poll(
        "calls succeeding after the restart",
        Duration::from_secs(40),
        &log,
        || echo("back again"),
        |answer| first_text(answer).is_some(),
    );
    assert_eq!(first_text(&answer), Some("Echo: back again"), "{answer}");
    let upstream_log = std::fs::read_to_string(&upstream_log).unwrap();
    assert!(upstream_log.matches("Client Connected").count() >= 2, "{upstream_log}");
}
