//! A circuit breaker per backend: after `failure_threshold` consecutive failures the backend is left alone for
//! `reset_timeout`, so a dead upstream costs callers nothing but an immediate error; then exactly one probe
//! call is let through — its success closes the breaker, its failure opens it again.
//!
//! Only failures of the backend count: an `Err` the upstream is blamed for, or one a retry may help. A tool
//! error (`Ok` with `is_error`) means the backend works; an error the client caused (bad arguments, unknown
//! name, cancellation) says nothing about the backend, and neither counts nor resets.
//!
//! A lost connection is one failure, however many calls it fails: the backend tags those failures with their
//! outage ([`BackendError::outage`]) and the breaker counts the calls of each outage once. Each failed health
//! check counts, so a backend that stays down still trips its breaker; a probe's failure always counts. A
//! breaker that an outage opened
//! goes half-open as soon as the backend is back and its health check passes ([`Breaker::observe_health`]);
//! one opened by failures while connected (errors, timeouts) waits out the reset timeout.
//!
//! State sits behind a short `std::sync::Mutex`, never held across an `.await`. Time is
//! `tokio::time::Instant`, so the tests run on a paused clock.

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use mcpgate_core::{BackendError, Blame};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerPhase {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls fail at once until the reset timeout has passed.
    Open,
    /// The reset timeout has passed: one probe call decides between closed and open.
    HalfOpen,
}

impl BreakerPhase {
    /// `closed`, `open` or `half_open`, as `/status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// The value of the `mcp_circuit_breaker_state{upstream}` gauge: 0 closed, 1 half-open, 2 open.
    pub fn metric_value(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

/// A breaker's state as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSnapshot {
    /// The backend it guards.
    pub backend: String,
    /// Where it stands. An open breaker whose reset timeout has passed shows as `HalfOpen`: the next call probes.
    pub phase: BreakerPhase,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// How long it has been open (or half-open), when it is.
    pub open_for: Option<Duration>,
    /// How long until a probe call is let through, when it is open.
    pub retry_in: Option<Duration>,
}

impl BreakerSnapshot {
    /// The snapshot as a JSON object for `/status`: `{state, consecutive_failures, open_for_ms, retry_in_ms}`.
    pub fn to_json(&self) -> Value {
        json!({
            "state": self.phase.as_str(),
            "consecutive_failures": self.consecutive_failures,
            "open_for_ms": self.open_for.map(|d| d.as_millis() as u64),
            "retry_in_ms": self.retry_in.map(|d| d.as_millis() as u64),
        })
    }
}

/// What one call's result says about the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The backend answered (a tool error included).
    Success,
    /// The backend failed: upstream-blamed or retryable; part of this outage, when the backend said.
    Failure {
        /// The outage ([`BackendError::outage`]): failures of one outage count once.
        outage: Option<u64>,
    },
    /// Nothing learned about the backend (the client's fault, a cancellation, a gateway bug).
    Neutral,
}

impl Verdict {
    /// Classify a call's result.
    pub fn of<T>(result: &Result<T, BackendError>) -> Self {
        match result {
            Ok(_) => Self::Success,
            Err(error) if error.blame() == Blame::Upstream || error.is_retryable() => {
                Self::Failure { outage: error.outage() }
            }
            Err(_) => Self::Neutral,
        }
    }
}

#[derive(Debug)]
struct Inner {
    phase: BreakerPhase,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
    /// The last outage counted: later failures of the same outage are not counted again.
    counted_outage: Option<u64>,
    /// Whether the failure that opened the breaker was an outage (a lost connection), not a failure while
    /// connected: then a passing health check makes it half-open at once.
    opened_by_outage: bool,
}

/// The circuit breaker of one backend, shared (`Arc`) by the policies of all its tools and its health checker.
#[derive(Debug)]
pub struct Breaker {
    backend: String,
    failure_threshold: u32,
    reset_timeout: Duration,
    inner: Mutex<Inner>,
}

