//! The order of per-call policies, for every operation. Each step says why it stands where it does, and marks
//! itself as reached (`step!`) so `tests::order` pins the whole order per kind of operation; the other tests pin
//! what each step does to the ones after it (`resilience_steps_run_in_order`,
//! `the_rate_limit_comes_before_validation_and_the_breaker`, `results::cache_and_budget_steps_run_in_order`).
//!
//! A tool call ([`Pipeline::call_tool`]) takes every step; a resource read, prompt, completion or subscription
//! ([`Pipeline::run_operation`]) takes those that apply to it — authorization (by its own globs), its rate limit,
//! the backend's breaker, the deadline and cancellation — and is reported to the same observers.
//!
//! A tool call's steps:
//! 0. authorization — first: a tool the caller's key does not name is answered as an unknown tool, as
//!    `tools/list` does not show it, so nothing about it leaks (not even whether it is rate-limited);
//! 0. rate limit (the tool's own, `rate_limits.tools`) — right after authorization, as DESIGN.md orders them:
//!    a call over its limit costs nothing more (no validation, no breaker count, no backend), and is refused as
//!    a protocol error whatever its arguments, so probing with invalid calls spends the budget too;
//! 1. argument validation — before anything that costs (a cache lookup, a backend call, a breaker's count, a
//!    retry): a call the schema refuses cannot succeed, and the model gets a tool error naming what to fix;
//! 2. cache lookup (tools the `cache` section names) — after validation, so an invalid call gets its tool error
//!    rather than a stored answer; before the breaker, so a fresh result is served while the backend's breaker
//!    is open, and a hit costs the backend nothing and teaches the breaker nothing; a miss on a key another call
//!    is answering waits for that call and looks again, so a burst of one call costs the backend one call;
//! 3. circuit breaker — after validation, so an invalid call never counts against the backend; before the
//!    retries, so an open breaker fails the call once and at once instead of being retried; admission does not
//!    wait, and the verdict is taken after the deadline, so a call the deadline cut short counts as a failure;
//! 4. deadline — around everything that waits, retries and their backoff included, so nothing a call does
//!    outlives its budget;
//! 5. cancellation — a client's `notifications/cancelled` or a drain stops waiting at once, freeing the caller;
//! 6. retries — idempotent tools only, around each attempt, so every try reaches the backend afresh and no
//!    retry starts past the deadline;
//! 7. the backend call itself (its own per-attempt timeout is the backend's business);
//! 8. token/size budget — after all attempts, on the one result that goes back, so what the model receives is
//!    what is held to the limits, counted once; before the cache store, so a hit sends what the miss sent;
//! 9. cache store — last, so only what went back as a success is kept, and only when the call asked the client
//!    nothing (a result built on the client's answers depends on more than the key).
//!
//! `tests::results::cache_and_budget_steps_run_in_order` pins steps 2, 8 and 9 around the others. Every exit —
//! success, tool error, failure — is logged once with its duration and outcome, and reported to the observers.

use std::{sync::Arc, time::Duration};

use mcpgate_core::{Backend, BackendError, CallContext, JsonObject, OperationKind, ToolCall, ToolOutcome};
use serde_json::Value;
use tokio::time::Instant;

use crate::{
    arguments::ArgumentSchema,
    authz::{self, Grant},
    breaker::Breaker,
    budget::{Applied, Budget, BudgetVerdict, Contents},
    cache::{Flight, Lookup, ResultCache, ToolCache, WatchedPeer},
    ratelimit::Scope,
    ratelimit::{RateLimiter, ToolRateLimit},
    retry::{self, Backoff},
};

/// Marks that a step was reached. Tests read the marks back (`tests::order`) to pin the order of the steps for
/// each kind of operation; other builds compile it to nothing.
macro_rules! step {
    ($name:literal) => {
        #[cfg(test)]
        tests::order::reached($name);
    };
}

/// What the pipeline knows of one tool, prepared once when the catalogue is built.
#[derive(Debug, Default)]
pub struct ToolPolicy {
    /// The tool's compiled input schema; `None` accepts any arguments object.
    pub arguments: Option<ArgumentSchema>,
    /// How many times a call that failed with a retryable error is tried again; 0 (the default) for none.
    /// Only tools marked idempotent get more than 0: a retry repeats the tool's effects.
    pub retries: u32,
    /// The circuit breaker of the tool's backend, one `Arc` shared by all its tools; `None` for none.
    pub breaker: Option<Arc<Breaker>>,
    /// The tool's rate-limit bucket, resolved from the pipeline's limiter on the first call.
    pub rate_limit: ToolRateLimit,
    /// How the tool's results are cached, resolved from the pipeline's cache on the first call.
    pub cache: ToolCache,
}

