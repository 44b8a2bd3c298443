//! The audit log on the real binary: every answered `tools/call` is in the file even when the process is
//! SIGKILLed right after the last answer; refusals are recorded with their kind; SIGHUP reopens the file after
//! rotation; a line that cannot be written is counted in `/status` and `/metrics`, and the call still answered.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::{collections::HashMap, io::Write, path::Path, thread, time::Duration};

use mcpgate_config::KeyHash;
use nix::{
    sys::{
        signal::{Signal, kill},
        wait::{Id, WaitPidFlag, waitid},
    },
    unistd::Pid,
};
use serde_json::{Value, json};
use support::serve_with_env;

/// One stateless `tools/call` with `key`: the `x-request-id` the gateway answered with and the JSON-RPC answer.
fn call(addr: &str, key: &str, tool: &str, arguments: Value) -> (String, Value) {
    try_call(addr, key, tool, arguments).unwrap()
}

/// [`call`], saying what went wrong instead of panicking.
fn try_call(addr: &str, key: &str, tool: &str, arguments: Value) -> Result<(String, Value), String> {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {} } } })
    .to_string();
    let headers = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", tool),
        ("x-api-key", key),
    ];
    let (_, head, mut messages) = support::try_post(addr, &headers, &body)?;
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id:").map(|v| v.trim().to_owned()))
        .ok_or_else(|| format!("no x-request-id: {head}"))?;
    let answer = messages.pop().ok_or_else(|| format!("no JSON-RPC answer: {head}"))?;
    Ok((id, answer))
}

fn config(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("mcpgate.yaml");
    let keys = format!(
        "security:\n  api_keys:\n    - {{ name: ops, hash: \"{}\" }}\n    - {{ name: ci, hash: \"{}\", tools: [echo] }}\n",
        KeyHash::sha256("ops-key"),
        KeyHash::sha256("ci-key")
    );
    let rest = "backends:\n  demo: { kind: builtin, builtin: demo }\naudit:\n  include_arguments: true\n";
    std::fs::write(&file, format!("{keys}{rest}")).unwrap();
    file
}

