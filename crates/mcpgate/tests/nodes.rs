//! Two `mcpgate serve` processes on one real `redis-server` act as one gateway: one tool budget between them, one
//! cache, legacy sessions either serves (a DELETE on one ends the session on both; a listening stream gets what a
//! call on the other node sends it, and resumes on either node with `Last-Event-ID`); and a node keeps serving
//! (authentication included) while Redis is down, says so in `/ready`, `/status` and `mcp_state_backend_up`, and is
//! back on Redis when it returns.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::{path::Path, time::Duration};

use mcpgate_testkit::redis::RedisServer;
use serde_json::{Value, json};
use support::{Process, http_get, modern_with, post, serve_with_env};

const KEY: &str = "node-test-key-0123456789";
const SEAL: &str = "a-seal-key-shared-by-both-nodes-0123456789";

const CONFIG: &str = "\
rate_limits:
  global: { requests: 1000000, per: 1s }
  tools:
    echo: { requests: 4, per: 1m }
cache:
  tools:
    now: {}
backends:
  demo: { kind: builtin, builtin: demo }
  conf: { kind: builtin, builtin: conformance }
";

fn node(dir: &Path, name: &str, redis: &RedisServer) -> (Process, String) {
    node_with(dir, name, redis, "")
}

/// [`node`] with more config (`state: { required: true }`).
fn node_with(dir: &Path, name: &str, redis: &RedisServer, more: &str) -> (Process, String) {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, format!("{CONFIG}{more}")).unwrap();
    let env = [("REDIS_URL", redis.url()), ("MCP_API_KEY", KEY.into()), ("MCPGATE_SEAL_KEY", SEAL.into())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    serve_with_env(Some(&config), &dir.join(format!("{name}.log")), Duration::from_secs(20), &env)
}

/// A stateless call with the key: the HTTP status and the message.
fn call(addr: &str, tool: &str, arguments: Value) -> (u16, Value) {
    let params = json!({ "name": tool, "arguments": arguments });
    modern_with(addr, &[("x-api-key", KEY)], "tools/call", Some(tool), params).unwrap()
}

fn json_of(addr: &str, path: &str) -> Value {
    let raw = http_get(addr, path);
    serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap_or(Value::Null)
}

fn state_check(addr: &str) -> (u16, Value) {
    let raw = http_get(addr, "/ready");
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let ready: Value = serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap();
    let check = ready["checks"].as_array().unwrap().iter().find(|c| c["name"] == "state:redis").cloned();
    (status, check.unwrap())
}

fn backend_up(addr: &str) -> Option<i64> {
    let metrics = http_get(addr, "/metrics");
    let line = metrics.lines().find(|l| l.starts_with("mcp_state_backend_up{backend=\"redis\"}"))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// Poll (at most 15 s, every 20 ms) until `condition` holds.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..750 {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("still not true after 15 s: {what}");
}

/// Two nodes, `a` and `b`, on a Redis of their own; the servers and the directory live as long as the result.
struct TwoNodes {
    _redis: RedisServer,
    _dir: tempfile::TempDir,
    _processes: (Process, Process),
    a: String,
    b: String,
}

fn two_nodes(what: &str) -> Option<TwoNodes> {
    let redis = RedisServer::start(what)?;
    let dir = tempfile::tempdir().unwrap();
    let (process_a, a) = node(dir.path(), "a", &redis);
    let (process_b, b) = node(dir.path(), "b", &redis);
    eventually("both nodes reach redis", || backend_up(&a) == Some(1) && backend_up(&b) == Some(1));
    Some(TwoNodes { _redis: redis, _dir: dir, _processes: (process_a, process_b), a, b })
}

#[test]
fn two_nodes_on_one_redis_share_a_budget_and_a_cache() {
    let Some(nodes) = two_nodes("two nodes on one redis") else { return };
    let (a, b) = (nodes.a.clone(), nodes.b.clone());
    for addr in [&a, &b] {
        assert_eq!(state_check(addr).1["status"], "up");
        let status = json_of(addr, "/status");
        assert_eq!(status["state"]["backend"], "redis");
        assert_eq!(status["state"]["seal_key"], "configured");
        assert!(!status.to_string().contains(SEAL));
    }

    // echo: 4 per minute between both nodes, not 4 each.
    let answers: Vec<i64> = (0..8)
        .map(|i| {
            let (_, message) = call(if i % 2 == 0 { &a } else { &b }, "echo", json!({ "message": "hi" }));
            message["error"]["code"].as_i64().unwrap_or(0)
        })
        .collect();
    assert_eq!(answers, [0, 0, 0, 0, -32005, -32005, -32005, -32005]);

    // A result cached through A is what B answers.
    let (_, first) = call(&a, "now", json!({}));
    let stamped = first["result"]["content"][0]["text"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(5)); // a fresh `now` would differ by at least a millisecond
    let (_, through_b) = call(&b, "now", json!({}));
    assert_eq!(through_b["result"]["content"][0]["text"], stamped.as_str(), "a hit on B for A's result");
}

