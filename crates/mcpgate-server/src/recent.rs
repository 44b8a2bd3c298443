//! The last tool calls, for the admin page: a bounded ring of what each was (when, who, which tool, how it ended,
//! how long it took) — never its arguments or result. Kept only when the page is on.

use std::{collections::VecDeque, time::SystemTime};

use mcpgate_core::{Answer, BackendError};
use parking_lot::Mutex;
use serde_json::{Value, json};

/// One finished call.
struct RecentCall {
    at: SystemTime,
    principal: std::sync::Arc<str>,
    tool: String,
    outcome: &'static str,
    duration_ms: f64,
}

/// The last `capacity` calls, oldest dropped first.
pub(crate) struct RecentCalls {
    capacity: usize,
    calls: Mutex<VecDeque<RecentCall>>,
}

impl RecentCalls {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), calls: Mutex::new(VecDeque::with_capacity(capacity.min(1024))) }
    }

    /// Remember a call of `tool` by `principal` that ended with `answer` after `elapsed`.
    pub(crate) fn record(
        &self,
        principal: std::sync::Arc<str>,
        tool: String,
        answer: &Result<Answer, BackendError>,
        elapsed: std::time::Duration,
    ) {
        let outcome = match answer {
            Ok(Answer::Tool(outcome)) if outcome.is_error => "tool_error",
            Ok(_) => "ok",
            Err(error) => error.kind(),
        };
        let call = RecentCall {
            at: SystemTime::now(),
            principal,
            tool,
            outcome,
            duration_ms: elapsed.as_secs_f64() * 1e3,
        };
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mcpgate_core::ToolOutcome;

    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_first_and_drops_the_oldest() {
        let recent = RecentCalls::new(2);
        let ok = Ok(Answer::Tool(ToolOutcome::default()));
        let failed = Err(BackendError::Timeout(Duration::from_secs(1)));
        recent.record("a".into(), "one".into(), &ok, Duration::from_millis(1));
        recent.record("b".into(), "two".into(), &failed, Duration::from_millis(2));
        recent.record("c".into(), "three".into(), &ok, Duration::from_micros(1500));
        let calls = recent.to_json();
        let tools: Vec<&str> =
            calls.as_array().unwrap().iter().map(|c| c["tool"].as_str().unwrap()).collect();
        assert_eq!(tools, ["three", "two"]);
        assert_eq!(calls[1]["outcome"], "timeout");
        assert_eq!(calls[0]["duration_ms"], 1.5);
    }
}
