//! The cache lookup (step 2), the budget (step 8) and the cache store (step 9) among the other steps.

use std::sync::atomic::{AtomicUsize, Ordering};

use mcpgate_config::{BudgetConfig, CacheConfig, CacheRule, HumanDuration, OnExceed, RateLimitsConfig};
use mcpgate_core::{ClientPeer, ClientRequestError, LogLevel};
use serde_json::json;

use super::*;
use crate::breaker::BreakerPhase;

/// A backend that counts its calls. Arguments: `words` (the answer's length), `fail` (a protocol error), `error`
/// (a tool error), `ask` (asks the client something first), `secs` (takes that long).
#[derive(Default)]
struct Counting(AtomicUsize);

impl Counting {
    fn calls(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Backend for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(vec![])
    }
    async fn call_tool(&self, cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        let secs = call.arguments.get("secs").and_then(Value::as_u64).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let flag = |key: &str| call.arguments.get(key).and_then(Value::as_bool).unwrap_or(false);
        if flag("fail") {
            return Err(BackendError::unavailable("counting", "502"));
        }
        if flag("ask") {
            cx.request_client("confirm", "elicitation/create", json!({})).await?;
        }
        if flag("error") {
            return Ok(ToolOutcome::error(format!("failed, call {n}")));
        }
        let words = call.arguments.get("words").and_then(Value::as_u64).unwrap_or(1) as usize;
        Ok(ToolOutcome::text(format!("call {n}: {}", "word ".repeat(words))))
    }
}

/// What an observer is told of one call's cache and budget.
type Told = (CacheStatus, Option<TokenUsage>, Option<BudgetVerdict>);

/// What the observers were told, call by call.
#[derive(Debug, Default)]
struct Seen(Mutex<Vec<Told>>);

