//! An upstream's `ttlMs` / `cacheScope` on its tool results, honoured by the cache end to end: `mcpgate serve`
//! fronts a stdio upstream (a short Python script speaking MCP's JSON-RPC lines, so the hints are exactly what a
//! server sends) and two API keys call its tools over HTTP.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::{path::PathBuf, time::Duration};

use serde_json::{Value, json};

mod support;

/// A stdio MCP server whose tool results carry caching hints: `plain` none, `fresh` `ttlMs: 0`, `mine`
/// `cacheScope: "private"`. Each result names the call's number, so a cached answer shows.
const UPSTREAM: &str = r#"
import json, sys
calls = 0
for line in sys.stdin:
    message = json.loads(line)
    if "method" not in message or "id" not in message:
        continue
    method, answer = message["method"], {"jsonrpc": "2.0", "id": message["id"]}
    if method == "initialize":
        answer["result"] = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                            "serverInfo": {"name": "hints", "version": "1"}}
    elif method == "tools/list":
        answer["result"] = {"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in ("plain", "fresh", "mine")]}
    elif method == "tools/call":
        calls += 1
        name = message["params"]["name"]
        answer["result"] = {"content": [{"type": "text", "text": f"{name} #{calls}"}]}
        if name == "fresh":
            answer["result"]["ttlMs"] = 0
        if name == "mine":
            answer["result"]["cacheScope"] = "private"
    elif method == "ping":
        answer["result"] = {}
    else:
        answer["error"] = {"code": -32601, "message": "method not found"}
    print(json.dumps(answer), flush=True)
"#;

/// `python3` on `PATH`, as an absolute path (the upstream's environment is scrubbed).
fn python() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("python3"))
        .find(|candidate| candidate.is_file())
        .expect("python3 on PATH (scripts/test.sh installs it)")
}

fn call(addr: &str, key: &str, tool: &str) -> String {
    let params = json!({ "name": tool, "arguments": { "q": 1 } });
    let (status, message) =
        support::modern_with(addr, &[("x-api-key", key)], "tools/call", Some(tool), params).unwrap();
    assert_eq!(status, 200, "{message}");
    let text = &message["result"]["content"][0]["text"];
    assert!(message["result"].get("ttlMs").is_none() && message["result"].get("cacheScope").is_none());
    text.as_str().unwrap_or_else(|| panic!("no text in {message}")).to_owned()
}

#[test]
fn upstream_hints_shorten_the_ttl_and_keep_private_results_to_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("upstream.py");
    std::fs::write(&script, UPSTREAM).unwrap();
    let keys: Vec<String> = [("alice", "alice-key"), ("bob", "bob-key")]
        .iter()
        .map(|(name, key)| {
            format!("    - {{ name: {name}, hash: \"{}\" }}", mcpgate_config::KeyHash::sha256(key))
        })
        .collect();
    let yaml = format!(
        "security:\n  api_keys:\n{}\ncache:\n  tools:\n    \"hints__*\": {{ ttl: 10m }}\nupstreams:\n  hints:\n    command: {}\n    args: [{}]\n",
        keys.join("\n"),
        Value::from(python().to_string_lossy()),
        Value::from(script.to_string_lossy()),
    );
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, yaml).unwrap();
    let (_gateway, addr) = support::serve(Some(&config), &dir.path().join("log"), Duration::from_secs(15));
    // The upstream's tools are listed once it is connected.
    for _ in 0..100 {
        let listed =
            support::modern_with(&addr, &[("x-api-key", "alice-key")], "tools/list", None, json!({}));
        if listed.is_ok_and(|(_, m)| m["result"]["tools"].as_array().is_some_and(|t| t.len() == 3)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // No hint: kept for the section's TTL and shared.
    assert_eq!(call(&addr, "alice-key", "hints__plain"), "plain #1");
    assert_eq!(call(&addr, "bob-key", "hints__plain"), "plain #1");
    // `ttlMs: 0`: immediately stale, never kept.
    assert_eq!(call(&addr, "alice-key", "hints__fresh"), "fresh #2");
    assert_eq!(call(&addr, "alice-key", "hints__fresh"), "fresh #3");
    // `cacheScope: "private"`: kept, but only for the key that caused it.
    assert_eq!(call(&addr, "alice-key", "hints__mine"), "mine #4");
    assert_eq!(call(&addr, "bob-key", "hints__mine"), "mine #5");
    assert_eq!(call(&addr, "alice-key", "hints__mine"), "mine #4");
    assert_eq!(call(&addr, "bob-key", "hints__mine"), "mine #5");
    let metrics = support::http_get(&addr, "/metrics");
    assert!(metrics.contains("mcp_cache_hits_total 3\n"), "{metrics}");
    assert!(metrics.contains("mcp_cache_misses_total 5\n"), "{metrics}");
}