// === impl Breaker ===

impl Breaker {
    /// A closed breaker for `backend` that opens after `failure_threshold` consecutive failures (at least 1)
    /// and lets a probe through `reset_timeout` after opening.
    pub fn new(backend: impl Into<String>, failure_threshold: u32, reset_timeout: Duration) -> Self {
        Self {
            backend: backend.into(),
            failure_threshold: failure_threshold.max(1),
            reset_timeout,
            inner: Mutex::new(Inner {
                phase: BreakerPhase::Closed,
                consecutive_failures: 0,
                opened_at: None,
                probe_in_flight: false,
                counted_outage: None,
                opened_by_outage: false,
            }),
        }
    }

    /// The backend it guards.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state stays consistent under every early exit, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ask to make one call. `Err(Unavailable)` at once while open, or while half-open with its probe in
    /// flight; otherwise a [`Permit`] through which the call reports its result. A permit dropped without a
    /// result (the caller went away) teaches the breaker nothing and frees the probe slot.
    pub fn try_acquire(&self) -> Result<Permit<'_>, BackendError> {
        let mut inner = self.lock();
        match inner.phase {
            BreakerPhase::Closed => return Ok(Permit { breaker: self, probe: false, done: false }),
            BreakerPhase::Open => {
                // Read the clock only here: a closed breaker (nearly every call) needs no time.
                let now = Instant::now();
                let reopen = inner.opened_at.map_or(now, |at| at + self.reset_timeout);
                if now < reopen {
                    let wait = reopen - now;
                    return Err(self.open_error(&inner, format!("retry in {}s", ceil_secs(wait))));
                }
                inner.phase = BreakerPhase::HalfOpen;
            }
            BreakerPhase::HalfOpen => {}
        }
        if inner.probe_in_flight {
            return Err(self.open_error(&inner, "a probe call is in flight, retry in 1s".into()));
        }
        inner.probe_in_flight = true;
        tracing::info!(backend = %self.backend, "circuit breaker half-open: letting one probe call through");
        Ok(Permit { breaker: self, probe: true, done: false })
    }

    fn open_error(&self, inner: &Inner, retry: String) -> BackendError {
        let failures = inner.consecutive_failures;
        BackendError::unavailable(
            &self.backend,
            format!("circuit breaker open after {failures} consecutive failures, {retry}"),
        )
    }

    fn settle(&self, probe: bool, verdict: Verdict) {
        let mut inner = self.lock();
        if probe {
            inner.probe_in_flight = false;
        }
        // A call admitted while closed that ends after the breaker opened is stale: only the probe decides.
        let current = inner.phase == BreakerPhase::Closed || probe;
        match verdict {
            Verdict::Success if current => {
                if inner.phase != BreakerPhase::Closed {
                    tracing::info!(backend = %self.backend, "circuit breaker closed: the probe call succeeded");
                }
                inner.phase = BreakerPhase::Closed;
                inner.consecutive_failures = 0;
                inner.opened_at = None;
            }
            Verdict::Failure { outage } if current => self.fail(&mut inner, outage),
            _ => {}
        }
    }

    /// Count one failure, unless the breaker is closed and the failure belongs to an outage already counted (a
    /// probe's failure always counts).
    fn fail(&self, inner: &mut Inner, outage: Option<u64>) {
        if let Some(outage) = outage {
            if inner.phase == BreakerPhase::Closed && inner.counted_outage == Some(outage) {
                return;
            }
            inner.counted_outage = Some(outage);
        }
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let trips = match inner.phase {
            BreakerPhase::Closed => inner.consecutive_failures >= self.failure_threshold,
            BreakerPhase::HalfOpen => true,
            BreakerPhase::Open => false,
        };
        if trips {
            inner.phase = BreakerPhase::Open;
            inner.opened_at = Some(Instant::now());
            inner.opened_by_outage = outage.is_some();
            tracing::warn!(
                backend = %self.backend, failures = inner.consecutive_failures,
                reset_after_ms = self.reset_timeout.as_millis() as u64, "circuit breaker open"
            );
        }
    }

    /// Take a health check's result into account (see [`HealthChecker`](crate::HealthChecker)); a failed one
    /// may belong to an `outage` ([`Backend::outage`](mcpgate_core::Backend::outage)):
    /// - a failed check while closed counts as one failure, even during an outage its calls were counted for, so a
    ///   backend that stays down trips the breaker after `failure_threshold` checks, whether or not calls are made
    ///   (the calls of that outage made after the check do not count again);
    /// - a failed check while open or half-open (re)opens it for a full reset timeout: no caller is sent to probe a
    ///   backend known to be down (a probe already in flight still decides by its own result);
    /// - a passing check while open makes it half-open (the next call probes): at once when an outage (a lost
    ///   connection) opened it — the backend is back — else once its reset timeout has passed; a passing check
    ///   never closes it — only a call does.
    pub fn observe_health(&self, up: bool, outage: Option<u64>) {
        let mut inner = self.lock();
        let now = Instant::now();
        match (inner.phase, up) {
            (BreakerPhase::Closed, false) => {
                inner.counted_outage = None;
                self.fail(&mut inner, outage);
            }
            (BreakerPhase::Open | BreakerPhase::HalfOpen, false) => {
                inner.phase = BreakerPhase::Open;
                inner.opened_at = Some(now);
            }
            (BreakerPhase::Open, true)
                if inner.opened_by_outage
                    || inner.opened_at.is_none_or(|at| now >= at + self.reset_timeout) =>
            {
                if inner.opened_by_outage {
                    tracing::info!(backend = %self.backend, "circuit breaker half-open: the backend is back");
                }
                inner.phase = BreakerPhase::HalfOpen;
            }
            _ => {}
        }
    }

    /// Where it stands now, for `/status` and metrics.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = Instant::now();
        let inner = self.lock();
        let mut phase = inner.phase;
        let open_for = inner.opened_at.filter(|_| phase != BreakerPhase::Closed).map(|at| now - at);
        let mut retry_in = None;
        if phase == BreakerPhase::Open {
            let reopen = inner.opened_at.map_or(now, |at| at + self.reset_timeout);
            if now >= reopen {
                phase = BreakerPhase::HalfOpen;
            } else {
                retry_in = Some(reopen - now);
            }
        }
        BreakerSnapshot {
            backend: self.backend.clone(),
            phase,
            consecutive_failures: inner.consecutive_failures,
            open_for,
            retry_in,
        }
    }
}

