//! The last tool calls, for the admin page: a bounded ring of what each was (when, who, which tool, how it ended,
//! how long it took) — never its arguments or result. One more of the pipeline's call observers (beside metrics
//! and the audit log), attached only while the page is on.

use std::{collections::VecDeque, time::SystemTime};

use mcpgate_core::OperationKind;
use mcpgate_policy::{CallObserver, CallReport, Outcome, Settling};
use parking_lot::Mutex;
use serde_json::{Value, json};

/// One finished call.
#[derive(Debug)]
struct RecentCall {
    at: SystemTime,
    principal: std::sync::Arc<str>,
    tool: String,
    outcome: &'static str,
    duration_ms: f64,
}

/// The last `capacity` calls, oldest dropped first.
#[derive(Debug)]
pub(crate) struct RecentCalls {
    capacity: usize,
    calls: Mutex<VecDeque<RecentCall>>,
}

impl RecentCalls {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), calls: Mutex::new(VecDeque::with_capacity(capacity.min(1024))) }
    }

    fn record(&self, call: RecentCall) {
        let mut calls = self.calls.lock();
        if calls.len() == self.capacity {
            calls.pop_front();
        }
        calls.push_back(call);
    }

    /// The calls, newest first.
    pub(crate) fn to_json(&self) -> Value {
        let calls = self.calls.lock();
        let list: Vec<Value> = calls
            .iter()
            .rev()
            .map(|c| {
                json!({
                    "time": humantime::format_rfc3339_millis(c.at).to_string(),
                    "principal": &*c.principal,
                    "tool": c.tool,
                    "outcome": c.outcome,
                    "duration_ms": (c.duration_ms * 1000.0).round() / 1000.0,
                })
            })
            .collect();
        Value::Array(list)
    }
}

impl CallObserver for RecentCalls {
    fn call_finished(&self, report: &CallReport<'_>) -> Option<Settling<'_>> {
        if report.operation != OperationKind::CallTool {
            return None;
        }
        let outcome = match report.outcome {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Failed(error) => error.kind(),
        };
        self.record(RecentCall {
            at: SystemTime::now(),
            principal: report.cx.principal.name.clone(),
            tool: report.tool.to_owned(),
            outcome,
            duration_ms: report.elapsed.as_secs_f64() * 1e3,
        });
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mcpgate_core::{BackendError, CallContext};
    use mcpgate_policy::CacheStatus;

    use super::*;

    /// What the pipeline reports for `tool` called by `principal`, ended with `outcome` after `elapsed`.
    fn report(recent: &RecentCalls, principal: &str, tool: &str, outcome: Outcome<'_>, elapsed: Duration) {
        let cx = CallContext {
            principal: std::sync::Arc::new(mcpgate_core::Principal::named(principal, "t", &[])),
            ..CallContext::detached("r")
        };
        let report = CallReport {
            cx: &cx,
            operation: OperationKind::CallTool,
            tool,
            backend: "b",
            elapsed,
            outcome,
            cache: CacheStatus::NotCacheable,
            tokens: None,
            budget: None,
            arguments: None,
            detail: None,
        };
        assert!(recent.call_finished(&report).is_none());
    }

    #[test]
    fn the_ring_keeps_the_newest_first_and_drops_the_oldest() {
        let recent = RecentCalls::new(2);
        let failed = BackendError::Timeout(Duration::from_secs(1));
        report(&recent, "a", "one", Outcome::Ok, Duration::from_millis(1));
        report(&recent, "b", "two", Outcome::Failed(&failed), Duration::from_millis(2));
        report(&recent, "c", "three", Outcome::Ok, Duration::from_micros(1500));
        let calls = recent.to_json();
        let tools: Vec<&str> =
            calls.as_array().unwrap().iter().map(|c| c["tool"].as_str().unwrap()).collect();
        assert_eq!(tools, ["three", "two"]);
        assert_eq!(calls[1]["outcome"], "timeout");
        assert_eq!(calls[0]["duration_ms"], 1.5);
    }
}
