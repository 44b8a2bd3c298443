//! The command line: validate, config schema, version, and startup errors.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::{path::PathBuf, process::Command};

fn mcpgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcpgate"));
    command.env_remove("PORT").env_remove("MCP_PORT").env_remove("LOG_LEVEL").env_remove("MCP_CONFIG_PATH");
    command.env_remove("MCP_API_KEYS").env_remove("MCP_API_KEY").env_remove("API_KEY_SALT");
    command
}

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "toml" | "json")))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_config_validates() {
    let files = examples();
    assert!(files.len() >= 7, "{files:?}");
    // Examples name files relative to the repository root, where the README runs mcpgate from.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in files {
        let out = mcpgate().current_dir(&root).arg("validate").arg(&file).output().unwrap();
        assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    }
}

#[test]
fn validate_counts_upstreams_beside_backends() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = mcpgate().current_dir(&root).args(["validate", "examples/federation.yaml"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Before, "valid (0 enabled backend(s))": upstreams were not counted.
    assert!(stdout.contains("enabled upstream(s)") && !stdout.contains(" 0 enabled upstream"), "{stdout}");
    // The Claude Desktop spelling counts too.
    let desktop = ["validate", "examples/claude_desktop_config.json"];
    let out = mcpgate().current_dir(&root).args(desktop).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" 1 enabled upstream(s)"), "{stdout}");
}

#[test]
fn validate_warns_of_an_upstream_command_not_on_path_or_an_unset_variable_and_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upstreams.yaml");
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_mcpgate")).parent().unwrap().to_owned();
    let config = format!(
        "upstreams:\n  gone:\n    command: surely-not-installed-here\n  \
         here:\n    command: mcpgate\n    env: {{ PATH: \"${{BIN_DIR}}\" }}\n  \
         relative:\n    command: ./mcpgate\n    cwd: {}\n  \
         remote:\n    url: https://mcp.example.com/mcp\n    headers: {{ Authorization: \"Bearer ${{UNSET_TOKEN}}\" }}\n",
        bin_dir.display()
    );
    std::fs::write(&file, config).unwrap();
    // PATH without the binary: the child's own `env.PATH` and `cwd` are what count for the other two.
    let mut validate = mcpgate();
    validate.env("PATH", "/usr/bin:/bin").env("BIN_DIR", &bin_dir).env_remove("UNSET_TOKEN");
    validate.arg("validate").arg(&file);
    let out = validate.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    // The unset variable is named, as `serve` would fail on it.
    assert!(
        warnings[1].starts_with("warning: upstreams.remote: ") && warnings[1].contains("UNSET_TOKEN"),
        "{stderr}"
    );
    assert!(
        warnings[0]
            .starts_with("warning: upstreams.gone.command: \"surely-not-installed-here\" not found on PATH")
    );
}

#[test]
fn validate_prints_every_problem_with_its_path_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "server:\n  listen: nowhere\n  colour: red\nbackends:\n  a:\n    kind: builtin\n    builtin: demo\n    extra: 1\n  b:\n    kind: magic\n",
    )
    .unwrap();
    let out = mcpgate().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in ["colour", "backends.a", "extra", "backends.b.kind: unknown kind \"magic\""] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn validate_reports_semantic_problems_together() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nlisten = \"nowhere\"\npage_size = 0\n[backends.d]\nkind = \"builtin\"\nbuiltin = \"demo\"\n")
        .unwrap();
    let out = mcpgate().arg("validate").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("server.listen") && stderr.contains("server.page_size"), "{stderr}");
}

#[test]
fn config_schema_is_json_schema_with_docs() {
    let out = mcpgate().args(["config", "schema"]).output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(schema.to_string().contains("Largest request body accepted"));
}

