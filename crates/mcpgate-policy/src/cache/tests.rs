use std::{sync::Arc, time::Duration};

use mcpgate_config::{ByteSize, CacheConfig, CacheRule as RuleConfig, CacheSharing, HumanDuration};
use mcpgate_core::{CacheScope, JsonObject, Principal, ToolOutcome};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;

fn config(tools: &[(&str, Option<u64>, CacheSharing)]) -> CacheConfig {
    let mut config = CacheConfig { ttl: HumanDuration::secs(60), ..CacheConfig::default() };
    for (pattern, ttl, scope) in tools {
        config
            .tools
            .insert((*pattern).into(), RuleConfig { ttl: ttl.map(HumanDuration::secs), scope: *scope });
    }
    config
}

fn cache(tools: &[(&str, Option<u64>, CacheSharing)]) -> ResultCache {
    ResultCache::new(&config(tools), Arc::new(MemoryCache::new(1 << 20)))
}

fn args(value: Value) -> JsonObject {
    value.as_object().cloned().unwrap()
}

fn alice() -> Principal {
    Principal::named("alice", "default", &["*".into()])
}

fn bob() -> Principal {
    Principal::named("bob", "default", &["*".into()])
}

/// Look up, and on a miss store `outcome`; what the lookup found.
async fn through(
    cache: &ResultCache,
    tool: &str,
    who: &Principal,
    arguments: &JsonObject,
    outcome: ToolOutcome,
) -> Option<ToolOutcome> {
    let rule = cache.rule_for(tool).expect("a cached tool");
    match cache.lookup(rule, tool, who, arguments, Instant::now()).await {
        Lookup::Hit(entry) => Some(ToolOutcome::clone(&entry.outcome)),
        Lookup::Miss(key) => {
            let mut outcome = outcome;
            cache.store(rule, key, &mut outcome, None, who, Instant::now()).await;
            None
        }
    }
}

