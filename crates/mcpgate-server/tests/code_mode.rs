//! Code mode end to end over HTTP: what a code-mode client is offered, a program that chains tools, a key whose
//! programs cannot reach what it may not call (and the refusal audited), hybrid mode, one endpoint serving
//! direct and code-mode keys at once, and programs that misbehave while the gateway keeps serving.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{DEMO, TestGateway, spawn_with_env};
use mcpgate_config::KeyHash;
use serde_json::{Value, json};

const CODE_KEY: &str = "code-key-0123456789";
const LIMITED_KEY: &str = "limited-key-0123456";
const DIRECT_KEY: &str = "direct-key-01234567";
const HYBRID_KEY: &str = "hybrid-key-01234567";

fn config(audit: &std::path::Path) -> String {
    format!(
        "security:\n  api_keys:\n\
         \x20   - {{ name: coder, hash: \"{}\", mode: code }}\n\
         \x20   - {{ name: limited, hash: \"{}\", mode: code, tools: [\"echo\", \"add\"] }}\n\
         \x20   - {{ name: plain, hash: \"{}\" }}\n\
         \x20   - {{ name: both, hash: \"{}\", mode: hybrid }}\n\
         code_mode:\n  direct_tools: [\"now\"]\n  sandbox:\n    max_execution_time: 2s\n    max_calls: 5\n\
         audit:\n  file: {}\n{DEMO}",
        KeyHash::sha256(CODE_KEY),
        KeyHash::sha256(LIMITED_KEY),
        KeyHash::sha256(DIRECT_KEY),
        KeyHash::sha256(HYBRID_KEY),
        audit.display()
    )
}

async fn request(gw: &TestGateway, key: &str, method: &str, name: Option<&str>, params: Value) -> Value {
    let response = gw.modern_request(method, name, params, &[("x-api-key", key)]).send().await.unwrap();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    common::messages(&content_type, &response.text().await.unwrap()).pop().unwrap()
}

async fn tool_names(gw: &TestGateway, key: &str) -> Vec<String> {
    common::tool_names_of(&request(gw, key, "tools/list", None, json!({})).await)
}

async fn call(gw: &TestGateway, key: &str, tool: &str, arguments: Value) -> Value {
    let params = json!({ "name": tool, "arguments": arguments });
    request(gw, key, "tools/call", Some(tool), params).await
}

