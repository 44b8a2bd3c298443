//! The classic conformance tools: content types, logging, progress, errors, sampling and elicitation.

use std::time::Duration;

use mcpgate_core::{
    BackendError, CallContext, ClientRequestError, JsonObject, LogLevel, ToolCall, ToolDef, ToolOutcome,
};
use serde_json::{Value, json};

use super::{AUDIO_WAV_BASE64, ELICIT, IMAGE_PNG_BASE64, SAMPLE, mrtr, no_arguments, sampled_text};

/// Pause between the notifications of the logging and progress tools.
const STEP: Duration = Duration::from_millis(50);

/// Every listed tool: the classic ones here, then the 2026-07-28 ones of [`mrtr`].
pub(super) fn definitions() -> Vec<ToolDef> {
    let mut tools = vec![
        ToolDef::new("test_simple_text", "Tests simple text content response", no_arguments()),
        ToolDef::new("test_image_content", "Tests image content response", no_arguments()),
        ToolDef::new("test_audio_content", "Tests audio content response", no_arguments()),
        ToolDef::new("test_embedded_resource", "Tests embedded resource content response", no_arguments()),
        ToolDef::new(
            "test_multiple_content_types",
            "Tests response with multiple content types (text, image, resource)",
            no_arguments(),
        ),
        ToolDef::new(
            "test_tool_with_logging",
            "Tests tool that emits log messages during execution",
            no_arguments(),
        ),
        ToolDef::new(
            "test_tool_with_progress",
            "Tests tool that reports progress notifications",
            no_arguments(),
        ),
        ToolDef::new("test_error_handling", "Tests error response handling", no_arguments()),
        ToolDef::new(
            "test_reconnection",
            "Tests SSE stream disconnection and client reconnection (SEP-1699).",
            no_arguments(),
        ),
        ToolDef::new(
            "test_sampling",
            "Tests server-initiated sampling (LLM completion request)",
            string_argument("prompt", "The prompt to send to the LLM"),
        ),
        ToolDef::new(
            "test_elicitation",
            "Tests server-initiated elicitation (user input request)",
            string_argument("message", "The message to show the user"),
        ),
        ToolDef::new(
            "test_elicitation_sep1034_defaults",
            "Tests elicitation with default values per SEP-1034",
            no_arguments(),
        ),
        ToolDef::new(
            "test_elicitation_sep1330_enums",
            "Tests elicitation with enum schema improvements per SEP-1330",
            no_arguments(),
        ),
        ToolDef::new(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
            json_schema_2020_12(),
        ),
    ];
    tools.extend(mrtr::definitions());
    tools
}

/// Run one tool; names this module does not know go to [`mrtr::call`].
pub(super) async fn call(cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
    let image = || json!({ "type": "image", "data": IMAGE_PNG_BASE64, "mimeType": "image/png" });
    match call.name.as_str() {
        "test_simple_text" => Ok(ToolOutcome::text("This is a simple text response for testing.")),
        "test_image_content" => Ok(ToolOutcome { content: vec![image()], ..ToolOutcome::default() }),
        "test_audio_content" => Ok(ToolOutcome {
            content: vec![json!({ "type": "audio", "data": AUDIO_WAV_BASE64, "mimeType": "audio/wav" })],
            ..ToolOutcome::default()
        }),
        "test_embedded_resource" => Ok(ToolOutcome {
            content: vec![embedded(
                "test://embedded-resource",
                "text/plain",
                "This is an embedded resource content.",
            )],
            ..ToolOutcome::default()
        }),
        "test_multiple_content_types" => Ok(ToolOutcome {
            content: vec![
                json!({ "type": "text", "text": "Multiple content types test:" }),
                image(),
                embedded(
                    "test://mixed-content-resource",
                    "application/json",
                    r#"{"test":"data","value":123}"#,
                ),
            ],
            ..ToolOutcome::default()
        }),
        "test_tool_with_logging" => with_logging(cx).await,
        "test_tool_with_progress" => with_progress(cx).await,
        "test_error_handling" => {
            Ok(ToolOutcome::error("This tool intentionally returns an error for testing"))
        }
        "test_reconnection" => Ok(ToolOutcome::text(
            "Reconnection test completed successfully. If you received this, the client properly reconnected \
             after stream closure.",
        )),
        "test_sampling" => sampling(cx, &call.arguments).await,
        "test_elicitation" => {
            let message = required_string(&call.arguments, "message")?;
            let schema = json!({
                "type": "object",
                "properties": { "response": { "type": "string", "description": "User's response" } },
                "required": ["response"]
            });
            let params = json!({ "message": message, "requestedSchema": schema });
            elicit(cx, "elicitation_request", params, "User response").await
        }
        "test_elicitation_sep1034_defaults" => {
            let params = json!({
                "message": "Please review and update the form fields with defaults",
                "requestedSchema": sep1034_schema()
            });
            elicit(cx, "form_defaults", params, "Elicitation completed").await
        }
        "test_elicitation_sep1330_enums" => {
            let params = json!({
                "message": "Please select options from the enum fields",
                "requestedSchema": sep1330_schema()
            });
            elicit(cx, "enum_selection", params, "Elicitation completed").await
        }
        "json_schema_2020_12_tool" => Ok(ToolOutcome::text(format!(
            "JSON Schema 2020-12 tool called with: {}",
            Value::Object(call.arguments)
        ))),
        _ => mrtr::call(cx, call).await,
    }
}

