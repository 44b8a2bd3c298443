//! Upstream federation end to end: a gateway process fronting real upstreams — `mcpgate serve --stdio` as a
//! child, and another `mcpgate serve` over Streamable HTTP — driven by a client over HTTP.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::{
    io::{Read, Write},
    path::Path,
    process::Command,
    time::Duration,
};

use serde_json::{Value, json};

mod support;

use support::{BIN, Process, legacy_post};

/// Start `mcpgate serve` on a free port and wait until it listens.
fn serve(config: Option<&Path>, log: &Path) -> (Process, String) {
    support::serve(config, log, Duration::from_secs(15))
}

/// One stateless request; the final JSON-RPC message.
fn modern(addr: &str, method: &str, name: Option<&str>, params: Value) -> Value {
    support::modern(addr, method, name, params).unwrap_or_else(|e| panic!("{e}"))
}

fn call(addr: &str, tool: &str, arguments: Value) -> Value {
    modern(addr, "tools/call", Some(tool), json!({ "name": tool, "arguments": arguments }))
}

fn tools(addr: &str) -> Vec<Value> {
    modern(addr, "tools/list", None, json!({}))["result"]["tools"].as_array().cloned().unwrap_or_default()
}

fn write_config(dir: &Path, yaml: &str) -> std::path::PathBuf {
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, yaml).unwrap();
    file
}

/// The processes whose parent is `pid` (any of its threads).
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    found
}

fn stdio_child(gateway: u32) -> Option<u32> {
    children(gateway).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("--stdio"))
            .unwrap_or(false)
    })
}

#[test]
fn stdio_and_http_upstreams_are_federated_under_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let (_http_upstream, http_addr) = serve(None, &dir.path().join("upstream.log"));
    let config = write_config(
        dir.path(),
        &format!(
            r#"upstreams:
  stdio:
    command: {BIN}
    args: [serve, --stdio]
  http:
    url: http://{http_addr}/mcp
  plain:
    command: {BIN}
    args: [serve, --stdio]
    prefix: false
    tools:
      allow: ["add", "now", "sleep"]
      deny: ["sleep"]
      rename: {{ add: plus }}
      descriptions: {{ now: "What time it is upstream." }}
  slow:
    command: {BIN}
    args: [serve, --stdio]
    timeout: 1s
    tools:
      allow: ["sleep"]
"#
        ),
    );
    let (_gateway, addr) = serve(Some(&config), &dir.path().join("gateway.log"));
    let listed = tools(&addr);
    let names: Vec<&str> = listed.iter().filter_map(|t| t["name"].as_str()).collect();
    let log = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    for expected in ["stdio__echo", "stdio__add", "stdio__sleep", "http__echo", "http__add", "plus", "now"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}\n{}", log());
    }
    // Naming: `plain` publishes only what is allowed and not denied, renamed and unprefixed.
    for absent in ["echo", "sleep", "add", "plain__now", "plain__add"] {
        assert!(!names.contains(&absent), "{absent} should not be listed: {names:?}");
    }
    let now = listed.iter().find(|t| t["name"] == "now").unwrap();
    assert_eq!(now["description"], "What time it is upstream.");
    let add = listed.iter().find(|t| t["name"] == "stdio__add").unwrap();
    assert_eq!(add["inputSchema"]["type"], "object", "{add}");

    // Calls reach the upstreams and their answers come back unchanged.
    for tool in ["stdio__echo", "http__echo"] {
        let answer = call(&addr, tool, json!({ "message": "through the gateway" }));
        assert_eq!(answer["result"]["content"][0]["text"], "through the gateway", "{tool}: {answer}");
    }
    for tool in ["stdio__add", "http__add", "plus"] {
        let answer = call(&addr, tool, json!({ "a": 2, "b": 3 }));
        assert_eq!(answer["result"]["structuredContent"], json!({ "sum": 5 }), "{tool}: {answer}");
        assert_eq!(answer["result"]["content"][0]["text"], "5", "{tool}: {answer}");
    }
    // A tool error upstream stays a tool error (isError), not a protocol error.
    let answer = call(&addr, "http__add", json!({ "a": "x" }));
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    // The upstream `timeout` bounds a call: it fails promptly as a timeout (and is cancelled upstream).
    let started = tokio::time::Instant::now();
    let answer = call(&addr, "slow__sleep", json!({ "ms": 8000 }));
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}: {answer}", started.elapsed());
    assert!(answer.to_string().contains("timed out"), "{answer}");
    // A denied tool is not callable under any name.
    let answer = call(&addr, "sleep", json!({ "ms": 1 }));
    assert!(answer.get("error").is_some(), "{answer}");
}