/// The text of a tool result, parsed as JSON.
fn result_json(answer: &Value) -> Value {
    let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{answer}"));
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Proof the gateway still serves: a direct key's echo answers.
async fn serving(gw: &TestGateway) {
    let answer = call(gw, DIRECT_KEY, "echo", json!({ "message": "still here" })).await;
    assert_eq!(answer["result"]["content"][0]["text"], "still here", "{answer}");
}

async fn execute(gw: &TestGateway, key: &str, code: &str) -> Value {
    call(gw, key, "execute", json!({ "code": code })).await
}

#[tokio::test]
async fn code_mode_offers_its_tools_and_programs_chain_calls_through_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let gw = spawn_with_env(&config(&audit), &[], "127.0.0.1:0").await;

    // What each key is offered on the one endpoint.
    assert_eq!(tool_names(&gw, CODE_KEY).await, ["search_tools", "describe_tools", "execute"]);
    assert_eq!(tool_names(&gw, HYBRID_KEY).await, ["search_tools", "describe_tools", "execute", "now"]);
    let direct = tool_names(&gw, DIRECT_KEY).await;
    assert!(direct.contains(&"echo".to_owned()) && !direct.contains(&"execute".to_owned()), "{direct:?}");

    // A code-mode key calls only the code-mode tools directly.
    let refused = call(&gw, CODE_KEY, "echo", json!({ "message": "hi" })).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    let refused = call(&gw, DIRECT_KEY, "execute", json!({ "code": "return 1;" })).await;
    assert_eq!(refused["error"]["code"], -32602, "direct keys have no execute: {refused}");

    // search_tools ranks, describe_tools declares.
    let found =
        result_json(&call(&gw, CODE_KEY, "search_tools", json!({ "query": "sum two numbers" })).await);
    assert_eq!(found["tools"][0]["tool"], "add", "{found}");
    assert_eq!(found["tools"][0]["path"], "tools.demo.add", "{found}");
    let described =
        call(&gw, CODE_KEY, "describe_tools", json!({ "names": ["add", "tools.demo.echo"] })).await;
    let declarations = described["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        declarations.contains("function add(") && declarations.contains("function echo("),
        "{declarations}"
    );

    // A program: sequential and concurrent calls, logs, one small result.
    // `add` has structured content ({sum}); `echo` is plain text.
    let program = "const a = await tools.demo.add({a: 2, b: 3});
        const [b, e] = await Promise.all([tools.demo.add({a: a.sum, b: 10}), tools.demo.echo({message: 'x'})]);
        console.log('sum is', b.sum);
        return {sum: b.sum, echoed: e};";
    let answer = execute(&gw, CODE_KEY, program).await;
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    let out = result_json(&answer);
    assert_eq!(out["result"], json!({ "sum": 15, "echoed": "x" }), "{out}");
    assert_eq!(out["logs"], json!(["sum is 15"]));
    assert_eq!(out["calls"].as_array().unwrap().len(), 3);
    assert!(out["calls"].as_array().unwrap().iter().all(|c| c["ok"] == true), "{out}");

    // What `echo` (no output schema) returned is now its declared result, for this key only.
    let described = call(&gw, CODE_KEY, "describe_tools", json!({ "names": ["echo"] })).await;
    let text = described["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("observed") && text.contains("Promise<string>"), "{text}");
    let described = call(&gw, LIMITED_KEY, "describe_tools", json!({ "names": ["echo"] })).await;
    let text = described["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        !text.contains("observed") && text.contains("ToolResult"),
        "another key's results stay its own: {text}"
    );

    // Every inner call is audited under the execute call's request id, with the key's name.
    let lines: Vec<Value> =
        std::fs::read_to_string(&audit).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let execute_line = lines.iter().find(|l| l["tool"] == "execute" && l["principal"] == "coder").unwrap();
    assert_eq!(execute_line["detail"]["code_bytes"], program.len(), "{execute_line}");
    assert_eq!(execute_line["detail"]["code_sha256"].as_str().unwrap().len(), 64, "{execute_line}");
    assert!(execute_line.get("arguments").is_none(), "the program itself only when arguments are recorded");
    let inner: Vec<_> = lines.iter().filter(|l| l["request_id"] == execute_line["request_id"]).collect();
    assert_eq!(inner.len(), 4, "execute and its three calls: {lines:?}");
    assert!(inner.iter().all(|l| l["principal"] == "coder"), "{inner:?}");

    serving(&gw).await;
}

#[tokio::test]
async fn a_key_cannot_reach_from_code_what_it_may_not_call_and_the_refusal_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let gw = spawn_with_env(&config(&audit), &[], "127.0.0.1:0").await;

    let found = result_json(&call(&gw, LIMITED_KEY, "search_tools", json!({ "query": "" })).await);
    let names: Vec<&str> =
        found["tools"].as_array().unwrap().iter().map(|t| t["tool"].as_str().unwrap()).collect();
    assert_eq!(names, ["add", "echo"], "search shows only the key's tools: {found}");

    // `sleep` is not in the program's namespace at all; called by public name through another door it is not
    // there either.
    let answer = execute(&gw, LIMITED_KEY, "return typeof tools.demo.sleep;").await;
    assert_eq!(result_json(&answer)["result"], "undefined", "{answer}");
    let described = call(&gw, LIMITED_KEY, "describe_tools", json!({ "names": ["sleep"] })).await;
    let text = described["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("Not found") && !text.contains("function sleep"), "{text}");

    // Called by its public name anyway (`callTool`), it is refused by the dispatch exactly as a tool that does
    // not exist — and the refusal is audited under the execute call's request id.
    let answer = execute(&gw, LIMITED_KEY, "return await callTool('sleep', {ms: 1});").await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(result_json(&answer)["error"].as_str().unwrap().contains("unknown tool: sleep"), "{answer}");
    let answer = execute(&gw, CODE_KEY, "return typeof tools.demo.sleep;").await;
    assert_eq!(result_json(&answer)["result"], "function", "the code-mode key has it");
    serving(&gw).await;
    let lines: Vec<Value> =
        std::fs::read_to_string(&audit).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let refused = lines.iter().find(|l| l["tool"] == "sleep" && l["principal"] == "limited").unwrap();
    assert_eq!(refused["error_kind"], "not_found", "{refused}");
    let same_request = |l: &&Value| l["request_id"] == refused["request_id"];
    let execute = lines.iter().filter(same_request).find(|l| l["tool"] == "execute").unwrap();
    assert_eq!(execute["principal"], "limited", "{execute}");
}

#[tokio::test]
async fn misbehaving_programs_end_with_precise_errors_and_the_gateway_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let gw = spawn_with_env(&config(&dir.path().join("audit.log")), &[], "127.0.0.1:0").await;
    let cases = [
        ("while (true) { try { for (;;) {} } catch (e) {} }", "time limit"),
        ("const a = []; for (;;) a.push('x'.repeat(1 << 20) + a.length);", "out of memory"),
        ("function f(n) { return f(n + 1) + 1; } return f(0);", "stack"),
        (
            "for (;;) { try { await tools.demo.echo({message: 'a'}); } catch (e) {} }",
            "more than 5 tool calls",
        ),
        ("await tools.demo.sleep({ms: 60000});", "time limit"),
        ("\n\nnull.x;", "(program line 3)"),
        ("await tools.demo.add({a: 'one'});", "invalid"),
    ];
    for (code, expected) in cases {
        let answer = execute(&gw, CODE_KEY, code).await;
        assert_eq!(answer["result"]["isError"], true, "{code}: {answer}");
        let error = result_json(&answer);
        let message = error["error"].as_str().unwrap_or_default().to_owned() + &error.to_string();
        assert!(message.contains(expected), "{code}: expected {expected:?} in {error}");
    }
    let timeouts = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    let line =
        timeouts.lines().find(|l| l.starts_with("mcp_sandbox_timeouts_total{backend=\"quickjs\"}")).unwrap();
    assert!(line.ends_with(" 2"), "{line}");
    // Polluting prototypes does not survive into the next program.
    let polluted = execute(&gw, CODE_KEY, "Object.prototype.evil = 1; return 1;").await;
    assert_eq!(result_json(&polluted)["result"], 1);
    let clean = execute(&gw, CODE_KEY, "return ({}).evil === undefined;").await;
    assert_eq!(result_json(&clean)["result"], true);
    serving(&gw).await;
}

#[tokio::test]
async fn script_tools_compose_other_tools_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let handler = dir.path().join("shout.js");
    std::fs::write(
        &handler,
        "const e = await tools.demo.echo({message: input.text.toUpperCase()});\nreturn e + '!';",
    )
    .unwrap();
    let yaml = format!(
        "backends:\n  scripts:\n    kind: script\n    tools:\n\
         \x20     sum_and_echo:\n        description: Add two numbers and say the sum.\n\
         \x20       input_schema: {{ type: object, properties: {{ a: {{ type: number }}, b: {{ type: number }} }}, required: [a, b] }}\n\
         \x20       call:\n          code: \"const s = await tools.demo.add({{a: input.a, b: input.b}}); const e = await tools.demo.echo({{message: 'sum ' + s.sum}}); return {{sum: s.sum, said: e}};\"\n\
         \x20     shout:\n        input_schema: {{ type: object, properties: {{ text: {{ type: string }} }}, required: [text] }}\n\
         \x20       call: {{ file: {} }}\n\
         \x20     chain:\n        call: {{ code: \"return await callTool('shout', {{text: 'x'}});\" }}\n\
         \x20     broken:\n        call: {{ code: \"\\n\\nreturn input.missing.field;\" }}\n\
         \x20 demo:\n    kind: builtin\n    builtin: demo\n",
        handler.display()
    );
    let gw = spawn_with_env(&yaml, &[], "127.0.0.1:0").await;
    let answer = gw.call("sum_and_echo", json!({ "a": 2, "b": 5 })).await;
    assert_eq!(answer["result"]["structuredContent"], json!({ "sum": 7, "said": "sum 7" }), "{answer}");
    let answer = gw.call("shout", json!({ "text": "hello" })).await;
    assert_eq!(answer["result"]["content"][0]["text"], "HELLO!", "a handler file: {answer}");
    let invalid = gw.call("sum_and_echo", json!({ "a": "two", "b": 5 })).await;
    assert_eq!(invalid["result"]["isError"], true, "the input schema is enforced first: {invalid}");
    let chain = gw.call("chain", json!({})).await;
    let text = chain["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        chain["result"]["isError"] == true && text.contains("cannot call another script tool"),
        "{chain}"
    );
    let broken = gw.call("broken", json!({})).await;
    let text = broken["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("TypeError") && text.contains("(program line 3)"), "{broken}");
    gw.assert_serving().await;
}

/// What a program must not reach from the in-process sandbox: files, the network, processes — and what it may
/// exhaust only up to its limits, while the gateway answers other calls.
#[tokio::test]
async fn the_quickjs_sandbox_contains_escape_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET-7731").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let gw = spawn_with_env(&config(&dir.path().join("audit.log")), &[], "127.0.0.1:0").await;
    let path = secret.display().to_string();
    let attempts = [
        format!("return await import({path:?});"),
        format!("return require('fs').readFileSync({path:?}, 'utf8');"),
        format!("return std.loadFile({path:?});"),
        "const f = new Function('return this')(); return Object.keys(f).join(',') + (typeof f.os);".to_owned(),
        format!("return await fetch('http://127.0.0.1:{port}/');"),
        format!("const x = new XMLHttpRequest(); x.open('GET', 'http://127.0.0.1:{port}/'); return 1;"),
        "return os.exec(['/bin/sh', '-c', 'echo pwned']);".to_owned(),
        "const spawn = () => Promise.resolve().then(spawn).then(spawn); spawn(); await new Promise(() => {});".to_owned(),
        "const b = new ArrayBuffer(1 << 30); return b.byteLength;".to_owned(),
        "return 'x'.repeat(100 << 20);".to_owned(),
    ];
    for code in &attempts {
        let answer = execute(&gw, CODE_KEY, code).await;
        let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_default();
        assert!(!text.contains("TOP-SECRET") && !text.contains("pwned"), "{code}: {answer}");
        // Globals listing is the one that may succeed: it shows no capability.
        if !code.contains("Object.keys") {
            assert_eq!(answer["result"]["isError"], true, "{code}: {answer}");
        } else {
            assert!(text.contains("undefined") && !text.contains("os,"), "{code}: {answer}");
        }
    }
    assert!(listener.accept().is_err(), "no program connected to the listener");

    // A program spinning for its whole time limit does not stop other calls.
    let busy = execute(&gw, CODE_KEY, "for (;;) {}");
    let other = async {
        let status = || async {
            let response = gw.http.get(format!("{}/status", gw.base)).send().await.unwrap();
            response.json::<Value>().await.unwrap()
        };
        // Wait for the state change (the program holds its slot), not for a time.
        for _ in 0..1000 {
            if status().await["code_mode"]["sandbox"]["state"]["running"] == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let answer = call(&gw, DIRECT_KEY, "echo", json!({ "message": "meanwhile" })).await;
        let still_running = status().await["code_mode"]["sandbox"]["state"]["running"] == 1;
        (answer, still_running)
    };
    let (busy, (answer, still_running)) = tokio::join!(busy, other);
    assert_eq!(answer["result"]["content"][0]["text"], "meanwhile", "{answer}");
    assert!(still_running, "echo answered while the program ran");
    assert!(result_json(&busy)["error"].as_str().unwrap().contains("time limit"), "{busy}");
}

/// A sandbox that cannot run fails closed: `/ready` says why, `execute` fails naming it, nothing runs elsewhere.
#[tokio::test]
async fn a_sandbox_that_cannot_run_fails_closed() {
    let yaml = format!(
        "code_mode:\n  mode: code\n  sandbox:\n    backend: gvisor\n    runner: /nonexistent/runsc\n    pool_size: 0\n{DEMO}"
    );
    let gw = spawn_with_env(&yaml, &[], "127.0.0.1:0").await;
    let ready = gw.http.get(format!("{}/ready", gw.base)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    let check = body["checks"].as_array().unwrap().iter().find(|c| c["name"] == "sandbox").unwrap().clone();
    assert!(check["reason"].as_str().unwrap().contains("/nonexistent/runsc"), "{body}");
    let answer = gw.call("execute", json!({ "code": "return 1;" })).await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let error = result_json(&answer)["error"].as_str().unwrap().to_owned();
    assert!(error.contains("gvisor") && error.contains("/nonexistent/runsc"), "{error}");
    // Search and describe need no sandbox.
    let found = gw.call("search_tools", json!({ "query": "echo" })).await;
    assert_eq!(result_json(&found)["tools"][0]["tool"], "echo", "{found}");
}
