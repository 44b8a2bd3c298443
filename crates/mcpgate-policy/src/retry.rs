//! Retries of failed calls, for tools marked idempotent only (the catalogue decides: [`ToolPolicy::retries`]).
//!
//! Only errors a retry may help ([`BackendError::is_retryable`]) are retried, after an exponential backoff with
//! full jitter (a random wait between zero and `base × 2^attempt`, capped at `max`) so that callers that
//! failed together do not come back together. The loop runs inside the pipeline's deadline and cancellation:
//! a retry that could not start before the deadline is not tried, and the call fails with the last attempt's
//! error rather than a bare timeout.
//!
//! [`ToolPolicy::retries`]: crate::ToolPolicy::retries

use std::{
    future::Future,
    hash::{BuildHasher, Hasher},
    time::Duration,
};

use mcpgate_core::{BackendError, CallContext, ToolCall, ToolOutcome};
use serde_json::Value;
use tokio::time::Instant;

/// How long to wait before each retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: bool,
}

impl Default for Backoff {
    /// 100 ms, doubling, at most 5 s: the defaults of `resilience.retry_backoff_base` / `retry_backoff_max`.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

// === impl Backoff ===

impl Backoff {
    /// Waits drawn from `[0, min(max, base × 2^attempt)]`. A `max` below `base` is raised to `base`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max: max.max(base), jitter: true }
    }

    /// The same ceilings without jitter: every wait is its ceiling (for tests that count exact time).
    pub fn exact(base: Duration, max: Duration) -> Self {
        Self { jitter: false, ..Self::new(base, max) }
    }

    /// The longest wait before retry number `attempt` (0 for the first retry).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry number `attempt`: uniformly random up to [`ceiling`](Self::ceiling).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        if !self.jitter || ceiling.is_zero() {
            return ceiling;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(random_u64() % nanos.saturating_add(1))
    }
}

/// A random number from the standard library's per-hasher random keys: plenty for jitter, no extra dependency.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    hasher.finish()
}

/// How many retries a tool gets: `max_retries` (its upstream's setting) when its annotations say
/// `idempotentHint: true` — or `readOnlyHint: true` and `read_only_is_idempotent` — else 0. Hints are the
/// server's word, not a guarantee; a tool without annotations is never retried.
pub fn retries_for(annotations: Option<&Value>, max_retries: u32, read_only_is_idempotent: bool) -> u32 {
    let hint = |name: &str| annotations.and_then(|a| a.get(name)).and_then(Value::as_bool) == Some(true);
    if hint("idempotentHint") || (read_only_is_idempotent && hint("readOnlyHint")) { max_retries } else { 0 }
}

