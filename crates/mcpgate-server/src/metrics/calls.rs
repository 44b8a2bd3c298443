//! What the pipeline reports of each finished call, into the cache and token metrics: a [`CallObserver`]
//! holding its own handles on the series (counters and gauges are shared handles), so it needs no reference to
//! [`Metrics`](super::Metrics) and costs a few atomic operations per call.

use mcpgate_core::{BackendError, OperationKind};
use mcpgate_policy::{CacheStatus, CallObserver, CallReport, Outcome, Settling};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};

use super::{
    Histograms, RateLimitScope, TokenDirection,
    labels::{OperationKindLabels, OperationLabels},
};

/// Feeds `mcp_cache_hits_total`, `mcp_cache_misses_total`, `mcp_tokens_used{direction}`, and for every
/// operation but `tools/call` (whose series the dispatch feeds per tool) `mcp_operations_total`,
/// `mcp_operation_duration_seconds` and the resource and prompt scopes of `mcp_rate_limited_total`.
#[derive(Debug)]
pub(crate) struct CallMetrics {
    pub(super) cache_hits: Counter,
    pub(super) cache_misses: Counter,
    pub(super) tokens_used: [Gauge; TokenDirection::ALL.len()],
    pub(super) operations: Family<OperationLabels, Counter>,
    pub(super) operation_duration: Histograms<OperationKindLabels>,
    pub(super) rate_limited: [Counter; RateLimitScope::ALL.len()],
}

impl CallObserver for CallMetrics {
    fn call_finished(&self, report: &CallReport<'_>) -> Option<Settling<'_>> {
        if report.operation != OperationKind::CallTool {
            self.operation(report);
            return None;
        }
        match report.cache {
            CacheStatus::Hit => {
                self.cache_hits.inc();
            }
            CacheStatus::Miss => {
                self.cache_misses.inc();
            }
            CacheStatus::NotCacheable => {}
        }
        // A gauge of the latest call's tokens (the guides' alert: `mcp_tokens_used > 5000`). The output is what
        // went back to the model; a call that failed sent no result and leaves it as it was.
        if let Some(tokens) = report.tokens {
            self.set(TokenDirection::Input, tokens.input);
            if let Some(output) = tokens.output {
                self.set(TokenDirection::Output, output);
            }
        }
        None
    }
}

impl CallMetrics {
    /// Count and time an operation other than `tools/call`.
    fn operation(&self, report: &CallReport<'_>) {
        let operation = report.operation.as_str();
        let status = match report.outcome {
            Outcome::Ok | Outcome::ToolError => "ok",
            Outcome::Failed(error) => error.kind(),
        };
        self.operations.get_or_create(&OperationLabels { operation, status }).inc();
        let duration = report.elapsed.as_secs_f64();
        self.operation_duration.get_or_create(&OperationKindLabels { operation }).observe(duration);
        if let Outcome::Failed(BackendError::RateLimited { scope, .. }) = report.outcome {
            let scope = match *scope {
                "prompt" => RateLimitScope::Prompt,
                _ => RateLimitScope::Resource,
            };
            self.rate_limited[scope as usize].inc();
        }
    }

    fn set(&self, direction: TokenDirection, tokens: u64) {
        self.tokens_used[direction as usize].set(i64::try_from(tokens).unwrap_or(i64::MAX));
    }
}