/// What the pipeline learned about one operation, handed to every [`CallObserver`] at every exit — success,
/// tool error, failure and refusal alike.
#[derive(Debug)]
pub struct CallReport<'a> {
    /// The call's context: correlation id, principal (name, client address).
    pub cx: &'a CallContext,
    /// What was asked: a tool call, a resource read, a prompt, a completion, a subscription.
    pub operation: OperationKind,
    /// What it named, as the client named it: the public tool name, the resource URI, the prompt's name.
    pub tool: &'a str,
    /// The backend (upstream) that serves it; empty when nothing does.
    pub backend: &'a str,
    /// Time from entering the pipeline to leaving it.
    pub elapsed: Duration,
    /// How it ended.
    pub outcome: Outcome<'a>,
    /// What the cache did for the call.
    pub cache: CacheStatus,
    /// Tokens of the call, when the budget counts them (`budget.max_tokens` set, or `budget.count_tokens`).
    pub tokens: Option<TokenUsage>,
    /// What the budget step did to the result; `None` when it did not run: no budget, no result (the call failed
    /// or was refused first), or a cache hit (its result was held to the budget when it was kept).
    pub budget: Option<BudgetVerdict>,
    /// The call's arguments, when an observer asked for them ([`CallObserver::wants_arguments`]).
    pub arguments: Option<&'a JsonObject>,
    /// What the backend said about the call for the audit line ([`ToolOutcome::audit`]).
    pub detail: Option<&'a serde_json::Value>,
}

/// How one operation ended, as observers see it.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// It answered.
    Ok,
    /// The tool ran and reported failure (`isError: true`).
    ToolError,
    /// No answer could be had, or it was refused.
    Failed(&'a BackendError),
}

impl<'a> Outcome<'a> {
    /// The outcome of a tool call's result.
    pub fn of_call(result: &'a Result<ToolOutcome, BackendError>) -> Self {
        match result {
            Ok(outcome) if outcome.is_error => Self::ToolError,
            other => Self::of(other),
        }
    }

    /// The outcome of any other operation's result.
    pub fn of<T>(result: &'a Result<T, BackendError>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(error) => Self::Failed(error),
        }
    }
}

/// An operation's answer, as the budget step sees it.
pub trait Answered {
    /// Hold it to `budget`: `None` when the budget has nothing to say about this kind of answer; else what the
    /// budget did, or the refusal.
    fn hold(&mut self, _budget: &Budget) -> Option<Result<Applied, String>> {
        None
    }
}

/// A subscription change carries nothing to hold.
impl Answered for () {}

/// Completion values are short by the protocol (at most 100).
impl Answered for mcpgate_core::CompletionValues {}

/// A resource read (`contents`) or a prompt (`messages`).
impl Answered for (JsonObject, Contents) {
    fn hold(&mut self, budget: &Budget) -> Option<Result<Applied, String>> {
        Some(budget.apply_contents(&mut self.0, self.1))
    }
}

/// What an operation other than a tool call names, for [`Pipeline::run_operation`].
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The operation.
    pub operation: OperationKind,
    /// Which kind of grant allows it.
    pub grant: Grant,
    /// What it names: the resource URI, the prompt's name.
    pub name: &'a str,
    /// The backend that serves it.
    pub backend: &'a str,
}

/// What the cache did for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheStatus {
    /// Not looked up: the tool is not cached, or the call ended before the lookup.
    #[default]
    NotCacheable,
    /// Looked up and not found fresh: the call ran.
    Miss,
    /// Answered from the cache.
    Hit,
}

impl CacheStatus {
    /// Whether the cache answered the call.
    pub fn is_hit(self) -> bool {
        self == Self::Hit
    }
}

/// The tokens of one call (o200k).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenUsage {
    /// Tokens of the call's arguments, as compact JSON.
    pub input: u64,
    /// Tokens of the result that went back (after the budget step); `None` when no result did.
    pub output: Option<u64>,
}

/// What [`Pipeline::run`] learns besides the result, for the [`CallReport`].
#[derive(Debug, Default)]
struct Facts {
    cache: CacheStatus,
    tokens: Option<TokenUsage>,
    budget: Option<BudgetVerdict>,
}

/// What the answer still waits for once an observer has seen the call (the audit line, while another call's
/// write is under way); see [`CallObserver::call_finished`].
pub type Settling<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// Something that wants to know about every call the pipeline finishes (metrics, the audit log). Called on the
/// caller's task before the answer leaves, so it must be quick.
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    /// One call finished. `Some` when the observer's record is not complete yet: the pipeline awaits it before
    /// the answer leaves (the audit log's line is written by then).
    fn call_finished(&self, report: &CallReport<'_>) -> Option<Settling<'_>>;

    /// Whether [`CallReport::arguments`] should be filled (it costs a copy of every call's arguments).
    fn wants_arguments(&self) -> bool {
        false
    }
}

