//! JWT bearer tokens and the OAuth protected-resource metadata, end to end over HTTP: HS256 from `JWT_SECRET`,
//! RS256 from a PEM file and from a JWKS served by a real HTTP server in the test (key rotation, unknown key ids,
//! the issuer out of reach), issuer / audience / expiry checks, algorithm confusion, the tools claim, and the
//! metadata document with its `resource_metadata` challenge.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{Json, Router, extract::State, routing::get};
use common::{DEMO, TestGateway, spawn_with_env};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use mcpgate_config::KeyHash;
use parking_lot::Mutex;
use serde_json::{Value, json};

const V4: &str = "127.0.0.1:0";
const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const ISSUER: &str = "https://idp.example.com";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt").join(name)
}

fn private_key(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(fixture(&format!("rsa_{name}.key"))).unwrap()).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims of a good token for `sub`, merged with `extra`.
fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({ "sub": sub, "iss": ISSUER, "aud": "mcpgate", "exp": now() + 600 });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn rs256(claims: &Value, key: &str, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &private_key(key)).unwrap()
}

/// The answer to one stateless `tools/call` of `echo`.
struct Answer {
    status: u16,
    challenge: String,
    message: Value,
}

impl Answer {
    fn echoed(&self) -> bool {
        self.status == 200 && self.message["result"]["content"][0]["text"] == "hi"
    }

