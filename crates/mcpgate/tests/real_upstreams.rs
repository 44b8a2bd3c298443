//! Federation of real third-party MCP servers, end to end: a gateway process fronting, over stdio,
//! `@modelcontextprotocol/server-everything`, `@modelcontextprotocol/server-filesystem` (npm) and
//! `mcp-server-time` (PyPI), driven by a client over HTTP (2026-07-28 stateless requests).
//!
//! The servers are installed, pinned, by `scripts/upstreams.sh`, which prints the variables this test reads:
//! `eval "$(scripts/upstreams.sh)"`. Without them the test says loudly that it skips, and passes — unless
//! `MCPGATE_REQUIRE_UPSTREAMS=1` (as `scripts/test.sh` sets), when it fails.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::time::Instant;

mod support;

use support::{BIN, Process, free_port};

/// Where the real upstreams are, from the environment `scripts/upstreams.sh` prints.
struct Upstreams {
    node: String,
    everything: String,
    filesystem: String,
    time: String,
}

/// The upstreams, or `None` (after a loud line) when they are not installed and not required.
fn upstreams(test: &str) -> Option<Upstreams> {
    let names =
        ["MCPGATE_TEST_NODE", "MCPGATE_TEST_EVERYTHING", "MCPGATE_TEST_FILESYSTEM", "MCPGATE_TEST_TIME"];
    let [node, everything, filesystem, time] = support::upstream_vars(test, names)?;
    Some(Upstreams { node, everything, filesystem, time })
}

/// A YAML string literal (JSON strings are YAML flow scalars).
fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// The gateway fronting the three real upstreams, once all of their tools are listed.
struct Gateway {
    _process: Process,
    addr: String,
    log: PathBuf,
}