/// The pipeline every tool call goes through, whatever its backend.
#[derive(Debug, Clone)]
pub struct Pipeline {
    default_timeout: Duration,
    backoff: Backoff,
    rate_limiter: Option<Arc<RateLimiter>>,
    cache: Option<Arc<ResultCache>>,
    budget: Option<Arc<Budget>>,
    observers: Vec<Arc<dyn CallObserver>>,
    wants_arguments: bool,
}

impl Pipeline {
    /// A pipeline whose calls time out after `default_timeout` unless the context sets its own, and whose
    /// retries wait the default [`Backoff`].
    pub fn new(default_timeout: Duration) -> Self {
        Self {
            default_timeout,
            backoff: Backoff::default(),
            rate_limiter: None,
            cache: None,
            budget: None,
            observers: Vec::new(),
            wants_arguments: false,
        }
    }

    /// The same pipeline also reporting every finished call to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.wants_arguments |= observer.wants_arguments();
        self.observers.push(observer);
        self
    }

    /// The same pipeline with `backoff` between retries.
    pub fn with_backoff(self, backoff: Backoff) -> Self {
        Self { backoff, ..self }
    }

    /// The same pipeline enforcing `limiter`'s tool limits (`None`: no limit). The HTTP edge checks its request
    /// limits with the same limiter ([`Pipeline::rate_limiter`]), so both share one store.
    pub fn with_rate_limits(self, rate_limiter: Option<Arc<RateLimiter>>) -> Self {
        Self { rate_limiter, ..self }
    }

    /// The rate limiter in force, if any limit is set.
    pub fn rate_limiter(&self) -> Option<&Arc<RateLimiter>> {
        self.rate_limiter.as_ref()
    }

    /// The same pipeline answering the tools `cache` names from it (`None`: no cache).
    pub fn with_cache(self, cache: Option<Arc<ResultCache>>) -> Self {
        Self { cache, ..self }
    }

    /// The result cache in force, if any tool is cached.
    pub fn cache(&self) -> Option<&Arc<ResultCache>> {
        self.cache.as_ref()
    }

    /// The same pipeline holding results to `budget` (`None`: no limit, no counting).
    pub fn with_budget(self, budget: Option<Arc<Budget>>) -> Self {
        Self { budget, ..self }
    }

    /// The token/size budget in force, if one is set.
    pub fn budget(&self) -> Option<&Arc<Budget>> {
        self.budget.as_ref()
    }

    /// Run one call through every step. `public_name` is the name the client used (for logs); `policy` is
    /// the tool's.
    pub async fn call_tool(
        &self,
        cx: &CallContext,
        backend: &dyn Backend,
        public_name: &str,
        policy: &ToolPolicy,
        call: ToolCall,
    ) -> Result<ToolOutcome, BackendError> {
        let started = Instant::now();
        let mut facts = Facts::default();
        // A copy only when an observer wants it (an audit log with arguments): the call itself moves on.
        let arguments = self.wants_arguments.then(|| call.arguments.clone());
        let result = self.run(cx, backend, public_name, policy, call, started, &mut facts).await;
        let report = CallReport {
            cx,
            operation: OperationKind::CallTool,
            tool: public_name,
            backend: backend.name(),
            elapsed: started.elapsed(),
            outcome: Outcome::of_call(&result),
            cache: facts.cache,
            tokens: facts.tokens,
            budget: facts.budget,
            arguments: arguments.as_ref(),
            detail: result.as_ref().ok().and_then(|outcome| outcome.audit.as_deref()),
        };
        record(&report);
        self.report(&report).await;
        result
    }

    /// Tell the observers of an operation on something that does not exist (or that the caller may not see,
    /// which it is answered as): it runs through none of the steps, yet the audit log records it, as refused
    /// (`not_found`).
    pub async fn not_found(
        &self,
        cx: &CallContext,
        operation: OperationKind,
        name: &str,
        arguments: Option<&JsonObject>,
    ) {
        let kind = match operation {
            OperationKind::CallTool => "tool",
            OperationKind::GetPrompt => "prompt",
            _ => "resource",
        };
        let error = BackendError::NotFound { kind, name: name.to_owned() };
        let report = CallReport {
            cx,
            operation,
            tool: name,
            backend: "",
            elapsed: Duration::ZERO,
            outcome: Outcome::Failed(&error),
            cache: CacheStatus::NotCacheable,
            tokens: None,
            budget: None,
            arguments,
            detail: None,
        };
        record(&report);
        self.report(&report).await;
    }

    /// Run one operation other than a tool call — a resource read, a prompt, a completion, a subscription —
    /// through the steps that apply to it, in a tool call's order:
    /// 0. authorization — first: what the caller may not use is answered as unknown, so nothing leaks;
    /// 0. rate limit (`rate_limits.resources` / `.prompts`) — before anything costs;
    /// 3. the backend's circuit breaker — an open one fails at once, and the outcome teaches it;
    /// 4. deadline and 5. cancellation around 7. the backend's work (`run`);
    /// 8. the token/size budget, on a resource's contents or a prompt's messages ([`Answered`]);
    /// then every observer hears of it (metrics, the audit line). Reads and prompts are not retried (a
    /// resource is not declared idempotent) nor cached (they may differ per caller and per moment).
    pub async fn run_operation<T, F>(
        &self,
        cx: &CallContext,
        target: Target<'_>,
        breaker: Option<&Breaker>,
        run: F,
    ) -> Result<T, BackendError>
    where
        T: Answered,
        F: std::future::Future<Output = Result<T, BackendError>>,
    {
        let started = Instant::now();
        let mut budget = None;
        let result = self.run_steps(cx, target, breaker, started, run, &mut budget).await;
        let report = CallReport {
            cx,
            operation: target.operation,
            tool: target.name,
            backend: target.backend,
            elapsed: started.elapsed(),
            outcome: Outcome::of(&result),
            cache: CacheStatus::NotCacheable,
            tokens: None,
            budget,
            arguments: None,
            detail: None,
        };
        record(&report);
        self.report(&report).await;
        result
    }

    async fn run_steps<T, F>(
        &self,
        cx: &CallContext,
        target: Target<'_>,
        breaker: Option<&Breaker>,
        started: Instant,
        run: F,
        verdict: &mut Option<BudgetVerdict>,
    ) -> Result<T, BackendError>
    where
        T: Answered,
        F: std::future::Future<Output = Result<T, BackendError>>,
    {
        step!("authorize");
        // 0. Authorization: what the caller may not use does not exist for it.
        if !authz::allows(&cx.principal, target.grant, target.name) {
            let kind = if target.grant == Grant::Prompt { "prompt" } else { "resource" };
            return Err(BackendError::NotFound { kind, name: target.name.to_owned() });
        }
        step!("rate_limit");
        // 0. Rate limit: over its limit, refused before it costs anything.
        let scope = match target.grant {
            Grant::Resource => Some(Scope::Resource),
            Grant::Prompt => Some(Scope::Prompt),
            Grant::Tool => None,
        };
        if let (Some(limiter), Some(scope)) = (&self.rate_limiter, scope)
            && matches!(
                target.operation,
                OperationKind::ReadResource | OperationKind::Subscribe | OperationKind::GetPrompt
            )
        {
            limiter.check_named(scope, target.name, started).await?;
        }
        step!("breaker");
        // 3. Circuit breaker: an open one fails at once.
        let permit = breaker.map(Breaker::try_acquire).transpose()?;
        let timeout = cx.timeout.unwrap_or(self.default_timeout);
        step!("deadline");
        // 4. Deadline, 5. cancellation, around 7. the backend's work.
        let (mut result, cut_short) = self.bounded(cx, started + timeout, timeout, run).await;
        step!("breaker_verdict");
        // 3'. The breaker learns the outcome (see `call_tool`'s step).
        settle(permit, cut_short, &result);
        // 8. Token/size budget: a resource's contents or a prompt's messages can blow a context as a tool
        // result can; held to the same limits (after the breaker's verdict: the backend did answer).
        step!("budget");
        if let (Some(budget), Ok(answer)) = (self.budget.as_deref(), &mut result)
            && let Some(held) = answer.hold(budget)
        {
            match held {
                Ok(applied) => *verdict = Some(applied.verdict),
                Err(refusal) => result = Err(BackendError::InvalidArguments(refusal)),
            }
        }
        result
    }

    /// Hand `report` to every observer, waiting for what they have left to settle.
    async fn report(&self, report: &CallReport<'_>) {
        for observer in &self.observers {
            if let Some(settling) = observer.call_finished(report) {
                settling.await;
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // the call, its tool, and where its facts go: one place, read in order
    async fn run(
        &self,
        cx: &CallContext,
        backend: &dyn Backend,
        public_name: &str,
        policy: &ToolPolicy,
        mut call: ToolCall,
        started: Instant,
        facts: &mut Facts,
    ) -> Result<ToolOutcome, BackendError> {
        step!("authorize");
        // 0. Authorization: a tool the caller may not use does not exist for it.
        if !authz::may_use(&cx.principal, public_name) {
            return Err(BackendError::NotFound { kind: "tool", name: public_name.to_owned() });
        }
        step!("rate_limit");
        // 0. Rate limit: a call over its tool's limit is refused before it costs anything, whatever it carries.
        if let Some(limiter) = &self.rate_limiter {
            limiter.check_tool(&policy.rate_limit, public_name, started).await?;
        }
        step!("validate");
        // 1. Arguments: refused before anything costs, as a tool error the model can act on.
        if let Some(schema) = &policy.arguments {
            let arguments = Value::Object(std::mem::take(&mut call.arguments));
            if let Err(message) = schema.check(&arguments) {
                return Ok(ToolOutcome::error(message));
            }
            let Value::Object(map) = arguments else { unreachable!("wrapped as an object just above") };
            call.arguments = map;
        }
        // (The budget counts the arguments of a call that will be answered, hit or not, for the report.)
        let budget = self.budget.as_deref();
        if let Some(input) = budget.and_then(|budget| budget.count_arguments(&call.arguments)) {
            facts.tokens = Some(TokenUsage { input, output: None });
        }
        let timeout = cx.timeout.unwrap_or(self.default_timeout);
        let deadline = started + timeout;
        step!("cache_lookup");
        // 2. Cache lookup: a fresh result answers at once, whatever the backend's state. A miss on a key another
        // call is answering waits for that call (once, within this call's deadline), then looks again.
        let mut kept = None;
        if let Some(cache) = self.cache.as_deref()
            && let Some(rule) = cache.rule(&policy.cache, public_name)
        {
            let mut waited = false;
            loop {
                let lookup = cache.lookup(rule, public_name, &cx.principal, &call.arguments, Instant::now());
                match lookup.await {
                    Lookup::Hit(entry) => {
                        facts.cache = CacheStatus::Hit;
                        if let Some(tokens) = &mut facts.tokens {
                            tokens.output = entry.tokens;
                        }
                        return Ok(ToolOutcome::clone(&entry.outcome));
                    }
                    Lookup::Miss(key) => match cache.join(&key) {
                        flight @ Flight::Wait(_) if !waited => {
                            waited = true;
                            wait_for(flight, cx, deadline, timeout).await?;
                        }
                        flight => {
                            facts.cache = CacheStatus::Miss;
                            kept = Some((cache, rule, key, flight));
                            break;
                        }
                    },
                }
            }
        }
        step!("breaker");
        // 3. Circuit breaker: only valid calls count; an open breaker fails at once and is never retried.
        let permit = policy.breaker.as_deref().map(Breaker::try_acquire).transpose()?;
        // A result that may be kept: its way back to the client is watched, for step 9.
        let watched = kept.as_ref().and_then(|_| WatchedPeer::watch(cx));
        let backend_cx = watched.as_ref().map_or(cx, |(watched_cx, _)| watched_cx);
        step!("deadline");
        // 4. Deadline: around everything that waits, so the whole call — retries included — fits the budget;
        // 5. cancellation: the client (or a drain) can stop waiting before the deadline.
        // 6. Retries, each one 7. a backend call.
        let attempts = retry::run(backend_cx, policy.retries, &self.backoff, deadline, call, |call| {
            backend.call_tool(backend_cx, call)
        });
        let (mut result, cut_short) = self.bounded(cx, deadline, timeout, attempts).await;
        step!("breaker_verdict");
        // 3'. The breaker learns the outcome, the deadline's included; a cancelled call teaches it nothing, nor
        // does one cut by a budget shorter than the gateway's own (the caller's choice, not the backend's fault).
        settle(permit, cut_short, &result);
        step!("budget");
        // 8. Token/size budget: the result that goes back is held to the limits — sent whole, cut or refused.
        if let (Some(budget), Ok(outcome)) = (budget, &mut result) {
            let applied = budget.apply(outcome);
            facts.budget = Some(applied.verdict);
            if let Some(tokens) = &mut facts.tokens {
                tokens.output = applied.tokens;
            }
        }
        step!("cache_store");
        // 9. Cache store: a success, as sent, that asked the client nothing.
        if let Some((cache, rule, key, _flight)) = kept
            && let Ok(outcome) = &mut result
            && !outcome.is_error
            && !watched.as_ref().is_some_and(|(_, peer)| peer.asked())
        {
            let tokens = facts.tokens.and_then(|tokens| tokens.output);
            cache.store(rule, key, outcome, tokens, &cx.principal, Instant::now()).await;
        }
        result
    }
}

impl Pipeline {
    /// `work` under the deadline (steps 4 and 5): its result, `Timeout` at `deadline`, or `Cancelled` when the
    /// caller's token fires first; and whether the deadline cut it while shorter than the gateway's own.
    async fn bounded<T>(
        &self,
        cx: &CallContext,
        deadline: Instant,
        timeout: Duration,
        work: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> (Result<T, BackendError>, bool) {
        let finished = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                biased;
                _ = cx.cancel.cancelled() => Err(BackendError::Cancelled),
                result = work => result,
            }
        })
        .await;
        let cut_short = finished.is_err() && timeout < self.default_timeout;
        (finished.unwrap_or(Err(BackendError::Timeout(timeout))), cut_short)
    }
}