#[test]
fn canonical_json_ignores_key_order_at_every_depth_and_nothing_else() {
    let canonical = |value: Value| canonical_arguments(&args(value));
    let a = canonical(json!({ "b": [1, { "y": "é\"", "x": null }], "a": 1.5 }));
    assert_eq!(&*a, r#"{"a":1.5,"b":[1,{"x":null,"y":"é\""}]}"#);
    assert_eq!(a, canonical(json!({ "a": 1.5, "b": [1, { "x": null, "y": "é\"" }] })));
    assert_ne!(
        a,
        canonical(json!({ "a": 1.5, "b": [{ "x": null, "y": "é\"" }, 1] })),
        "arrays keep their order"
    );
    assert_ne!(canonical(json!({ "n": 1 })), canonical(json!({ "n": "1" })));
}

#[test]
fn an_exact_name_wins_over_a_glob_and_a_longer_glob_over_a_shorter() {
    let shared = CacheSharing::Shared;
    let first = cache(&[
        ("weather__*", Some(10), shared),
        ("weather__forecast*", Some(20), shared),
        ("weather__forecast", None, CacheSharing::PerPrincipal),
    ]);
    let ttl = |tool: &str| first.rule_for(tool).map(|rule| rule.ttl.as_secs());
    assert_eq!(ttl("weather__now"), Some(10));
    assert_eq!(ttl("weather__forecast_week"), Some(20));
    assert_eq!(ttl("weather__forecast"), Some(60), "no ttl of its own: the default");
    assert!(first.rule_for("weather__forecast").unwrap().per_principal);
    assert_eq!(ttl("echo"), None);
    // A slot resolved under one cache is not trusted under another (a reload).
    let slot = ToolCache::default();
    assert_eq!(first.rule(&slot, "weather__now").map(|r| r.ttl.as_secs()), Some(10));
    let reloaded = cache(&[("weather__*", Some(5), shared)]);
    assert_eq!(reloaded.rule(&slot, "weather__now").map(|r| r.ttl.as_secs()), Some(5));
    assert!(ResultCache::from_config(&CacheConfig::default()).is_none(), "no tool: no cache");
}

#[tokio::test(start_paused = true)]
async fn a_result_is_fresh_for_its_ttl_exactly() {
    let cache = cache(&[("search", Some(30), CacheSharing::Shared)]);
    let q = args(json!({ "q": "rust" }));
    assert!(through(&cache, "search", &alice(), &q, ToolOutcome::text("first")).await.is_none());
    tokio::time::advance(Duration::from_millis(29_999)).await;
    // Anyone gets a shared result (key order is covered by the canonical JSON test).
    let hit = through(&cache, "search", &bob(), &q, ToolOutcome::text("second")).await;
    assert_eq!(hit, Some(ToolOutcome::text("first")));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(
        through(&cache, "search", &alice(), &q, ToolOutcome::text("third")).await.is_none(),
        "stale at 30 s"
    );
    let hit = through(&cache, "search", &alice(), &q, ToolOutcome::text("fourth")).await;
    assert_eq!(hit, Some(ToolOutcome::text("third")), "the new result is kept afresh");
    let other = args(json!({ "q": "go" }));
    assert!(through(&cache, "search", &alice(), &other, ToolOutcome::text("x")).await.is_none());
}

fn hinted(text: &str, ttl_ms: Option<u64>, scope: Option<CacheScope>) -> ToolOutcome {
    ToolOutcome { ttl_ms, cache_scope: scope, ..ToolOutcome::text(text) }
}

#[tokio::test(start_paused = true)]
async fn an_upstream_ttl_shortens_the_ttl_and_never_lengthens_it() {
    let cache = cache(&[("up__*", Some(60), CacheSharing::Shared)]);
    let (a, b, c) = (args(json!({ "k": "a" })), args(json!({ "k": "b" })), args(json!({ "k": "c" })));
    through(&cache, "up__t", &alice(), &a, hinted("a", Some(10_000), None)).await;
    through(&cache, "up__t", &alice(), &b, hinted("b", Some(600_000), None)).await;
    through(&cache, "up__t", &alice(), &c, hinted("c", Some(0), None)).await;
    assert!(
        through(&cache, "up__t", &alice(), &c, ToolOutcome::text("c2")).await.is_none(),
        "ttlMs 0: not kept"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(through(&cache, "up__t", &alice(), &a, ToolOutcome::text("a2")).await.is_none(), "10 s, not 60");
    let hit = through(&cache, "up__t", &alice(), &b, ToolOutcome::text("b2")).await.unwrap();
    assert_eq!((hit.ttl_ms, hit.cache_scope), (None, None), "the hints are consumed, not kept");
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(through(&cache, "up__t", &alice(), &b, ToolOutcome::text("b3")).await.is_none(), "60 s at most");
}

#[tokio::test(start_paused = true)]
async fn a_private_result_is_served_only_to_its_principal() {
    let cache = cache(&[("up__*", None, CacheSharing::Shared), ("mine", None, CacheSharing::PerPrincipal)]);
    let q = args(json!({}));
    let private = hinted("alice's", None, Some(CacheScope::Private));
    through(&cache, "up__me", &alice(), &q, private).await;
    assert!(through(&cache, "up__me", &bob(), &q, ToolOutcome::text("bob's")).await.is_none());
    let hit = through(&cache, "up__me", &alice(), &q, ToolOutcome::text("x")).await;
    assert_eq!(hit, Some(ToolOutcome::text("alice's")));
    // Bob's result (public: no hint) is shared; Alice still gets her own first.
    let anonymous = Principal::anonymous();
    assert_eq!(
        through(&cache, "up__me", &anonymous, &q, ToolOutcome::text("y")).await,
        Some(ToolOutcome::text("bob's"))
    );
    assert_eq!(
        through(&cache, "up__me", &alice(), &q, ToolOutcome::text("y")).await,
        Some(ToolOutcome::text("alice's"))
    );
    // A per-principal tool never shares, whatever the result says.
    through(&cache, "mine", &alice(), &q, hinted("a", None, Some(CacheScope::Public))).await;
    assert!(through(&cache, "mine", &bob(), &q, ToolOutcome::text("b")).await.is_none());
    assert_eq!(
        through(&cache, "mine", &alice(), &q, ToolOutcome::text("z")).await,
        Some(ToolOutcome::text("a"))
    );
    // A bearer token whose subject is `alice` is not the API key named alice.
    let token = Principal::token("alice".into(), "default".into(), Arc::new(["*".into()]));
    assert!(through(&cache, "mine", &token, &q, ToolOutcome::text("t")).await.is_none());
    assert_eq!(
        through(&cache, "up__me", &token, &q, ToolOutcome::text("t")).await,
        Some(ToolOutcome::text("bob's")),
        "a shared result, not the key's private one"
    );
}

#[tokio::test(start_paused = true)]
async fn the_size_bounds_hold() {
    let mut config = config(&[("big", None, CacheSharing::Shared)]);
    config.max_size = ByteSize(64 << 10);
    config.max_entry_size = ByteSize(8 << 10);
    let store = Arc::new(MemoryCache::new(config.max_size.0));
    let cache = ResultCache::new(&config, store.clone());
    let huge = ToolOutcome::text("x".repeat(9 << 10));
    through(&cache, "big", &alice(), &args(json!({})), huge).await;
    assert!(through(&cache, "big", &alice(), &args(json!({})), ToolOutcome::text("x")).await.is_none());
    for i in 0..100 {
        let text = ToolOutcome::text("y".repeat(4 << 10));
        through(&cache, "big", &alice(), &args(json!({ "i": i })), text).await;
    }
    store.settle();
    let usage = cache.usage();
    assert!(usage.bytes <= 64 << 10, "{usage:?}");
    assert!((5..=16).contains(&usage.entries), "{usage:?}");
}
