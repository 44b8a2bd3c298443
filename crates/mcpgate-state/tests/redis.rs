//! The Redis stores against a real `redis-server` started by each test: two "nodes" (two state backends on one
//! Redis, as two gateway processes have) share one budget and one cache; Redis going away and coming back.

#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use mcpgate_config::{
    CacheConfig, CacheRule, CacheSharing, Config, Fallback, HumanDuration, StateBackendKind,
};
use mcpgate_core::{Principal, ToolOutcome};
use mcpgate_policy::{
    ResultCache, StoreHealth,
    cache::Lookup,
    ratelimit::{BucketKey, Check, Limit, Scope},
};
use mcpgate_state::StateBackend;
use mcpgate_testkit::{eventually, redis::RedisServer};
use serde_json::json;
use tokio::time::Instant;

fn config(server: &RedisServer, fallback: Fallback) -> Config {
    let mut config = Config::default();
    config.state.backend = StateBackendKind::Redis;
    config.state.url = Some(server.url());
    config.state.on_unavailable.rate_limits = fallback;
    config
}

/// A node's state on `server`, once its link is up.
async fn node(config: &Config) -> StateBackend {
    let state = StateBackend::from_config(config).unwrap();
    eventually("the link to redis is up", Duration::from_secs(10), || state.is_up()).await;
    state
}

fn check(scope: Scope, key: BucketKey, requests: u32) -> Check {
    Check { scope, key, limit: Limit::new(requests, Duration::from_secs(60)).unwrap() }
}

#[tokio::test]
async fn two_nodes_admit_exactly_the_limit_between_them() {
    let Some(server) = RedisServer::start("two nodes share one budget") else { return };
    let config = config(&server, Fallback::Local);
    let (a, b) = (node(&config).await, node(&config).await);
    let (a, b) = (a.rate_store(), b.rate_store());
    let global = [check(Scope::Global, BucketKey::Global, 5)];
    let mut admitted = 0;
    for i in 0..12 {
        let store = if i % 2 == 0 { &a } else { &b };
        let decisions = store.acquire(&global, Instant::now()).await;
        admitted += usize::from(decisions[0].allowed);
        if !decisions[0].allowed {
            assert!(
                decisions[0].retry_after > Duration::ZERO
                    && decisions[0].retry_after <= Duration::from_secs(12)
            );
        }
    }
    assert_eq!(admitted, 5, "5 per minute across both nodes, not 5 each");

    // A request refused by one bucket spends none of the others, on either node.
    let ip = BucketKey::ip("192.0.2.7".parse().unwrap());
    let both = [check(Scope::Key, BucketKey::Principal("k".into()), 100), check(Scope::Ip, ip, 1)];
    let first = a.acquire(&both, Instant::now()).await;
    assert!(first.iter().all(|d| d.allowed));
    assert_eq!(first[0].remaining, 99);
    let refused = b.acquire(&both, Instant::now()).await;
    assert!(refused[0].allowed && !refused[1].allowed, "{refused:?}");
    assert_eq!(refused[0].remaining, 99, "the refused request took nothing from the other bucket");
}

fn cache_config(max_size: u64) -> CacheConfig {
    let mut config = CacheConfig { ttl: HumanDuration::secs(60), ..CacheConfig::default() };
    config.max_size.0 = max_size;
    config.max_entry_size.0 = max_size.min(1 << 20);
    config.tools.insert("echo".into(), CacheRule { ttl: None, scope: CacheSharing::Shared });
    config.tools.insert("mine".into(), CacheRule { ttl: None, scope: CacheSharing::PerPrincipal });
    config
}

fn outcome(text: &str) -> ToolOutcome {
    ToolOutcome { content: vec![json!({ "type": "text", "text": text })], ..ToolOutcome::default() }
}

/// Look `tool(arguments)` up for `who` and on a miss store `text`; whether it was a hit, and the text served.
async fn through(cache: &ResultCache, tool: &str, who: &Principal, n: u64, text: &str) -> (bool, String) {
    let rule = cache.rule_for(tool).unwrap();
    let arguments = json!({ "n": n }).as_object().cloned().unwrap();
    match cache.lookup(rule, tool, who, &arguments, Instant::now()).await {
        Lookup::Hit(hit) => (true, hit.outcome.content[0]["text"].as_str().unwrap().to_owned()),
        Lookup::Miss(key) => {
            let mut result = outcome(text);
            assert!(cache.store(rule, key, &mut result, Some(3), who, Instant::now()).await);
            (false, text.to_owned())
        }
    }
}

