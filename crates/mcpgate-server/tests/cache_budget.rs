//! The result cache and the token/size budget end to end over HTTP: hits and misses on the fast path and in a
//! legacy session, an upstream's `cacheScope: "private"` kept to its principal, authorization and rate limits
//! before the cache, results cut or refused with `MAX_TOKENS_PER_REQUEST` / `CONTEXT_SIZE_LIMIT_KB` /
//! `CACHE_TTL_SECONDS` applied as `mcpgate serve` applies them, and the metrics the guides' alerts read.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_trait::async_trait;
use common::{TestGateway, in_session, initialize};
use mcpgate_config::{Format, KeyHash, apply_env, parse_str_unchecked, validate};
use mcpgate_core::{Backend, BackendError, CacheScope, CallContext, ToolCall, ToolDef, ToolOutcome};
use mcpgate_server::{Gateway, Server, registry::BackendEntry};
use serde_json::{Value, json};

/// A backend standing for an upstream: it counts its calls, and its results carry what an upstream's may.
#[derive(Default)]
struct Library(AtomicUsize);

#[async_trait]
impl Backend for Library {
    fn name(&self) -> &str {
        "library"
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        let object = json!({ "type": "object" });
        Ok(["lookup", "essay", "account"].map(|name| ToolDef::new(name, name, object.clone())).into())
    }

    async fn call_tool(&self, cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(match call.name.as_str() {
            "lookup" => ToolOutcome::text(format!("answer #{n} to {}", Value::Object(call.arguments))),
            "essay" => {
                let words = call.arguments.get("words").and_then(Value::as_u64).unwrap_or(10) as usize;
                ToolOutcome::text(format!("essay #{n}: {}", "gateway tokens ".repeat(words)))
            }
            // What the caller's own account holds: the upstream says it is private.
            _ => ToolOutcome {
                cache_scope: Some(CacheScope::Private),
                ..ToolOutcome::text(format!("account of {} #{n}", cx.principal.name))
            },
        })
    }
}

/// A gateway serving the demo tools and a [`Library`], with `yaml` then the environment `vars` over it, validated
/// as `mcpgate serve` does.
async fn spawn(yaml: &str, vars: &[(&str, &str)]) -> (TestGateway, Arc<Library>) {
    let yaml = format!("{yaml}\nbackends:\n  demo:\n    kind: builtin\n    builtin: demo\n");
    let mut config = parse_str_unchecked(&yaml, Format::Yaml, "test").unwrap();
    let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
    let mut problems = apply_env(&mut config, lookup);
    problems.extend(validate(&config));
    assert!(problems.is_empty(), "{problems:?}");
    let library = Arc::new(Library::default());
    let demo = mcpgate_backends::start("demo", mcpgate_config::Source::Backend(&config.backends["demo"]))
        .await
        .unwrap();
    let entries = vec![
        BackendEntry::new("demo", mcpgate_backends::BackendKind::Builtin, demo, &config.resilience),
        BackendEntry::new(
            "library",
            mcpgate_backends::BackendKind::Upstream,
            library.clone(),
            &config.resilience,
        ),
    ];
    let gateway = Gateway::with_backends(config, entries).await.unwrap();
    let server = Server::spawn(gateway, "127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", server.local_addr);
    (TestGateway { url: format!("{base}/mcp"), base, server, http: reqwest::Client::new() }, library)
}

/// A stateless `tools/call` with extra headers (an API key); the final JSON-RPC message.
async fn call_as(gw: &TestGateway, key: Option<&str>, tool: &str, arguments: Value) -> Value {
    let params = json!({ "name": tool, "arguments": arguments });
    let extra: Vec<(&str, &str)> = key.map(|key| ("x-api-key", key)).into_iter().collect();
    let response = gw.modern_request("tools/call", Some(tool), params, &extra).send().await.unwrap();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    common::messages(&content_type, &response.text().await.unwrap()).pop().unwrap()
}

fn text(message: &Value) -> String {
    let content = message["result"]["content"].as_array().unwrap_or_else(|| panic!("no result: {message}"));
    content.iter().filter_map(|item| item["text"].as_str()).collect::<Vec<_>>().join(" | ")
}

