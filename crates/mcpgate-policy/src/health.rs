//! Periodic health checks of one backend: [`Backend::health`] every interval — and at once whenever its
//! catalogue changes ([`Backend::catalogue_changes`]: an upstream reconnected or went down) — the last result kept
//! for `/ready` and `/status`, and fed to the backend's [`Breaker`] (see [`Breaker::observe_health`]) so a dead
//! backend trips its breaker even when nobody calls it, and a recovered one gets probed without waiting.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use mcpgate_core::{Backend, BackendHealth};
use serde_json::{Value, json};
use tokio::{task::JoinHandle, time::Instant};

use crate::breaker::Breaker;

/// The last health check of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// What the check said.
    pub health: BackendHealth,
    /// When it ran.
    pub checked_at: Instant,
    /// Failed checks in a row (0 when the last one passed).
    pub consecutive_failures: u32,
}

impl HealthSnapshot {
    /// `{status: up|down, reason, checked_ago_ms, consecutive_failures}` for `/status` and `/ready`.
    pub fn to_json(&self) -> Value {
        let (status, reason) = match &self.health {
            BackendHealth::Up => ("up", None),
            BackendHealth::Down(reason) => ("down", Some(reason.as_str())),
        };
        json!({
            "status": status,
            "reason": reason,
            "checked_ago_ms": self.checked_at.elapsed().as_millis() as u64,
            "consecutive_failures": self.consecutive_failures,
        })
    }
}

/// Checks one backend every `interval`. Build with [`HealthChecker::new`], start with [`HealthChecker::spawn`]
/// (abort the handle at shutdown), read with [`HealthChecker::last`].
pub struct HealthChecker {
    backend: Arc<dyn Backend>,
    interval: Duration,
    breaker: Option<Arc<Breaker>>,
    last: Mutex<Option<HealthSnapshot>>,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker")
            .field("backend", &self.backend.name())
            .field("interval", &self.interval)
            .field("last", &self.last())
            .finish()
    }
}

// === impl HealthChecker ===

impl HealthChecker {
    /// A checker of `backend` every `interval` (at least 1 ms), reporting to `breaker` when given.
    pub fn new(backend: Arc<dyn Backend>, interval: Duration, breaker: Option<Arc<Breaker>>) -> Arc<Self> {
        let interval = interval.max(Duration::from_millis(1));
        Arc::new(Self { backend, interval, breaker, last: Mutex::new(None) })
    }

    /// The last check's result; `None` before the first.
    pub fn last(&self) -> Option<HealthSnapshot> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Run one check now. A check that does not answer within the interval counts as down.
    pub async fn check(&self) -> BackendHealth {
        let health = tokio::time::timeout(self.interval, self.backend.health()).await.unwrap_or_else(|_| {
            BackendHealth::Down(format!("health check did not answer within {:?}", self.interval))
        });
        let up = health == BackendHealth::Up;
        {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            let before = last.as_ref().map_or(0, |s| s.consecutive_failures);
            match &health {
                // Logged when it goes down, not on every failed check after that.
                BackendHealth::Down(reason) if before == 0 => {
                    tracing::warn!(backend = %self.backend.name(), %reason, "health check failed");
                }
                BackendHealth::Up if before > 0 => {
                    tracing::info!(backend = %self.backend.name(), "health check passes again");
                }
                _ => {}
            }
            *last = Some(HealthSnapshot {
                health: health.clone(),
                checked_at: Instant::now(),
                consecutive_failures: if up { 0 } else { before.saturating_add(1) },
            });
        }
        if let Some(breaker) = &self.breaker {
            breaker.observe_health(up, if up { None } else { self.backend.outage() });
        }
        health
    }