#[tokio::test]
async fn a_result_stored_through_one_node_is_a_hit_through_the_other() {
    let Some(server) = RedisServer::start("the cache is shared") else { return };
    let config = config(&server, Fallback::Local);
    let (a, b) = (node(&config).await, node(&config).await);
    let cache_config = cache_config(64 << 20);
    let on_a = ResultCache::new(&cache_config, a.cache_store(&cache_config));
    let on_b = ResultCache::new(&cache_config, b.cache_store(&cache_config));
    let (alice, bob) =
        (Principal::named("alice", "t", &["*".into()]), Principal::named("bob", "t", &["*".into()]));

    assert_eq!(through(&on_a, "echo", &alice, 1, "from a").await, (false, "from a".into()));
    assert_eq!(
        through(&on_b, "echo", &bob, 1, "from b").await,
        (true, "from a".into()),
        "shared: a hit on b"
    );
    assert_eq!(through(&on_b, "echo", &bob, 2, "b2").await, (false, "b2".into()), "other arguments miss");
    // Per principal: alice's result is not bob's, on any node.
    assert_eq!(through(&on_a, "mine", &alice, 1, "alice's").await, (false, "alice's".into()));
    assert_eq!(through(&on_b, "mine", &bob, 1, "bob's").await, (false, "bob's".into()));
    assert_eq!(through(&on_b, "mine", &alice, 1, "x").await, (true, "alice's".into()));
    assert!(on_b.usage().entries >= 4 && on_b.usage().bytes > 0, "{:?}", on_b.usage());
}

#[tokio::test]
async fn the_size_bound_holds_across_nodes() {
    let Some(server) = RedisServer::start("the cache's size bound is shared") else { return };
    let config = config(&server, Fallback::Local);
    let (a, b) = (node(&config).await, node(&config).await);
    // Each entry weighs a few hundred bytes: 4 KiB holds about a dozen.
    let cache_config = cache_config(4096);
    let on_a = ResultCache::new(&cache_config, a.cache_store(&cache_config));
    let on_b = ResultCache::new(&cache_config, b.cache_store(&cache_config));
    let who = Principal::anonymous();
    for n in 0..100 {
        let cache = if n % 2 == 0 { &on_a } else { &on_b };
        through(cache, "echo", &who, n, &format!("result {n}")).await;
        let usage = cache.usage();
        assert!(usage.bytes <= 4096, "after {n}: {usage:?}");
    }
    let (entries, bytes) = (on_b.usage().entries, on_b.usage().bytes);
    assert!((5..100).contains(&entries) && bytes > 2048, "{entries} entries, {bytes} bytes");
    // The newest are kept.
    assert!(through(&on_a, "echo", &who, 99, "again").await.0);
}

#[tokio::test]
async fn without_redis_limits_fall_back_to_local_buckets_and_the_cache_is_bypassed_until_it_returns() {
    let Some(mut server) = RedisServer::start("redis going away") else { return };
    let config = config(&server, Fallback::Local);
    let state = node(&config).await;
    let rates = state.rate_store();
    let cache_config = cache_config(1 << 20);
    let cache = ResultCache::new(&cache_config, state.cache_store(&cache_config));
    let who = Principal::anonymous();
    let limit = [check(Scope::Global, BucketKey::Global, 3)];
    assert!(rates.acquire(&limit, Instant::now()).await[0].allowed);
    through(&cache, "echo", &who, 1, "kept").await;

    server.kill();
    // The first command to fail marks the link down; it is answered locally all the same.
    assert!(rates.acquire(&limit, Instant::now()).await[0].allowed);
    eventually("the link is down", Duration::from_secs(10), || !state.is_up()).await;
    assert!(matches!(state.health().await, StoreHealth::Down(_)));
    assert!(matches!(rates.health().await, StoreHealth::Down(_)));
    // Local buckets: a fresh budget of 3 on this node (the one taken above through the failure is in it).
    let local: Vec<bool> = futures_allowed(&rates, &limit, 4).await;
    assert_eq!(local, [true, true, false, false]);
    assert!(!through(&cache, "echo", &who, 1, "bypassed").await.0, "no cache without redis");

    server.restart();
    eventually("the link is up again", Duration::from_secs(15), || state.is_up()).await;
    assert_eq!(state.health().await, StoreHealth::Up);
    // Back on Redis (empty after the restart): its own budget again.
    assert_eq!(futures_allowed(&rates, &limit, 4).await, [true, true, true, false]);
    assert!(!through(&cache, "echo", &who, 1, "after").await.0);
    assert!(through(&cache, "echo", &who, 1, "x").await.0);
}

async fn futures_allowed(
    rates: &Arc<dyn mcpgate_policy::RateStore>,
    checks: &[Check],
    n: usize,
) -> Vec<bool> {
    let mut allowed = Vec::new();
    for _ in 0..n {
        allowed.push(rates.acquire(checks, Instant::now()).await[0].allowed);
    }
    allowed
}