    /// A 401 whose challenge and message carry `says`.
    fn refused_saying(&self, says: &str) -> bool {
        self.status == 401
            && self.message["error"]["code"] == -32004
            && self.challenge.contains(r#"error="invalid_token""#)
            && self.challenge.contains(says)
            && self.message["error"]["message"].as_str().unwrap_or("").contains(says)
    }
}

async fn call(gw: &TestGateway, token: &str) -> Answer {
    let params = json!({ "name": "echo", "arguments": { "message": "hi" } });
    let bearer = format!("Bearer {token}");
    let extra: &[(&str, &str)] = if token.is_empty() { &[] } else { &[("authorization", &bearer)] };
    let response = gw.modern_request("tools/call", Some("echo"), params, extra).send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let message = common::messages(&content_type.unwrap_or_default(), &text).pop().unwrap_or(Value::Null);
    Answer { status, challenge, message }
}

fn with_security(security: &str) -> String {
    format!("security:\n{security}\n{DEMO}")
}

#[tokio::test]
async fn hs256_tokens_from_jwt_secret_are_checked_for_expiry_issuer_audience_and_signature() {
    let config = with_security(&format!(
        "  jwt:\n    issuers: [\"{ISSUER}\"]\n    audiences: [mcpgate]\n    leeway: 0s\n  api_keys:\n    - {{ name: ci, hash: \"{}\" }}",
        KeyHash::sha256("plain-api-key")
    ));
    let gw = spawn_with_env(&config, &[("JWT_SECRET", SECRET)], V4).await;

    assert!(call(&gw, &hs256(&claims("alice", json!({})), SECRET.as_bytes())).await.echoed());
    // Both authenticators configured: an API key still admits, in either header.
    assert!(call(&gw, "plain-api-key").await.echoed());

    let refusals = [
        (claims("alice", json!({ "exp": now() - 30 })), SECRET, "the token has expired"),
        (
            claims("alice", json!({ "iss": "https://evil.example.com" })),
            SECRET,
            "issuer (iss) is not accepted",
        ),
        (claims("alice", json!({ "aud": "billing-api" })), SECRET, "not issued for this server (aud)"),
        (claims("alice", json!({})), "another-secret-also-32-bytes-long!!!", "signature does not verify"),
    ];
    for (claims, secret, says) in refusals {
        let answer = call(&gw, &hs256(&claims, secret.as_bytes())).await;
        assert!(
            answer.refused_saying(says),
            "{says}: {} {} {}",
            answer.status,
            answer.challenge,
            answer.message
        );
    }
    // No credential: the bare challenge; JWT configured means no anonymous access.
    let none = call(&gw, "").await;
    assert_eq!((none.status, none.challenge.as_str()), (401, r#"Bearer realm="mcpgate""#));

    // Refusals are counted under the closed reason set.
    let metrics = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    let line =
        metrics.lines().find(|l| l.starts_with("mcp_auth_failures_total{reason=\"invalid_key\"}")).unwrap();
    assert!(line.ends_with(" 3"), "{line}");
    let line =
        metrics.lines().find(|l| l.starts_with("mcp_auth_failures_total{reason=\"expired_key\"}")).unwrap();
    assert!(line.ends_with(" 1"), "{line}");
}

#[tokio::test]
async fn rs256_from_a_pem_file_refuses_algorithm_confusion() {
    let pem = fixture("rsa_a.pub");
    let config =
        with_security(&format!("  jwt:\n    public_key_file: {}\n    audiences: [mcpgate]", pem.display()));
    let gw = spawn_with_env(&config, &[], V4).await;
    assert!(call(&gw, &rs256(&claims("svc", json!({})), "a", None)).await.echoed());
    // Signed by another key pair.
    let other = call(&gw, &rs256(&claims("svc", json!({})), "b", None)).await;
    assert!(other.refused_saying("signature does not verify"), "{}", other.message);
    // The classic attack: HS256 with the (public) RSA key as the HMAC secret.
    let public_pem = std::fs::read(&pem).unwrap();
    let confused = call(&gw, &hs256(&claims("svc", json!({})), &public_pem)).await;
    assert!(confused.refused_saying("algorithm is not accepted"), "{}", confused.message);

    // With HS256 accepted too (its own secret), the public key is still no HMAC key.
    let both = spawn_with_env(&config, &[("JWT_SECRET", SECRET)], V4).await;
    let answer = call(&both, &hs256(&claims("svc", json!({})), SECRET.as_bytes())).await;
    assert!(answer.echoed(), "{} {}", answer.status, answer.message);
    assert!(call(&both, &rs256(&claims("svc", json!({})), "a", None)).await.echoed());
    let confused = call(&both, &hs256(&claims("svc", json!({})), &public_pem)).await;
    assert!(confused.refused_saying("signature does not verify"), "{}", confused.message);
}

/// A JWKS endpoint: the keys it publishes can be swapped, and it counts the fetches.
struct Issuer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

fn jwk(key: &str, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&private_key(key), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

async fn issuer(keys: Vec<Value>) -> Issuer {
    type Shared = (Arc<Mutex<Vec<Value>>>, Arc<AtomicUsize>);
    let shared: Shared = (Arc::new(Mutex::new(keys)), Arc::default());
    let serve = |State((keys, fetches)): State<Shared>| async move {
        fetches.fetch_add(1, Ordering::SeqCst);
        Json(json!({ "keys": *keys.lock() }))
    };
    let app = Router::new().route("/jwks", get(serve)).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Issuer { url, keys: shared.0, fetches: shared.1 }
}

fn jwks_config(url: &str, min_refresh: &str) -> String {
    with_security(&format!(
        "  jwt:\n    jwks_url: \"{url}\"\n    jwks_min_refresh: {min_refresh}\n    issuers: [\"{ISSUER}\"]\n    audiences: [mcpgate]"
    ))
}

#[tokio::test]
async fn a_jwks_is_fetched_once_cached_and_refetched_for_a_rotated_key_but_not_for_every_unknown_kid() {
    let idp = issuer(vec![jwk("a", "key-a")]).await;
    let gw = spawn_with_env(&jwks_config(&idp.url, "300ms"), &[], V4).await;
    let token = |key: &str, kid: &str| rs256(&claims("svc", json!({})), key, Some(kid));

    for _ in 0..3 {
        assert!(call(&gw, &token("a", "key-a")).await.echoed());
    }
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 1, "cached after the first fetch");

    // The issuer rotates to key b. A token of the new key is admitted once the set is fetched again.
    *idp.keys.lock() = vec![jwk("b", "key-b")];
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert!(call(&gw, &token("b", "key-b")).await.echoed());
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 2);
    // The old key is gone from the set: its tokens no longer pass.
    let old = call(&gw, &token("a", "key-a")).await;
    assert!(old.refused_saying("key id (kid) is not in the issuer's key set"), "{}", old.message);

    // Made-up key ids: refused, and at most one fetch per jwks_min_refresh, however many arrive.
    let before = idp.fetches.load(Ordering::SeqCst);
    for i in 0..10 {
        let answer = call(&gw, &token("a", &format!("made-up-{i}"))).await;
        assert!(answer.refused_saying("key id (kid)"), "{}", answer.message);
    }
    assert!(idp.fetches.load(Ordering::SeqCst) - before <= 1, "{}", idp.fetches.load(Ordering::SeqCst));
    // A key of the right id signed by another key pair still fails on the signature.
    let forged = call(&gw, &token("a", "key-b")).await;
    assert!(forged.refused_saying("signature does not verify"), "{}", forged.message);
}

#[tokio::test]
async fn an_unreachable_jwks_refuses_every_token() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gw = spawn_with_env(&jwks_config(&format!("http://127.0.0.1:{port}/jwks"), "1s"), &[], V4).await;
    let answer = call(&gw, &rs256(&claims("svc", json!({})), "a", Some("key-a"))).await;
    assert!(answer.refused_saying("signing keys cannot be fetched"), "{} {}", answer.status, answer.message);
    // Also without a key id, and the issuer's outage is counted apart.
    let answer = call(&gw, &rs256(&claims("svc", json!({})), "a", None)).await;
    assert_eq!(answer.status, 401);
    let metrics = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("mcp_auth_failures_total{reason=\"jwks_unavailable\"}"))
        .unwrap();
    assert!(line.ends_with(" 2"), "{line}");
}

