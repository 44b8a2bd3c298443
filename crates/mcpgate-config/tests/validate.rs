//! The validator reports every problem at once, each with its path.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use mcpgate_config::{ConfigError, Format, UpstreamTransport, default_config, parse_str, schema};

fn problems(yaml: &str) -> Vec<String> {
    match parse_str(yaml, Format::Yaml, "test.yaml") {
        Err(ConfigError::Invalid { problems, .. }) => problems.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn embedded_default_is_valid_and_serves_demo_tools() {
    let config = default_config().unwrap();
    assert!(config.backends.contains_key("demo"));
    assert_eq!(config.server.listen, "127.0.0.1:8000");
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let found = problems(
        r#"
server:
  listen: 127.0.0.1:8000
  page_sise: 10
  max_request_size: lots
logging:
  format: xml
backends:
  demo:
    kind: builtin
    builtin: demo
    colour: blue
  other:
    kind: builtin
    builtin: nope
"#,
    );
    let text = found.join("\n");
    assert!(text.contains("server:") && text.contains("page_sise"), "{text}");
    assert!(text.contains("server.max_request_size"), "{text}");
    assert!(text.contains("logging.format"), "{text}");
    assert!(text.contains("backends.demo") && text.contains("colour"), "{text}");
    assert!(text.contains("backends.other.builtin"), "{text}");
    assert_eq!(found.len(), 5, "{text}");
}

#[test]
fn unknown_backend_kind_names_the_choices() {
    let found = problems("backends:\n  x:\n    kind: telepathy\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("backends.x.kind: unknown kind \"telepathy\""), "{found:?}");
    assert!(found[0].contains("builtin"), "{found:?}");
}

#[test]
fn semantic_problems_are_collected() {
    let found = problems(
        "server:\n  listen: nowhere\n  page_size: 0\nbackends:\n  bad.name:\n    kind: builtin\n    builtin: demo\n",
    );
    let text = found.join("\n");
    assert!(text.contains("server.listen"), "{text}");
    assert!(text.contains("server.page_size"), "{text}");
    assert!(text.contains("backends.bad.name"), "{text}");
}

#[test]
fn connection_limits_are_defaulted_and_must_be_positive() {
    let server = default_config().unwrap().server;
    assert_eq!(
        (server.header_read_timeout.0.as_secs(), server.idle_timeout.0.as_secs(), server.max_connections),
        (10, 65, 10_000)
    );
    let found = problems(
        "server:\n  header_read_timeout: 0s\n  idle_timeout: 0ms\n  max_connections: 0\nbackends:\n  demo:\n    kind: builtin\n    builtin: demo\n",
    );
    let text = found.join("\n");
    for path in ["server.header_read_timeout", "server.idle_timeout", "server.max_connections"] {
        assert!(text.contains(path), "{path}: {text}");
    }
    assert_eq!(found.len(), 3, "{text}");
}

#[test]
fn syntax_errors_carry_a_location() {
    match parse_str("server: [unclosed", Format::Yaml, "x.yaml") {
        Err(ConfigError::Syntax { message, .. }) => assert!(message.contains("line"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn toml_and_json_parse_to_the_same_config() {
    let yaml =
        parse_str("backends:\n  d:\n    kind: builtin\n    builtin: demo\n", Format::Yaml, "a").unwrap();
    let toml =
        parse_str("[backends.d]\nkind = \"builtin\"\nbuiltin = \"demo\"\n", Format::Toml, "b").unwrap();
    let json =
        parse_str(r#"{"backends":{"d":{"kind":"builtin","builtin":"demo"}}}"#, Format::Json, "c").unwrap();
    assert_eq!(yaml, toml);
    assert_eq!(yaml, json);
}

#[test]
fn schema_documents_fields() {
    let schema = schema().to_string();
    assert!(schema.contains("Largest request body accepted"));
    assert!(schema.contains("\"builtin\""));
}

#[test]
fn declared_tools_are_checked_for_names_schemas_and_fields() {
    let found = problems(
        r#"
backends:
  api:
    kind: http
    tools:
      "bad name":
        call: { url: "http://localhost/" }
      no_object:
        input_schema: { type: array }
        call: { url: "http://localhost/" }
      broken_schema:
        input_schema: { type: object, properties: { a: { type: 12 } } }
        call: { url: "http://localhost/" }
  db:
    kind: sql
    url: "sqlite::memory:"
    max_rows: 0
"#,
    );
    let text = found.join("\n");
    assert!(text.contains("backends.api.tools.bad name"), "{text}");
    assert!(text.contains("backends.api.tools.no_object.input_schema"), "{text}");
    assert!(text.contains("backends.db") && text.contains("no tools"), "{text}");
    assert!(text.contains("backends.db.max_rows"), "{text}");
}

#[test]
fn unknown_fields_inside_a_tool_call_are_reported() {
    let found = problems(
        "backends:\n  api:\n    kind: http\n    tools:\n      t:\n        call: { url: \"http://x/\", methd: GET }\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("backends.api.tools.t.call") && found[0].contains("methd"), "{found:?}");
}

#[test]
fn a_claude_desktop_file_is_a_complete_config() {
    let json = r#"{ "mcpServers": {
        "filesystem": { "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
                        "env": { "DEBUG": "1" } },
        "remote": { "type": "http", "url": "https://example.com/mcp", "headers": { "authorization": "Bearer x" } }
    } }"#;
    let config = parse_str(json, Format::Json, "claude_desktop_config.json").unwrap();
    let upstreams: Vec<_> = config.all_upstreams().map(|(name, u)| (name.as_str(), u.transport())).collect();
    assert_eq!(
        upstreams,
        [("filesystem", Some(UpstreamTransport::Stdio)), ("remote", Some(UpstreamTransport::Http))]
    );
    assert!(config.backends.is_empty());
}

#[test]
fn upstream_problems_are_reported_with_their_paths() {
    let found = problems(
        r#"
backends:
  fs: { kind: builtin, builtin: demo }
upstreams:
  fs: { command: x }
  nothing: {}
  both: { command: x, url: "http://h/mcp" }
  old: { type: sse }
  sse: { type: sse, url: "http://h/sse" }
  ftp: { url: "ftp://h/mcp" }
  named:
    command: x
    tools: { rename: { read: "bad name" } }
mcpServers:
  named: { command: y }
"#,
    );
    let text = found.join("\n");
    assert!(!text.contains("upstreams.sse"), "{text}");
    for expected in [
        "upstreams.fs: a backend has the same name",
        "upstreams.nothing: give command",
        "upstreams.both: give either command",
        "upstreams.old.url: the HTTP transport needs a url",
        "upstreams.ftp.url",
        "upstreams.named.tools.rename.read",
        "mcpServers.named: also defined under upstreams",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn security_problems_are_reported_with_their_paths() {
    let sha = mcpgate_config::KeyHash::sha256("k").to_string();
    let found = problems(&format!(
        r#"
security:
  allowed_ips: ["10.0.0.0/8", "not-an-ip"]
  trusted_proxies: ["2001:db8::/129"]
  api_keys:
    - {{ name: ci, hash: "{sha}" }}
    - {{ name: ci, hash: "{sha}", expires: tomorrow }}
    - {{ name: "bad name", hash: "md5:00" }}
    - {{ name: h, hash: "hmac-sha256:{zeros}", tier: "", tools: [""] }}
backends:
  demo:
    kind: builtin
    builtin: demo
"#,
        zeros = "0".repeat(64)
    ));
    let text = found.join("\n");
    for expected in [
        "security.allowed_ips.1: \"not-an-ip\" is not an IP address or CIDR",
        "security.trusted_proxies.0:",
        "security.api_keys.1.name: \"ci\" also names security.api_keys.0",
        "security.api_keys.1.hash: the same key as security.api_keys.0",
        "security.api_keys.1.expires: \"tomorrow\" is not an RFC 3339 time",
        "security.api_keys.2.name: key names may hold only",
        "security.api_keys.2.hash: unknown hash method \"md5\"",
        "security.api_keys.3.hash: an hmac-sha256 hash needs API_KEY_SALT",
        "security.api_keys.3.tier: must not be empty",
        "security.api_keys.3.tools.0: an empty glob",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(found.len(), 10, "{text}");
}

#[test]
fn hmac_hashes_are_valid_once_the_salt_is_in_the_environment() {
    let hash = mcpgate_config::KeyHash::hmac_sha256("pepper", "k").to_string();
    let yaml = format!(
        "security:\n  api_keys:\n    - {{ name: ci, hash: \"{hash}\", tier: paid, tools: [\"search_*\"], expires: \"2099-01-01T00:00:00Z\" }}\nbackends:\n  demo:\n    kind: builtin\n    builtin: demo\n"
    );
    let mut config = mcpgate_config::parse_str_unchecked(&yaml, Format::Yaml, "test.yaml").unwrap();
    assert_eq!(mcpgate_config::validate(&config).len(), 1);
    let env =
        mcpgate_config::apply_env(&mut config, |name| (name == "API_KEY_SALT").then(|| "pepper".into()));
    assert!(env.is_empty(), "{env:?}");
    assert_eq!(mcpgate_config::validate(&config), vec![]);
    assert_eq!(config.security.api_keys[0].tools, ["search_*"]);
}

#[test]
fn refusing_anonymous_without_any_key_locks_everyone_out() {
    let found = problems(
        "security:\n  allow_anonymous: false\nbackends:\n  d:\n    kind: builtin\n    builtin: demo\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("security.allow_anonymous: false with no api_keys"), "{found:?}");
}

#[test]
fn a_clear_key_in_the_file_is_not_a_hash() {
    let found = problems(
        "security:\n  api_keys:\n    - { name: ci, hash: my-secret-key }\nbackends:\n  d:\n    kind: builtin\n    builtin: demo\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("security.api_keys.0.hash: expected sha256:"), "{found:?}");
    assert!(!found[0].contains("my-secret-key"), "{found:?}");
}

/// serde's derived structs take an array of their fields in order; the documented shape (the schema) does not,
/// and neither does the loader (found by the config fuzz target: `server: ["…"]` loaded as a listen address).
#[test]
fn an_array_where_a_section_belongs_is_refused() {
    let found =
        problems("server:\n  - 127.0.0.1:9000\nbackends:\n  demo: { kind: builtin, builtin: demo }\n");
    assert!(
        found.iter().any(|p| p.starts_with("server") && p.contains("not of type \"object\"")),
        "{found:?}"
    );
    let found = problems("code_mode: [code]\nbackends:\n  demo: { kind: builtin, builtin: demo }\n");
    assert!(found.iter().any(|p| p.starts_with("code_mode")), "{found:?}");
    // Arrays where the types have them still load, with or without the schema pass.
    let yaml = "server:\n  allowed_hosts: [a.example, b.example]\ncode_mode:\n  direct_tools: [now]\nbackends:\n  demo: { kind: builtin, builtin: demo }\n";
    let config = parse_str(yaml, Format::Yaml, "test.yaml").unwrap();
    assert_eq!(config.server.allowed_hosts, ["a.example", "b.example"]);
    assert_eq!(config.code_mode.direct_tools, ["now"]);
}

/// An empty YAML value is null, which an optional section takes as unset — the schema too (found by the config
/// fuzz target: `per_ip:` with nothing after it loaded, and the schema refused it).
#[test]
fn an_empty_optional_limit_is_unset() {
    let yaml = "rate_limits:\n  per_ip:\n  global: { requests: 100, per: 1m }\nbackends:\n  demo: { kind: builtin, builtin: demo }\n";
    let config = parse_str(yaml, Format::Yaml, "test.yaml").unwrap();
    assert!(config.rate_limits.per_ip.is_none() && config.rate_limits.global.is_some());
    let document: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let problems: Vec<String> = validator.iter_errors(&document).map(|e| e.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}");
}
