//! Tools, resources and prompts as the gateway sees them, independent of any protocol SDK.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::JsonObject;

/// A tool a backend offers, as listed to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDef {
    /// Name unique within the backend; the registry may rename it in the public catalogue.
    pub name: String,
    /// Human-readable title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the tool does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments (always an object schema).
    pub input_schema: Arc<JsonObject>,
    /// JSON Schema of `structuredContent`, when the tool declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Arc<JsonObject>>,
    /// Tool annotations (`readOnlyHint`, `idempotentHint`, …), passed through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
    /// Icons, passed through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icons: Option<Value>,
    /// Tool `_meta`, passed through untouched.
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<JsonObject>,
}

impl ToolDef {
    /// A tool with a name, a description and an input schema; other fields empty. A schema that is not a JSON
    /// object is kept as an empty one, which the registry then refuses (`inputSchema` must have
    /// `"type": "object"`), so the mistake is reported at startup.
    pub fn new(name: impl Into<String>, description: impl Into<String>, input_schema: Value) -> Self {
        let input_schema = match input_schema {
            Value::Object(map) => map,
            _ => JsonObject::new(),
        };
        Self {
            name: name.into(),
            title: None,
            description: Some(description.into()),
            input_schema: Arc::new(input_schema),
            output_schema: None,
            annotations: None,
            icons: None,
            meta: None,
        }
    }
}

/// One `tools/call` on its way to a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The backend's own name for the tool (after the registry undid any renaming).
    pub name: String,
    /// The arguments object (empty when the client sent none).
    pub arguments: JsonObject,
}

/// What a tool returned. A tool that ran and failed is an outcome with `is_error`, not an error.
///
/// Content items are kept as JSON so every content type — including ones this gateway does not know — passes
/// through unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolOutcome {
    /// Content items (`text`, `image`, `audio`, `resource`, `resource_link`, …).
    pub content: Vec<Value>,
    /// Structured result, when the tool produced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<Value>,
    /// Whether the tool reports a failure.
    #[serde(default)]
    pub is_error: bool,
    /// Result `_meta`, passed through.
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<JsonObject>,
    /// `ttlMs` as an upstream sent it on the result: how long it may be considered fresh. Read, never sent on:
    /// the 2026-07-28 revision defines it on list and read results, and the gateway's cache honours it on tool
    /// results too. A negative number reads as 0; a value that is not a number is ignored.
    #[serde(rename = "ttlMs", default, deserialize_with = "lenient_ttl", skip_serializing)]
    pub ttl_ms: Option<u64>,
    /// `cacheScope` as an upstream sent it on the result; read, never sent on. A value other than `"public"`
    /// or `"private"` reads as private (never shared); `""` as absent.
    #[serde(rename = "cacheScope", default, deserialize_with = "lenient_scope", skip_serializing)]
    pub cache_scope: Option<CacheScope>,
    /// Facts about the call for its audit line only (`detail`), never sent to the client: e.g. the size and
    /// hash of a code-mode program. Boxed: rare, and every outcome moves through the pipeline.
    #[serde(skip)]
    pub audit: Option<Box<Value>>,
}

/// Who may be served a cached copy of a result (`cacheScope`, 2026-07-28).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// No user-specific data: a copy may be served to anyone.
    Public,
    /// A copy may be served only within the authorization context that caused it.
    Private,
}

fn lenient_ttl<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.max(0.0) as u64))
        }
        _ => None,
    })
}

fn lenient_scope<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<CacheScope>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) if s == "public" => Some(CacheScope::Public),
        _ => Some(CacheScope::Private),
    })
}

impl ToolOutcome {
    /// A successful outcome holding one text item.
    pub fn text(text: impl Into<String>) -> Self {
        Self { content: vec![text_item(text.into())], ..Self::default() }
    }

    /// A tool error holding one text item; the model reads it and may correct its call.
    pub fn error(text: impl Into<String>) -> Self {
        Self { content: vec![text_item(text.into())], is_error: true, ..Self::default() }
    }

    /// Attach structured content.
    pub fn with_structured(mut self, value: Value) -> Self {
        self.structured_content = Some(value);
        self
    }
}

fn text_item(text: String) -> Value {
    serde_json::json!({ "type": "text", "text": text })
}

/// A resource a backend offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDef {
    /// The resource URI, kept unchanged across the gateway.
    pub uri: String,
    /// Programmatic name.
    pub name: String,
    /// Human-readable title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A URI template for resources a backend can read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTemplateDef {
    /// RFC 6570 URI template.
    pub uri_template: String,
    /// Programmatic name.
    pub name: String,
    /// Human-readable title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type of the resources it yields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// A prompt a backend offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptDef {
    /// Name unique within the backend.
    pub name: String,
    /// Human-readable title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Arguments the prompt takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<PromptArgument>,
}

/// One argument of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptArgument {
    /// Argument name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether the argument must be given.
    #[serde(default)]
    pub required: bool,
}

/// Completion values for `completion/complete`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionValues {
    /// Suggested values (at most 100 are sent).
    pub values: Vec<String>,
    /// Total number of matches, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u32>,
    /// Whether more values exist than were sent.
    #[serde(default)]
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(result: Value) -> ToolOutcome {
        serde_json::from_value(result).expect("a tool result reads whatever its hints say")
    }

    #[test]
    fn cache_hints_are_read_leniently_and_never_sent_on() {
        let text = json!([{ "type": "text", "text": "hi" }]);
        let outcome = read(json!({ "content": text, "ttlMs": 5000, "cacheScope": "private" }));
        assert_eq!((outcome.ttl_ms, outcome.cache_scope), (Some(5000), Some(CacheScope::Private)));
        let sent = serde_json::to_value(&outcome).unwrap();
        assert_eq!(sent, json!({ "content": text, "isError": false }), "hints stop at the gateway");
        for (ttl, scope, expected) in [
            (json!(-3), json!("public"), (Some(0), Some(CacheScope::Public))),
            (json!(1.9), json!(""), (Some(1), None)),
            (json!("soon"), json!(null), (None, None)),
            (json!(null), json!("shared-with-everyone"), (None, Some(CacheScope::Private))),
            (json!({}), json!(7), (None, Some(CacheScope::Private))),
        ] {
            let outcome = read(json!({ "content": text, "ttlMs": ttl, "cacheScope": scope }));
            assert_eq!((outcome.ttl_ms, outcome.cache_scope), expected, "{ttl} {scope}");
        }
        assert_eq!(read(json!({ "content": text })), ToolOutcome::text("hi"));
    }
}