/// Whole seconds, rounded up, so "retry in 0s" is never said while the breaker is still open.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Leave to make one call through a [`Breaker`]; report the result with [`Permit::record`].
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

// === impl Permit ===

impl Permit<'_> {
    /// Whether this call is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Report the call's result.
    pub fn record<T>(mut self, result: &Result<T, BackendError>) {
        self.done = true;
        self.breaker.settle(self.probe, Verdict::of(result));
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.settle(self.probe, Verdict::Neutral);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgate_core::ToolOutcome;

    const RESET: Duration = Duration::from_secs(60);

    fn down() -> Result<ToolOutcome, BackendError> {
        Err(BackendError::Failed { backend: "b".into(), message: "502".into(), blame: Blame::Upstream })
    }

    fn fail(breaker: &Breaker, times: u32) {
        for _ in 0..times {
            breaker.try_acquire().unwrap().record(&down());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_consecutive_failures() {
        let breaker = Breaker::new("b", 3, RESET);
        fail(&breaker, 2);
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Closed);
        assert_eq!(breaker.snapshot().consecutive_failures, 2);
        fail(&breaker, 1);
        let snapshot = breaker.snapshot();
        assert_eq!(snapshot.phase, BreakerPhase::Open);
        assert_eq!(snapshot.retry_in, Some(RESET));
        assert_eq!(snapshot.to_json()["state"], "open");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let breaker = Breaker::new("b", 3, RESET);
        fail(&breaker, 2);
        breaker.try_acquire().unwrap().record(&Ok(ToolOutcome::text("ok")));
        fail(&breaker, 2);
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn tool_errors_and_client_errors_do_not_count() {
        let breaker = Breaker::new("b", 1, RESET);
        breaker.try_acquire().unwrap().record(&Ok(ToolOutcome::error("the tool said no")));
        breaker.try_acquire().unwrap().record::<()>(&Err(BackendError::InvalidArguments("x".into())));
        breaker.try_acquire().unwrap().record::<()>(&Err(BackendError::Cancelled));
        breaker
            .try_acquire()
            .unwrap()
            .record::<()>(&Err(BackendError::NotFound { kind: "tool", name: "nope".into() }));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Closed);
        assert_eq!(breaker.snapshot().consecutive_failures, 0);
        // Timeouts and unavailability do.
        breaker.try_acquire().unwrap().record::<()>(&Err(BackendError::Timeout(Duration::from_secs(1))));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn open_fails_fast_and_says_when_to_retry() {
        let breaker = Breaker::new("b", 1, RESET);
        fail(&breaker, 1);
        tokio::time::advance(Duration::from_millis(20_500)).await;
        let error = breaker.try_acquire().unwrap_err();
        assert!(matches!(&error, BackendError::Unavailable { backend, .. } if backend == "b"), "{error}");
        assert!(error.to_string().contains("circuit breaker open"), "{error}");
        assert!(error.to_string().contains("retry in 40s"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_exactly_one_probe_through() {
        let breaker = Breaker::new("b", 1, RESET);
        fail(&breaker, 1);
        tokio::time::advance(RESET).await;
        assert_eq!(breaker.snapshot().phase, BreakerPhase::HalfOpen);
        let probe = breaker.try_acquire().unwrap();
        assert!(probe.is_probe());
        assert!(breaker.try_acquire().is_err(), "a second call while the probe runs");
        drop(probe);
        // A probe that went away without a result frees the slot for the next call.
        let probe = breaker.try_acquire().unwrap();
        assert!(probe.is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn probe_success_closes() {
        let breaker = Breaker::new("b", 2, RESET);
        fail(&breaker, 2);
        tokio::time::advance(RESET).await;
        breaker.try_acquire().unwrap().record(&Ok(ToolOutcome::text("back")));
        let snapshot = breaker.snapshot();
        assert_eq!((snapshot.phase, snapshot.consecutive_failures), (BreakerPhase::Closed, 0));
        assert!(!breaker.try_acquire().unwrap().is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn probe_failure_reopens_for_a_full_reset_timeout() {
        let breaker = Breaker::new("b", 2, RESET);
        fail(&breaker, 2);
        tokio::time::advance(RESET).await;
        breaker.try_acquire().unwrap().record(&down());
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
        assert_eq!(breaker.snapshot().retry_in, Some(RESET));
        tokio::time::advance(RESET - Duration::from_millis(1)).await;
        assert!(breaker.try_acquire().is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(breaker.try_acquire().unwrap().is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn stale_results_do_not_move_an_open_breaker() {
        let breaker = Breaker::new("b", 1, RESET);
        let slow = breaker.try_acquire().unwrap();
        fail(&breaker, 1);
        slow.record(&Ok(ToolOutcome::text("late")));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn health_checks_trip_rearm_and_half_open() {
        let breaker = Breaker::new("b", 2, RESET);
        breaker.observe_health(false, None);
        breaker.observe_health(false, None);
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
        tokio::time::advance(Duration::from_secs(50)).await;
        breaker.observe_health(true, None);
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open, "too early to probe");
        breaker.observe_health(false, None);
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open, "the failed check re-armed the timer");
        tokio::time::advance(Duration::from_secs(10)).await;
        breaker.observe_health(true, None);
        assert_eq!(breaker.snapshot().phase, BreakerPhase::HalfOpen);
        assert!(breaker.try_acquire().unwrap().is_probe());
    }

    fn lost(outage: u64) -> Result<ToolOutcome, BackendError> {
        Err(BackendError::Unavailable {
            backend: "b".into(),
            reason: "disconnected".into(),
            outage: Some(outage),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_calls_one_outage_fails_count_once() {
        let breaker = Breaker::new("b", 3, RESET);
        // Thirty-two calls in flight when the connection dropped, and the calls made before it came back.
        for _ in 0..32 {
            breaker.try_acquire().unwrap().record(&lost(1));
        }
        assert_eq!(breaker.snapshot().consecutive_failures, 1);
        // A failed health check during the same outage counts; the calls after it do not.
        breaker.observe_health(false, Some(1));
        breaker.try_acquire().unwrap().record(&lost(1));
        let snapshot = breaker.snapshot();
        assert_eq!((snapshot.phase, snapshot.consecutive_failures), (BreakerPhase::Closed, 2));
        // Back, answering; a straggler of the old outage answered late does not count again.
        breaker.try_acquire().unwrap().record(&Ok(ToolOutcome::text("back")));
        breaker.try_acquire().unwrap().record(&lost(1));
        assert_eq!(breaker.snapshot().consecutive_failures, 0);
        // Three outages in a row with no success between: that is the threshold.
        for outage in 2..5 {
            breaker.try_acquire().unwrap().record(&lost(outage));
        }
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_stays_down_trips_on_its_failed_health_checks() {
        // An upstream that never connected: every failure is outage 0.
        let breaker = Breaker::new("b", 3, RESET);
        breaker.observe_health(false, Some(0));
        breaker.try_acquire().unwrap().record(&lost(0));
        breaker.observe_health(false, Some(0));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Closed);
        breaker.observe_health(false, Some(0));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_it_within_the_same_outage() {
        // No health checks: the reset timeout lets a probe through while the outage goes on.
        let breaker = Breaker::new("b", 1, RESET);
        breaker.try_acquire().unwrap().record(&lost(1));
        tokio::time::advance(RESET).await;
        let probe = breaker.try_acquire().unwrap();
        assert!(probe.is_probe());
        probe.record(&lost(1));
        let snapshot = breaker.snapshot();
        assert_eq!((snapshot.phase, snapshot.retry_in), (BreakerPhase::Open, Some(RESET)));
        assert!(breaker.try_acquire().is_err(), "no second probe before the reset timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_that_opened_it_half_opens_it_as_soon_as_the_backend_is_back() {
        let breaker = Breaker::new("b", 1, RESET);
        breaker.try_acquire().unwrap().record(&lost(1));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
        tokio::time::advance(Duration::from_millis(700)).await;
        // Still down: the breaker stays open.
        breaker.observe_health(false, Some(1));
        assert!(breaker.try_acquire().is_err());
        // Reconnected, the check passes: half-open at once, far from the reset timeout; the probe closes it.
        breaker.observe_health(true, None);
        let probe = breaker.try_acquire().unwrap();
        assert!(probe.is_probe());
        probe.record(&Ok(ToolOutcome::text("back")));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_while_connected_count_each_and_wait_out_the_reset_timeout() {
        let breaker = Breaker::new("b", 3, RESET);
        // Errors and timeouts of a connected backend: every call counts.
        fail(&breaker, 2);
        breaker.try_acquire().unwrap().record::<()>(&Err(BackendError::Timeout(Duration::from_secs(1))));
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
        // Its health checks pass all along (it is connected); that does not cut the reset timeout short.
        breaker.observe_health(true, None);
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open);
        tokio::time::advance(RESET - Duration::from_millis(1)).await;
        breaker.observe_health(true, None);
        assert!(breaker.try_acquire().is_err(), "the reset timeout governs");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(breaker.try_acquire().unwrap().is_probe());
    }
}