/// Step 3': the breaker's permit learns `result`, unless a deadline shorter than the gateway's cut the call.
fn settle<T>(permit: Option<crate::breaker::Permit<'_>>, cut_short: bool, result: &Result<T, BackendError>) {
    if let Some(permit) = permit {
        if cut_short { drop(permit) } else { permit.record(result) }
    }
}

/// Wait for the call answering the same cache key to be done, within this call's deadline and until it is
/// cancelled.
async fn wait_for(
    flight: Flight<'_>,
    cx: &CallContext,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), BackendError> {
    let waiting = tokio::time::timeout_at(deadline, async {
        tokio::select! {
            biased;
            _ = cx.cancel.cancelled() => Err(BackendError::Cancelled),
            () = flight.wait() => Ok(()),
        }
    });
    waiting.await.unwrap_or(Err(BackendError::Timeout(timeout)))
}

fn record(report: &CallReport<'_>) {
    let CallReport { cx, operation, tool, backend, elapsed, outcome, .. } = *report;
    let (micros, operation) = (elapsed.as_micros() as u64, operation.as_str());
    match outcome {
        Outcome::Ok | Outcome::ToolError => tracing::debug!(
            request_id = %cx.request_id, principal = %cx.principal.name, operation, target = tool, backend, micros,
            outcome = if matches!(outcome, Outcome::ToolError) { "tool_error" } else { "ok" }, "operation done"
        ),
        // Asking the client for input is a normal step of a multi-round call, not a failure.
        Outcome::Failed(BackendError::InputRequired) => tracing::debug!(
            request_id = %cx.request_id, operation, target = tool, backend, micros, outcome = "input_required",
            "operation done"
        ),
        Outcome::Failed(error) => tracing::info!(
            request_id = %cx.request_id, principal = %cx.principal.name, operation, target = tool, backend, micros,
            outcome = "error", kind = error.kind(), %error, "operation done"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use mcpgate_core::ToolDef;

    use super::*;

    /// Steps 2, 8 and 9 (cache lookup, budget, cache store) among the others.
    mod results;

    /// The whole order, step by step, per kind of operation.
    pub(super) mod order;

    /// A backend that sleeps for the requested time and records what happened.
    struct Sleepy(Arc<Mutex<Vec<&'static str>>>);

    #[async_trait]
    impl Backend for Sleepy {
        fn name(&self) -> &str {
            "sleepy"
        }
        async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
            Ok(vec![])
        }
        async fn call_tool(&self, _cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
            self.0.lock().unwrap().push("backend started");
            let secs = call.arguments.get("secs").and_then(|v| v.as_u64()).unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            self.0.lock().unwrap().push("backend finished");
            Ok(ToolOutcome::text("done"))
        }
    }

    fn call(secs: u64) -> ToolCall {
        let arguments = serde_json::json!({ "secs": secs }).as_object().cloned().unwrap();
        ToolCall { name: "sleep".into(), arguments }
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_is_exact_and_stops_the_backend() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let pipeline = Pipeline::new(Duration::from_secs(5));
        let started = Instant::now();
        let result = pipeline
            .call_tool(
                &CallContext::detached("t"),
                &Sleepy(log.clone()),
                "sleep",
                &ToolPolicy::default(),
                call(60),
            )
            .await;
        assert!(matches!(result, Err(BackendError::Timeout(d)) if d == Duration::from_secs(5)));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(*log.lock().unwrap(), ["backend started"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_context_timeout_overrides_the_default() {
        let mut cx = CallContext::detached("t");
        cx.timeout = Some(Duration::from_secs(1));
        let result = Pipeline::new(Duration::from_secs(60))
            .call_tool(&cx, &Sleepy(Default::default()), "sleep", &ToolPolicy::default(), call(2))
            .await;
        assert!(matches!(result, Err(BackendError::Timeout(d)) if d == Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_wins_before_the_deadline() {
        let cx = CallContext::detached("t");
        let cancel = cx.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            cancel.cancel();
        });
        let started = Instant::now();
        let result = Pipeline::new(Duration::from_secs(30))
            .call_tool(&cx, &Sleepy(Default::default()), "sleep", &ToolPolicy::default(), call(10))
            .await;
        assert!(matches!(result, Err(BackendError::Cancelled)));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_arguments_never_reach_the_backend() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let schema = serde_json::json!({ "type": "object", "properties": { "secs": { "type": "integer", "maximum": 3 } } });
        let policy = ToolPolicy {
            arguments: Some(ArgumentSchema::compile(schema.as_object().unwrap()).unwrap()),
            ..ToolPolicy::default()
        };
        let pipeline = Pipeline::new(Duration::from_secs(5));
        let refused = pipeline
            .call_tool(&CallContext::detached("t"), &Sleepy(log.clone()), "sleep", &policy, call(9))
            .await;
        let refused = refused.unwrap();
        assert!(refused.is_error, "{refused:?}");
        assert!(refused.content[0]["text"].as_str().unwrap().contains("/secs"), "{refused:?}");
        assert!(log.lock().unwrap().is_empty(), "the backend must not run");
        let ok = pipeline
            .call_tool(&CallContext::detached("t"), &Sleepy(log.clone()), "sleep", &policy, call(1))
            .await;
        assert_eq!(ok.unwrap(), ToolOutcome::text("done"));
    }

    /// A backend that logs each attempt, sleeps `secs`, then fails as `Unavailable` (`"fail": true`) or answers.
    struct Down(Arc<Mutex<Vec<&'static str>>>);

    #[async_trait]
    impl Backend for Down {
        fn name(&self) -> &str {
            "down"
        }
        async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
            Ok(vec![])
        }
        async fn call_tool(&self, _cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
            self.0.lock().unwrap().push("attempt");
            let secs = call.arguments.get("secs").and_then(|v| v.as_u64()).unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            if call.arguments.get("fail").and_then(|v| v.as_bool()).unwrap_or(true) {
                Err(BackendError::unavailable("down", "502"))
            } else {
                Ok(ToolOutcome::text("up"))
            }
        }
    }

    fn failing(secs: u64) -> ToolCall {
        let arguments = serde_json::json!({ "secs": secs, "fail": true }).as_object().cloned().unwrap();
        ToolCall { name: "x".into(), arguments }
    }

    fn resilient(retries: u32, threshold: u32) -> (ToolPolicy, Arc<Breaker>) {
        let breaker = Arc::new(Breaker::new("down", threshold, Duration::from_secs(60)));
        (ToolPolicy { retries, breaker: Some(breaker.clone()), ..ToolPolicy::default() }, breaker)
    }

    fn exact_pipeline(deadline_secs: u64, backoff_ms: u64) -> Pipeline {
        let backoff = Duration::from_millis(backoff_ms);
        Pipeline::new(Duration::from_secs(deadline_secs)).with_backoff(Backoff::exact(backoff, backoff))
    }

    #[tokio::test(start_paused = true)]
    async fn resilience_steps_run_in_order() {
        use crate::breaker::BreakerPhase;
        let log = Arc::new(Mutex::new(Vec::new()));
        let cx = CallContext::detached("t");
        let schema = serde_json::json!({ "type": "object", "properties": { "secs": { "type": "integer", "maximum": 3 } } });
        let (mut policy, breaker) = resilient(2, 1);
        policy.arguments = Some(ArgumentSchema::compile(schema.as_object().unwrap()).unwrap());
        let pipeline = exact_pipeline(30, 100);

        // Validation before the breaker: an invalid call is a tool error and never counts against the backend.
        let refused = pipeline.call_tool(&cx, &Down(log.clone()), "x", &policy, failing(9)).await.unwrap();
        assert!(refused.is_error);
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Closed);
        assert!(log.lock().unwrap().is_empty());

        // Retries inside the breaker: three attempts make one failure, which (threshold 1) opens it.
        let started = Instant::now();
        let failed = pipeline.call_tool(&cx, &Down(log.clone()), "x", &policy, failing(0)).await;
        assert!(matches!(failed, Err(BackendError::Unavailable { ref reason, .. }) if reason == "502"));
        assert_eq!(*log.lock().unwrap(), ["attempt", "attempt", "attempt"]);
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
        assert_eq!(breaker.snapshot().consecutive_failures, 1);

        // Breaker before retries: open, it fails at once, without touching the backend and without retrying.
        let started = Instant::now();
        let fast = pipeline.call_tool(&cx, &Down(log.clone()), "x", &policy, failing(0)).await;
        let error = fast.unwrap_err();
        assert!(error.to_string().contains("circuit breaker open"), "{error}");
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(log.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_comes_before_validation_and_the_breaker() {
        use crate::breaker::BreakerPhase;
        let log = Arc::new(Mutex::new(Vec::new()));
        let cx = CallContext::detached("t");
        let schema = serde_json::json!({ "type": "object", "properties": { "secs": { "type": "integer", "maximum": 3 } } });
        let (mut policy, breaker) = resilient(0, 1);
        policy.arguments = Some(ArgumentSchema::compile(schema.as_object().unwrap()).unwrap());
        let limits: mcpgate_config::RateLimitsConfig =
            serde_json::from_value(serde_json::json!({ "tools": { "x": { "requests": 2, "per": "1m" } } }))
                .unwrap();
        let pipeline = exact_pipeline(30, 100).with_rate_limits(RateLimiter::from_config(&limits).unwrap());

        // Within the limit: an invalid call is a tool error, a failing one opens the breaker (threshold 1).
        let refused = pipeline.call_tool(&cx, &Down(log.clone()), "x", &policy, failing(9)).await.unwrap();
        assert!(refused.is_error);
        let failed = pipeline.call_tool(&cx, &Down(log.clone()), "x", &policy, failing(0)).await;
        assert!(matches!(failed, Err(BackendError::Unavailable { .. })));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);

        // Over it: refused before validation (an invalid call gets the same answer) and before the open breaker,
        // and the backend is not reached.
        for call in [failing(9), failing(0)] {
            let limited = pipeline.call_tool(&cx, &Down(log.clone()), "x", &policy, call).await;
            assert!(
                matches!(limited, Err(BackendError::RateLimited { scope: "tool", retry_after }) if retry_after == Duration::from_secs(30)),
                "{limited:?}"
            );
        }
        assert_eq!(log.lock().unwrap().len(), 1);
        // Another tool has no limit.
        let other =
            pipeline.call_tool(&cx, &Down(log.clone()), "y", &ToolPolicy::default(), failing(0)).await;
        assert!(matches!(other, Err(BackendError::Unavailable { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stay_inside_the_deadline() {
        // Attempts of 2 s each, 100 ms apart: the third starts at 4.2 s and the 5 s deadline cuts it.
        let log = Arc::new(Mutex::new(Vec::new()));
        let (policy, _) = resilient(10, 5);
        let started = Instant::now();
        let result = exact_pipeline(5, 100)
            .call_tool(&CallContext::detached("t"), &Down(log.clone()), "x", &policy, failing(2))
            .await;
        assert!(matches!(result, Err(BackendError::Timeout(d)) if d == Duration::from_secs(5)), "{result:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(log.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn tools_without_retries_are_tried_once() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (policy, _) = resilient(0, 5);
        let result = exact_pipeline(5, 100)
            .call_tool(&CallContext::detached("t"), &Down(log.clone()), "x", &policy, failing(0))
            .await;
        assert!(matches!(result, Err(BackendError::Unavailable { .. })));
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_cut_by_the_deadline_counts_but_not_a_cancelled_or_hurried_one() {
        use crate::breaker::BreakerPhase;
        let (policy, breaker) = resilient(0, 1);
        let cx = CallContext::detached("t");
        let cancel = cx.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cancel.cancel();
        });
        let cancelled =
            exact_pipeline(5, 100).call_tool(&cx, &Down(Default::default()), "x", &policy, failing(3)).await;
        assert!(matches!(cancelled, Err(BackendError::Cancelled)));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Closed);

        let mut hurried = CallContext::detached("t");
        hurried.timeout = Some(Duration::from_secs(1));
        let short = exact_pipeline(5, 100)
            .call_tool(&hurried, &Down(Default::default()), "x", &policy, failing(3))
            .await;
        assert!(matches!(short, Err(BackendError::Timeout(_))));
        assert_eq!(
            breaker.snapshot().phase,
            BreakerPhase::Closed,
            "the caller's short budget is not a failure"
        );

        let timed_out = exact_pipeline(5, 100)
            .call_tool(&CallContext::detached("t"), &Down(Default::default()), "x", &policy, failing(60))
            .await;
        assert!(matches!(timed_out, Err(BackendError::Timeout(_))));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_probe_closes_the_breaker() {
        use crate::breaker::BreakerPhase;
        let (policy, breaker) = resilient(0, 1);
        let pipeline = exact_pipeline(5, 100);
        let cx = CallContext::detached("t");
        let _ = pipeline.call_tool(&cx, &Down(Default::default()), "x", &policy, failing(0)).await;
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
        tokio::time::advance(Duration::from_secs(60)).await;
        let ok = serde_json::json!({ "fail": false }).as_object().cloned().unwrap();
        let probe = ToolCall { name: "x".into(), arguments: ok };
        let result = pipeline.call_tool(&cx, &Down(Default::default()), "x", &policy, probe).await;
        assert_eq!(result.unwrap(), ToolOutcome::text("up"));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Closed);
    }
}
