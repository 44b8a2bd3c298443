//! The surface the official MCP conformance suite tests: its tools, resources, prompts and completions.
//!
//! Facts (names, texts, schemas, data) follow the suite's reference "everything" server. The backend is
//! protocol-agnostic: the gateway's protocol layer adds eras, `resultType`, caching hints, `requestState`
//! sealing, log-level filtering and HTTP. Tools that need the client (sampling, elicitation, roots) are written
//! as straight-line code over [`CallContext::request_client`]; on the stateless wire an answer that is not yet
//! available ends the run with [`BackendError::InputRequired`] and the gateway re-runs the tool with the
//! answers gathered so far.

use async_trait::async_trait;
use mcpgate_core::{
    Backend, BackendError, CallContext, CompletionValues, JsonObject, PromptDef, ResourceDef,
    ResourceTemplateDef, ToolCall, ToolDef, ToolOutcome,
};
use serde_json::{Value, json};

mod mrtr;
mod prompts;
mod resources;
#[cfg(test)]
mod tests;
mod tools;

/// A 1x1 red PNG, base64.
const IMAGE_PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/// A minimal WAV file, base64.
const AUDIO_WAV_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// Method of an elicitation request to the client.
const ELICIT: &str = "elicitation/create";
/// Method of a sampling request to the client.
const SAMPLE: &str = "sampling/createMessage";
/// Method of a roots request to the client.
const ROOTS: &str = "roots/list";

/// The conformance suite's tools, resources, prompts and completions, served as one backend.
pub struct Conformance {
    name: String,
    tools: Vec<ToolDef>,
}

impl Conformance {
    /// The conformance surface, under the backend name `name`.
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned(), tools: tools::definitions() }
    }
}

#[async_trait]
impl Backend for Conformance {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(self.tools.clone())
    }

    async fn call_tool(&self, cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        tools::call(cx, call).await
    }

    async fn list_resources(&self) -> Result<Vec<ResourceDef>, BackendError> {
        Ok(resources::list())
    }

    async fn list_resource_templates(&self) -> Result<Vec<ResourceTemplateDef>, BackendError> {
        Ok(resources::templates())
    }

    async fn read_resource(&self, _cx: &CallContext, uri: &str) -> Result<JsonObject, BackendError> {
        resources::read(uri)
    }

    async fn owns_resource(&self, uri: &str) -> bool {
        resources::owns(uri)
    }

    async fn list_prompts(&self) -> Result<Vec<PromptDef>, BackendError> {
        Ok(prompts::list())
    }

    async fn get_prompt(
        &self,
        cx: &CallContext,
        name: &str,
        arguments: JsonObject,
    ) -> Result<JsonObject, BackendError> {
        prompts::get(cx, name, &arguments).await
    }

    async fn complete(
        &self,
        reference: &Value,
        argument_name: &str,
        argument_value: &str,
        _context: &JsonObject,
    ) -> Result<CompletionValues, BackendError> {
        Ok(prompts::complete(reference, argument_name, argument_value))
    }
}

/// The schema of a tool without arguments.
fn no_arguments() -> Value {
    json!({ "type": "object", "properties": {} })
}

/// A JSON value as an object; anything else becomes an empty object.
fn into_object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// Params of an elicitation asking for one required field of type `kind`.
fn elicitation_params(message: &str, field: &str, kind: &str) -> Value {
    json!({
        "message": message,
        "requestedSchema": {
            "type": "object",
            "properties": { field: { "type": kind } },
            "required": [field]
        }
    })
}

/// Params of a sampling request with one user text message.
fn sampling_params(text: &str, max_tokens: u32) -> Value {
    json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
        "maxTokens": max_tokens
    })
}

/// The client's answer to the request `key` as an object, or an error naming the request.
///
/// An answer of any other shape (a number, `null`) is not a result of the request that was made.
fn answer_object<'a>(key: &str, answer: &'a Value) -> Result<&'a JsonObject, BackendError> {
    answer.as_object().ok_or_else(|| {
        BackendError::InvalidArguments(format!("the input response {key:?} must be a result object"))
    })
}

/// The string `field` of an elicitation answer's `content`; `unknown` when the user declined or left it out.
fn elicited_text(key: &str, answer: &Value, field: &str) -> Result<String, BackendError> {
    let answer = answer_object(key, answer)?;
    let value = answer.get("content").and_then(|content| content.get(field)).and_then(Value::as_str);
    Ok(value.unwrap_or("unknown").to_owned())
}

/// The text a sampling answer carries: `content.text`, the first text item of a `content` array, or the
/// older `message.content.text`.
fn sampled_text(answer: &Value) -> Option<String> {
    answer
        .get("content")
        .and_then(content_text)
        .or_else(|| answer.get("message").and_then(|message| message.get("content")).and_then(content_text))
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

/// The text of a content item, or of the first text item of a content array.
fn content_text(content: &Value) -> Option<&str> {
    match content {
        Value::Array(items) => items.iter().find_map(|item| item.get("text").and_then(Value::as_str)),
        other => other.get("text").and_then(Value::as_str),
    }
}

/// The number of roots in a `roots/list` answer (0 when it carries none).
fn roots_count(key: &str, answer: &Value) -> Result<usize, BackendError> {
    let answer = answer_object(key, answer)?;
    Ok(answer.get("roots").and_then(Value::as_array).map_or(0, Vec::len))
}

/// Whether the client declared the capability `name` (present and not `null`/`false`).
fn declares(capabilities: &Value, name: &str) -> bool {
    capabilities.get(name).is_some_and(|value| !matches!(value, Value::Null | Value::Bool(false)))
}

/// The capabilities the calling client declared (`{}` when there is no way back to it).
fn client_capabilities(cx: &CallContext) -> Value {
    cx.peer.as_ref().map_or_else(|| json!({}), |peer| peer.client_capabilities())
}