#[test]
fn a_node_serves_without_redis_says_so_and_goes_back_to_it() {
    let Some(mut redis) = RedisServer::start("a node without redis") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_a, a) = node(dir.path(), "a", &redis);
    let (_strict, strict) = node_with(dir.path(), "strict", &redis, "state: { required: true }\n");
    eventually("the nodes reach redis", || backend_up(&a) == Some(1) && backend_up(&strict) == Some(1));
    assert_eq!(call(&a, "echo", json!({ "message": "x" })).0, 200);
    // Load on both nodes all through the outage and the recovery: no call may fail for it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let answered_now = || answered.load(std::sync::atomic::Ordering::Relaxed);
    let load: Vec<_> = [&a, &strict, &a, &strict]
        .into_iter()
        .enumerate()
        .map(|(i, addr)| {
            let (addr, stop, answered) = (addr.clone(), stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                let mut calls = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let n = calls * 10 + i as u64;
                    let (status, message) = call(&addr, "add", json!({ "a": n, "b": 1 }));
                    if status != 200 || message["result"]["content"][0]["text"] != json!((n + 1).to_string())
                    {
                        failed.push(format!("{status} {message}"));
                    }
                    calls += 1;
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                (calls, failed)
            })
        })
        .collect();

    eventually("the load is under way", || answered_now() > 20);
    redis.kill();
    let at_kill = answered_now();
    // Calls go on (local buckets, no cache), the first one noticing the outage.
    for _ in 0..3 {
        let (status, message) = call(&a, "echo", json!({ "message": "still here" }));
        assert_eq!((status, message["result"]["isError"].as_bool()), (200, Some(false)), "{message}");
    }
    assert_eq!(call(&a, "now", json!({})).0, 200);
    // Authentication never depends on Redis.
    let unauthenticated =
        modern_with(&a, &[], "tools/call", Some("echo"), json!({ "name": "echo" })).unwrap();
    assert_eq!(unauthenticated.0, 401);
    eventually("the metric shows redis down", || backend_up(&a) == Some(0));
    let (status, check) = state_check(&a);
    assert_eq!(
        (status, &check["status"], &check["required"]),
        (200, &json!("down"), &json!(false)),
        "{check}"
    );
    eventually("the strict node sees redis down", || backend_up(&strict) == Some(0));
    assert_eq!(state_check(&strict).0, 503, "state.required: not ready without redis");
    assert_eq!(json_of(&a, "/status")["state"]["up"], false);
    let log = std::fs::read_to_string(dir.path().join("a.log")).unwrap();
    assert_eq!(log.matches("state backend down").count(), 1, "one line per transition:\n{log}");

    eventually("the load went on without redis", || answered_now() > at_kill + 50);
    redis.restart();
    eventually("the nodes are back on redis", || backend_up(&a) == Some(1) && backend_up(&strict) == Some(1));
    assert_eq!(state_check(&a).1["status"], "up");
    assert_eq!(state_check(&strict).0, 200);
    let log = std::fs::read_to_string(dir.path().join("a.log")).unwrap();
    assert!(log.contains("state backend up"), "{log}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in load {
        let (calls, failed) = thread.join().unwrap();
        assert!(
            calls > 0 && failed.is_empty(),
            "{} of {calls} calls failed: {:?}",
            failed.len(),
            failed.first()
        );
    }
}

/// A legacy request in `session` (or the `initialize` opening one) with the key: status, head, messages.
fn legacy(addr: &str, session: Option<&str>, body: &Value) -> (u16, String, Vec<Value>) {
    let mut headers = vec![("x-api-key", KEY), ("MCP-Protocol-Version", "2025-11-25")];
    headers.extend(session.map(|id| ("Mcp-Session-Id", id)));
    post(addr, &headers, &body.to_string())
}

/// `add(id, 1)` in `session` (echo has a budget of its own in this config).
fn add_in(addr: &str, session: &str, id: u64) -> (u16, Vec<Value>) {
    let call = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "add", "arguments": { "a": id, "b": 1 } } });
    let (status, _, messages) = legacy(addr, Some(session), &call);
    (status, messages)
}