/// Three info logs, 50 ms apart.
async fn with_logging(cx: &CallContext) -> Result<ToolOutcome, BackendError> {
    let messages = ["Tool execution started", "Tool processing data", "Tool execution completed"];
    for (step, message) in messages.into_iter().enumerate() {
        if step > 0 {
            pause(cx).await?;
        }
        cx.log(LogLevel::Info, None, json!(message)).await;
    }
    Ok(ToolOutcome::text("Tool with logging executed successfully"))
}

/// Progress 0, 50 and 100 of 100, 50 ms apart; the result echoes the progress token.
async fn with_progress(cx: &CallContext) -> Result<ToolOutcome, BackendError> {
    for (step, progress) in [0u32, 50, 100].into_iter().enumerate() {
        if step > 0 {
            pause(cx).await?;
        }
        cx.progress(f64::from(progress), Some(100.0), Some(format!("Completed step {progress} of 100")))
            .await;
    }
    let token = match &cx.progress_token {
        Some(Value::String(token)) => token.clone(),
        Some(other) => other.to_string(),
        None => "0".to_owned(),
    };
    Ok(ToolOutcome::text(token))
}

/// Wait one step, or stop when the call is cancelled.
async fn pause(cx: &CallContext) -> Result<(), BackendError> {
    tokio::select! {
        () = cx.cancel.cancelled() => Err(BackendError::Cancelled),
        () = tokio::time::sleep(STEP) => Ok(()),
    }
}

/// `test_sampling`: ask the client's model and report its answer.
async fn sampling(cx: &CallContext, arguments: &JsonObject) -> Result<ToolOutcome, BackendError> {
    let prompt = required_string(arguments, "prompt")?;
    let params = json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
        "maxTokens": 100
    });
    match cx.request_client("sampling_request", SAMPLE, params).await {
        Ok(answer) => {
            let response = sampled_text(&answer).unwrap_or_else(|| "No response".to_owned());
            Ok(ToolOutcome::text(format!("LLM response: {response}")))
        }
        Err(error) => soft_failure("Sampling", error),
    }
}

/// Ask the client for input and report its answer as `<prefix>: action=…, content=…`.
async fn elicit(
    cx: &CallContext,
    key: &str,
    params: Value,
    prefix: &str,
) -> Result<ToolOutcome, BackendError> {
    match cx.request_client(key, ELICIT, params).await {
        Ok(answer) => {
            let action = answer.get("action").and_then(Value::as_str).unwrap_or("unknown");
            let content = answer.get("content").filter(|content| !content.is_null()).cloned();
            let content = content.unwrap_or_else(|| json!({}));
            Ok(ToolOutcome::text(format!("{prefix}: action={action}, content={content}")))
        }
        Err(error) => soft_failure("Elicitation", error),
    }
}

/// A failed client request of the classic tools becomes text, as the reference server does; a deferred one
/// asks the gateway for the client's input.
fn soft_failure(what: &str, error: ClientRequestError) -> Result<ToolOutcome, BackendError> {
    match error {
        ClientRequestError::Deferred => Err(BackendError::InputRequired),
        other => Ok(ToolOutcome::text(format!("{what} not supported or error: {other}"))),
    }
}

/// A string argument the tool cannot run without.
fn required_string<'a>(arguments: &'a JsonObject, name: &str) -> Result<&'a str, BackendError> {
    arguments
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| BackendError::InvalidArguments(format!("missing string argument {name:?}")))
}

/// The schema of a tool with one required string argument.
fn string_argument(name: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "properties": { name: { "type": "string", "description": description } },
        "required": [name]
    })
}

/// An embedded text resource content item.
fn embedded(uri: &str, mime_type: &str, text: &str) -> Value {
    json!({ "type": "resource", "resource": { "uri": uri, "mimeType": mime_type, "text": text } })
}

/// SEP-1034: a form with a default for every primitive type.
fn sep1034_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": { "type": "boolean", "description": "Verification status", "default": true }
        },
        "required": []
    })
}

/// SEP-1330: the five enum variants.
fn sep1330_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"]
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": [
                    { "const": "value1", "title": "First Option" },
                    { "const": "value2", "title": "Second Option" },
                    { "const": "value3", "title": "Third Option" }
                ]
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "anyOf": [
                        { "const": "value1", "title": "First Choice" },
                        { "const": "value2", "title": "Second Choice" },
                        { "const": "value3", "title": "Third Choice" }
                    ]
                }
            }
        },
        "required": []
    })
}

/// SEP-1613 / SEP-2106: an input schema using the JSON Schema 2020-12 vocabulary.
fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" },
            "email": { "type": "string" }
        },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false
    })
}
