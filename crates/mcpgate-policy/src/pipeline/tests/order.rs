//! The whole order of the steps, per kind of operation: each step marks itself (`step!`) as it is reached, the
//! backend marks its own work, and each test reads the marks of one operation that goes through every step.

use std::cell::RefCell;

use mcpgate_config::{BudgetConfig, CacheConfig, CacheRule, HumanDuration, RateLimitsConfig};
use mcpgate_core::{OperationKind, Principal};
use serde_json::json;

use super::*;
use crate::authz::Grant;

thread_local! {
    static REACHED: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

/// Mark `step` as reached on this thread (the tests run on a current-thread runtime).
pub(crate) fn reached(step: &'static str) {
    REACHED.with(|steps| steps.borrow_mut().push(step));
}

/// The marks so far, cleared.
fn take() -> Vec<&'static str> {
    REACHED.with(|steps| std::mem::take(&mut *steps.borrow_mut()))
}

/// A backend that marks its work.
struct Marking;

#[async_trait]
impl Backend for Marking {
    fn name(&self) -> &str {
        "marking"
    }
    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(vec![])
    }
    async fn call_tool(&self, _cx: &CallContext, _call: ToolCall) -> Result<ToolOutcome, BackendError> {
        reached("backend");
        Ok(ToolOutcome::text("done"))
    }
}

/// A pipeline with every policy on: a rate limit on the tool `t`, the resource `r://x` and the prompt `p`, a
/// cache for `t`, a token budget.
fn everything_on() -> Pipeline {
    let limits: RateLimitsConfig = serde_json::from_value(json!({
        "tools": { "t": { "requests": 9, "per": "1m" } },
        "resources": { "r://*": { "requests": 9, "per": "1m" } },
        "prompts": { "p": { "requests": 9, "per": "1m" } },
    }))
    .unwrap();
    let mut cache = CacheConfig { ttl: HumanDuration::secs(60), ..CacheConfig::default() };
    cache.tools.insert("t".into(), CacheRule::default());
    let budget = BudgetConfig { max_tokens: std::num::NonZeroU64::new(1000), ..BudgetConfig::default() };
    Pipeline::new(Duration::from_secs(5))
        .with_rate_limits(RateLimiter::from_config(&limits).unwrap())
        .with_cache(ResultCache::from_config(&cache))
        .with_budget(Budget::from_config(&budget))
}

#[tokio::test(start_paused = true)]
async fn a_tool_call_goes_through_every_step_in_order() {
    let schema = json!({ "type": "object", "properties": { "n": { "type": "integer" } } });
    let policy = ToolPolicy {
        arguments: Some(ArgumentSchema::compile(schema.as_object().unwrap()).unwrap()),
        breaker: Some(Arc::new(Breaker::new("marking", 5, Duration::from_secs(60)))),
        ..ToolPolicy::default()
    };
    let call = ToolCall { name: "t".into(), arguments: json!({ "n": 1 }).as_object().cloned().unwrap() };
    take();
    let outcome = everything_on().call_tool(&CallContext::detached("t"), &Marking, "t", &policy, call).await;
    assert_eq!(outcome.unwrap(), ToolOutcome::text("done"));
    assert_eq!(
        take(),
        [
            "authorize",
            "rate_limit",
            "validate",
            "cache_lookup",
            "breaker",
            "deadline",
            "backend",
            "breaker_verdict",
            "budget",
            "cache_store"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_stops_at_its_step() {
    // A key without the tool: nothing after authorization runs, not even the rate limit.
    let locked = CallContext {
        principal: Arc::new(Principal::named("locked", "free", &[])),
        ..CallContext::detached("t")
    };
    let call = ToolCall { name: "t".into(), arguments: JsonObject::new() };
    take();
    let refused = everything_on().call_tool(&locked, &Marking, "t", &ToolPolicy::default(), call).await;
    assert!(matches!(refused, Err(BackendError::NotFound { .. })), "{refused:?}");
    assert_eq!(take(), ["authorize"]);
}

#[tokio::test(start_paused = true)]
async fn every_other_operation_goes_through_its_steps_in_order() {
    let pipeline = everything_on();
    let breaker = Breaker::new("marking", 5, Duration::from_secs(60));
    let cx = CallContext::detached("t");
    for (operation, grant, name) in [
        (OperationKind::ReadResource, Grant::Resource, "r://x"),
        (OperationKind::Subscribe, Grant::Resource, "r://x"),
        (OperationKind::GetPrompt, Grant::Prompt, "p"),
        (OperationKind::Complete, Grant::Prompt, "p"),
    ] {
        let target = Target { operation, grant, name, backend: "marking" };
        take();
        let work = async {
            reached("backend");
            Ok::<_, BackendError>(())
        };
        pipeline.run_operation(&cx, target, Some(&breaker), work).await.unwrap();
        assert_eq!(
            take(),
            ["authorize", "rate_limit", "breaker", "deadline", "backend", "breaker_verdict", "budget"],
            "{operation:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn reads_and_prompts_are_held_to_their_grants_and_limits() {
    let key = Principal::named("docs", "free", &[]).with_grants(Arc::new(["r://*".into()]), Arc::new([]));
    let cx = CallContext { principal: Arc::new(key), ..CallContext::detached("t") };
    let pipeline = everything_on();
    let run = |operation, grant, name| {
        let target = Target { operation, grant, name, backend: "marking" };
        pipeline.run_operation(&cx, target, None, async { Ok::<_, BackendError>(()) })
    };
    let prompt = run(OperationKind::GetPrompt, Grant::Prompt, "p").await;
    assert!(matches!(prompt, Err(BackendError::NotFound { kind: "prompt", .. })), "{prompt:?}");
    for _ in 0..9 {
        run(OperationKind::ReadResource, Grant::Resource, "r://x").await.unwrap();
    }
    let limited = run(OperationKind::ReadResource, Grant::Resource, "r://x").await;
    assert!(matches!(limited, Err(BackendError::RateLimited { scope: "resource", .. })), "{limited:?}");
    // Each resource a glob matches has a budget of its own; unsubscribing spends none.
    run(OperationKind::ReadResource, Grant::Resource, "r://y").await.unwrap();
    run(OperationKind::Unsubscribe, Grant::Resource, "r://x").await.unwrap();
}