#[test]
fn a_killed_stdio_upstream_fails_calls_in_flight_at_once_then_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("upstreams:\n  stdio:\n    command: {BIN}\n    args: [serve, --stdio]\n    timeout: 20s\n"),
    );
    let (gateway, addr) = serve(Some(&config), &dir.path().join("gateway.log"));
    let first = stdio_child(gateway.0.id()).expect("the gateway runs its stdio upstream as a child");

    let in_flight = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let started = tokio::time::Instant::now();
            let answer = call(&addr, "stdio__sleep", json!({ "ms": 15000 }));
            (answer, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    assert!(Command::new("kill").args(["-KILL", &first.to_string()]).status().unwrap().success());
    let (answer, took) = in_flight.join().unwrap();
    assert!(took < Duration::from_secs(4), "the call in flight took {took:?} to fail: {answer}");
    let text = answer.to_string();
    assert!(text.contains("upstream stdio disconnected"), "{answer}");

    // The supervisor restarts the child; calls succeed again within a few seconds.
    let mut attempts = 0;
    loop {
        let answer = call(&addr, "stdio__echo", json!({ "message": "back" }));
        if answer["result"]["content"][0]["text"] == "back" {
            break;
        }
        attempts += 1;
        assert!(attempts < 50, "the upstream did not come back: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = stdio_child(gateway.0.id()).expect("a new child");
    assert_ne!(first, second);
}

/// What 32 callers of `stdio__echo` saw around one SIGKILL of the stdio upstream's child.
struct Crash {
    /// Calls answered with the caller's own message, before the kill and after it.
    echoed: usize,
    /// When each failed call ended, after the kill, with its error message.
    failures: Vec<(Duration, String)>,
    /// `/status` once every caller had a success after the kill.
    status: Value,
}

/// Start `config`'s gateway, let 32 callers call `stdio__echo` in a loop, kill the child once every caller has
/// been answered, and stop once every caller has been answered again after the kill (at most 30 s). Every
/// answer must be the caller's own message or an error — never another caller's.
fn crash_under_load(config: &str) -> Crash {
    use std::sync::{
        Arc, Barrier, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    };
    const CALLERS: usize = 32;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), config);
    let (gateway, addr) = serve(Some(&config), &dir.path().join("gateway.log"));
    let child = stdio_child(gateway.0.id()).expect("the gateway runs its stdio upstream as a child");
    let killed_at: Arc<OnceLock<tokio::time::Instant>> = Arc::default();
    let (stop, recovered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let warmed = Arc::new(Barrier::new(CALLERS + 1));
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (addr, stop, recovered, killed_at, warmed) =
                (addr.clone(), stop.clone(), recovered.clone(), killed_at.clone(), warmed.clone());
            std::thread::spawn(move || {
                let (mut echoed, mut failures, mut back) = (0, Vec::new(), false);
                for n in 0.. {
                    if stop.load(SeqCst) {
                        break;
                    }
                    let message = format!("caller {caller} call {n}");
                    let answer = call(&addr, "stdio__echo", json!({ "message": message }));
                    let after_kill = killed_at.get().map(|at| at.elapsed());
                    match answer["result"]["content"][0]["text"].as_str() {
                        Some(text) => {
                            assert_eq!(text, message, "an answer reached the wrong caller: {answer}");
                            echoed += 1;
                            if n == 0 {
                                warmed.wait();
                            }
                            if after_kill.is_some() && !back {
                                back = true;
                                recovered.fetch_add(1, SeqCst);
                            }
                        }
                        None => {
                            assert!(n > 0, "a call before the kill failed: {answer}");
                            let message = answer["error"]["message"].as_str().unwrap_or_default().to_owned();
                            failures.push((after_kill.unwrap_or_default(), message));
                        }
                    }
                }
                (echoed, failures)
            })
        })
        .collect();
    warmed.wait();
    assert!(Command::new("kill").args(["-KILL", &child.to_string()]).status().unwrap().success());
    killed_at.set(tokio::time::Instant::now()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while recovered.load(SeqCst) < CALLERS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {CALLERS} callers recovered",
            recovered.load(SeqCst)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = modern_status(&addr);
    stop.store(true, SeqCst);
    let (mut echoed, mut failures) = (0, Vec::new());
    for caller in callers {
        let (n, f) = caller.join().unwrap();
        echoed += n;
        failures.extend(f);
    }
    assert_ne!(stdio_child(gateway.0.id()), Some(child), "a new child serves");
    let body = &status[status.find("\r\n\r\n").unwrap() + 4..];
    Crash { echoed, failures, status: serde_json::from_str(body).unwrap() }
}