#[tokio::test]
async fn the_tools_claim_limits_what_a_token_sees_and_calls() {
    let gw = spawn_with_env(&with_security("  jwt: {}"), &[("JWT_SECRET", SECRET)], V4).await;
    let plain = json!({ "sub": "svc", "exp": now() + 600 });
    let adder = {
        let mut c = plain.clone();
        c["tools"] = json!(["ad?"]);
        hs256(&c, SECRET.as_bytes())
    };
    let names = |token: String| {
        let bearer = format!("Bearer {token}");
        let request = gw.modern_request("tools/list", None, json!({}), &[("authorization", &bearer)]);
        async move {
            let answer: Value = request.send().await.unwrap().json().await.unwrap();
            let tools = answer["result"]["tools"].as_array().unwrap_or_else(|| panic!("{answer}")).clone();
            tools.iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(names(adder.clone()).await, ["add"]);
    assert!(names(hs256(&plain, SECRET.as_bytes())).await.len() >= 4, "no tools claim: every tool");
    let refused = call(&gw, &adder).await;
    assert!(refused.status == 200 && refused.message["error"]["message"].as_str().unwrap().contains("echo"));
    assert!(call(&gw, &hs256(&plain, SECRET.as_bytes())).await.echoed());
}

const OAUTH: &str = "  oauth:\n    resource: \"https://mcp.example.com/mcp\"\n    authorization_servers: [\"https://idp.example.com\"]\n    scopes_supported: [\"tools:read\", \"tools:call\"]\n    resource_name: Example tools";

#[tokio::test]
async fn the_protected_resource_metadata_is_served_and_named_in_every_challenge() {
    let gw =
        spawn_with_env(&with_security(&format!("  jwt: {{}}\n{OAUTH}")), &[("JWT_SECRET", SECRET)], V4).await;
    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"] {
        let response = gw.http.get(format!("{}{path}", gw.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        let document: Value = response.json().await.unwrap();
        assert_eq!(
            document,
            json!({
                "resource": "https://mcp.example.com/mcp",
                "authorization_servers": ["https://idp.example.com"],
                "scopes_supported": ["tools:read", "tools:call"],
                "bearer_methods_supported": ["header"],
                "resource_name": "Example tools",
            })
        );
    }
    let other =
        gw.http.get(format!("{}/.well-known/oauth-protected-resource/other", gw.base)).send().await.unwrap();
    assert_eq!(other.status(), 404);

    let metadata = r#"resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="tools:read tools:call""#;
    let missing = call(&gw, "").await;
    assert_eq!(missing.challenge, format!(r#"Bearer realm="mcpgate", {metadata}"#));
    // The audience defaults to the resource: a token for this server passes, one without `aud` does not.
    let for_us = json!({ "sub": "svc", "aud": "https://mcp.example.com/mcp", "exp": now() + 600 });
    assert!(call(&gw, &hs256(&for_us, SECRET.as_bytes())).await.echoed());
    let unbound = call(&gw, &hs256(&json!({ "sub": "svc", "exp": now() + 600 }), SECRET.as_bytes())).await;
    assert!(unbound.refused_saying("no audience (aud)"), "{}", unbound.message);
    assert!(unbound.challenge.ends_with(metadata), "{}", unbound.challenge);

    // Not configured: not served, and challenges stay bare.
    let plain = spawn_with_env(&with_security("  jwt: {}"), &[("JWT_SECRET", SECRET)], V4).await;
    let response =
        plain.http.get(format!("{}/.well-known/oauth-protected-resource", plain.base)).send().await;
    assert_eq!(response.unwrap().status(), 404);
    assert_eq!(call(&plain, "").await.challenge, r#"Bearer realm="mcpgate""#);
}
