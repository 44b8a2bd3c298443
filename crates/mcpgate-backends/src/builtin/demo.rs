//! The demo tools of the embedded default config: `echo`, `add`, `now`, `sleep`.

use std::time::SystemTime;

use async_trait::async_trait;
use mcpgate_core::{Backend, BackendError, CallContext, ToolCall, ToolDef, ToolOutcome};
use serde_json::{Value, json};

/// `echo`, `add`, `now` and `sleep`: enough to try a client against mcpgate with nothing else installed, and
/// to watch timeouts and cancellation at work.
pub struct Demo {
    name: String,
    tools: Vec<ToolDef>,
}

impl Demo {
    /// The demo tool set, under the backend name `name`.
    pub fn new(name: &str) -> Self {
        let mut add = ToolDef::new(
            "add",
            "Add two numbers and return their sum.",
            json!({
                "type": "object",
                "properties": {
                    "a": { "type": "number", "description": "First addend" },
                    "b": { "type": "number", "description": "Second addend" }
                },
                "required": ["a", "b"],
                "additionalProperties": false
            }),
        );
        add.output_schema = json!({
            "type": "object",
            "properties": { "sum": { "type": "number" } },
            "required": ["sum"]
        })
        .as_object()
        .cloned()
        .map(Into::into);
        add.annotations = Some(json!({ "readOnlyHint": true, "idempotentHint": true }));
        let tools = vec![
            ToolDef::new(
                "echo",
                "Return the message unchanged.",
                json!({
                    "type": "object",
                    "properties": { "message": { "type": "string", "description": "Text to echo back" } },
                    "required": ["message"],
                    "additionalProperties": false
                }),
            ),
            add,
            ToolDef::new(
                "now",
                "The current time in UTC, as an RFC 3339 timestamp.",
                json!({ "type": "object", "properties": {}, "additionalProperties": false }),
            ),
            ToolDef::new(
                "sleep",
                "Wait for the given number of milliseconds (at most a minute), then say so.",
                json!({
                    "type": "object",
                    "properties": { "ms": { "type": "integer", "minimum": 0, "maximum": MAX_SLEEP_MS } },
                    "required": ["ms"],
                    "additionalProperties": false
                }),
            ),
        ];
        Self { name: name.to_owned(), tools }
    }
}

/// The longest `sleep` accepted.
const MAX_SLEEP_MS: u64 = 60_000;

#[async_trait]
impl Backend for Demo {
    fn name(&self) -> &str {
        &self.name
    }

    fn may_contact_client(&self, _tool: &str) -> bool {
        false
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(self.tools.clone())
    }

    async fn call_tool(&self, _cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        match call.name.as_str() {
            "echo" => match call.arguments.get("message") {
                Some(Value::String(message)) => Ok(ToolOutcome::text(message.clone())),
                _ => Ok(ToolOutcome::error("echo needs a string argument \"message\"")),
            },
            "add" => {
                let number = |key: &str| call.arguments.get(key).and_then(Value::as_f64);
                let (Some(a), Some(b)) = (number("a"), number("b")) else {
                    return Ok(ToolOutcome::error("add needs two numbers, \"a\" and \"b\""));
                };
                let sum = a + b;
                let sum_json =
                    if sum.fract() == 0.0 && sum.abs() < 9.0e15 { json!(sum as i64) } else { json!(sum) };
                Ok(ToolOutcome::text(sum_json.to_string()).with_structured(json!({ "sum": sum_json })))
            }
            "sleep" => match call.arguments.get("ms").and_then(Value::as_u64) {
                Some(ms) if ms <= MAX_SLEEP_MS => {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    Ok(ToolOutcome::text(format!("slept {ms} ms")))
                }
                _ => {
                    Ok(ToolOutcome::error(format!("sleep needs \"ms\", an integer from 0 to {MAX_SLEEP_MS}")))
                }
            },
            "now" => Ok(ToolOutcome::text(humantime::format_rfc3339_millis(SystemTime::now()).to_string())),
            other => Err(BackendError::NotFound { kind: "tool", name: other.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn call(name: &str, arguments: Value) -> Result<ToolOutcome, BackendError> {
        let arguments = arguments.as_object().cloned().unwrap_or_default();
        Demo::new("demo")
            .call_tool(&CallContext::detached("t"), ToolCall { name: name.into(), arguments })
            .await
    }

    #[tokio::test]
    async fn echo_returns_the_message() {
        let out = call("echo", json!({"message": "hi"})).await.unwrap();
        assert_eq!(out.content, vec![json!({"type": "text", "text": "hi"})]);
        assert!(!out.is_error);
    }

    #[tokio::test]
    async fn add_prints_integral_sums_without_decimals() {
        let out = call("add", json!({"a": 2, "b": 3})).await.unwrap();
        assert_eq!(out.content[0]["text"], "5");
        assert_eq!(out.structured_content, Some(json!({"sum": 5})));
        let out = call("add", json!({"a": 0.5, "b": 0.25})).await.unwrap();
        assert_eq!(out.content[0]["text"], "0.75");
    }

    #[tokio::test]
    async fn wrong_arguments_are_tool_errors_and_unknown_tools_are_not_found() {
        assert!(call("add", json!({"a": "x"})).await.unwrap().is_error);
        assert!(matches!(call("nope", json!({})).await, Err(BackendError::NotFound { .. })));
    }

    #[tokio::test]
    async fn now_is_rfc3339_utc() {
        let out = call("now", json!({})).await.unwrap();
        let text = out.content[0]["text"].as_str().unwrap();
        assert!(text.ends_with('Z') && humantime::parse_rfc3339(text).is_ok(), "{text}");
    }
}
