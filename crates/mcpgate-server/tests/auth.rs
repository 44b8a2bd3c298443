//! Who may use `/mcp`, end to end over HTTP: API keys in both headers and both hash forms, `MCP_API_KEYS`,
//! expiry, the anonymous rule, the IP allowlist over IPv4 and IPv6, and `X-Forwarded-For` believed only from a
//! trusted proxy.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{DEMO, TestGateway, spawn, spawn_with_env};
use mcpgate_config::KeyHash;
use serde_json::{Value, json};

const V4: &str = "127.0.0.1:0";
const V6: &str = "[::1]:0";

/// The answer to one stateless `tools/call` of `echo`: status, `WWW-Authenticate`, the JSON-RPC message.
struct Answer {
    status: u16,
    challenge: Option<String>,
    message: Value,
}

impl Answer {
    fn echoed(&self) -> bool {
        self.status == 200 && self.message["result"]["content"][0]["text"] == "hi"
    }

    fn refused(&self, status: u16, code: i64) -> bool {
        self.status == status && self.message["error"]["code"] == code && self.message["id"].is_null()
    }
}

async fn call(gw: &TestGateway, extra: &[(&str, &str)]) -> Answer {
    let params = json!({ "name": "echo", "arguments": { "message": "hi" } });
    let response = gw.modern_request("tools/call", Some("echo"), params, extra).send().await.unwrap();
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (challenge, content_type) = (header("www-authenticate"), header("content-type").unwrap_or_default());
    let message =
        common::messages(&content_type, &response.text().await.unwrap()).pop().unwrap_or(Value::Null);
    Answer { status, challenge, message }
}

/// A demo gateway with `security` given as YAML lines (indented two spaces).
fn with_security(security: &str) -> String {
    format!("security:\n{security}\n{DEMO}")
}

fn key_line(name: &str, hash: &KeyHash, extra: &str) -> String {
    format!("    - {{ name: {name}, hash: \"{hash}\"{extra} }}")
}

