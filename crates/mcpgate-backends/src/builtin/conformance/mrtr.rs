//! The 2026-07-28 tools: multi round-trip requests (SEP-2322), the missing-capability check and the
//! diagnostic tools of the stateless lifecycle (SEP-2575).
//!
//! Each tool is straight-line code: it asks the client for what it needs and uses the answers. When an answer
//! is not available yet, [`CallContext::request_client`] fails with `Deferred`, `?` turns that into
//! [`BackendError::InputRequired`], and the gateway answers `input_required` listing every request made so
//! far; the client's retry runs the tool again with the answers.

use mcpgate_core::{BackendError, CallContext, LogLevel, ToolCall, ToolDef, ToolOutcome};
use serde_json::{Value, json};

use super::{
    ELICIT, ROOTS, SAMPLE, answer_object, client_capabilities, declares, elicitation_params, elicited_text,
    no_arguments, roots_count, sampled_text, sampling_params,
};

/// The listed tools of this module (the `test_trigger_*` helpers are callable but not listed).
pub(super) fn definitions() -> Vec<ToolDef> {
    [
        ("test_missing_capability", "Test tool requiring sampling"),
        (
            "test_input_required_result_elicitation",
            "MRTR: returns InputRequiredResult with elicitation request",
        ),
        ("test_input_required_result_sampling", "MRTR: returns InputRequiredResult with sampling request"),
        (
            "test_input_required_result_list_roots",
            "MRTR: returns InputRequiredResult with roots/list request",
        ),
        ("test_input_required_result_request_state", "MRTR: returns InputRequiredResult with requestState"),
        (
            "test_input_required_result_multiple_inputs",
            "MRTR: returns InputRequiredResult with multiple input requests",
        ),
        ("test_input_required_result_multi_round", "MRTR: multi-round InputRequiredResult workflow"),
        ("test_input_required_result_tampered_state", "MRTR: HMAC-signed requestState integrity test"),
        ("test_input_required_result_capabilities", "MRTR: respects client capabilities in inputRequests"),
        ("test_streaming_elicitation", "Diagnostic tool validating response progress streams"),
        ("test_logging_tool", "Diagnostic logging validator tool"),
    ]
    .into_iter()
    .map(|(name, description)| ToolDef::new(name, description, no_arguments()))
    .collect()
}

/// Run one tool of this module.
pub(super) async fn call(cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
    match call.name.as_str() {
        "test_missing_capability" => {
            if declares(&client_capabilities(cx), "sampling") {
                Ok(ToolOutcome::text("Success"))
            } else {
                Err(BackendError::MissingClientCapability { required: json!({ "sampling": {} }) })
            }
        }
        "test_input_required_result_elicitation" => {
            let answer = cx.request_client("user_name", ELICIT, name_request("What is your name?")).await?;
            let name = elicited_text("user_name", &answer, "name")?;
            Ok(ToolOutcome::text(format!("Hello, {name}!")))
        }
        "test_input_required_result_sampling" => {
            let params = sampling_params("What is the capital of France?", 100);
            let answer = cx.request_client("sample_request", SAMPLE, params).await?;
            answer_object("sample_request", &answer)?;
            let text = sampled_text(&answer).unwrap_or_else(|| "no response".to_owned());
            Ok(ToolOutcome::text(format!("Sampling result: {text}")))
        }
        "test_input_required_result_list_roots" => {
            let answer = cx.request_client("roots_request", ROOTS, json!({})).await?;
            let count = roots_count("roots_request", &answer)?;
            Ok(ToolOutcome::text(format!("Found {count} root(s)")))
        }
        "test_input_required_result_request_state" => {
            if confirmed(cx).await? {
                Ok(ToolOutcome::text("state-ok: requestState validated"))
            } else {
                Ok(ToolOutcome::error("state-not-ok: the confirmation was not given"))
            }
        }
        "test_input_required_result_multiple_inputs" => multiple_inputs(cx).await,
        "test_input_required_result_multi_round" => {
            let step1 = elicitation_params("Step 1: What is your name?", "name", "string");
            let answer = cx.request_client("step1", ELICIT, step1).await?;
            let name = elicited_text("step1", &answer, "name")?;
            let step2 = elicitation_params("Step 2: What is your favorite color?", "color", "string");
            let answer = cx.request_client("step2", ELICIT, step2).await?;
            let color = elicited_text("step2", &answer, "color")?;
            Ok(ToolOutcome::text(format!("Multi-round complete for {name} who likes {color}")))
        }
        "test_input_required_result_tampered_state" => {
            // The gateway seals the state between rounds and rejects a tampered one before this runs again.
            confirmed(cx).await?;
            Ok(ToolOutcome::text("integrity-ok: state verified"))
        }
        "test_input_required_result_capabilities" => capabilities(cx).await,
        "test_streaming_elicitation" => {
            cx.progress(0.0, Some(1.0), None).await;
            Ok(ToolOutcome::text("Streaming complete"))
        }
        "test_logging_tool" => {
            // Whether the client sees it is the gateway's call (no log level requested, no log).
            cx.log(LogLevel::Info, None, json!("logging tool ran")).await;
            Ok(ToolOutcome::text("Logging evaluated"))
        }
        "test_trigger_tool_change" | "test_trigger_prompt_change" => {
            Ok(ToolOutcome::text("Mutation triggered"))
        }
        other => Err(BackendError::NotFound { kind: "tool", name: other.to_owned() }),
    }
}