/// The breaker of backend `name` in `/status`.
fn breaker_of<'a>(status: &'a Value, name: &str) -> &'a Value {
    let backends = status["backends"].as_array().unwrap();
    &backends.iter().find(|b| b["name"] == name).unwrap_or_else(|| panic!("no {name} in {status}"))["breaker"]
}

#[test]
fn one_crash_under_concurrent_load_fails_calls_only_while_the_upstream_is_down() {
    // The defaults: a breaker that opens after five failures and stays open for a minute.
    let crash = crash_under_load(&format!(
        "upstreams:\n  stdio:\n    command: {BIN}\n    args: [serve, --stdio]\n    timeout: 20s\n"
    ));
    assert!(crash.echoed > 32, "{} calls answered", crash.echoed);
    // Every failure names the upstream: a restart that succeeds hides no tool, so none is ever unknown.
    let unexplained: Vec<_> =
        crash.failures.iter().filter(|(_, m)| !m.contains("upstream stdio")).take(5).collect();
    assert!(unexplained.is_empty(), "failures that do not name the upstream: {unexplained:?}");
    // The calls the crash failed were one failure: the breaker never opened, and every caller was answered
    // again once the child was back, far inside the minute an open breaker would have refused calls.
    let breaker = breaker_of(&crash.status, "stdio");
    assert_eq!(breaker["state"], "closed", "{breaker}");
    assert!(breaker["consecutive_failures"].as_u64().unwrap() <= 1, "{breaker}");
    let last = crash.failures.iter().map(|(at, _)| *at).max().unwrap_or_default();
    assert!(last < Duration::from_secs(20), "calls failed until {last:?} after the kill");
}

#[test]
fn a_breaker_an_outage_opened_half_opens_as_soon_as_the_upstream_is_back() {
    // One failure opens it for a minute — unless what opened it was the connection, and the connection is back.
    let crash = crash_under_load(&format!(
        "resilience:\n  circuit_breaker: {{ failure_threshold: 1, reset_timeout: 60s }}\n\
         upstreams:\n  stdio:\n    command: {BIN}\n    args: [serve, --stdio]\n    timeout: 20s\n"
    ));
    // What opened it was the outage: calls in flight when the child died ("disconnected") or, when none happened
    // to be at that instant (a loaded machine), the first call made before it was back ("is not connected") —
    // both carry the outage's number, which is what lets the breaker half-open on reconnection.
    let outage =
        |m: &str| m.contains("upstream stdio disconnected") || m.contains("upstream stdio is not connected");
    assert!(
        crash.failures.iter().any(|(_, m)| outage(m)),
        "the outage failed no call: {:?}",
        crash.failures.first()
    );
    assert!(
        crash.failures.iter().any(|(_, m)| m.contains("circuit breaker open")),
        "{:?}",
        crash.failures.first()
    );
    // Every caller was answered again within 30 s (crash_under_load's deadline), half the reset timeout: the
    // reconnection's health check let a probe through, and its success closed the breaker.
    assert_eq!(breaker_of(&crash.status, "stdio")["state"], "closed", "{}", crash.status);
}