#[test]
fn either_node_serves_a_legacy_session_and_a_delete_ends_it_on_both() {
    let Some(nodes) = two_nodes("sessions across nodes") else { return };
    let (a, b) = (nodes.a.clone(), nodes.b.clone());
    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "nodes", "version": "1" } } });
    let headers = [("x-api-key", KEY), ("MCP-Protocol-Version", "2025-11-25")];
    let session = support::session_id_of(&a, &headers, &initialize.to_string());
    assert!(session.len() < 1024 && session.bytes().all(|b| b.is_ascii_graphic()), "{session}");
    legacy(&a, Some(&session), &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));

    // Calls alternate between the nodes; B has never seen the session.
    for id in 2..8 {
        let (status, messages) = add_in(if id % 2 == 0 { &b } else { &a }, &session, id);
        assert_eq!(status, 200, "{messages:?}");
        assert_eq!(messages.last().unwrap()["result"]["content"][0]["text"], (id + 1).to_string());
    }
    // A request that needs the protocol layer (a worker restored on B from the sealed record).
    let (status, _, messages) =
        legacy(&b, Some(&session), &json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/list" }));
    assert_eq!(status, 200);
    assert!(
        messages.last().unwrap()["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()),
        "{messages:?}"
    );
    // A forged id is unknown on either node.
    let forged = format!("{}x", &session[..session.len() - 1]);
    assert_eq!(add_in(&b, &forged, 10).0, 404);

    // DELETE through A: B forgets it too, at once and for good.
    let (status, _, _) = support::try_delete(&a, &[("x-api-key", KEY), ("Mcp-Session-Id", &session)]);
    assert!(status == 200 || status == 202 || status == 204, "DELETE answered {status}");
    eventually("the session is gone on B", || add_in(&b, &session, 11).0 == 404);
    assert_eq!(add_in(&a, &session, 12).0, 404);
}

/// A listening (`GET`) stream of a session: the messages it has carried so far, with their event ids.
struct Listening {
    stream: std::net::TcpStream,
    raw: Vec<u8>,
}

impl Listening {
    fn open(addr: &str, session: &str, last_event: Option<&str>) -> Self {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let resume = last_event.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        write!(
            stream,
            "GET /mcp HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nx-api-key: {KEY}\r\n\
             Mcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-11-25\r\n{resume}\r\n"
        )
        .unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Self { stream, raw: Vec::new() }
    }

    /// The messages (event id, JSON-RPC message) received so far, waiting (at most 10 s) until there are `n`.
    fn messages(&mut self, n: usize) -> Vec<(Option<String>, Value)> {
        use std::io::Read;
        for _ in 0..100 {
            let got = self.parse();
            if got.len() >= n {
                return got;
            }
            let mut buf = [0u8; 8192];
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(read) => self.raw.extend_from_slice(&buf[..read]),
                Err(_) => {} // the read timeout: look again
            }
        }
        self.parse()
    }

    fn parse(&self) -> Vec<(Option<String>, Value)> {
        let text = String::from_utf8_lossy(&self.raw);
        let Some((head, body)) = text.split_once("\r\n\r\n") else { return Vec::new() };
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            support::dechunk(body)
        } else {
            body.to_owned()
        };
        let mut messages = Vec::new();
        for event in body.split("\n\n") {
            let id = event.lines().find_map(|l| l.strip_prefix("id:")).map(|id| id.trim().to_owned());
            let data: String = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
            if let Ok(message) = serde_json::from_str::<Value>(&data) {
                messages.push((id, message));
            }
        }
        messages
    }
}