/// Elicitation params asking for a `name`.
fn name_request(message: &str) -> Value {
    elicitation_params(message, "name", "string")
}

/// Ask for the `confirm` elicitation; whether the user accepted with `ok: true`.
async fn confirmed(cx: &CallContext) -> Result<bool, BackendError> {
    let params = elicitation_params("Please confirm", "ok", "boolean");
    let answer = cx.request_client("confirm", ELICIT, params).await?;
    let answer = answer_object("confirm", &answer)?;
    Ok(answer.get("content").and_then(|content| content.get("ok")) == Some(&Value::Bool(true)))
}

/// Three requests at once: all are made before any answer is used, so the first round lists all three.
async fn multiple_inputs(cx: &CallContext) -> Result<ToolOutcome, BackendError> {
    let user_name = cx.request_client("user_name", ELICIT, name_request("What is your name?")).await;
    let greeting = cx.request_client("greeting", SAMPLE, sampling_params("Generate a greeting", 50)).await;
    let roots = cx.request_client("client_roots", ROOTS, json!({})).await;
    let (user_name, greeting, roots) = (user_name?, greeting?, roots?);
    let name = elicited_text("user_name", &user_name, "name")?;
    answer_object("greeting", &greeting)?;
    let greeting = sampled_text(&greeting).unwrap_or_else(|| "Hello there!".to_owned());
    let roots = roots_count("client_roots", &roots)?;
    Ok(ToolOutcome::text(format!("Name: {name}; Greeting: {greeting}; Roots: {roots}")))
}

/// Ask only for what the client declared: elicitation and/or sampling, at once.
async fn capabilities(cx: &CallContext) -> Result<ToolOutcome, BackendError> {
    let declared = client_capabilities(cx);
    let mut asked = Vec::new();
    if declares(&declared, "elicitation") {
        let params = elicitation_params("Elicitation input", "value", "string");
        asked.push(("elicit_input", cx.request_client("elicit_input", ELICIT, params).await));
    }
    if declares(&declared, "sampling") {
        let params = sampling_params("Sample request", 50);
        asked.push(("sample_input", cx.request_client("sample_input", SAMPLE, params).await));
    }
    if asked.is_empty() {
        return Ok(ToolOutcome::text("No supported capabilities declared"));
    }
    let mut received = Vec::with_capacity(asked.len());
    for (key, answer) in asked {
        answer_object(key, &answer?)?;
        received.push(key);
    }
    Ok(ToolOutcome::text(format!("capabilities-ok: received {}", received.join(","))))
}