    /// Check at once, then every interval and on every catalogue change, until the handle is aborted. A slow
    /// check delays the next one rather than stacking them.
    pub fn spawn(self: &Arc<Self>) -> JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(this.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut changes = this.backend.catalogue_changes();
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    changed = async { changes.as_mut().expect("guarded").changed().await }, if changes.is_some() => {
                        if changed.is_err() {
                            // The backend will announce no more changes.
                            changes = None;
                            continue;
                        }
                        // The next periodic check counts from this one.
                        ticks.reset();
                    }
                }
                this.check().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use async_trait::async_trait;
    use mcpgate_core::{BackendError, CallContext, ToolCall, ToolDef, ToolOutcome};

    use super::*;
    use crate::breaker::BreakerPhase;

    #[derive(Default)]
    struct Flaky {
        down: AtomicBool,
        checks: AtomicU32,
        changes: Option<tokio::sync::watch::Sender<u64>>,
        /// The outage it reports while down, if any.
        outage: Option<u64>,
    }

    #[async_trait]
    impl Backend for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
            Ok(vec![])
        }
        async fn call_tool(&self, _cx: &CallContext, _call: ToolCall) -> Result<ToolOutcome, BackendError> {
            Ok(ToolOutcome::text("ok"))
        }
        fn outage(&self) -> Option<u64> {
            self.outage.filter(|_| self.down.load(Ordering::SeqCst))
        }
        fn catalogue_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
            self.changes.as_ref().map(|tx| tx.subscribe())
        }
        async fn health(&self) -> BackendHealth {
            self.checks.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                BackendHealth::Down("gone".into())
            } else {
                BackendHealth::Up
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn checks_every_interval_and_drives_the_breaker() {
        let backend = Arc::new(Flaky::default());
        let breaker = Arc::new(Breaker::new("flaky", 2, Duration::from_secs(30)));
        let checker = HealthChecker::new(backend.clone(), Duration::from_secs(10), Some(breaker.clone()));
        let task = checker.spawn();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(backend.checks.load(Ordering::SeqCst), 1, "the first check runs at once");
        assert_eq!(checker.last().unwrap().health, BackendHealth::Up);

        backend.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(backend.checks.load(Ordering::SeqCst), 3);
        let last = checker.last().unwrap();
        assert_eq!((last.health.clone(), last.consecutive_failures), (BackendHealth::Down("gone".into()), 2));
        assert_eq!(last.to_json()["status"], "down");
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Open, "two failed checks tripped it");

        backend.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(checker.last().unwrap().consecutive_failures, 0);
        assert_eq!(breaker.snapshot().phase, BreakerPhase::HalfOpen, "recovered: the next call probes");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_catalogue_change_is_checked_at_once_and_an_outage_is_one_failure() {
        let (tx, _) = tokio::sync::watch::channel(0);
        let backend = Arc::new(Flaky { changes: Some(tx.clone()), outage: Some(7), ..Flaky::default() });
        let breaker = Arc::new(Breaker::new("flaky", 2, Duration::from_secs(60)));
        let checker = HealthChecker::new(backend.clone(), Duration::from_secs(3600), Some(breaker.clone()));
        let task = checker.spawn();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(backend.checks.load(Ordering::SeqCst), 1);

        // The upstream goes down (its catalogue changes): checked at once, an hour before the next tick.
        backend.down.store(true, Ordering::SeqCst);
        tx.send_modify(|n| *n += 1);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(backend.checks.load(Ordering::SeqCst), 2);
        // A failed call of the same outage does not count a second time: the breaker stays closed.
        breaker.try_acquire().unwrap().record::<()>(&Err(BackendError::Unavailable {
            backend: "flaky".into(),
            reason: "disconnected".into(),
            outage: Some(7),
        }));
        assert_eq!(breaker.snapshot().consecutive_failures, 1);
        assert_eq!(breaker.snapshot().phase, BreakerPhase::Closed);

        // Back: checked at once again.
        backend.down.store(false, Ordering::SeqCst);
        tx.send_modify(|n| *n += 1);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(backend.checks.load(Ordering::SeqCst), 3);
        assert_eq!(checker.last().unwrap().health, BackendHealth::Up);
        task.abort();
    }
}