/// `/status` of a gateway, as text.
fn modern_status(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    raw
}

fn conformance_upstream(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("conformance.yaml");
    std::fs::write(&file, "backends:\n  conformance:\n    kind: builtin\n    builtin: conformance\n")
        .unwrap();
    file
}

#[test]
fn upstream_progress_reaches_a_legacy_session_before_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = conformance_upstream(dir.path());
    progress_reaches_a_legacy_session(
        dir.path(),
        &format!("command: {BIN}\n    args: [serve, --stdio, --config, {}]", upstream.display()),
    );
}

#[test]
fn progress_on_a_stateless_http_upstreams_event_stream_reaches_a_legacy_session_before_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = conformance_upstream(dir.path());
    let (_upstream, upstream_addr) = serve(Some(&upstream), &dir.path().join("upstream.log"));
    progress_reaches_a_legacy_session(dir.path(), &format!("url: http://{upstream_addr}/mcp"));
}

/// Open a legacy (2025-11-25) session whose client declares `capabilities`; its id.
fn open_session(addr: &str, capabilities: Value) -> String {
    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": capabilities,
        "clientInfo": { "name": "test", "version": "1" } } });
    let (head, _) = legacy_post(addr, None, &initialize);
    let session = head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no session id: {head}"));
    legacy_post(addr, Some(&session), &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    session
}

/// A legacy session calls a tool of upstream `conf` (reached as `reach` says) that reports progress.
fn progress_reaches_a_legacy_session(dir: &Path, reach: &str) {
    let config = write_config(dir, &format!("upstreams:\n  conf:\n    {reach}\n"));
    let (_gateway, addr) = serve(Some(&config), &dir.join("gateway.log"));
    let session = open_session(&addr, json!({}));
    let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "conf__test_tool_with_progress", "arguments": {}, "_meta": { "progressToken": "downstream-token" } } });
    let (_, messages) = legacy_post(&addr, Some(&session), &call);
    let progress: Vec<&Value> = messages.iter().filter(|m| m["method"] == "notifications/progress").collect();
    assert_eq!(progress.len(), 3, "{messages:?}");
    for (seen, expected) in progress.iter().zip([0.0, 50.0, 100.0]) {
        // The upstream saw rmcp's token; the caller gets its own back.
        assert_eq!(seen["params"]["progressToken"], "downstream-token", "{seen}");
        assert_eq!(seen["params"]["progress"], expected, "{seen}");
        assert_eq!(seen["params"]["total"], 100.0, "{seen}");
    }
    let last = messages.last().unwrap();
    assert_eq!(last["id"], 2, "the result comes after the progress: {messages:?}");
    assert!(last["result"]["content"].is_array(), "{last}");
}

