//! What is read at scrape time rather than updated on every change: breaker phases, upstream health, sessions,
//! the audit log's counts.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError, Weak},
};

use mcpgate_core::BackendHealth;
use mcpgate_policy::{AuditCounters, BreakerPhase};
use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, metrics::MetricType};

use super::names;
use crate::{catalogue::Catalogue, sessions::Sessions};

/// What is read at scrape time: breaker phases and upstream health from the catalogue in force, live sessions
/// from the session record, the audit log's counts.
pub(super) struct Live {
    pub(super) catalogue: Arc<Catalogue>,
    /// The HTTP app's legacy sessions ([`Metrics::watch_sessions`](super::Metrics::watch_sessions)).
    pub(super) sessions: Mutex<Weak<Sessions>>,
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
        let registry = self.catalogue.get();
        let phases: Vec<BreakerPhase> =
            registry.backends().iter().map(|entry| entry.breaker.snapshot().phase).collect();

        let help = "Circuit breaker of each backend: 0 closed, 1 half-open, 2 open";
        let mut family = encoder.encode_descriptor(names::BREAKER_STATE, help, None, MetricType::Gauge)?;
        for (entry, phase) in registry.backends().iter().zip(&phases) {
            let labels = [("upstream", entry.name.as_str())];
            family.encode_family(&labels)?.encode_gauge(&i64::from(phase.metric_value()))?;
        }

        // As `/status` says it: down while the breaker is open, else what the last health check found; no sample
        // before the first check.
        let help = "Upstream MCP servers: 1 up, 0 down (last health check, or an open circuit breaker)";
        let mut family = encoder.encode_descriptor(names::UPSTREAM_UP, help, None, MetricType::Gauge)?;
        for (entry, phase) in registry
            .backends()
            .iter()
            .zip(&phases)
            .filter(|(e, _)| e.kind == mcpgate_backends::BackendKind::Upstream)
        {
            let last = entry.health.as_ref().and_then(|health| health.last());
            let up = match (phase, last) {
                (BreakerPhase::Open, _) => false,
                (_, Some(last)) => last.health == BackendHealth::Up,
                (_, None) => continue,
            };
            let labels = [("upstream", entry.name.as_str())];
            family.encode_family(&labels)?.encode_gauge(&i64::from(up))?;
        }

        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner).upgrade();
        let help = "Legacy (initialize-based) sessions open";
        let mut gauge = encoder.encode_descriptor(names::ACTIVE_SESSIONS, help, None, MetricType::Gauge)?;
        gauge.encode_gauge(&(sessions.map_or(0, |s| s.len()) as i64))?;

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