impl Gateway {
    fn start(up: &Upstreams, dir: &Path, allowed: &Path) -> Gateway {
        let config = dir.join("gateway.yaml");
        let yaml = format!(
            "upstreams:\n  everything:\n    command: {node}\n    args: [{everything}, stdio]\n    timeout: 20s\n  \
             fs:\n    command: {node}\n    args: [{filesystem}, {allowed}]\n    timeout: 20s\n  \
             time:\n    command: {time}\n    timeout: 20s\n",
            node = quoted(&up.node),
            everything = quoted(&up.everything),
            filesystem = quoted(&up.filesystem),
            allowed = quoted(&allowed.display().to_string()),
            time = quoted(&up.time),
        );
        std::fs::write(&config, yaml).unwrap();
        let log = dir.join("gateway.log");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(BIN);
        command
            .env_remove("PORT")
            .env_remove("MCP_PORT")
            .env_remove("LOG_LEVEL")
            .env_remove("MCP_CONFIG_PATH");
        command.arg("serve").arg("--config").arg(&config).args(["--listen", &addr]);
        let process = Process(
            command.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap(),
        );
        let gateway = Gateway { _process: process, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !support::listens(&gateway.addr) {
            assert!(Instant::now() < deadline, "mcpgate did not listen within 30 s\n{}", gateway.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        // Each upstream connects on its own; wait until every one of them publishes its tools.
        loop {
            let names = gateway.tool_names();
            if ["everything__", "fs__", "time__"].iter().all(|p| names.iter().any(|n| n.starts_with(p))) {
                return gateway;
            }
            assert!(
                Instant::now() < deadline,
                "not every upstream is listed within 30 s: {names:?}\n{}",
                gateway.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One stateless (2026-07-28) request over a fresh connection; returns the final JSON-RPC message.
    fn request(&self, method: &str, name: Option<&str>, params: Value) -> Value {
        support::modern(&self.addr, method, name, params).unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
    }

    fn call(&self, tool: &str, arguments: Value) -> Value {
        self.request("tools/call", Some(tool), json!({ "name": tool, "arguments": arguments }))
    }

    fn tool_names(&self) -> Vec<String> {
        let listed = self.request("tools/list", None, json!({}));
        let tools = listed["result"]["tools"].as_array().cloned().unwrap_or_default();
        tools.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect()
    }
}

/// The text of a result's first content item.
fn first_text(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text content: {answer}"))
}

/// `tools/call` of server-everything directly over stdio, no gateway in between: what the gateway must pass on.
fn call_everything_directly(up: &Upstreams, tool: &str, arguments: Value) -> Value {
    let mut child = Process(
        Command::new(&up.node)
            .args([&up.everything, "stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let stdout = child.0.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let answer_to = |id: u64| -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("server-everything: no answer {id}: {e}"));
            if let Ok(message) = serde_json::from_str::<Value>(&line)
                && message["id"] == id
                && message.get("method").is_none()
            {
                return message;
            }
        }
    };
    let mut send = |message: Value| writeln!(stdin, "{message}").unwrap();
    send(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "real_upstreams", "version": "1" } } }));
    answer_to(1);
    send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    send(
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": tool, "arguments": arguments } }),
    );
    answer_to(2)
}

#[test]
fn real_third_party_upstreams_are_federated_through_the_gateway() {
    let Some(up) = upstreams("real_third_party_upstreams_are_federated_through_the_gateway") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let allowed = root.join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    let known = allowed.join("known.txt");
    std::fs::write(&known, "federated through mcpgate\n").unwrap();
    let outside = root.join("outside.txt");
    std::fs::write(&outside, "must not be read\n").unwrap();

    let gateway = Gateway::start(&up, &root, &allowed);
    let log = || gateway.log();

    // tools/list: each upstream's tools under its prefix.
    let names = gateway.tool_names();
    for expected in [
        "everything__echo",
        "everything__get-sum",
        "everything__get-tiny-image",
        "fs__list_directory",
        "fs__read_text_file",
        "time__get_current_time",
        "time__convert_time",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}\n{}", log());
    }
    assert!(
        !names.iter().any(|n| n == "echo" || n == "read_text_file"),
        "unprefixed names listed: {names:?}"
    );

    // server-everything: echo and sum come back as the upstream writes them.
    let answer = gateway.call("everything__echo", json!({ "message": "through the gateway" }));
    assert_eq!(first_text(&answer), "Echo: through the gateway", "{answer}");
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    let answer = gateway.call("everything__get-sum", json!({ "a": 17, "b": 25 }));
    assert!(first_text(&answer).contains("42"), "{answer}");

    // An image content item passes through unchanged: the same content as the upstream gives directly.
    let answer = gateway.call("everything__get-tiny-image", json!({}));
    let content = answer["result"]["content"].as_array().unwrap_or_else(|| panic!("no content: {answer}"));
    let image = content.iter().find(|c| c["type"] == "image").unwrap_or_else(|| panic!("no image: {answer}"));
    assert_eq!(image["mimeType"], "image/png", "{image}");
    let data = image["data"].as_str().unwrap();
    assert!(data.starts_with("iVBORw0KGgo"), "not base64 PNG data: {}", &data[..data.len().min(40)]);
    assert!(data.len() % 4 == 0 && data.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
    let direct = call_everything_directly(&up, "get-tiny-image", json!({}));
    assert_eq!(answer["result"]["content"], direct["result"]["content"], "the gateway changed the content");

    // server-filesystem: list the allowed directory, read the known file, and be refused outside it.
    let answer = gateway.call("fs__list_directory", json!({ "path": allowed.display().to_string() }));
    assert!(first_text(&answer).contains("[FILE] known.txt"), "{answer}");
    let answer = gateway.call("fs__read_text_file", json!({ "path": known.display().to_string() }));
    assert_eq!(first_text(&answer), "federated through mcpgate\n", "{answer}");
    let answer = gateway.call("fs__read_text_file", json!({ "path": outside.display().to_string() }));
    assert!(!answer.to_string().contains("must not be read"), "read outside the allowed directory: {answer}");
    let refused = answer["result"]["isError"] == true || answer.get("error").is_some();
    assert!(refused, "a path outside the allowed directory was not refused: {answer}");
    assert!(answer.to_string().contains("outside allowed directories"), "{answer}");
    // ... and the upstream (and the gateway) still serve after the refusal.
    let answer = gateway.call("fs__list_allowed_directories", json!({}));
    assert!(first_text(&answer).contains(&allowed.display().to_string()), "{answer}");

    // mcp-server-time: the current time in UTC.
    let answer = gateway.call("time__get_current_time", json!({ "timezone": "UTC" }));
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    let time = match answer["result"].get("structuredContent") {
        Some(structured) => structured.clone(),
        None => serde_json::from_str(first_text(&answer)).unwrap_or_else(|e| panic!("{e}: {answer}")),
    };
    assert_eq!(time["timezone"], "UTC", "{answer}");
    let datetime = time["datetime"].as_str().unwrap_or_else(|| panic!("no datetime: {answer}"));
    let year: u32 = datetime.get(..4).and_then(|y| y.parse().ok()).unwrap_or(0);
    assert!(year >= 2024 && datetime.contains('T') && datetime.ends_with("+00:00"), "{datetime}");

    // Resources: server-everything's, with their URIs unchanged, and one read.
    let listed = gateway.request("resources/list", None, json!({}));
    let resources = listed["result"]["resources"].as_array().unwrap_or_else(|| panic!("{listed}"));
    let uri = "demo://resource/static/document/architecture.md";
    assert!(resources.iter().any(|r| r["uri"] == uri), "{uri} missing (or renamed): {listed}");
    assert!(
        resources.iter().all(|r| r["uri"].as_str().is_some_and(|u| u.starts_with("demo://"))),
        "{listed}"
    );
    let read = gateway.request("resources/read", Some(uri), json!({ "uri": uri }));
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["uri"], uri, "{read}");
    assert_eq!(contents["mimeType"], "text/markdown", "{read}");
    assert!(contents["text"].as_str().is_some_and(|t| t.contains("Everything Server")), "{read}");
    // A URI that only one of its resource templates expands to is routed to it too.
    let templated = "demo://resource/dynamic/text/7";
    let read = gateway.request("resources/read", Some(templated), json!({ "uri": templated }));
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["uri"], templated, "{read}");
    assert!(contents["text"].as_str().is_some_and(|t| t.starts_with("Resource 7")), "{read}");

    // Prompts: server-everything's under its prefix, and one get (with and without arguments).
    let listed = gateway.request("prompts/list", None, json!({}));
    let prompts = listed["result"]["prompts"].as_array().unwrap_or_else(|| panic!("{listed}"));
    for expected in ["everything__simple-prompt", "everything__args-prompt"] {
        assert!(prompts.iter().any(|p| p["name"] == expected), "{expected} missing: {listed}");
    }
    let name = "everything__simple-prompt";
    let got = gateway.request("prompts/get", Some(name), json!({ "name": name }));
    assert_eq!(got["result"]["messages"][0]["role"], "user", "{got}");
    assert_eq!(
        got["result"]["messages"][0]["content"]["text"], "This is a simple prompt without arguments.",
        "{got}"
    );
    let name = "everything__args-prompt";
    let got =
        gateway.request("prompts/get", Some(name), json!({ "name": name, "arguments": { "city": "Paris" } }));
    let text = got["result"]["messages"][0]["content"]["text"].as_str().unwrap_or_else(|| panic!("{got}"));
    assert!(text.contains("Paris"), "{got}");

    // server-everything asks for roots once initialized, outside any call: answered (empty), not refused.
    assert!(!log().contains("refused"), "{}", log());
}

#[test]
fn a_legacy_sessions_resource_subscription_reaches_the_upstream_and_its_updates_come_back() {
    let Some(up) =
        upstreams("a_legacy_sessions_resource_subscription_reaches_the_upstream_and_its_updates_come_back")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().canonicalize().unwrap();
    let gateway = Gateway::start(&up, dir.path(), &allowed);
    let addr = gateway.addr.as_str();

    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "test", "version": "1" } } });
    let (head, _) = support::legacy_post(addr, None, &initialize);
    let session = head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no session id: {head}"));
    support::legacy_post(
        addr,
        Some(&session),
        &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
    );

    // The session's standalone stream, read line by line on its own thread.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /mcp HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nMcp-Session-Id: {session}\r\n\
         MCP-Protocol-Version: 2025-11-25\r\n\r\n"
    )
    .unwrap();
    let (lines, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });

    let uri = "demo://resource/static/document/architecture.md";
    let subscribe =
        json!({ "jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": { "uri": uri } });
    let (_, answer) = support::legacy_post(addr, Some(&session), &subscribe);
    assert_eq!(answer.last().map(|a| &a["result"]), Some(&json!({})), "{answer:?}\n{}", gateway.log());
    let unknown = json!({ "jsonrpc": "2.0", "id": 3, "method": "resources/subscribe", "params": { "uri": "demo://nothing" } });
    let (_, answer) = support::legacy_post(addr, Some(&session), &unknown);
    assert!(answer.last().is_some_and(|a| a.get("error").is_some()), "{answer:?}");

    // server-everything reports changes to subscribed resources once this tool starts it (at once, then every 5 s).
    let toggle = json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": { "name": "everything__toggle-subscriber-updates", "arguments": {} } });
    let (_, answer) = support::legacy_post(addr, Some(&session), &toggle);
    assert!(answer.last().is_some_and(|a| a["result"]["content"].is_array()), "{answer:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let update = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line =
            seen.recv_timeout(left).unwrap_or_else(|_| panic!("no resources/updated\n{}", gateway.log()));
        let Some(message) =
            line.strip_prefix("data:").and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
        else {
            continue;
        };
        if message["method"] == "notifications/resources/updated" {
            break message;
        }
    };
    assert_eq!(update["params"]["uri"], uri, "{update}");

    let unsubscribe =
        json!({ "jsonrpc": "2.0", "id": 5, "method": "resources/unsubscribe", "params": { "uri": uri } });
    let (_, answer) = support::legacy_post(addr, Some(&session), &unsubscribe);
    assert_eq!(answer.last().map(|a| &a["result"]), Some(&json!({})), "{answer:?}");
}

