//! The series the hot path feeds, by handle: a leaf the registry may name (each tool route keeps its own
//! [`ToolMetrics`]) without reaching the rest of the metrics.

use std::sync::Arc;

use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram};

use super::labels::{ToolLabels, ToolStatusLabels};

/// Latency buckets, in seconds: from 100 µs (a fast-path call takes tens of µs) to a minute (past the default
/// 30 s request timeout and the sandbox's time limit).
const LATENCY_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];

pub(super) fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub(crate) type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The series of one tool, resolved once per route ([`ToolRoute::metrics_or`](crate::registry::ToolRoute::metrics_or)).
#[derive(Debug)]
pub(crate) struct ToolMetrics {
    pub(super) tool: Arc<str>,
    pub(super) success: Counter,
    pub(super) error: Counter,
    pub(super) duration: Histogram,
}

// === impl ToolMetrics ===

impl ToolMetrics {
    pub(super) fn new(
        tool: Arc<str>,
        executions: &Family<ToolStatusLabels, Counter>,
        durations: &Histograms<ToolLabels>,
    ) -> Self {
        let status = |status: &'static str| {
            executions.get_or_create_owned(&ToolStatusLabels { tool: tool.clone(), status })
        };
        Self {
            success: status("success"),
            error: status("error"),
            duration: durations.get_or_create_owned(&ToolLabels { tool: tool.clone() }),
            tool,
        }
    }
}

/// What the listener feeds (`listener.rs`): connections open, connections closed by a timeout, and how often the
/// connection cap stopped the accept loop. Handles only: the accept loop and each connection hold a copy, and
/// feeding one is an atomic add. [`Default`] gives series in no registry, for a listener that is not counted (the
/// metrics port's own).
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionMetrics {
    /// `mcp_open_connections`.
    pub(crate) open: Gauge,
    /// `mcp_connections_closed_total{reason="header_read_timeout"}`.
    pub(crate) header_read_timeouts: Counter,
    /// `mcp_connections_closed_total{reason="body_read_timeout"}`.
    pub(crate) body_read_timeouts: Counter,
    /// `mcp_connections_closed_total{reason="idle_timeout"}`.
    pub(crate) idle_timeouts: Counter,
    /// `mcp_connection_limit_reached_total`.
    pub(crate) limit_reached: Counter,
}
