//! What the pipeline reports of each finished call, into the cache and token metrics: a [`CallObserver`]
//! holding its own handles on the series (counters and gauges are shared handles), so it needs no reference to
//! [`Metrics`](super::Metrics) and costs a few atomic operations per call.

use mcpgate_policy::{CacheStatus, CallObserver, CallReport, Settling};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

use super::TokenDirection;

/// Feeds `mcp_cache_hits_total`, `mcp_cache_misses_total` and `mcp_tokens_used{direction}`.
#[derive(Debug)]
pub(crate) struct CallMetrics {
    pub(super) cache_hits: Counter,
    pub(super) cache_misses: Counter,
    pub(super) tokens_used: [Gauge; TokenDirection::ALL.len()],
}

impl CallObserver for CallMetrics {
    fn call_finished(&self, report: &CallReport<'_>) -> Option<Settling<'_>> {
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
    fn set(&self, direction: TokenDirection, tokens: u64) {
        self.tokens_used[direction as usize].set(i64::try_from(tokens).unwrap_or(i64::MAX));
    }
}
