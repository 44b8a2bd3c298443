//! `mcpgate keys new` round-trips: the printed key authenticates against a gateway configured with the printed
//! line, in both hash forms; `MCP_API_KEYS` works on the real binary.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::{path::Path, process::Command, time::Duration};

use serde_json::json;
use support::{BIN, modern_with, serve_with_env};

/// `mcpgate keys new ARGS` with `env`: the key and the config line.
fn keys_new(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut command = Command::new(BIN);
    command.env_remove("API_KEY_SALT").env_remove("MCP_API_KEYS").env_remove("MCP_API_KEY");
    let out = command.envs(env.iter().copied()).args(["keys", "new"]).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    (lines[0].to_owned(), lines[1].to_owned())
}

/// A demo config whose only key is `line`.
fn config_with(dir: &Path, line: &str) -> std::path::PathBuf {
    let file = dir.join("keys.yaml");
    let yaml = format!(
        "security:\n  api_keys:\n    {line}\nbackends:\n  demo:\n    kind: builtin\n    builtin: demo\n"
    );
    std::fs::write(&file, yaml).unwrap();
    file
}

/// Status and echoed text of an `echo` call with `headers`.
fn echo(addr: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let args = json!({ "name": "echo", "arguments": { "message": "hi" } });
    let (status, message) = modern_with(addr, headers, "tools/call", Some("echo"), args).unwrap();
    (status, message["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn a_new_sha256_key_authenticates_with_its_printed_line() {
    let (key, line) = keys_new(&["--name", "ci-bot", "--tier", "free", "--tools", "echo", "add"], &[]);
    assert!(key.starts_with("mcpg_") && key.len() == 5 + 43, "{key}");
    assert!(line.starts_with(r#"- { name: "ci-bot", hash: "sha256:"#), "{line}");
    assert!(line.contains(r#"tier: "free""#) && line.contains(r#"tools: ["echo","add"]"#), "{line}");
    assert!(!line.contains(&key));

    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), &line);
    let (_gateway, addr) =
        serve_with_env(Some(&config), &dir.path().join("log"), Duration::from_secs(20), &[]);
    assert_eq!(echo(&addr, &[("x-api-key", &key)]), (200, "hi".into()));
    assert_eq!(echo(&addr, &[("Authorization", &format!("Bearer {key}"))]), (200, "hi".into()));
    assert_eq!(echo(&addr, &[]).0, 401);
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(!log.contains(&key), "the key reached the log:\n{log}");
}

#[test]
fn a_new_key_made_with_api_key_salt_needs_the_same_salt() {
    let salt = [("API_KEY_SALT", "pepper")];
    let (key, line) =
        keys_new(&["--name", "ops", "--tier", "paid", "--expires", "2999-01-01T00:00:00Z"], &salt);
    assert!(line.contains(r#"hash: "hmac-sha256:"#) && line.contains(r#"expires: "2999-01-01T00:00:00Z""#));

    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), &line);
    let within = Duration::from_secs(20);
    let (_gateway, addr) = serve_with_env(Some(&config), &dir.path().join("log"), within, &salt);
    assert_eq!(echo(&addr, &[("x-api-key", &key)]), (200, "hi".into()));
    assert_eq!(echo(&addr, &[("x-api-key", "mcpg_not-the-key")]).0, 401);

    // Without the salt the config is refused at startup, naming the variable.
    let out = Command::new(BIN).env_remove("API_KEY_SALT").arg("validate").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("security.api_keys.0.hash") && stderr.contains("API_KEY_SALT"), "{stderr}");
}

#[test]
fn keys_new_refuses_what_validate_would() {
    for (args, says) in [
        (&["--name", "two words", "--tier", "t"][..], "key names may hold only"),
        (&["--name", "ci", "--tier", " "], "must not be empty"),
        (&["--name", "ci", "--tier", "t", "--expires", "soon"], "RFC 3339"),
        (&["--name", "ci", "--tier", "t", "--expires", "2001-01-01T00:00:00Z"], "already past"),
        (&["--name", "ci"], "--tier"),
    ] {
        let out = Command::new(BIN).args(["keys", "new"]).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: a key was printed");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn mcp_api_keys_protects_the_default_config() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("MCP_API_KEYS", "dev-key-12345,prod-key-2")];
    let (_gateway, addr) = serve_with_env(None, &dir.path().join("log"), Duration::from_secs(20), &env);
    assert_eq!(echo(&addr, &[("x-api-key", "prod-key-2")]), (200, "hi".into()));
    assert_eq!(echo(&addr, &[("x-api-key", "dev-key-1234")]).0, 401);
    assert_eq!(echo(&addr, &[]).0, 401);
}
