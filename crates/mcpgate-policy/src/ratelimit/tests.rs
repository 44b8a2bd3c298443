//! Bucket math and scopes under tokio's paused clock: every duration below is exact.

use std::{num::NonZeroU32, time::Duration};

use mcpgate_config::HumanDuration;
use tokio::time::advance;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn limit(requests: u32, per: Duration) -> Limit {
    Limit::new(requests, per).unwrap()
}

fn check(scope: Scope, key: BucketKey, requests: u32, per: Duration) -> Check {
    Check { scope, key, limit: limit(requests, per) }
}

fn tool(name: &str) -> BucketKey {
    BucketKey::Tool(name.into())
}

fn one(store: &MemoryStore, check: &Check) -> Decision {
    store.acquire_now(std::slice::from_ref(check), Instant::now())[0]
}

#[test]
fn a_limit_needs_requests_and_a_window_it_can_split() {
    assert!(Limit::new(0, Duration::from_secs(1)).is_none());
    assert!(Limit::new(10, Duration::from_nanos(9)).is_none(), "less than a nanosecond each");
    assert!(Limit::new(1, Duration::MAX).is_none());
    let l = limit(4, Duration::from_secs(1));
    assert_eq!((l.requests(), l.per(), l.interval), (4, Duration::from_secs(1), 250_000_000));
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_the_limit_passes_then_one_per_interval() {
    let store = MemoryStore::new();
    let c = check(Scope::Key, BucketKey::Principal("ci".into()), 4, Duration::from_secs(1));
    let burst: Vec<(bool, u32, Duration)> =
        (0..4).map(|_| one(&store, &c)).map(|d| (d.allowed, d.remaining, d.reset)).collect();
    assert_eq!(burst, [(true, 3, 250 * MS), (true, 2, 500 * MS), (true, 1, 750 * MS), (true, 0, 1000 * MS),]);
    let refused = one(&store, &c);
    assert_eq!(
        (refused.allowed, refused.remaining, refused.retry_after, refused.reset),
        (false, 0, 250 * MS, 1000 * MS)
    );
    // Refill: one interval later exactly one request passes, and not a nanosecond before.
    advance(250 * MS - Duration::from_nanos(1)).await;
    assert!(!one(&store, &c).allowed);
    advance(Duration::from_nanos(1)).await;
    let refilled = one(&store, &c);
    assert_eq!((refilled.allowed, refilled.remaining, refilled.reset), (true, 0, 1000 * MS));
    assert!(!one(&store, &c).allowed);
}

#[tokio::test(start_paused = true)]
async fn retry_after_and_reset_are_exact() {
    let store = MemoryStore::new();
    let c = check(Scope::Global, BucketKey::Global, 3, Duration::from_secs(60));
    for _ in 0..3 {
        assert!(one(&store, &c).allowed);
    }
    advance(5 * 1000 * MS).await;
    let refused = one(&store, &c);
    assert_eq!((refused.retry_after, refused.reset), (15 * 1000 * MS, 55 * 1000 * MS));
    // Waiting retry_after admits exactly one; waiting reset refills the whole burst.
    advance(refused.retry_after).await;
    assert!(one(&store, &c).allowed);
    assert!(!one(&store, &c).allowed);
    advance(Duration::from_secs(60)).await;
    let fresh = one(&store, &c);
    assert_eq!((fresh.allowed, fresh.remaining, fresh.reset), (true, 2, 20 * 1000 * MS));
}

#[tokio::test(start_paused = true)]
async fn a_refused_request_takes_from_no_bucket() {
    let store = MemoryStore::new();
    let per = Duration::from_secs(10);
    let tight = check(Scope::Tier, BucketKey::Principal("free".into()), 1, per);
    let wide = check(Scope::Global, BucketKey::Global, 5, per);
    let both = [wide.clone(), tight.clone()];
    let first = store.acquire_now(&both, Instant::now());
    assert!(first.iter().all(|d| d.allowed));
    assert_eq!(first[0].remaining, 4);

    let second = store.acquire_now(&both, Instant::now());
    assert!(!second[1].allowed && second[0].allowed, "{second:?}");
    // The wide bucket reads as untouched by the refused request …
    assert_eq!((second[0].remaining, second[0].reset), (4, 2 * 1000 * MS));
    // … and is: the next request that only it limits still finds 4 before taking one.
    assert_eq!(one(&store, &wide).remaining, 3);

    let verdict = Verdict {
        decisions: vec![(Scope::Global, second[0]), (Scope::Tier, second[1]), (Scope::Key, second[1])],
    };
    assert!(!verdict.allowed());
    assert_eq!(verdict.denied().map(|(s, _)| s), Some(Scope::Tier), "the first of the longest waits");
}

#[tokio::test(start_paused = true)]
async fn idle_buckets_expire_and_memory_is_capped() {
    let store = MemoryStore::new();
    let per = Duration::from_secs(60);
    one(&store, &check(Scope::Tool, tool("a"), 10, per));
    one(&store, &check(Scope::Tool, tool("b"), 2, per));
    assert_eq!(store.buckets_now(Instant::now()), 2);
    // `a` is full again after one interval (6 s), `b` after 30 s: then each is gone.
    advance(Duration::from_secs(6)).await;
    assert_eq!(store.buckets_now(Instant::now()), 1);
    advance(Duration::from_secs(24)).await;
    assert_eq!(store.buckets_now(Instant::now()), 0);
    // A forgotten bucket answers as a fresh one would.
    assert_eq!(one(&store, &check(Scope::Tool, tool("b"), 2, per)).remaining, 1);

    // A flood of keys never grows a shard past its cap; the buckets nearest to full go first.
    let store = MemoryStore::single_shard(8);
    let busy = check(Scope::Key, BucketKey::Principal("busy".into()), 100, per);
    for _ in 0..50 {
        one(&store, &busy);
    }
    for i in 0..1000 {
        one(
            &store,
            &check(Scope::Ip, BucketKey::ip(IpAddr::from([10, 0, (i / 256) as u8, i as u8])), 100, per),
        );
        assert!(store.buckets_now(Instant::now()) <= 8);
    }
    assert_eq!(one(&store, &busy).remaining, 49, "the most used bucket was kept");
}

#[tokio::test(start_paused = true)]
async fn one_request_over_many_shards_takes_from_all_its_buckets_or_none() {
    assert_eq!(MemoryStore::sharded(1000).shards(), 64, "a request's shards fit one bitmask");
    let per = Duration::from_secs(60);
    // Eight keys over 1, 2, 4 and 64 shards: some share a shard, some do not, and the locks are taken in order.
    for shards in [1, 2, 4, 64] {
        let store = MemoryStore::sharded(shards);
        let keys: Vec<Check> = (0..8).map(|i| check(Scope::Tool, tool(&format!("t{i}")), 3, per)).collect();
        let last = keys.len() - 1;
        assert_eq!(one(&store, &keys[last]).remaining, 2);
        assert_eq!(one(&store, &keys[last]).remaining, 1);
        assert!(store.acquire_now(&keys, Instant::now()).iter().all(|d| d.allowed));
        // The last bucket is empty now: the next request of all eight is refused and takes from none.
        let refused = store.acquire_now(&keys, Instant::now());
        assert_eq!(refused.iter().filter(|d| !d.allowed).count(), 1, "{shards} shards: {refused:?}");
        assert!(!refused[last].allowed);
        assert!(refused[..last].iter().all(|d| d.remaining == 2), "{shards} shards: {refused:?}");
        assert_eq!(one(&store, &keys[0]).remaining, 1, "{shards} shards: the refusal took nothing");
        assert_eq!(store.buckets_now(Instant::now()), 8);
    }
}

#[test]
fn requests_of_overlapping_keys_from_many_threads_neither_deadlock_nor_miscount() {
    // A day's window: a bucket refills one request every 8.64 s, so none refills while the test runs.
    let per = Duration::from_secs(24 * 3600);
    let store = std::sync::Arc::new(MemoryStore::sharded(4));
    let keys: Vec<Check> = (0..6).map(|i| check(Scope::Tool, tool(&format!("k{i}")), 10_000, per)).collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (store, keys) = (store.clone(), keys.clone());
            std::thread::spawn(move || {
                for n in 0..500 {
                    // Each thread asks for a different overlapping window of the keys, in a different order.
                    let mut mine: Vec<Check> =
                        (0..3).map(|j| keys[(t + n + j) % keys.len()].clone()).collect();
                    if t % 2 == 1 {
                        mine.reverse();
                    }
                    assert!(store.acquire_now(&mine, Instant::now()).iter().all(|d| d.allowed));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let left: u32 = keys.iter().map(|k| one(&store, k).remaining + 1).sum();
    assert_eq!(left, 6 * 10_000 - 4 * 500 * 3, "every request took exactly one from each of its buckets");
}

fn principal(name: &str, tier: Option<&str>, ip: &str) -> Principal {
    let base = match tier {
        Some(tier) => Principal::named(name, tier, &["*".into()]),
        None => Principal::anonymous(),
    };
    base.with_client_ip(Some(ip.parse().unwrap()))
}

fn config(yaml_limits: &[(&str, u32)]) -> RateLimitsConfig {
    let per = HumanDuration(Duration::from_secs(60));
    let l = |n: u32| RateLimit { requests: NonZeroU32::new(n).unwrap(), per };
    let mut config = RateLimitsConfig::default();
    for &(at, n) in yaml_limits {
        match at.split_once('.') {
            Some(("tiers", tier)) => drop(config.tiers.insert(tier.into(), l(n))),
            Some(("tools", tool)) => drop(config.tools.insert(tool.into(), l(n))),
            _ if at == "global" => config.global = Some(l(n)),
            _ if at == "per_ip" => config.per_ip = Some(l(n)),
            _ => config.per_key = Some(l(n)),
        }
    }
    config
}

#[test]
fn each_request_is_checked_against_every_scope_that_applies() {
    let limits = RateLimits::from_config(&config(&[
        ("global", 1000),
        ("per_ip", 100),
        ("per_key", 50),
        ("tiers.free", 5),
    ]))
    .unwrap();
    let scopes = |p: &Principal| {
        limits
            .request_checks(p)
            .into_iter()
            .map(|c| (c.scope, c.key.to_string(), c.limit.requests()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        scopes(&principal("ci", Some("free"), "192.0.2.7")),
        [
            (Scope::Global, "global".into(), 1000),
            (Scope::Ip, "ip:192.0.2.7".into(), 100),
            (Scope::Tier, "key:ci".into(), 5),
        ]
    );
    // A tier without a limit of its own falls back to per_key; anonymous callers are one principal.
    assert_eq!(
        scopes(&principal("ops", Some("paid"), "::ffff:192.0.2.8"))[1..],
        [(Scope::Ip, "ip:192.0.2.8".into(), 100), (Scope::Key, "key:ops".into(), 50)]
    );
    assert_eq!(
        scopes(&principal("x", None, "2001:db8:1:2:3:4:5:6"))[1..],
        [(Scope::Ip, "ip:2001:db8:1:2::".into(), 100), (Scope::Key, "anonymous".into(), 50)]
    );
    // Off HTTP (stdio) there is no address, and no per-address check.
    let stdio = Principal::anonymous();
    assert!(limits.request_checks(&stdio).iter().all(|c| c.scope != Scope::Ip));

    let none = RateLimits::from_config(&RateLimitsConfig::default()).unwrap();
    assert!(none.is_empty() && none.request_checks(&principal("ci", Some("free"), "192.0.2.7")).is_empty());
    let tools_only = RateLimits::from_config(&config(&[("tools.x", 1)])).unwrap();
    assert!(!tools_only.is_empty() && !tools_only.limits_requests());
}

#[test]
fn an_exact_tool_name_wins_then_the_longest_glob() {
    let limits = RateLimits::from_config(&config(&[
        ("tools.search_*", 2),
        ("tools.search_web*", 3),
        ("tools.search_x", 4),
        ("tools.*", 5),
    ]))
    .unwrap();
    let of = |tool: &str| limits.tool_check(tool).map(|c| c.limit.requests());
    assert_eq!(
        [of("search_x"), of("search_web_2"), of("search_y"), of("echo")],
        [Some(4), Some(3), Some(2), Some(5)]
    );
    let exact = RateLimits::from_config(&config(&[("tools.echo", 1)])).unwrap();
    assert_eq!(exact.tool_check("echo").map(|c| c.key), Some(tool("echo")));
    assert_eq!(exact.tool_check("echo2"), None);
}

#[tokio::test(start_paused = true)]
async fn a_tool_slot_resolved_under_one_limiter_is_not_used_under_another() {
    let strict = RateLimiter::from_config(&config(&[("tools.t", 1)])).unwrap().unwrap();
    let slot = ToolRateLimit::default();
    let now = Instant::now();
    assert!(strict.check_tool(&slot, "t", now).await.is_ok());
    let refused = strict.check_tool(&slot, "t", now).await.unwrap_err();
    assert!(
        matches!(refused, BackendError::RateLimited { scope: "tool", retry_after } if retry_after == Duration::from_secs(60)),
        "{refused:?}"
    );
    // A new limiter (a reload) with no limit on `t`: the slot's old answer is not used.
    let other = RateLimiter::from_config(&config(&[("tools.u", 1)])).unwrap().unwrap();
    for _ in 0..3 {
        assert!(other.check_tool(&slot, "t", now).await.is_ok());
    }
    assert_eq!(
        other.status(now).await,
        json!({ "global": null, "per_ip": null, "per_key": null, "tiers": {}, "tools": { "u": { "requests": 1, "per": "1m" } }, "buckets": 0 })
    );
    assert!(
        RateLimiter::from_config(&RateLimitsConfig::default()).unwrap().is_none(),
        "no limit, no limiter"
    );
}
