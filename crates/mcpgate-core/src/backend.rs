//! The one contract every tool source implements.

use async_trait::async_trait;
use serde_json::Value;

use crate::{
    BackendError, CallContext, CompletionValues, JsonObject, PromptDef, ResourceDef, ResourceTemplateDef,
    ToolCall, ToolDef, ToolOutcome,
};

/// Health of a backend as shown by `/ready` and `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendHealth {
    /// Serving.
    Up,
    /// Not serving, with the reason.
    Down(String),
}

/// A source of tools (and optionally resources and prompts): built-in tools, an upstream MCP server, an HTTP API,
/// a command, a database.
///
/// Backends are built from the closed `BackendConfig` enum by one exhaustive match. Resource and prompt methods
/// default to "none", so a backend implements only what it serves. Results of `read_resource`, `get_prompt` are
/// protocol JSON objects passed through as they are.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The backend's configured name.
    fn name(&self) -> &str;

    /// The tools it offers, under its own names.
    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError>;

    /// Run one tool. `Ok` with `is_error` when the tool ran and failed; `Err` when no result could be had.
    async fn call_tool(&self, cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError>;

    /// Whether a call of `tool` may send the client anything before its result: progress, log messages,
    /// requests (sampling, elicitation, roots). The safe answer, and the default, is yes. A backend whose tools
    /// never do answers no, and the gateway then serves their calls in a legacy session on its short path,
    /// with a plain JSON response.
    fn may_contact_client(&self, _tool: &str) -> bool {
        true
    }

    /// The outage the backend is in now, when it knows one: the number its failed calls report
    /// ([`BackendError::outage`]), so a failed health check during the outage is counted with them, once.
    /// `None` (the default): a failed check stands alone.
    fn outage(&self) -> Option<u64> {
        None
    }

    /// Changes of the catalogue after start — an upstream that reconnected, went down or announced
    /// `list_changed`: a receiver whose value moves each time `list_*` may answer differently. The gateway
    /// then rebuilds the public catalogue and tells legacy sessions. `None` (the default): it never changes.
    fn catalogue_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Resources it offers.
    async fn list_resources(&self) -> Result<Vec<ResourceDef>, BackendError> {
        Ok(Vec::new())
    }

    /// Resource templates it offers.
    async fn list_resource_templates(&self) -> Result<Vec<ResourceTemplateDef>, BackendError> {
        Ok(Vec::new())
    }

    /// Read one resource; the result object holds `contents`.
    async fn read_resource(&self, _cx: &CallContext, uri: &str) -> Result<JsonObject, BackendError> {
        Err(BackendError::NotFound { kind: "resource", name: uri.to_owned() })
    }

    /// Start telling [`resource_updates`](Self::resource_updates) about changes to `uri` (legacy
    /// `resources/subscribe`; the gateway calls it once per URI, however many sessions subscribe). The default
    /// accepts and never reports a change.
    async fn subscribe(&self, _uri: &str) -> Result<(), BackendError> {
        Ok(())
    }

    /// Stop reporting changes to `uri` (its last subscriber left).
    async fn unsubscribe(&self, _uri: &str) -> Result<(), BackendError> {
        Ok(())
    }

    /// URIs of subscribed resources as they change, when the backend can tell.
    fn resource_updates(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }

    /// Whether `uri` belongs to this backend (listed, or matching one of its templates).
    async fn owns_resource(&self, uri: &str) -> bool {
        self.list_resources().await.map(|list| list.iter().any(|r| r.uri == uri)).unwrap_or(false)
    }

    /// Prompts it offers.
    async fn list_prompts(&self) -> Result<Vec<PromptDef>, BackendError> {
        Ok(Vec::new())
    }

    /// Render one prompt; the result object holds `messages` (and optionally `description`).
    async fn get_prompt(
        &self,
        _cx: &CallContext,
        name: &str,
        _arguments: JsonObject,
    ) -> Result<JsonObject, BackendError> {
        Err(BackendError::NotFound { kind: "prompt", name: name.to_owned() })
    }

    /// Complete an argument of a prompt or resource template.
    ///
    /// `reference` is the protocol's `ref` object; `argument` its `{name, value}`; `context` the already-resolved
    /// arguments.
    async fn complete(
        &self,
        _reference: &Value,
        _argument_name: &str,
        _argument_value: &str,
        _context: &JsonObject,
    ) -> Result<CompletionValues, BackendError> {
        Ok(CompletionValues::default())
    }

    /// The MCP revision an upstream speaks on its live connection (`2026-07-28`, `2025-11-25`, …); `None` for
    /// backends that are not MCP servers, or while not connected.
    fn protocol(&self) -> Option<String> {
        None
    }

    /// Current health.
    async fn health(&self) -> BackendHealth {
        BackendHealth::Up
    }

    /// Release what the backend holds (child processes, connections). Called once at shutdown.
    async fn shutdown(&self) {}
}