#[tokio::test]
async fn sha256_key_in_either_header_is_admitted_and_no_wrong_or_missing_key_is() {
    let config =
        with_security(&format!("  api_keys:\n{}", key_line("ci", &KeyHash::sha256("s3cret-key"), "")));
    let gw = spawn_with_env(&config, &[], V4).await;

    assert!(call(&gw, &[("x-api-key", "s3cret-key")]).await.echoed());
    assert!(call(&gw, &[("authorization", "Bearer s3cret-key")]).await.echoed());

    let missing = call(&gw, &[]).await;
    assert!(missing.refused(401, -32004), "{}", missing.message);
    assert_eq!(missing.challenge.as_deref(), Some(r#"Bearer realm="mcpgate""#));
    assert!(missing.message["error"]["message"].as_str().unwrap().contains("API key is required"));

    for wrong in [
        &[("x-api-key", "s3cret-kez")][..],
        &[("authorization", "Bearer nope")],
        &[("authorization", "Basic czNjcmV0LWtleQ==")],
    ] {
        let answer = call(&gw, wrong).await;
        assert_eq!(answer.status, 401, "{wrong:?}");
        let challenge = answer.challenge.unwrap();
        let is_basic = wrong[0].1.starts_with("Basic");
        // A Basic credential is not an API key at all: the bare challenge, as for none.
        assert_eq!(challenge.contains(r#"error="invalid_token""#), !is_basic, "{wrong:?}: {challenge}");
    }

    // The protocol layer's path (tools/list is not on the fast path) is guarded too.
    let list = gw.modern("tools/list", None, json!({})).await;
    assert_eq!((list.0, &list.1["error"]["code"]), (401, &json!(-32004)));

    // Operators' endpoints stay open.
    for path in ["/health", "/ready", "/status"] {
        let status = gw.http.get(format!("{}{path}", gw.base)).send().await.unwrap().status();
        assert_eq!(status, 200, "{path}");
    }
}

#[tokio::test]
async fn hmac_key_needs_the_salt_it_was_made_with() {
    let hash = KeyHash::hmac_sha256("pepper", "salted-key");
    let config = with_security(&format!("  api_keys:\n{}", key_line("ci", &hash, ", tier: paid")));
    let gw = spawn_with_env(&config, &[("API_KEY_SALT", "pepper")], V4).await;
    assert!(call(&gw, &[("x-api-key", "salted-key")]).await.echoed());
    assert_eq!(call(&gw, &[("x-api-key", &KeyHash::sha256("salted-key").to_string())]).await.status, 401);

    let other_salt = spawn_with_env(&config, &[("API_KEY_SALT", "paprika")], V4).await;
    let refused = call(&other_salt, &[("x-api-key", "salted-key")]).await;
    assert!(refused.refused(401, -32004) && refused.challenge.unwrap().contains("invalid_token"));
}

#[tokio::test]
async fn an_expired_key_is_refused_and_says_so() {
    let lines = [
        key_line("old", &KeyHash::sha256("old-key"), ", expires: \"2020-01-01T00:00:00Z\""),
        key_line("new", &KeyHash::sha256("new-key"), ", expires: \"2999-01-01T00:00:00+02:00\""),
    ];
    let gw = spawn_with_env(&with_security(&format!("  api_keys:\n{}", lines.join("\n"))), &[], V4).await;
    let expired = call(&gw, &[("x-api-key", "old-key")]).await;
    assert!(expired.refused(401, -32004), "{}", expired.message);
    assert!(
        expired
            .challenge
            .unwrap()
            .contains(r#"error="invalid_token", error_description="the API key has expired""#)
    );
    assert!(call(&gw, &[("x-api-key", "new-key")]).await.echoed());
}

#[tokio::test]
async fn mcp_api_keys_from_the_environment_admit_each_key_and_end_anonymous_access() {
    let gw = spawn_with_env(DEMO, &[("MCP_API_KEYS", "prod-key-1, prod-key-2")], V4).await;
    assert!(call(&gw, &[("x-api-key", "prod-key-1")]).await.echoed());
    assert!(call(&gw, &[("authorization", "Bearer prod-key-2")]).await.echoed());
    assert_eq!(call(&gw, &[("x-api-key", "prod-key-3")]).await.status, 401);
    assert_eq!(call(&gw, &[]).await.status, 401);
}

#[tokio::test]
async fn anonymous_access_follows_the_rule() {
    // No key anywhere: anonymous, as the embedded default serves.
    let open = spawn(DEMO).await;
    assert!(call(&open, &[]).await.echoed());

    // Keys, and anonymous allowed explicitly: no key passes, a wrong key still does not.
    let key = key_line("ci", &KeyHash::sha256("k"), "");
    let both =
        spawn_with_env(&with_security(&format!("  allow_anonymous: true\n  api_keys:\n{key}")), &[], V4)
            .await;
    assert!(call(&both, &[]).await.echoed());
    assert!(call(&both, &[("x-api-key", "k")]).await.echoed());
    assert_eq!(call(&both, &[("x-api-key", "wrong")]).await.status, 401);

    // Keys and nothing said: anonymous refused.
    let closed = spawn_with_env(&with_security(&format!("  api_keys:\n{key}")), &[], V4).await;
    assert_eq!(call(&closed, &[]).await.status, 401);
}

#[tokio::test]
async fn the_ip_allowlist_admits_and_refuses_ipv4_clients() {
    let inside =
        spawn_with_env(&with_security("  allowed_ips: [\"10.0.0.0/8\", \"127.0.0.0/8\"]"), &[], V4).await;
    assert!(call(&inside, &[]).await.echoed());

    let outside = spawn_with_env(&with_security("  allowed_ips: [\"10.0.0.0/8\", \"::1\"]"), &[], V4).await;
    let refused = call(&outside, &[]).await;
    assert!(refused.refused(403, -32600), "{}", refused.message);
    assert!(refused.message["error"]["message"].as_str().unwrap().contains("127.0.0.1 is not allowed"));
    // Refused before the key is looked at, and ops endpoints stay reachable.
    assert_eq!(call(&outside, &[("x-api-key", "anything")]).await.status, 403);
    assert_eq!(outside.http.get(format!("{}/health", outside.base)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_ip_allowlist_admits_and_refuses_ipv6_clients() {
    let host = "  allowed_ips: [\"::1/128\"]\nserver:\n  allowed_hosts: [\"*\"]";
    let inside = spawn_with_env(&format!("security:\n{host}\n{DEMO}"), &[], V6).await;
    assert!(inside.url.starts_with("http://[::1]:"), "{}", inside.url);
    assert!(call(&inside, &[]).await.echoed());

    let host = "  allowed_ips: [\"2001:db8::/32\", \"127.0.0.1\"]\nserver:\n  allowed_hosts: [\"*\"]";
    let outside = spawn_with_env(&format!("security:\n{host}\n{DEMO}"), &[], V6).await;
    let refused = call(&outside, &[]).await;
    assert!(refused.refused(403, -32600), "{}", refused.message);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    // The test client is the "proxy" at 127.0.0.1; the real clients live in 203.0.113.0/24.
    let trusted =
        "  trusted_proxies: [\"127.0.0.1\"]\n  allowed_ips: [\"203.0.113.0/24\", \"2001:db8::/32\"]";
    let gw = spawn_with_env(&with_security(trusted), &[], V4).await;
    assert!(call(&gw, &[("x-forwarded-for", "203.0.113.7")]).await.echoed());
    assert!(call(&gw, &[("x-forwarded-for", "2001:db8::7")]).await.echoed());
    assert!(call(&gw, &[("x-real-ip", "203.0.113.8")]).await.echoed());
    // The proxy itself is not an allowed client.
    assert_eq!(call(&gw, &[]).await.status, 403);
    // A client that prepends an allowed address gains nothing: the right-most untrusted hop counts.
    let spoofed = call(&gw, &[("x-forwarded-for", "203.0.113.7, 198.51.100.1")]).await;
    assert!(spoofed.refused(403, -32600), "{}", spoofed.message);
    assert!(spoofed.message["error"]["message"].as_str().unwrap().contains("198.51.100.1"));

    // From a peer that is not a trusted proxy the same headers are ignored.
    let untrusted = "  trusted_proxies: [\"10.0.0.0/8\"]\n  allowed_ips: [\"203.0.113.0/24\"]";
    let gw = spawn_with_env(&with_security(untrusted), &[], V4).await;
    for header in ["x-forwarded-for", "x-real-ip"] {
        let spoofed = call(&gw, &[(header, "203.0.113.7")]).await;
        assert!(spoofed.refused(403, -32600), "{header}: {}", spoofed.message);
        assert!(spoofed.message["error"]["message"].as_str().unwrap().contains("127.0.0.1"));
    }
}

#[tokio::test]
async fn address_and_key_are_both_required_when_both_are_configured() {
    let key = key_line("ci", &KeyHash::sha256("k"), "");
    let config = with_security(&format!("  allowed_ips: [\"127.0.0.1/32\"]\n  api_keys:\n{key}"));
    let gw = spawn_with_env(&config, &[], V4).await;
    assert!(call(&gw, &[("x-api-key", "k")]).await.echoed());
    assert_eq!(call(&gw, &[]).await.status, 401);
}

#[tokio::test]
async fn a_key_sees_and_calls_only_the_tools_its_globs_name_others_are_unknown_to_it() {
    let lines = [
        key_line("adder", &KeyHash::sha256("adder-key"), ", tools: [\"ad?\"]"),
        key_line("ops", &KeyHash::sha256("ops-key"), ""),
    ];
    let gw = spawn_with_env(&with_security(&format!("  api_keys:\n{}", lines.join("\n"))), &[], V4).await;
    let list = |key: &'static str| {
        let request = gw.modern_request("tools/list", None, json!({}), &[("x-api-key", key)]);
        async move {
            let answer: Value = request.send().await.unwrap().json().await.unwrap();
            let names: Vec<String> = answer["result"]["tools"]
                .as_array()
                .unwrap_or_else(|| panic!("{answer}"))
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect();
            (names, answer["result"]["cacheScope"].clone())
        }
    };
    let (names, scope) = list("adder-key").await;
    assert_eq!(names, ["add"]);
    assert_eq!(scope, "private", "a list that depends on the caller is not shared");
    let (names, _) = list("ops-key").await;
    assert!(names.len() >= 4 && names.iter().any(|n| n == "echo"), "{names:?}");

    // Calling a tool outside the key's globs is answered as for a tool that does not exist, on both paths.
    let unknown = call(&gw, &[("x-api-key", "adder-key")]).await;
    assert!(!unknown.echoed(), "{}", unknown.message);
    let nonexistent = gw.modern_request(
        "tools/call",
        Some("no_such_tool"),
        json!({ "name": "no_such_tool", "arguments": {} }),
        &[("x-api-key", "adder-key")],
    );
    let nonexistent: Value = nonexistent.send().await.unwrap().json().await.unwrap();
    assert_eq!(unknown.message["error"]["code"], nonexistent["error"]["code"], "{}", unknown.message);
    assert!(unknown.message["error"]["message"].as_str().unwrap().contains("echo"), "{}", unknown.message);
    let slow = call(
        &gw,
        &[
            ("x-api-key", "adder-key"),
            ("origin", &format!("http://localhost:{}", gw.server.local_addr.port())),
        ],
    )
    .await;
    assert_eq!(slow.message["error"]["code"], nonexistent["error"]["code"], "{}", slow.message);

    let add = gw.modern_request(
        "tools/call",
        Some("add"),
        json!({ "name": "add", "arguments": { "a": 1, "b": 2 } }),
        &[("x-api-key", "adder-key")],
    );
    let add: Value = add.send().await.unwrap().json().await.unwrap();
    assert_eq!(add["result"]["content"][0]["text"], "3", "{add}");
    assert!(call(&gw, &[("x-api-key", "ops-key")]).await.echoed());
}