/// The value of the sample `series` (name and labels, as exposed) in `/metrics`.
async fn metric(gw: &TestGateway, series: &str) -> f64 {
    let text = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|line| line.starts_with(&format!("{series} "))).unwrap_or_else(|| {
        panic!("no {series} in:\n{text}");
    });
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn cached_results_answer_on_both_paths_cut_to_the_budget_and_the_metrics_count_them() {
    let yaml = "cache:\n  tools:\n    lookup: { ttl: 10m }\n    essay: {}\nbudget:\n  max_tokens: 200\n";
    let (gw, library) = spawn(yaml, &[]).await;
    let first = call_as(&gw, None, "lookup", json!({ "q": "rust", "page": 1 })).await;
    assert!(text(&first).starts_with("answer #1"), "{first}");
    // The same arguments in another order: one key, answered without the backend.
    let again = call_as(&gw, None, "lookup", json!({ "page": 1, "q": "rust" })).await;
    assert_eq!(again["result"], first["result"]);
    let other = call_as(&gw, None, "lookup", json!({ "q": "go", "page": 1 })).await;
    assert!(text(&other).starts_with("answer #2"), "{other}");
    // A legacy session's calls (served by rmcp, not the fast path) go through the same cache.
    let (session, _) = initialize(&gw, "2025-11-25").await;
    let params = json!({ "name": "lookup", "arguments": { "q": "rust", "page": 1 } });
    let (status, legacy) = in_session(&gw, &session, "2025-11-25", "tools/call", params).await;
    assert_eq!((status, text(&legacy)), (200, text(&first)));
    // A tool the section does not name is not cached.
    for _ in 0..2 {
        assert_eq!(text(&call_as(&gw, None, "echo", json!({ "message": "hi" })).await), "hi");
    }
    assert_eq!(library.0.load(Ordering::SeqCst), 2);
    assert_eq!(
        (metric(&gw, "mcp_cache_hits_total").await, metric(&gw, "mcp_cache_misses_total").await),
        (2.0, 2.0)
    );

    // The budget cuts a long result with a marker; the cut result is what is kept and served again.
    let essay = call_as(&gw, None, "essay", json!({ "words": 2000 })).await;
    let cut = text(&essay);
    assert!(cut.starts_with("essay #3: gateway tokens"), "{cut}");
    assert!(cut.ends_with("tokens, limit 200]") && cut.contains("[truncated by mcpgate: 4"), "{cut}");
    assert_eq!(essay["result"]["isError"], false);
    let output = metric(&gw, "mcp_tokens_used{direction=\"output\"}").await;
    assert!((150.0..=200.0).contains(&output), "{output}");
    assert!(metric(&gw, "mcp_tokens_used{direction=\"input\"}").await >= 3.0);
    let again = call_as(&gw, None, "essay", json!({ "words": 2000 })).await;
    assert_eq!(again["result"], essay["result"]);
    assert_eq!(
        metric(&gw, "mcp_tokens_used{direction=\"output\"}").await,
        output,
        "a hit reports its tokens"
    );
    assert_eq!((library.0.load(Ordering::SeqCst), metric(&gw, "mcp_cache_hits_total").await), (3, 3.0));

    // /status shows the cache: on, what it holds (the two results kept), and the counts.
    let status: Value =
        gw.http.get(format!("{}/status", gw.base)).send().await.unwrap().json().await.unwrap();
    let cache = &status["cache"];
    assert_eq!(
        (cache["enabled"].as_bool(), cache["hits"].as_u64(), cache["misses"].as_u64()),
        (Some(true), Some(3), Some(3)),
        "{cache}"
    );
    assert!(cache["bytes"].as_u64().unwrap() > 0, "{cache}");
}

