//! The order of per-call policies. Each step says why it stands where it does; `tests::steps_run_in_order`
//! pins the order.
//!
//! Today's steps:
//! 1. argument validation — before anything that costs (a backend call, later a cache slot or a retry): a call
//!    the schema refuses cannot succeed, and the model gets a tool error naming what to fix;
//! 2. deadline — around everything that waits, so nothing a call does (retries included, when they come)
//!    outlives its budget;
//! 3. cancellation — a client's `notifications/cancelled` or a drain stops waiting at once, freeing the caller;
//! 4. the backend call itself.
//!
//! Every exit — success, tool error, failure — is logged once with its duration and outcome.

use std::time::Duration;

use mcpgate_core::{Backend, BackendError, CallContext, ToolCall, ToolOutcome};
use serde_json::Value;
use tokio::time::Instant;

use crate::arguments::ArgumentSchema;

/// What the pipeline knows of one tool, prepared once when the catalogue is built.
#[derive(Debug, Default)]
pub struct ToolPolicy {
    /// The tool's compiled input schema; `None` accepts any arguments object.
    pub arguments: Option<ArgumentSchema>,
}

/// The pipeline every tool call goes through, whatever its backend.
#[derive(Debug, Clone)]
pub struct Pipeline {
    default_timeout: Duration,
}

impl Pipeline {
    /// A pipeline whose calls time out after `default_timeout` unless the context sets its own.
    pub fn new(default_timeout: Duration) -> Self {
        Self { default_timeout }
    }

    /// Run one call through every step. `public_name` is the name the client used (for logs); `policy` is
    /// the tool's.
    pub async fn call_tool(
        &self,
        cx: &CallContext,
        backend: &dyn Backend,
        public_name: &str,
        policy: &ToolPolicy,
        call: ToolCall,
    ) -> Result<ToolOutcome, BackendError> {
        let started = Instant::now();
        let result = self.run(cx, backend, policy, call).await;
        record(cx, public_name, backend.name(), started.elapsed(), &result);
        result
    }

    async fn run(
        &self,
        cx: &CallContext,
        backend: &dyn Backend,
        policy: &ToolPolicy,
        mut call: ToolCall,
    ) -> Result<ToolOutcome, BackendError> {
        // 1. Arguments: refused before anything costs, as a tool error the model can act on.
        if let Some(schema) = &policy.arguments {
            let arguments = Value::Object(std::mem::take(&mut call.arguments));
            if let Err(message) = schema.check(&arguments) {
                return Ok(ToolOutcome::error(message));
            }
            if let Value::Object(map) = arguments {
                call.arguments = map;
            }
        }
        // 2. Deadline: around everything that waits, so the whole call fits the budget.
        let timeout = cx.timeout.unwrap_or(self.default_timeout);
        tokio::time::timeout(timeout, async {
            // 3. Cancellation: the client (or a drain) can stop waiting before the deadline.
            tokio::select! {
                biased;
                _ = cx.cancel.cancelled() => Err(BackendError::Cancelled),
                // 4. The backend.
                result = backend.call_tool(cx, call) => result,
            }
        })
        .await
        .unwrap_or(Err(BackendError::Timeout(timeout)))
    }
}

