//! How an HTTP response becomes the tool's result: a bounded read, then text, or JSON as `structuredContent`.

use mcpgate_core::ToolOutcome;
use reqwest::{Response, StatusCode, header::CONTENT_TYPE};
use serde_json::Value;

use super::load::{TemplateSet, Tool};

/// Most characters of a non-2xx body quoted in the tool error.
const EXCERPT_CHARS: usize = 500;
/// Most bytes read of a non-2xx body: enough for the excerpt, whatever the encoding.
const EXCERPT_BYTES: u64 = 4 * EXCERPT_CHARS as u64;

/// A response body read up to a limit.
pub(super) struct BoundedBody {
    pub bytes: Vec<u8>,
    /// Whether the body was longer than the limit (then `bytes` holds its first `limit` bytes).
    pub over: bool,
}

/// Read at most `limit` bytes of the body, chunk by chunk, so a huge body is never buffered whole.
pub(super) async fn read_bounded(response: &mut Response, limit: u64) -> Result<BoundedBody, reqwest::Error> {
    let mut bytes = Vec::new();
    let room = |bytes: &Vec<u8>| usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(bytes.len());
    while let Some(chunk) = response.chunk().await? {
        if chunk.len() > room(&bytes) {
            let keep = room(&bytes);
            bytes.extend_from_slice(&chunk[..keep]);
            return Ok(BoundedBody { bytes, over: true });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(BoundedBody { bytes, over: false })
}

/// The limit to read a body with: the whole allowance for a 2xx, an excerpt's worth otherwise.
pub(super) fn read_limit(status: StatusCode, max_response_size: u64) -> u64 {
    if status.is_success() { max_response_size } else { EXCERPT_BYTES.min(max_response_size) }
}

/// A non-2xx response: `HTTP 404 Not Found: <excerpt>`.
pub(super) fn status_error(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("HTTP {status}");
    }
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("HTTP {status}: {}…", &text[..cut]),
        None => format!("HTTP {status}: {text}"),
    }
}

/// Whether `Content-Type` says JSON (`application/json`, `application/problem+json`, …).
pub(super) fn is_json(response: &Response) -> bool {
    let Some(content_type) = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A 2xx body as the tool's result. JSON (by `Content-Type`) is narrowed by the tool's pointer and becomes
/// `structuredContent` when it is an object — MCP requires an object there — and the text item either way. A
/// tool declaring an `output_schema` must produce an object, so any other selected value is a tool error.
/// Anything else is text (invalid UTF-8 replaced). An empty body is empty text, whatever its type says.
pub(super) fn success(
    tool: &Tool,
    texts: &TemplateSet,
    status: StatusCode,
    json: bool,
    body: &[u8],
    arguments: &Value,
) -> Result<ToolOutcome, String> {
    if !json || body.is_empty() {
        let text = String::from_utf8_lossy(body).into_owned();
        return match &tool.template {
            Some(name) => Ok(ToolOutcome::text(render(texts, name, Value::String(text), status, arguments)?)),
            None => Ok(ToolOutcome::text(text)),
        };
    }
    let parsed: Value =
        serde_json::from_slice(body).map_err(|e| format!("the response says it is JSON but is not: {e}"))?;
    let selected = match &tool.pointer {
        Some(pointer) => parsed
            .pointer(pointer)
            .cloned()
            .ok_or_else(|| format!("the JSON pointer {pointer:?} selects nothing in the response"))?,
        None => parsed,
    };
    if tool.has_output_schema && !selected.is_object() {
        return Err(format!(
            "the tool declares an output_schema, so its result must be a JSON object, but the response {} is {}",
            if tool.pointer.is_some() { "part selected" } else { "body" },
            kind(&selected)
        ));
    }
    let text = match &tool.template {
        Some(name) => render(texts, name, selected.clone(), status, arguments)?,
        None => selected.to_string(),
    };
    let outcome = ToolOutcome::text(text);
    Ok(if selected.is_object() { outcome.with_structured(selected) } else { outcome })
}

/// The response template, seeing the arguments plus `response` and `status` (which win over arguments of
/// those names).
fn render(
    texts: &TemplateSet,
    name: &str,
    response: Value,
    status: StatusCode,
    arguments: &Value,
) -> Result<String, String> {
    let mut context = arguments.as_object().cloned().unwrap_or_default();
    context.insert("response".to_owned(), response);
    context.insert("status".to_owned(), status.as_u16().into());
    texts.render(name, &Value::Object(context))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_cut_on_a_character_boundary() {
        let body = "é".repeat(600);
        let message = status_error(StatusCode::BAD_GATEWAY, body.as_bytes());
        assert_eq!(message, format!("HTTP 502 Bad Gateway: {}…", "é".repeat(EXCERPT_CHARS)));
        assert_eq!(status_error(StatusCode::NOT_FOUND, b"  "), "HTTP 404 Not Found");
    }
}
