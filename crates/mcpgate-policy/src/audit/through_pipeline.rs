//! The audit log as the pipeline's observer: every exit of a call is one line — refusals included — and the
//! arguments are copied only when the log records them.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use mcpgate_core::{Backend, CallContext, Principal, ToolCall, ToolDef, ToolOutcome};
use serde_json::json;

use super::*;
use crate::{ArgumentSchema, Pipeline, ToolPolicy};

/// Answers `hello`, or never when asked to hang.
#[derive(Debug)]
struct Greeter;

#[async_trait]
impl Backend for Greeter {
    fn name(&self) -> &str {
        "greeter"
    }
    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(vec![])
    }
    async fn call_tool(&self, _: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        if call.arguments.contains_key("hang") {
            std::future::pending::<()>().await;
        }
        Ok(ToolOutcome::text("hello"))
    }
}

/// Records whether it was handed the arguments.
#[derive(Debug, Default)]
struct Peek(parking_lot::Mutex<Vec<bool>>);

impl CallObserver for Peek {
    fn call_finished(&self, report: &CallReport<'_>) -> Option<Settling<'_>> {
        self.0.lock().push(report.arguments.is_some());
        None
    }
}

fn arguments(value: serde_json::Value) -> ToolCall {
    ToolCall { name: "greet".into(), arguments: value.as_object().cloned().unwrap_or_default() }
}

#[tokio::test(start_paused = true)]
async fn every_exit_is_one_line_and_arguments_are_copied_only_when_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let config = AuditConfig { file: Some(file.clone()), include_arguments: true, ..AuditConfig::default() };
    let audit = AuditLog::open(&config, Default::default()).unwrap().unwrap();
    let peek = Arc::new(Peek::default());
    let schema = json!({ "type": "object", "properties": { "name": { "type": "string" } } });
    let policy = ToolPolicy {
        arguments: Some(ArgumentSchema::compile(schema.as_object().unwrap()).unwrap()),
        ..Default::default()
    };
    let pipeline = Pipeline::new(Duration::from_secs(5)).with_observer(peek.clone());
    let audited = pipeline.clone().with_observer(audit.clone());

    let mut cx = CallContext::detached("r");
    cx.principal = Arc::new(Principal::named("ci", "free", &["greet".into()]));
    let mut other = CallContext::detached("r");
    other.principal = Arc::new(Principal::named("ci", "free", &["other".into()]));

    // Without the audit log, no observer wants the arguments: none are copied.
    pipeline.call_tool(&cx, &Greeter, "greet", &policy, arguments(json!({ "name": "x" }))).await.unwrap();
    let calls = [
        (&cx, json!({ "name": "ada", "password": "p" })),
        (&cx, json!({ "name": 7 })),
        (&other, json!({ "name": "x" })),
        (&cx, json!({ "name": "x", "hang": true })),
    ];
    for (cx, value) in calls {
        let _ = audited.call_tool(cx, &Greeter, "greet", &policy, arguments(value)).await;
    }
    assert_eq!(*peek.0.lock(), [false, true, true, true, true]);

    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let told: Vec<_> = lines.iter().map(|l| (l["outcome"].clone(), l["error_kind"].clone())).collect();
    assert_eq!(
        told,
        [
            (json!("ok"), Value::Null),
            (json!("tool_error"), Value::Null),
            (json!("error"), json!("not_found")),
            (json!("error"), json!("timeout")),
        ]
    );
    assert_eq!(lines[0]["arguments"], json!({ "name": "ada", "password": "[redacted]" }));
    assert_eq!((&lines[0]["backend"], &lines[0]["tool"]), (&json!("greeter"), &json!("greet")));
    assert_eq!(lines[3]["duration_ms"], json!(5000.0));
}