fn logs_of(messages: &[(Option<String>, Value)]) -> Vec<(String, String)> {
    (messages.iter())
        .filter(|(_, m)| m["method"] == "notifications/message")
        .map(|(id, m)| {
            (id.clone().unwrap_or_default(), m["params"]["data"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

#[test]
fn a_listening_stream_on_one_node_gets_what_a_call_on_the_other_sends_and_resumes_on_either() {
    let Some(nodes) = two_nodes("listening streams across nodes") else { return };
    let (a, b) = (nodes.a.clone(), nodes.b.clone());
    // A client that may be asked things: its calls run in the session's protocol worker, whose log messages go
    // to the listening stream.
    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": { "elicitation": {} },
        "clientInfo": { "name": "nodes", "version": "1" } } });
    let headers = [("x-api-key", KEY), ("MCP-Protocol-Version", "2025-11-25")];
    let session = support::session_id_of(&a, &headers, &initialize.to_string());
    legacy(&a, Some(&session), &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    let log_call = |id: u64| json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": "test_tool_with_logging" } });

    let mut on_a = Listening::open(&a, &session, None);
    let (status, _, messages) = legacy(&b, Some(&session), &log_call(2));
    assert_eq!(status, 200, "{messages:?}");
    let first = logs_of(&on_a.messages(3));
    let texts: Vec<&str> = first.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(
        texts,
        ["Tool execution started", "Tool processing data", "Tool execution completed"],
        "{first:?}"
    );
    assert!(
        first.iter().all(|(id, _)| id.contains('-')),
        "event ids from the session's Redis stream: {first:?}"
    );
    drop(on_a);

    // While no stream listens, a second call on B; the client resumes on B from the last event it saw.
    let (status, _, _) = legacy(&b, Some(&session), &log_call(3));
    assert_eq!(status, 200);
    let mut on_b = Listening::open(&b, &session, Some(&first[2].0));
    let missed = logs_of(&on_b.messages(3));
    assert_eq!(missed.len(), 3, "{missed:?}");
    assert!(missed.iter().all(|(id, _)| !first.iter().any(|(seen, _)| seen == id)), "only what it missed");
    assert_eq!(missed[0].1, "Tool execution started");
    // And it goes on listening there: a call on A reaches it.
    legacy(&a, Some(&session), &log_call(4));
    assert_eq!(logs_of(&on_b.messages(6)).len(), 6);
}

#[test]
fn a_subscription_taken_by_one_node_is_watched_by_the_node_holding_the_stream_and_outlives_the_first() {
    let names = ["MCPGATE_TEST_NODE", "MCPGATE_TEST_EVERYTHING"];
    let Some([node_js, everything]) = support::upstream_vars("shared subscriptions", names) else { return };
    let Some(redis) = RedisServer::start("shared subscriptions") else { return };
    let dir = tempfile::tempdir().unwrap();
    let upstream = format!(
        "upstreams:\n  everything:\n    command: {}\n    args: [{}, stdio]\n",
        Value::from(node_js.as_str()),
        Value::from(everything.as_str())
    );
    let (_a, a) = node_with(dir.path(), "a", &redis, &upstream);
    let (b_process, b) = node_with(dir.path(), "b", &redis, &upstream);
    eventually("both nodes reach redis", || backend_up(&a) == Some(1) && backend_up(&b) == Some(1));
    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "nodes", "version": "1" } } });
    let headers = [("x-api-key", KEY), ("MCP-Protocol-Version", "2025-11-25")];
    let session = support::session_id_of(&a, &headers, &initialize.to_string());
    legacy(&a, Some(&session), &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    let (_, _, listed) =
        legacy(&a, Some(&session), &json!({ "jsonrpc": "2.0", "id": 2, "method": "resources/list" }));
    let uri = listed.last().unwrap()["result"]["resources"]
        .as_array()
        .and_then(|all| {
            all.iter().find_map(|r| r["uri"].as_str().filter(|u| u.starts_with("demo://resource/static")))
        })
        .unwrap_or_else(|| panic!("no static resource in {listed:?}"))
        .to_owned();

    // The stream is on A; the subscription is taken by B, which then goes away.
    let mut on_a = Listening::open(&a, &session, None);
    let subscribe =
        json!({ "jsonrpc": "2.0", "id": 3, "method": "resources/subscribe", "params": { "uri": uri } });
    let (status, _, answer) = legacy(&b, Some(&session), &subscribe);
    assert_eq!(status, 200, "{answer:?}");
    assert!(answer.last().unwrap()["result"].is_object(), "{answer:?}");
    drop(b_process);
    // A watches it for the stream it holds: the upstream's updates reach it.
    let toggle = json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": { "name": "everything__toggle-subscriber-updates", "arguments": {} } });
    // Switched on, the upstream sends an update at once; until A's watch is in place it may find no subscriber,
    // so switch again (on, off, on: every other switch sends). Each look waits up to 10 s.
    let mut updated = Vec::new();
    for _ in 0..5 {
        legacy(&a, Some(&session), &toggle);
        updated = (on_a.messages(1).into_iter())
            .filter(|(_, m)| m["method"] == "notifications/resources/updated")
            .collect::<Vec<_>>();
        if !updated.is_empty() {
            break;
        }
    }
    let (event, message) = updated.first().unwrap_or_else(|| panic!("no resource update reached the stream"));
    assert_eq!(message["params"]["uri"], uri.as_str());
    assert!(event.as_deref().is_some_and(|id| id.contains('-')), "an event of the session's Redis stream");
}
