//! What is read at scrape time rather than updated on every change: breaker phases, upstream health, sessions,
//! the audit log's counts.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError, Weak},
};

use mcpgate_policy::{AuditCounters, BreakerPhase};
use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, metrics::MetricType};

use super::names;

/// One backend as a scrape sees it.
#[derive(Debug, Clone)]
pub(crate) struct BackendReading {
    /// Its name.
    pub(crate) name: String,
    /// Its breaker's phase.
    pub(crate) phase: BreakerPhase,
    /// For an upstream, whether it is up (down while its breaker is open, else what its last health check
    /// found); `None` for other backends, and for an upstream before its first check.
    pub(crate) up: Option<bool>,
}

/// What the gateway tells the metrics when they are scraped: the metrics read no gateway, catalogue or session
/// record themselves, so those may name the metrics without a circle.
pub(crate) trait Readings: Send + Sync {
    /// Every backend of the catalogue in force.
    fn backends(&self) -> Vec<BackendReading>;
    /// Legacy sessions open, and how many of them hold a protocol worker (the others are parked).
    fn sessions(&self) -> (usize, usize);
    /// The state backend's kind, and whether it answers.
    fn state(&self) -> (&'static str, bool);
}

/// What is read at scrape time: breaker phases, upstream health and live sessions from the gateway's
/// [`Readings`], the audit log's counts.
pub(super) struct Live {
    /// Set once the gateway exists ([`Metrics::read_from`](super::Metrics::read_from)).
    pub(super) readings: Mutex<Option<Weak<dyn Readings>>>,
    /// What every audit log of the gateway counts into ([`Metrics::audit_counters`](super::Metrics::audit_counters)).
    pub(super) audit: Arc<AuditCounters>,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let readings = self.readings.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let readings = readings.and_then(|weak| weak.upgrade());
        let (backends, sessions, state) = readings.map_or_else(
            || (Vec::new(), (0, 0), None),
            |readings| (readings.backends(), readings.sessions(), Some(readings.state())),
        );
        let (sessions, workers) = sessions;

        let help = "Circuit breaker of each backend: 0 closed, 1 half-open, 2 open";
        let mut family = encoder.encode_descriptor(names::BREAKER_STATE, help, None, MetricType::Gauge)?;
        for backend in &backends {
            let labels = [("upstream", backend.name.as_str())];
            family.encode_family(&labels)?.encode_gauge(&i64::from(backend.phase.metric_value()))?;
        }

        // As `/status` says it: down while the breaker is open, else what the last health check found; no sample
        // before the first check.
        let help = "Upstream MCP servers: 1 up, 0 down (last health check, or an open circuit breaker)";
        let mut family = encoder.encode_descriptor(names::UPSTREAM_UP, help, None, MetricType::Gauge)?;
        for backend in &backends {
            if let Some(up) = backend.up {
                let labels = [("upstream", backend.name.as_str())];
                family.encode_family(&labels)?.encode_gauge(&i64::from(up))?;
            }
        }

        let help = "Legacy (initialize-based) sessions open";
        let mut gauge = encoder.encode_descriptor(names::ACTIVE_SESSIONS, help, None, MetricType::Gauge)?;
        gauge.encode_gauge(&(sessions as i64))?;
        let help = "Legacy sessions holding a protocol worker (the rest are parked: a small record each)";
        let mut gauge = encoder.encode_descriptor(names::SESSION_WORKERS, help, None, MetricType::Gauge)?;
        gauge.encode_gauge(&(workers as i64))?;

        if let Some((backend, up)) = state {
            let help = "The state backend (rate limits, cache): 1 reachable, 0 not (in memory: always 1)";
            let mut family =
                encoder.encode_descriptor(names::STATE_BACKEND_UP, help, None, MetricType::Gauge)?;
            family.encode_family(&[("backend", backend)])?.encode_gauge(&i64::from(up))?;
        }

        // Zero while no audit log is configured; a failure is a call whose line is missing from the file.
        let audit = [
            (names::AUDIT_LINES, "Audit log lines written", self.audit.lines()),
            (names::AUDIT_FAILURES, "Audit log lines that could not be written", self.audit.failures()),
        ];
        for (name, help, value) in audit {
            let mut counter = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            counter.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }
}