#[test]
fn version_is_printed() {
    let out = mcpgate().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("mcpgate {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_bad_environment_value_stops_startup_naming_the_variable() {
    let out = mcpgate()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("MAX_REQUEST_SIZE", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("env MAX_REQUEST_SIZE"), "{stderr}");
}

/// Send one HTTP/1.1 request over a plain socket; returns the raw response.
fn http(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn json_logs_carry_the_request_id_and_sigterm_exits_zero() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let child = mcpgate()
        .args(["serve", "--listen", &addr])
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut attempts = 0;
    while !std::net::TcpStream::connect(&addr).is_ok_and(|c| c.local_addr().ok() != c.peer_addr().ok()) {
        attempts += 1;
        assert!(attempts < 500, "mcpgate did not start listening within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: echo\r\nX-Request-Id: trace-me-42\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = http(&addr, &request);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.to_ascii_lowercase().contains("x-request-id: trace-me-42"), "{response}");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "SIGTERM must drain and exit 0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let tagged = lines.iter().filter(|l| l.to_string().contains("trace-me-42")).count();
    assert!(tagged >= 1, "no log line carries the request id:\n{stderr}");
}

#[test]
fn validate_reports_handler_problems_all_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tools.yaml");
    let missing_db = dir.path().join("missing.db");
    let yaml = format!(
        r#"backends:
  api:
    kind: http
    tools:
      get_user:
        input_schema: {{ type: object, properties: {{ id: {{ type: string }} }} }}
        call: {{ url: "http://127.0.0.1:9/users/{{{{ user_id }}}}" }}
  cli:
    kind: command
    tools:
      run:
        call: {{ program: no-such-program-mcpgate }}
      listy:
        input_schema: {{ type: array }}
        call: {{ program: sh }}
  db:
    kind: sql
    url: "sqlite:{}"
    database_tools: true
"#,
        missing_db.display()
    );
    std::fs::write(&file, yaml).unwrap();
    let out = mcpgate().arg("validate").arg(&file).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "backends.api.tools.get_user",
        "user_id",
        "backends.cli.tools.run",
        "no-such-program-mcpgate",
        "backends.db",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

/// `mcpgate client ARGS…`: its exit code, stdout and stderr.
fn client(args: &[&str]) -> (Option<i32>, String, String) {
    let out = mcpgate().arg("client").args(args).output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_client_talks_to_a_stdio_server_and_its_exit_code_says_whose_fault() {
    let server = ["--", env!("CARGO_BIN_EXE_mcpgate"), "serve", "--stdio"];
    let with = |args: &[&str]| client(&[args, &server[..]].concat());

    let (code, tools, _) = with(&["tools"]);
    assert_eq!(code, Some(0));
    assert!(tools.starts_with("NAME") && tools.lines().any(|l| l.starts_with("echo ")), "{tools}");
    // `message` is a string in echo's schema: 42 stays text.
    assert_eq!(with(&["call", "echo", "--arg", "message=42"]), (Some(0), "42\n".into(), String::new()));
    let (code, json, _) = with(&["call", "add", "--arg", "a=2", "--arg", "b=3", "--json"]);
    assert_eq!(code, Some(0));
    let answer: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(answer["structuredContent"]["sum"], 5, "{json}");

    // The server answered, with an error: 1. Nothing to talk to: 3.
    let (code, _, stderr) = with(&["call", "no_such_tool"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown tool: no_such_tool"), "{stderr}");
    let (code, _, stderr) = client(&["tools", "--", "/surely/not/a/server"]);
    assert_eq!(code, Some(3));
    assert!(stderr.contains("cannot connect") && stderr.contains("/surely/not/a/server"), "{stderr}");
    let (code, _, stderr) = client(&["tools"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--url"), "{stderr}");
}

#[test]
fn the_client_talks_to_an_http_server_of_the_stateless_era() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut server = mcpgate().args(["serve", "--listen", &listen]).stderr(log).spawn().unwrap();
    let url = format!("http://{listen}/mcp");
    let mut info = client(&["info", "--url", &url]);
    for _ in 0..500 {
        if info.0 != Some(3) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        info = client(&["info", "--url", &url]);
    }
    let _ = server.kill();
    let _ = server.wait();
    let (code, text, stderr) = info;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(text.contains("server:        mcpgate") && text.contains("protocol:      2026-07-28"), "{text}");
    assert!(text.contains("tools:         4"), "{text}");
}