#[tokio::test]
async fn refuse_means_refused_while_redis_is_down() {
    let Some(mut server) = RedisServer::start("on_unavailable: refuse") else { return };
    let state = node(&config(&server, Fallback::Refuse)).await;
    let rates = state.rate_store();
    let limit = [check(Scope::Global, BucketKey::Global, 100)];
    assert!(rates.acquire(&limit, Instant::now()).await[0].allowed);
    server.kill();
    let refused = rates.acquire(&limit, Instant::now()).await;
    assert!(!refused[0].allowed && refused[0].retry_after == Duration::from_secs(1), "{refused:?}");
}

#[tokio::test]
async fn a_password_from_the_environment_is_used_and_a_wrong_one_is_down_with_the_reason() {
    let Some(server) = RedisServer::start_with("requirepass", &["--requirepass", "s3cret-pw"]) else {
        return;
    };
    let mut config = config(&server, Fallback::Local);
    config.state.password = Some(mcpgate_config::Secret::new("s3cret-pw"));
    let state = node(&config).await;
    assert!(
        state.rate_store().acquire(&[check(Scope::Global, BucketKey::Global, 1)], Instant::now()).await[0]
            .allowed
    );

    config.state.password = Some(mcpgate_config::Secret::new("pw-xyzzy-42"));
    let state = StateBackend::from_config(&config).unwrap();
    let mut reason = String::new();
    for _ in 0..500 {
        if let StoreHealth::Down(why) = state.health().await
            && why != "not connected yet"
        {
            reason = why;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!state.is_up());
    assert!(reason.to_ascii_lowercase().contains("auth") || reason.contains("WRONGPASS"), "{reason}");
    assert!(!reason.contains("xyzzy"), "the password is not in the reason: {reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_nodes_follow_a_sentinel_failover() {
    let Some(mut master) = RedisServer::start("sentinel failover") else { return };
    let replica_of = ["--replicaof", "127.0.0.1", &master.port().to_string()].map(str::to_owned);
    let replica_of: Vec<&str> = replica_of.iter().map(String::as_str).collect();
    let replica = RedisServer::start_with("sentinel failover", &replica_of).unwrap();
    let sentinel = RedisServer::sentinel("sentinel failover", "mcp-redis", master.port()).unwrap();
    let mut config = Config::default();
    config.state.backend = StateBackendKind::Redis;
    config.state.sentinel = Some(mcpgate_config::SentinelConfig {
        master: "mcp-redis".into(),
        addresses: vec![format!("127.0.0.1:{}", sentinel.port())],
    });
    let (a, b) = (node(&config).await, node(&config).await);
    let (a_rates, b_rates) = (a.rate_store(), b.rate_store());
    let limit = [check(Scope::Global, BucketKey::Global, 100)];
    assert_eq!(a_rates.acquire(&limit, Instant::now()).await[0].remaining, 99);
    assert_eq!(b_rates.acquire(&limit, Instant::now()).await[0].remaining, 98, "one master between them");

    // The master dies; the sentinel promotes the replica (after 500 ms down, then its failover).
    master.kill();
    let replica_url = replica.url();
    let promoted = || async {
        let client = redis::Client::open(replica_url.as_str()).unwrap();
        let Ok(mut connection) = client.get_multiplexed_async_connection().await else { return false };
        let role: Vec<redis::Value> =
            redis::cmd("ROLE").query_async(&mut connection).await.unwrap_or_default();
        matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
    };
    let mut waited = 0;
    while !promoted().await {
        waited += 1;
        assert!(waited < 300, "the replica was not promoted within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each node notices at its next command, asks the sentinel again and reconnects to the new master: a bucket
    // it takes then is written there.
    let client = redis::Client::open(replica_url.as_str()).unwrap();
    let mut on_replica = client.get_multiplexed_async_connection().await.unwrap();
    for (name, rates, state) in [("a", &a_rates, &a), ("b", &b_rates, &b)] {
        let key = BucketKey::Principal(format!("after-failover-{name}").into());
        let mine = [Check {
            scope: Scope::Key,
            key: key.clone(),
            limit: Limit::new(10, Duration::from_secs(60)).unwrap(),
        }];
        let mut followed = false;
        for _ in 0..300 {
            rates.acquire(&mine, Instant::now()).await;
            let exists: bool = redis::cmd("EXISTS")
                .arg(format!("mcpgate:{{rl}}:{key}"))
                .query_async(&mut on_replica)
                .await
                .unwrap();
            if state.is_up() && exists {
                followed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(followed, "node {name} did not follow the failover within 15 s");
        assert!(state.location().unwrap().contains("sentinel mcp-redis"));
    }
}