/// SIGHUP the gateway, then wait until `file` exists: the reload (and the audit log's reopen with it) is done.
fn reload_until_exists(gateway: &support::Process, file: &Path) {
    kill(Pid::from_raw(gateway.0.id() as i32), Signal::SIGHUP).unwrap();
    for _ in 0..250 {
        if file.exists() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{} did not appear within 5 s of SIGHUP", file.display());
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect()
}

#[test]
fn every_answered_call_is_in_the_audit_log_after_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let env = [("AUDIT_LOG_FILE", audit.to_str().unwrap())];
    let log = dir.path().join("log");
    let (gateway, addr) = serve_with_env(Some(&config(dir.path())), &log, Duration::from_secs(20), &env);

    // Four kinds of call, from four threads at once: ok, tool error (invalid arguments), unknown tool, and a
    // tool the ci key may not use (answered as unknown).
    let kinds: [(&str, &str, &str, Value, &str); 4] = [
        ("ops-key", "ops", "echo", json!({ "message": "hi" }), "ok"),
        ("ops-key", "ops", "add", json!({ "a": "one", "token": "s3cret" }), "tool_error"),
        ("ops-key", "ops", "no_such_tool", json!({}), "error"),
        ("ci-key", "ci", "add", json!({ "a": 1, "b": 2 }), "error"),
    ];
    let answered: Vec<Result<_, String>> = thread::scope(|s| {
        let workers: Vec<_> = kinds
            .iter()
            .map(|(key, principal, tool, arguments, outcome)| {
                let addr = &addr;
                s.spawn(move || {
                    (0..15)
                        .map(|_| {
                            let (id, answer) = try_call(addr, key, tool, arguments.clone())?;
                            Ok((id, answer, *principal, *tool, *outcome))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    // The last answer is in: SIGKILL at once, no chance to flush anything, and wait until the process is dead
    // (without reaping it: the guard does, so its pid cannot be reused under it).
    let pid = Pid::from_raw(gateway.0.id() as i32);
    kill(pid, Signal::SIGKILL).unwrap();
    waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).unwrap();
    let answered: Vec<_> = answered.into_iter().collect::<Result<_, _>>().unwrap_or_else(|e| {
        panic!("{e}; the gateway said:\n{}", std::fs::read_to_string(&log).unwrap_or_default())
    });

    let logged: HashMap<String, Value> =
        lines(&audit).into_iter().map(|l| (l["request_id"].as_str().unwrap().to_owned(), l)).collect();
    assert_eq!(logged.len(), answered.len(), "one line per answered call");
    for (id, answer, principal, tool, outcome) in &answered {
        let answered_as = match (answer.get("result"), answer.get("error")) {
            (Some(result), None) if result["isError"] == true => "tool_error",
            (Some(_), None) => "ok",
            (None, Some(_)) => "error",
            _ => panic!("not a JSON-RPC answer: {answer}"),
        };
        assert_eq!(answered_as, *outcome, "{answer}");
        let line = logged.get(id).unwrap_or_else(|| panic!("call {id} ({tool}) missing from the audit log"));
        assert_eq!(
            (line["principal"].as_str(), line["tool"].as_str(), line["outcome"].as_str()),
            (Some(*principal), Some(*tool), Some(*outcome)),
            "{line}"
        );
        assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    }
    let sample = logged.values().find(|l| l["tool"] == "add" && l["principal"] == "ops").unwrap();
    assert_eq!(sample["arguments"], json!({ "a": "one", "token": "[redacted]" }), "{sample}");
    let refused = logged.values().find(|l| l["principal"] == "ci").unwrap();
    assert_eq!(refused["error_kind"], "not_found", "{refused}");
}

#[test]
fn sighup_reopens_the_audit_log_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let env = [("AUDIT_LOG_FILE", audit.to_str().unwrap())];
    let (gateway, addr) =
        serve_with_env(Some(&config(dir.path())), &dir.path().join("log"), Duration::from_secs(20), &env);
    call(&addr, "ops-key", "echo", json!({ "message": "before" }));
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&audit, &rotated).unwrap();
    reload_until_exists(&gateway, &audit);
    call(&addr, "ops-key", "echo", json!({ "message": "after" }));
    let old = lines(&rotated);
    let new = lines(&audit);
    assert_eq!((old.len(), new.len()), (1, 1), "{old:?} {new:?}");
    assert_eq!(new[0]["arguments"]["message"], "after");
    // `/status` counts what the log wrote, across the reopen.
    let raw = support::http_get(&addr, "/status");
    let status: Value = serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap();
    let audit_status = &status["audit"];
    assert_eq!(audit_status["file"], audit.to_str().unwrap(), "{status}");
    assert_eq!((&audit_status["lines"], &audit_status["failures"]), (&json!(2), &json!(0)), "{status}");
    assert!(audit_status["writes"].as_u64().is_some_and(|w| (1..=2).contains(&w)), "{status}");
}

/// `/status`'s `audit` section and the `mcp_audit_*_total` samples of `/metrics`.
fn audit_counts(addr: &str) -> (Value, String) {
    let raw = support::http_get(addr, "/status");
    let status: Value = serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap();
    let metrics = support::http_get(addr, "/metrics");
    let samples = metrics.lines().filter(|l| l.starts_with("mcp_audit_")).collect::<Vec<_>>().join("\n");
    (status["audit"].clone(), samples)
}

#[test]
fn lines_that_cannot_be_written_are_counted_across_a_reload_and_calls_go_on() {
    let dir = tempfile::tempdir().unwrap();
    // `/dev/full` refuses every write with ENOSPC, as a full disk would.
    let file = config(dir.path());
    let base = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{base}  file: /dev/full\n")).unwrap();
    let (gateway, addr) = serve_with_env(Some(&file), &dir.path().join("log"), Duration::from_secs(20), &[]);
    for message in ["one", "two"] {
        let (_, answer) = call(&addr, "ops-key", "echo", json!({ "message": message }));
        assert_eq!(answer["result"]["content"][0]["text"], message, "{answer}");
    }
    let (status, samples) = audit_counts(&addr);
    assert_eq!((&status["lines"], &status["failures"]), (&json!(0), &json!(2)), "{status}");
    assert_eq!(samples, "mcp_audit_lines_total 0\nmcp_audit_failures_total 2");

    // A reload to a file that takes lines opens a new log; the counts go on from where they were.
    let audit = dir.path().join("audit.log");
    std::fs::write(&file, format!("{base}  file: {}\n", audit.display())).unwrap();
    reload_until_exists(&gateway, &audit);
    call(&addr, "ops-key", "echo", json!({ "message": "three" }));
    assert_eq!(lines(&audit).len(), 1);
    let (status, samples) = audit_counts(&addr);
    assert_eq!((&status["lines"], &status["failures"]), (&json!(1), &json!(2)), "{status}");
    assert_eq!(samples, "mcp_audit_lines_total 1\nmcp_audit_failures_total 2");
}

#[test]
fn calls_over_stdio_are_audited_too() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let mut child = std::process::Command::new(support::BIN)
        .args(["serve", "--stdio", "--config"])
        .arg(config(dir.path()))
        .env("AUDIT_LOG_FILE", &audit)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = std::io::BufReader::new(child.stdout.take().unwrap());
    let _guard = support::Process(child);
    let mut send = |message: Value| writeln!(input, "{message}").unwrap();
    send(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } }));
    send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    send(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "message": "over stdio" } } }));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut output, &mut line).unwrap() > 0, "stdout closed");
        if serde_json::from_str::<Value>(&line).unwrap()["id"] == 2 {
            break;
        }
    }
    let logged = lines(&audit);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!((&logged[0]["tool"], &logged[0]["outcome"]), (&json!("echo"), &json!("ok")), "{}", logged[0]);
    assert_eq!(logged[0]["arguments"], json!({ "message": "over stdio" }));
    assert_eq!(logged[0]["client_ip"], Value::Null);
}