/// `mcpgate client ARGS… -- SERVER…` against a third-party server: exit code and stdout (stderr in the panic).
fn client_of(args: &[&str], server: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).arg("client").args(args).arg("--").args(server).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_client_lists_calls_reads_and_prompts_real_third_party_servers() {
    let Some(up) = upstreams("the_client_lists_calls_reads_and_prompts_real_third_party_servers") else {
        return;
    };
    let everything = [up.node.as_str(), up.everything.as_str(), "stdio"];
    let (code, info) = client_of(&["info", "--timeout", "20"], &everything);
    assert_eq!(code, Some(0), "{info}");
    assert!(info.contains("protocol:      2025-") && info.contains("prompts"), "{info}");
    let (code, echoed) = client_of(&["call", "echo", "--arg", "message=from the client"], &everything);
    assert_eq!((code, echoed.trim()), (Some(0), "Echo: from the client"));
    let (code, resources) = client_of(&["resources", "--json"], &everything);
    assert_eq!(code, Some(0));
    let resources: Value = serde_json::from_str(&resources).unwrap();
    let uri = resources["resources"][0]["uri"].as_str().unwrap_or_else(|| panic!("{resources}")).to_owned();
    let (code, read) = client_of(&["read", &uri, "--json"], &everything);
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<Value>(&read).unwrap()["contents"][0]["uri"], uri.as_str());
    let (code, prompt) = client_of(&["prompt", "simple-prompt"], &everything);
    assert_eq!(code, Some(0));
    assert!(prompt.starts_with("user: "), "{prompt}");

    // The PyPI server: a schema-typed string argument, and a tool error as exit code 1.
    let time = [up.time.as_str()];
    let (code, now) = client_of(&["call", "get_current_time", "--arg", "timezone=UTC", "--json"], &time);
    assert_eq!(code, Some(0), "{now}");
    assert!(now.contains("UTC"), "{now}");
    let (code, bad) = client_of(&["call", "get_current_time", "--arg", "timezone=Not/AZone"], &time);
    assert_eq!(code, Some(1), "{bad}");
}