/// Run `attempt` with `call` once, and again up to `retries` times while it fails with a retryable error,
/// waiting [`Backoff::delay`] in between. Stops early when `cx` is cancelled or when the next try could not
/// start before `deadline`; then the last error stands. The call is cloned only for tries that may be followed
/// by another.
pub async fn run<F, Fut>(
    cx: &CallContext,
    retries: u32,
    backoff: &Backoff,
    deadline: Instant,
    call: ToolCall,
    mut attempt: F,
) -> Result<ToolOutcome, BackendError>
where
    F: FnMut(ToolCall) -> Fut,
    Fut: Future<Output = Result<ToolOutcome, BackendError>>,
{
    let mut retried = 0;
    loop {
        if retried >= retries {
            return attempt(call).await;
        }
        let result = attempt(call.clone()).await;
        let error = match &result {
            Err(error) if error.is_retryable() => error,
            _ => return result,
        };
        let wait = backoff.delay(retried);
        if cx.cancel.is_cancelled() || Instant::now() + wait >= deadline {
            return result;
        }
        retried += 1;
        tracing::debug!(
            request_id = %cx.request_id, retry = retried, of = retries, wait_ms = wait.as_millis() as u64,
            %error, "retrying"
        );
        tokio::select! {
            biased;
            _ = cx.cancel.cancelled() => return Err(BackendError::Cancelled),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn unavailable() -> BackendError {
        BackendError::unavailable("b", "down")
    }

    const MS: Duration = Duration::from_millis(1);

    fn call() -> ToolCall {
        ToolCall { name: "t".into(), arguments: Default::default() }
    }

    #[test]
    fn only_idempotent_tools_get_retries() {
        let annotated = |a: Value| retries_for(Some(&a), 3, false);
        assert_eq!(annotated(serde_json::json!({ "idempotentHint": true })), 3);
        assert_eq!(annotated(serde_json::json!({ "idempotentHint": false })), 0);
        assert_eq!(annotated(serde_json::json!({ "idempotentHint": "yes" })), 0);
        assert_eq!(annotated(serde_json::json!({ "readOnlyHint": true })), 0);
        assert_eq!(retries_for(Some(&serde_json::json!({ "readOnlyHint": true })), 3, true), 3);
        assert_eq!(retries_for(None, 3, true), 0);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let backoff = Backoff::new(100 * MS, Duration::from_secs(5));
        let ceilings: Vec<_> = (0..8).map(|a| backoff.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(5), "no overflow");
        for attempt in [0, 1, 5, 40, u32::MAX] {
            for _ in 0..200 {
                assert!(backoff.delay(attempt) <= backoff.ceiling(attempt));
            }
        }
        // Full jitter: the waits spread out rather than all landing on the ceiling.
        assert!((0..50).any(|_| backoff.delay(3) < backoff.ceiling(3)));
        assert_eq!(Backoff::new(2 * MS, MS).ceiling(9), 2 * MS, "max is raised to base");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_up_to_the_limit_with_backoff() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let far = started + Duration::from_secs(3600);
        let result =
            run(&CallContext::detached("t"), 3, &Backoff::exact(100 * MS, 250 * MS), far, call(), |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(unavailable()) }
            })
            .await;
        assert!(matches!(result, Err(BackendError::Unavailable { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 4, "one try and three retries");
        assert_eq!(started.elapsed(), (100 + 200 + 250) * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_after_a_failure_is_returned() {
        let calls = AtomicU32::new(0);
        let far = Instant::now() + Duration::from_secs(60);
        let result = run(&CallContext::detached("t"), 5, &Backoff::default(), far, call(), |_| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err(BackendError::Timeout(MS)) } else { Ok(ToolOutcome::text("ok")) } }
        })
        .await;
        assert_eq!(result.unwrap(), ToolOutcome::text("ok"));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn non_retryable_errors_and_tool_errors_are_not_retried() {
        let far = Instant::now() + Duration::from_secs(60);
        for outcome in [
            Err(BackendError::InvalidArguments("x".into())),
            Err(BackendError::Cancelled),
            Err(BackendError::InputRequired),
            Ok(ToolOutcome::error("tool failed")),
        ] {
            let calls = AtomicU32::new(0);
            let result = run(&CallContext::detached("t"), 5, &Backoff::default(), far, call(), |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                let outcome = outcome.clone();
                async move { outcome }
            })
            .await;
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{result:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn zero_retries_means_one_try() {
        let calls = AtomicU32::new(0);
        let far = Instant::now() + Duration::from_secs(60);
        let _ = run(&CallContext::detached("t"), 0, &Backoff::default(), far, call(), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(unavailable()) }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_past_the_deadline() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(1000);
        let result = run(
            &CallContext::detached("t"),
            10,
            &Backoff::exact(300 * MS, 300 * MS),
            deadline,
            call(),
            |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(unavailable()) }
            },
        )
        .await;
        // Tries at 0, 300, 600 and 900 ms; a fifth would start at 1200 ms, past the deadline.
        assert!(matches!(result, Err(BackendError::Unavailable { .. })), "the last error, not a timeout");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(started.elapsed(), 900 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_the_backoff_wait() {
        let cx = CallContext::detached("t");
        let cancel = cx.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            cancel.cancel();
        });
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let far = started + Duration::from_secs(60);
        let result = run(&cx, 10, &Backoff::exact(100 * MS, Duration::from_secs(5)), far, call(), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(unavailable()) }
        })
        .await;
        assert!(matches!(result, Err(BackendError::Cancelled)));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "tries at 0 and 100 ms, cancelled during the 200 ms wait"
        );
        assert_eq!(started.elapsed(), 150 * MS);
    }
}