#[tokio::test]
async fn a_private_result_stays_with_its_key_and_authorization_and_limits_come_first() {
    let keys =
        [("alice", "alice-key", "[\"*\"]"), ("bob", "bob-key", "[\"*\"]"), ("carol", "carol-key", "[echo]")];
    let mut yaml = String::from("security:\n  api_keys:\n");
    for (name, key, tools) in keys {
        yaml += &format!("    - {{ name: {name}, hash: \"{}\", tools: {tools} }}\n", KeyHash::sha256(key));
    }
    yaml += "rate_limits:\n  tools:\n    lookup: { requests: 2, per: 1h }\ncache:\n  tools:\n    lookup: {}\n    account: {}\n";
    let (gw, library) = spawn(&yaml, &[]).await;
    let account = |key| call_as(&gw, Some(key), "account", json!({}));
    assert_eq!(text(&account("alice-key").await), "account of alice #1");
    assert_eq!(text(&account("bob-key").await), "account of bob #2", "alice's private result is not bob's");
    assert_eq!(text(&account("alice-key").await), "account of alice #1");
    assert_eq!(text(&account("bob-key").await), "account of bob #2");
    assert_eq!(library.0.load(Ordering::SeqCst), 2);

    // Cached for alice; carol may not use the tool: it does not exist for her, cache or not.
    let lookup = |key| call_as(&gw, Some(key), "lookup", json!({ "q": "x" }));
    assert!(text(&lookup("alice-key").await).starts_with("answer #3"));
    let refused = lookup("carol-key").await;
    assert!(refused["result"].is_null() && refused["error"]["message"].as_str().unwrap().contains("lookup"));
    // Two calls an hour (carol's refusal spent none): bob's is a hit, alice's next is refused although the cache
    // holds the answer.
    assert!(text(&lookup("bob-key").await).starts_with("answer #3"));
    let limited = lookup("alice-key").await;
    assert!(limited["result"].is_null() && !limited["error"].is_null(), "{limited}");
    assert_eq!(library.0.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_guides_variables_refuse_or_cut_and_switch_the_cache() {
    let cache = "cache:\n  tools:\n    essay: {}\n";
    let refuse = format!("{cache}budget:\n  on_exceed: refuse\n");
    let vars =
        [("MAX_TOKENS_PER_REQUEST", "1000"), ("CONTEXT_SIZE_LIMIT_KB", "100"), ("CACHE_TTL_SECONDS", "300")];
    let (gw, library) = spawn(&refuse, &vars).await;
    let small = call_as(&gw, None, "essay", json!({ "words": 100 })).await;
    assert_eq!(small["result"]["isError"], false);
    assert!(!text(&small).contains("mcpgate"), "within the limits: whole");
    let big = call_as(&gw, None, "essay", json!({ "words": 5000 })).await;
    assert_eq!(big["result"]["isError"], true, "{big}");
    let refusal = text(&big);
    assert!(
        refusal.starts_with("result refused by mcpgate: 1") && refusal.contains("tokens, limit 1000"),
        "{refusal}"
    );
    // A refusal is a tool error: never kept.
    call_as(&gw, None, "essay", json!({ "words": 5000 })).await;
    assert_eq!(library.0.load(Ordering::SeqCst), 3);
    // 50k words: over both limits, both named.
    let huge = text(&call_as(&gw, None, "essay", json!({ "words": 50_000 })).await);
    assert!(huge.contains("tokens, limit 1000; ") && huge.contains("bytes, limit 102400"), "{huge}");

    // CACHE_TTL_SECONDS=0 turns the cache off; counting alone feeds the gauge the guides' alert reads.
    let counting = format!("{cache}budget:\n  count_tokens: true\n");
    let (gw, library) = spawn(&counting, &[("CACHE_TTL_SECONDS", "0")]).await;
    for _ in 0..2 {
        let whole = call_as(&gw, None, "essay", json!({ "words": 3000 })).await;
        assert!(!text(&whole).contains("[truncated"), "no limit: whole");
    }
    assert_eq!(library.0.load(Ordering::SeqCst), 2);
    assert_eq!(metric(&gw, "mcp_cache_misses_total").await, 0.0, "no cache: nothing is cacheable");
    assert!(
        metric(&gw, "mcp_tokens_used{direction=\"output\"}").await > 5000.0,
        "mcp_tokens_used > 5000 fires"
    );
}