/// Issue 13, item 5: once, under a full test run, one of the three log messages of the conformance logging
/// tool ("Tool execution completed", sent just before the answer) never reached the client through a stdio
/// upstream. The upstream's reader routed the answer at once while rmcp handled the log message in a task of
/// its own, which could come after the call had stopped reading its queue. Here several gateways at once, each
/// fronting a stdio upstream of its own (a log message names no request: only a call alone on its connection
/// can have it), are called round after round from legacy sessions, and every answer must come after all three
/// messages, in order, on the call's own response stream.
#[test]
fn every_upstream_log_message_reaches_its_caller_in_order_before_the_answer_under_concurrent_load() {
    const CALLERS: usize = 4;
    const ROUNDS: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let upstream = conformance_upstream(dir.path());
    let expected = ["Tool execution started", "Tool processing data", "Tool execution completed"];
    // Started one after the other: each takes its free port before the next looks for one.
    let gateways: Vec<(Process, String)> = (0..CALLERS)
        .map(|n| {
            let folder = dir.path().join(format!("caller{n}"));
            std::fs::create_dir(&folder).unwrap();
            let config = write_config(
                &folder,
                &format!(
                    "upstreams:\n  conf:\n    command: {BIN}\n    args: [serve, --stdio, --config, {}]\n",
                    upstream.display()
                ),
            );
            serve(Some(&config), &folder.join("gateway.log"))
        })
        .collect();
    let callers: Vec<_> = (gateways.iter().map(|(_, addr)| addr.clone()).enumerate())
        .map(|(n, addr)| {
            std::thread::spawn(move || {
                let session = open_session(&addr, json!({}));
                // The session's calls take the fast path (their messages on the call's own stream) once the
                // gateway has handled `notifications/initialized`, which it does in a task of its own after
                // answering it: until then a call answers on rmcp's event stream, and its log messages go to
                // the session's GET stream. Wait for the fast path: an upstream call that sends nothing
                // answers plain JSON there.
                let warm_up = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": { "name": "conf__test_simple_text", "arguments": {} } });
                let fast = (0..200).any(|_| {
                    let (head, _) = legacy_post(&addr, Some(&session), &warm_up);
                    head.contains("content-type: application/json")
                });
                assert!(fast, "caller {n}: the session's calls never took the fast path");
                let mut lost = Vec::new();
                for round in 0..ROUNDS {
                    let call = json!({ "jsonrpc": "2.0", "id": 2 + round, "method": "tools/call",
                        "params": { "name": "conf__test_tool_with_logging", "arguments": {} } });
                    let (_, messages) = legacy_post(&addr, Some(&session), &call);
                    let logs: Vec<&str> = messages
                        .iter()
                        .filter(|m| m["method"] == "notifications/message")
                        .filter_map(|m| m["params"]["data"].as_str())
                        .collect();
                    let last = messages.last().cloned().unwrap_or_default();
                    let answered = last["id"] == 2 + round
                        && last["result"]["content"][0]["text"] == "Tool with logging executed successfully";
                    if logs != expected || !answered {
                        lost.push(format!("caller {n} round {round}: {messages:?}"));
                    }
                }
                lost
            })
        })
        .collect();
    let lost: Vec<String> = callers.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert!(
        lost.is_empty(),
        "{} of {} calls did not get their three log messages in order before the answer; first: {}",
        lost.len(),
        CALLERS * ROUNDS,
        lost.first().map(String::as_str).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_down_upstream_hides_its_tools_and_signals_each_catalogue_change() {
    down_and_back("hide").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_down_upstream_configured_to_error_keeps_its_tools_listed_and_names_itself() {
    down_and_back("error").await;
}

/// Kill an upstream's child, keep it from starting again for a while, and watch its catalogue while it is down
/// and after it is back.
async fn down_and_back(when_down: &str) {
    use mcpgate_core::Backend;
    let dir = tempfile::tempdir().unwrap();
    let blocked = dir.path().join("blocked");
    // The child's wrapper refuses to start while `blocked` exists.
    let script = format!("[ -e \"$BLOCKED\" ] && exit 1; exec {BIN} serve --stdio");
    let config: mcpgate_config::UpstreamConfig = serde_json::from_value(json!({
        "command": "sh", "args": ["-c", script],
        "env": { "MARK": when_down, "BLOCKED": blocked.to_str().unwrap() },
        "when_down": when_down,
    }))
    .unwrap();
    let upstream = mcpgate_backends::upstream::Upstream::start("up", &config).await.unwrap();
    let mut changes = upstream.catalogue_changes().expect("an upstream's catalogue changes");
    let names = |tools: Vec<mcpgate_core::ToolDef>| tools.into_iter().map(|t| t.name).collect::<Vec<_>>();
    let listed = names(upstream.list_tools().await.unwrap());
    assert!(listed.contains(&"up__echo".to_owned()));

    // Tests run side by side in this process: the child is found by its environment.
    let mark = format!("MARK={when_down}\0");
    let child = children(std::process::id())
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|c| String::from_utf8_lossy(&c).contains(&mark))
                .unwrap_or(false)
        })
        .expect("the upstream runs as our child");
    let seen = *changes.borrow_and_update();
    std::fs::write(&blocked, "").unwrap();
    assert!(Command::new("kill").args(["-KILL", &child.to_string()]).status().unwrap().success());

    // Down, and its restart fails: a call names the upstream as unavailable. `hide` then signals a change and
    // lists nothing; `error` keeps the catalogue as it was.
    let cx = mcpgate_core::CallContext::detached("t");
    let call = || mcpgate_core::ToolCall { name: "up__echo".into(), arguments: Default::default() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let error = loop {
        match upstream.call_tool(&cx, call()).await {
            Err(error) => break error,
            Ok(_) => assert!(tokio::time::Instant::now() < deadline, "the killed upstream still answers"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        matches!(&error, mcpgate_core::BackendError::Unavailable { backend, .. } if backend == "up"),
        "{error:?}"
    );
    if when_down == "hide" {
        tokio::time::timeout(Duration::from_secs(5), changes.changed()).await.unwrap().unwrap();
        assert_eq!(names(upstream.list_tools().await.unwrap()), Vec::<String>::new());
    } else {
        assert_eq!(*changes.borrow(), seen, "no catalogue change while down");
        assert_eq!(names(upstream.list_tools().await.unwrap()), listed);
    }

    // Back once it may start again: another change, and the tools are listed (again).
    std::fs::remove_file(&blocked).unwrap();
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.unwrap().unwrap();
    assert_eq!(names(upstream.list_tools().await.unwrap()), listed);
    let answer = upstream.call_tool(&cx, call()).await;
    assert!(answer.is_ok(), "{answer:?}");
    upstream.shutdown().await;
}

#[test]
fn a_call_larger_than_the_pipe_buffer_reaches_a_stdio_upstream_whole_and_the_next_calls_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("upstreams:\n  stdio:\n    command: {BIN}\n    args: [serve, --stdio]\n"),
    );
    let (_gateway, addr) = serve(Some(&config), &dir.path().join("gateway.log"));
    // 512 KiB: eight times a pipe's 64 KiB buffer, so the line cannot go out in one write.
    let big = "x".repeat(512 << 10);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (addr, message) = (addr.clone(), format!("{i}{big}"));
            std::thread::spawn(move || {
                (call(&addr, "stdio__echo", json!({ "message": message.clone() })), message)
            })
        })
        .collect();
    for handle in handles {
        let (answer, message) = handle.join().unwrap();
        let shown: String = answer.to_string().chars().take(400).collect();
        assert!(answer["result"]["content"][0]["text"] == message.as_str(), "came back wrong: {shown}");
    }
    let answer = call(&addr, "stdio__echo", json!({ "message": "small" }));
    assert_eq!(answer["result"]["content"][0]["text"], "small", "{answer}");
}