fn record(
    cx: &CallContext,
    tool: &str,
    backend: &str,
    elapsed: Duration,
    result: &Result<ToolOutcome, BackendError>,
) {
    let micros = elapsed.as_micros() as u64;
    match result {
        Ok(outcome) => tracing::debug!(
            request_id = %cx.request_id, principal = %cx.principal.name, tool, backend, micros,
            outcome = if outcome.is_error { "tool_error" } else { "ok" }, "tools/call"
        ),
        // Asking the client for input is a normal step of a multi-round call, not a failure.
        Err(BackendError::InputRequired) => tracing::debug!(
            request_id = %cx.request_id, tool, backend, micros, outcome = "input_required", "tools/call"
        ),
        Err(error) => tracing::info!(
            request_id = %cx.request_id, principal = %cx.principal.name, tool, backend, micros,
            outcome = "error", kind = error.kind(), %error, "tools/call"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use mcpgate_core::ToolDef;

    use super::*;

    /// A backend that sleeps for the requested time and records what happened.
    struct Sleepy(Arc<Mutex<Vec<&'static str>>>);

    #[async_trait]
    impl Backend for Sleepy {
        fn name(&self) -> &str {
            "sleepy"
        }
        async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
            Ok(vec![])
        }
        async fn call_tool(&self, _cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
            self.0.lock().unwrap().push("backend started");
            let secs = call.arguments.get("secs").and_then(|v| v.as_u64()).unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            self.0.lock().unwrap().push("backend finished");
            Ok(ToolOutcome::text("done"))
        }
    }

    fn call(secs: u64) -> ToolCall {
        let arguments = serde_json::json!({ "secs": secs }).as_object().cloned().unwrap();
        ToolCall { name: "sleep".into(), arguments }
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_is_exact_and_stops_the_backend() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let pipeline = Pipeline::new(Duration::from_secs(5));
        let started = Instant::now();
        let result = pipeline
            .call_tool(
                &CallContext::detached("t"),
                &Sleepy(log.clone()),
                "sleep",
                &ToolPolicy::default(),
                call(60),
            )
            .await;
        assert!(matches!(result, Err(BackendError::Timeout(d)) if d == Duration::from_secs(5)));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(*log.lock().unwrap(), ["backend started"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_context_timeout_overrides_the_default() {
        let mut cx = CallContext::detached("t");
        cx.timeout = Some(Duration::from_secs(1));
        let result = Pipeline::new(Duration::from_secs(60))
            .call_tool(&cx, &Sleepy(Default::default()), "sleep", &ToolPolicy::default(), call(2))
            .await;
        assert!(matches!(result, Err(BackendError::Timeout(d)) if d == Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_wins_before_the_deadline() {
        let cx = CallContext::detached("t");
        let cancel = cx.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            cancel.cancel();
        });
        let started = Instant::now();
        let result = Pipeline::new(Duration::from_secs(30))
            .call_tool(&cx, &Sleepy(Default::default()), "sleep", &ToolPolicy::default(), call(10))
            .await;
        assert!(matches!(result, Err(BackendError::Cancelled)));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_arguments_never_reach_the_backend() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let schema = serde_json::json!({ "type": "object", "properties": { "secs": { "type": "integer", "maximum": 3 } } });
        let policy =
            ToolPolicy { arguments: Some(ArgumentSchema::compile(schema.as_object().unwrap()).unwrap()) };
        let pipeline = Pipeline::new(Duration::from_secs(5));
        let refused = pipeline
            .call_tool(&CallContext::detached("t"), &Sleepy(log.clone()), "sleep", &policy, call(9))
            .await;
        let refused = refused.unwrap();
        assert!(refused.is_error, "{refused:?}");
        assert!(refused.content[0]["text"].as_str().unwrap().contains("/secs"), "{refused:?}");
        assert!(log.lock().unwrap().is_empty(), "the backend must not run");
        let ok = pipeline
            .call_tool(&CallContext::detached("t"), &Sleepy(log.clone()), "sleep", &policy, call(1))
            .await;
        assert_eq!(ok.unwrap(), ToolOutcome::text("done"));
    }

    #[tokio::test(start_paused = true)]
    async fn steps_run_in_order() {
        // Deadline outside cancellation outside the backend: a call that finishes in time returns its outcome,
        // and the backend ran exactly once, to completion.
        let log = Arc::new(Mutex::new(Vec::new()));
        let result = Pipeline::new(Duration::from_secs(5))
            .call_tool(
                &CallContext::detached("t"),
                &Sleepy(log.clone()),
                "sleep",
                &ToolPolicy::default(),
                call(1),
            )
            .await
            .unwrap();
        assert_eq!(result, ToolOutcome::text("done"));
        assert_eq!(*log.lock().unwrap(), ["backend started", "backend finished"]);
    }
}
