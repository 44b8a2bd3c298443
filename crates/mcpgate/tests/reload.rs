//! SIGHUP reloads the configuration of the real binary under load: new keys and tools apply, a removed upstream
//! finishes the calls it was serving before it stops, no call is lost; an invalid config is refused and the
//! old one stays in force.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use mcpgate_config::KeyHash;
use serde_json::{Value, json};
use support::{BIN, modern_with, serve};

/// A config with key `alpha` (and `beta` when `with_beta`), the demo tools, and either a stdio upstream
/// (mcpgate itself, tools `self__*`) or the conformance tools.
fn config(with_beta: bool, upstream: bool) -> String {
    let mut keys = vec![format!("{{ name: alpha, hash: \"{}\" }}", KeyHash::sha256("alpha-key"))];
    if with_beta {
        keys.push(format!("{{ name: beta, hash: \"{}\", tools: [\"echo\"] }}", KeyHash::sha256("beta-key")));
    }
    let mut config = format!(
        "security:\n  api_keys: [{}]\nrate_limits:\n  per_key: {{ requests: {}, per: 1m }}\nbackends:\n  demo: {{ kind: builtin, builtin: demo }}\n",
        keys.join(", "),
        if with_beta { 100_000 } else { 1_000_000 },
    );
    if upstream {
        config.push_str(&format!(
            "upstreams:\n  self:\n    command: {BIN}\n    args: [serve, --stdio]\n    env: {{ LOG_LEVEL: warn }}\n"
        ));
    } else {
        config.push_str("  more: { kind: builtin, builtin: conformance }\n");
    }
    config
}

fn call(addr: &str, key: &str, tool: &str, arguments: Value) -> (u16, Value) {
    let params = json!({ "name": tool, "arguments": arguments });
    modern_with(addr, &[("x-api-key", key)], "tools/call", Some(tool), params).unwrap()
}

fn ok(answer: &(u16, Value)) -> bool {
    answer.0 == 200 && answer.1["result"]["isError"] != json!(true) && answer.1.get("error").is_none()
}

fn hangup(pid: u32) {
    let status = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

/// Wait until the log says `what` `n` times.
fn wait_for_log(log: &Path, what: &str, n: usize) {
    for _ in 0..500 {
        if std::fs::read_to_string(log).unwrap_or_default().matches(what).count() >= n {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("the log never said {what:?} {n} times:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

#[test]
fn sighup_applies_new_keys_limits_and_tools_without_losing_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcpgate.yaml");
    std::fs::write(&file, config(false, true)).unwrap();
    let log = dir.path().join("log");
    let (gateway, addr) = serve(Some(&file), &log, Duration::from_secs(20));
    let pid = gateway.0.id();
    // The upstream connects in the background: wait until its tools are served.
    for _ in 0..250 {
        if ok(&call(&addr, "alpha-key", "self__echo", json!({ "message": "up?" }))) {
            break;
        }
        thread::sleep(Duration::from_millis(40));
    }
    assert!(ok(&call(&addr, "alpha-key", "self__echo", json!({ "message": "up" }))));
    assert_eq!(call(&addr, "beta-key", "echo", json!({ "message": "x" })).0, 401);

    // Load: callers of the demo tools keep going across the reload; every call must succeed.
    let (stop, done, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let callers: Vec<_> = (0..3)
        .map(|i| {
            let (addr, stop, done, failed) = (addr.clone(), stop.clone(), done.clone(), failed.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let answer = if i == 0 {
                        call(&addr, "alpha-key", "sleep", json!({ "ms": 150 }))
                    } else {
                        call(&addr, "alpha-key", "echo", json!({ "message": format!("caller {i}") }))
                    };
                    let counter = if ok(&answer) { &done } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                    if !ok(&answer) {
                        eprintln!("failed call: {answer:?}");
                    }
                }
            })
        })
        .collect();
    // A call in flight on the upstream the reload removes: it finishes before the upstream stops.
    let slow = {
        let addr = addr.clone();
        thread::spawn(move || call(&addr, "alpha-key", "self__sleep", json!({ "ms": 1500 })))
    };
    thread::sleep(Duration::from_millis(300));
    let before = done.load(Ordering::Relaxed);
    std::fs::write(&file, config(true, false)).unwrap();
    hangup(pid);
    wait_for_log(&log, "configuration reloaded", 1);
    thread::sleep(Duration::from_millis(300));

    let slow = slow.join().unwrap();
    assert!(ok(&slow), "the call in flight on the removed upstream: {slow:?}");
    // New key, with its tool list; new tools; the removed upstream's tools are gone.
    assert!(ok(&call(&addr, "beta-key", "echo", json!({ "message": "new key" }))));
    let hidden = call(&addr, "beta-key", "add", json!({ "a": 1, "b": 2 }));
    assert_eq!(hidden.1["error"]["code"], -32602, "beta may call echo only: {hidden:?}");
    assert!(ok(&call(&addr, "alpha-key", "test_simple_text", json!({}))));
    let gone = call(&addr, "alpha-key", "self__echo", json!({ "message": "x" }));
    assert!(gone.1["error"]["message"].as_str().unwrap_or("").contains("self__echo"), "{gone:?}");
    wait_for_log(&log, "stopping a backend the reload removed", 1);

    // An invalid config is refused; the one in force stays (beta still works).
    std::fs::write(&file, "backends:\n  demo: { kind: nonsense }\n").unwrap();
    hangup(pid);
    wait_for_log(&log, "configuration reload refused", 1);
    assert!(ok(&call(&addr, "beta-key", "echo", json!({ "message": "still here" }))));

    stop.store(true, Ordering::Relaxed);
    callers.into_iter().for_each(|c| c.join().unwrap());
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} calls failed across the reloads ({done} succeeded)");
    assert!(done > before, "calls went on after the reload ({before} before, {done} in all)");

    // The new limit: beta's per-key budget is now 100000/min, and /status counts one reload each way.
    let status: Value = {
        let raw = support::http_get(&addr, "/status");
        serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap()
    };
    assert_eq!(status["reloads"]["succeeded"], 1, "{status}");
    assert_eq!(status["reloads"]["failed"], 1, "{status}");
    assert_eq!(status["reloads"]["last"]["ok"], false, "{status}");
    assert_eq!(status["rate_limits"]["per_key"]["requests"], 100_000, "{}", status["rate_limits"]);
}