/// `protocol: legacy` speaks `initialize` to an upstream that would otherwise be met in the 2026-07-28 era (the
/// conformance repo's reference server answers sampling only on its legacy side); `auto` takes the newest.
#[test]
fn an_upstream_can_be_held_to_the_legacy_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = |name: &str, protocol: &str| {
        format!(
            "  {name}:\n    command: {BIN}\n    args: [serve, --stdio]\n    env: {{ LOG_LEVEL: warn }}\n    protocol: {protocol}\n"
        )
    };
    let yaml = format!("upstreams:\n{}{}", upstream("old", "legacy"), upstream("new", "auto"));
    let config = write_config(dir.path(), &yaml);
    let log = dir.path().join("gateway.log");
    let (_gateway, addr) = serve(Some(&config), &log);
    // Both serve; the log says which era each speaks.
    for tool in ["old__echo", "new__echo"] {
        let answer = call(&addr, tool, json!({ "message": tool }));
        assert_eq!(answer["result"]["content"][0]["text"], tool, "{answer}");
    }
    let said = std::fs::read_to_string(&log).unwrap();
    let era = |name: &str| {
        said.lines()
            .find(|line| line.contains("connected") && line.contains(&format!("upstream={name}")))
            .unwrap_or_else(|| panic!("no connected line for {name}:\n{said}"))
            .to_owned()
    };
    assert!(era("old").contains("protocol=\"2025-11-25\""), "{}", era("old"));
    assert!(era("new").contains("protocol=\"2026-07-28\""), "{}", era("new"));
}