impl CallObserver for Seen {
    fn call_finished(&self, report: &CallReport<'_>) -> Option<Settling<'_>> {
        self.0.lock().unwrap().push((report.cache, report.tokens, report.budget));
        None
    }
}

impl Seen {
    fn last(&self) -> Told {
        *self.0.lock().unwrap().last().unwrap()
    }
}

fn cached(tools: &[&str], ttl_secs: u64) -> Option<Arc<ResultCache>> {
    let mut config = CacheConfig { ttl: HumanDuration::secs(ttl_secs), ..CacheConfig::default() };
    config.tools = tools.iter().map(|tool| ((*tool).to_owned(), CacheRule::default())).collect();
    ResultCache::from_config(&config)
}

fn budget(max_tokens: u64) -> Option<Arc<Budget>> {
    let config = BudgetConfig {
        max_tokens: std::num::NonZeroU64::new(max_tokens),
        on_exceed: OnExceed::Truncate,
        ..BudgetConfig::default()
    };
    Budget::from_config(&config)
}

fn args(value: Value) -> ToolCall {
    ToolCall { name: "c".into(), arguments: value.as_object().cloned().unwrap() }
}

fn text(outcome: &ToolOutcome) -> String {
    outcome.content.iter().filter_map(|item| item["text"].as_str()).collect::<Vec<_>>().join(" | ")
}

#[tokio::test(start_paused = true)]
async fn cache_and_budget_steps_run_in_order() {
    let backend = Counting::default();
    let seen = Arc::new(Seen::default());
    let limits: RateLimitsConfig =
        serde_json::from_value(json!({ "tools": { "c": { "requests": 6, "per": "1m" } } })).unwrap();
    let pipeline = Pipeline::new(Duration::from_secs(5))
        .with_rate_limits(RateLimiter::from_config(&limits).unwrap())
        .with_cache(cached(&["c"], 60))
        .with_budget(budget(64))
        .with_observer(seen.clone());
    let schema =
        json!({ "type": "object", "properties": { "words": { "type": "integer", "maximum": 500 } } });
    let (mut policy, breaker) = resilient(0, 1);
    policy.arguments = Some(ArgumentSchema::compile(schema.as_object().unwrap()).unwrap());
    let cx = CallContext::detached("t");
    let long = || args(json!({ "words": 300 }));

    // 1. A miss: the backend runs, the budget (8) cuts the result, the store (9) keeps it as sent.
    let first = pipeline.call_tool(&cx, &backend, "c", &policy, long()).await.unwrap();
    assert_eq!(backend.calls(), 1);
    assert!(text(&first).starts_with("call 1: word") && text(&first).contains("[truncated by mcpgate:"));
    let (cache, tokens, verdict) = seen.last();
    assert_eq!(cache, CacheStatus::Miss);
    assert!(
        matches!(verdict, Some(BudgetVerdict::Truncated(size)) if size.tokens > Some(300)),
        "{verdict:?}"
    );
    let sent = tokens.unwrap().output.unwrap();
    assert!(sent <= 64, "{sent}");
    // 2. A hit answers what the miss sent, without the backend and without the budget step.
    let second = pipeline.call_tool(&cx, &backend, "c", &policy, long()).await.unwrap();
    assert_eq!((backend.calls(), &second), (1, &first));
    assert_eq!(
        seen.last(),
        (CacheStatus::Hit, Some(TokenUsage { input: tokens.unwrap().input, output: Some(sent) }), None)
    );
    // 1 before 2: an invalid call gets its tool error, never a stored answer.
    let refused =
        pipeline.call_tool(&cx, &backend, "c", &policy, args(json!({ "words": 501 }))).await.unwrap();
    assert!(refused.is_error && backend.calls() == 1);
    assert_eq!(seen.last().0, CacheStatus::NotCacheable);
    // A failure is not kept, and opens the breaker (threshold 1)…
    let failed = pipeline.call_tool(&cx, &backend, "c", &policy, args(json!({ "fail": true }))).await;
    assert!(matches!(failed, Err(BackendError::Unavailable { .. })));
    assert_eq!((breaker.snapshot().phase, seen.last().0), (BreakerPhase::Open, CacheStatus::Miss));
    // …2 before 3: a fresh result is still served with the breaker open; a call it cannot answer is refused.
    assert_eq!(pipeline.call_tool(&cx, &backend, "c", &policy, long()).await.unwrap(), first);
    let open = pipeline.call_tool(&cx, &backend, "c", &policy, args(json!({ "words": 2 }))).await;
    assert!(open.unwrap_err().to_string().contains("circuit breaker open"));
    assert_eq!(backend.calls(), 2);
    // The rate limit before 2: the seventh call is refused, though the cache could answer it.
    let limited = pipeline.call_tool(&cx, &backend, "c", &policy, long()).await;
    assert!(matches!(limited, Err(BackendError::RateLimited { scope: "tool", .. })), "{limited:?}");
    assert_eq!(seen.last().0, CacheStatus::NotCacheable);
}

#[tokio::test(start_paused = true)]
async fn calls_missing_on_a_key_another_call_is_answering_wait_for_it() {
    let backend = Counting::default();
    let seen = Arc::new(Seen::default());
    let pipeline =
        Pipeline::new(Duration::from_secs(5)).with_cache(cached(&["c"], 60)).with_observer(seen.clone());
    let policy = ToolPolicy::default();
    let cx = CallContext::detached("t");
    let call = |arguments: Value| pipeline.call_tool(&cx, &backend, "c", &policy, args(arguments));

    // Four identical calls at once on a cold key, and one with other arguments: two backend calls.
    let slow = || json!({ "secs": 1 });
    let (a, b, c, d, other) = tokio::join!(
        call(slow()),
        call(slow()),
        call(slow()),
        call(slow()),
        call(json!({ "secs": 1, "words": 2 }))
    );
    assert_eq!(backend.calls(), 2);
    let (a, other) = (a.unwrap(), other.unwrap());
    assert_eq!([b.unwrap(), c.unwrap(), d.unwrap()], [a.clone(), a.clone(), a.clone()]);
    assert_ne!(a, other);
    let told: Vec<CacheStatus> = seen.0.lock().unwrap().iter().map(|t| t.0).collect();
    assert_eq!(told.iter().filter(|s| **s == CacheStatus::Miss).count(), 2, "{told:?}");
    assert_eq!(told.iter().filter(|s| **s == CacheStatus::Hit).count(), 3, "{told:?}");

    // The first call fails (nothing kept): the waiting calls then run their own, and all three fail.
    let failing = || json!({ "secs": 1, "fail": true });
    let (a, b, c) = tokio::join!(call(failing()), call(failing()), call(failing()));
    assert!([a, b, c].iter().all(|r| matches!(r, Err(BackendError::Unavailable { .. }))));
    assert_eq!(backend.calls(), 2 + 3);

    // A waiting call keeps its own deadline: it times out while the first one is still running.
    let mut hurried = CallContext::detached("h");
    hurried.timeout = Some(Duration::from_secs(1));
    let long = || args(json!({ "secs": 3 }));
    let (first, waiting) = tokio::join!(
        pipeline.call_tool(&cx, &backend, "c", &policy, long()),
        pipeline.call_tool(&hurried, &backend, "c", &policy, long()),
    );
    assert!(first.is_ok());
    assert!(matches!(waiting, Err(BackendError::Timeout(t)) if t == Duration::from_secs(1)), "{waiting:?}");
    assert_eq!(backend.calls(), 6, "the waiting call never reached the backend");
}

#[tokio::test(start_paused = true)]
async fn only_fresh_successes_that_asked_the_client_nothing_are_kept() {
    let backend = Counting::default();
    let pipeline = Pipeline::new(Duration::from_secs(5)).with_cache(cached(&["c"], 30));
    let policy = ToolPolicy::default();
    let mut cx = CallContext::detached("t");
    cx.peer = Some(Arc::new(Accepts));
    for call in [json!({ "error": true }), json!({ "ask": true })] {
        let a = pipeline.call_tool(&cx, &backend, "c", &policy, args(call.clone())).await.unwrap();
        let b = pipeline.call_tool(&cx, &backend, "c", &policy, args(call.clone())).await.unwrap();
        assert_ne!(a, b, "{call}: not kept");
    }
    assert_eq!(backend.calls(), 4);
    let plain = pipeline.call_tool(&cx, &backend, "c", &policy, args(json!({}))).await.unwrap();
    tokio::time::advance(Duration::from_millis(29_999)).await;
    assert_eq!(pipeline.call_tool(&cx, &backend, "c", &policy, args(json!({}))).await.unwrap(), plain);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_ne!(pipeline.call_tool(&cx, &backend, "c", &policy, args(json!({}))).await.unwrap(), plain);
    assert_eq!(backend.calls(), 6);
    // A tool the section does not name is never looked up (each tool has a policy of its own).
    let other = ToolPolicy::default();
    pipeline.call_tool(&cx, &backend, "other", &other, args(json!({}))).await.unwrap();
    pipeline.call_tool(&cx, &backend, "other", &other, args(json!({}))).await.unwrap();
    assert_eq!(backend.calls(), 8);
}

/// A client that accepts whatever it is asked.
struct Accepts;

#[async_trait]
impl ClientPeer for Accepts {
    async fn progress(&self, _: &Value, _: f64, _: Option<f64>, _: Option<String>) {}
    async fn log(&self, _: LogLevel, _: Option<&str>, _: Value) {}
    async fn request(&self, _: &str, _: &str, _: Value) -> Result<Value, ClientRequestError> {
        Ok(json!({ "action": "accept" }))
    }
    fn client_capabilities(&self) -> Value {
        json!({ "elicitation": {} })
    }
}
