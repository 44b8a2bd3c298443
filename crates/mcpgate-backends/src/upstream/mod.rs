//! Upstream MCP servers: another MCP server's tools, resources and prompts, served as a backend.
//!
//! - **One supervised connection per upstream.** A task (`connection::supervise`) owns it — for stdio also the
//!   child process, started with an empty environment but for `PATH`, `HOME` and the configured `env`, its
//!   stderr drained into the log. The handshake tries `server/discover` (2026-07-28) and falls back to
//!   `initialize` (2025-11-25); a legacy HTTP+SSE upstream (`sse`) gets `initialize` only. rmcp's response
//!   cache is off: lists come from our catalogue, never a stale copy.
//! - **Failing fast.** The supervisor watches the child (`wait`) and the service; when either ends it marks the
//!   upstream down and cancels the connection's token, and every call in flight — each races its response
//!   against that token — fails at once with [`BackendError::Unavailable`] instead of after rmcp's drain.
//!   It then reconnects with exponential backoff and jitter (200 ms doubling to 30 s, reset after a connection
//!   that stayed up 10 s).
//! - **Start.** [`Upstream::start`] waits for the first connection `timeout` clamped to 5-10 s; an upstream not
//!   up by then starts with an empty catalogue and the supervisor keeps trying. Only errors a retry cannot fix
//!   (an unset `${VAR}`, a malformed header) fail the start.
//! - **Down.** Once a connection has ended and the next attempt has failed too, its tools and prompts are hidden
//!   (`when_down: hide`) until it is back; a restart that succeeds hides nothing, and calls meanwhile fail
//!   naming the upstream. With `when_down: error` its last catalogue stays listed however long it is down.
//! - **Naming.** The catalogue fetched on connection is published through the config's [`Naming`]: tools and
//!   prompts filtered by allow / deny, renamed or prefixed `NAME__`, descriptions overridden; resources keep
//!   their URIs. Calls map the published name back.
//! - **Calls** carry the upstream `timeout` (expiry sends `notifications/cancelled` upstream and is
//!   [`BackendError::Timeout`]); the caller's cancellation cancels upstream too. Results pass through serde, so
//!   content, `structuredContent`, `isError` and `_meta` arrive unchanged.
//!
//! **Files**, each importing only files below it, so none imports another in a circle: `call` (a request, from the
//! caller's task; it adds its methods to [`Upstream`]) and `connection` (the supervisor); `forward` (the
//! `ClientHandler`); `state` (what the supervisor publishes and callers read); `lane` (one `Lane::call` for both
//! direct lanes); `pipe`, `http_lane`, `ordered` and `sse` (lanes and transports); `calls` (the calls in flight);
//! then `wire` (the wire format), over the leaves `convert` and `trace`. A lane call is two steps — `Lane::call`
//! fixes the request's id, `Sent::answer` sends it — because the call must be registered under that id before
//! anything is sent. What several files need sits in the lowest file it fits (the message size limit and the
//! refusal of a client's answer in `wire`, `read_result` in `convert`, `can_subscribe` in `connection`), not here,
//! so that no file but `call` reaches back into this one.

mod call;
mod calls;
mod connection;
mod convert;
mod forward;
mod http_lane;
mod lane;
mod ordered;
mod pipe;
mod sse;
mod state;
mod trace;
mod wire;

#[cfg(feature = "fuzzing")]
pub(crate) use sse::{SseError, events, message, resolve_endpoint};

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use mcpgate_config::{Naming, UpstreamConfig, WhenDown};
use mcpgate_core::{
    Backend, BackendError, BackendHealth, CallContext, CompletionValues, JsonObject, PromptDef, ResourceDef,
    ResourceTemplateDef, ToolCall, ToolDef, ToolOutcome,
};
use parking_lot::RwLock;
use rmcp::model::{ClientRequest, CompleteRequest, GetPromptRequest, ReadResourceRequest, ServerResult};
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use self::{
    call::{Answer, Via},
    connection::{Launch, can_subscribe},
    convert::read_result,
    state::{Catalogue, Link, Shared, State},
};

/// Shortest and longest wait for the first connection at start (the upstream `timeout`, within these bounds):
/// the catalogue is read once at start, so a short call timeout must not cut a slow child's start short.
const FIRST_CONNECTION_WAIT: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(10));
/// Shortest time one connection attempt (spawn or connect, handshake, catalogue) may take.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One upstream MCP server behind one supervised connection.
pub struct Upstream {
    name: String,
    timeout: Duration,
    shared: Arc<Shared>,
    published: Arc<RwLock<Arc<Published>>>,
    stop: CancellationToken,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The catalogue under published names, and the way back to upstream names.
#[derive(Default)]
struct Published {
    tools: Vec<ToolDef>,
    tool_names: HashMap<String, String>,
    resources: Vec<ResourceDef>,
    templates: Vec<ResourceTemplateDef>,
    prompts: Vec<PromptDef>,
    prompt_names: HashMap<String, String>,
}

/// What naming needs from the config.
struct NamingRules {
    name: String,
    prefix: bool,
    tools: Naming,
    prompts: Naming,
}

/// A tool or prompt as published: its name and description can be rewritten.
trait Named: serde::de::DeserializeOwned {
    fn rename(&mut self, name: String);
    fn describe(&mut self, description: String);
}

impl Named for ToolDef {
    fn rename(&mut self, name: String) {
        self.name = name;
    }
    fn describe(&mut self, description: String) {
        self.description = Some(description);
    }
}

impl Named for PromptDef {
    fn rename(&mut self, name: String) {
        self.name = name;
    }
    fn describe(&mut self, description: String) {
        self.description = Some(description);
    }
}

impl NamingRules {
    fn publish(&self, catalogue: Catalogue) -> Published {
        let (tools, tool_names) =
            self.named("tool", &self.tools, catalogue.tools.iter().map(|t| (t.name.to_string(), t)));
        let (prompts, prompt_names) =
            self.named("prompt", &self.prompts, catalogue.prompts.iter().map(|p| (p.name.clone(), p)));
        Published {
            tools,
            tool_names,
            prompts,
            prompt_names,
            resources: self.unnamed("resource", &catalogue.resources),
            templates: self.unnamed("resource template", &catalogue.templates),
        }
    }

    /// Tools or prompts (`kind`) through `naming`: filtered by allow / deny, retyped, renamed (prefixed) and
    /// described; with the way from each published name back to the upstream's.
    fn named<'a, U: serde::Serialize + 'a, D: Named>(
        &self,
        kind: &str,
        naming: &Naming,
        items: impl Iterator<Item = (String, &'a U)>,
    ) -> (Vec<D>, HashMap<String, String>) {
        let prefix = self.prefix.then_some(self.name.as_str());
        let (mut published, mut names) = (Vec::new(), HashMap::new());
        for (upstream_name, item) in items.filter(|(name, _)| naming.allows(name)) {
            let mut def: D = match convert::retype(item) {
                Ok(def) => def,
                Err(e) => {
                    tracing::warn!(upstream = %self.name, %kind, name = %upstream_name, "left out: {e}");
                    continue;
                }
            };
            let public = naming.public_name(prefix, &upstream_name);
            def.rename(public.clone());
            if let Some(description) = naming.descriptions.get(&upstream_name) {
                def.describe(description.clone());
            }
            names.insert(public, upstream_name);
            published.push(def);
        }
        (published, names)
    }

    /// Resources or templates (`kind`), which keep their URIs; one that cannot be read is left out, with a warning.
    fn unnamed<U: serde::Serialize, D: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        items: &[U],
    ) -> Vec<D> {
        (items.iter())
            .filter_map(|item| {
                convert::retype(item)
                    .map_err(|e| tracing::warn!(upstream = %self.name, %kind, "left out: {e}"))
                    .ok()
            })
            .collect()
    }
}

impl Upstream {
    /// Start the supervisor and wait (briefly) for the first connection.
    pub async fn start(name: &str, config: &UpstreamConfig) -> Result<Self, String> {
        let (upstream, mut ready) = Self::spawn(name, config)?;
        let wait = upstream.timeout.clamp(FIRST_CONNECTION_WAIT.0, FIRST_CONNECTION_WAIT.1);
        if tokio::time::timeout(wait, ready.wait_for(|up| *up)).await.is_err() {
            tracing::warn!(
                upstream = %name,
                "not connected after {wait:?}; starting without its tools while retrying in the background"
            );
        }
        Ok(upstream)
    }

    /// Start the supervisor and return at once; the caller watches [`server_info`](Self::server_info) and
    /// [`failed_attempt`](Self::failed_attempt) for how the first attempt went.
    pub fn launch(name: &str, config: &UpstreamConfig) -> Result<Self, String> {
        Self::spawn(name, config).map(|(upstream, _)| upstream)
    }

    /// The upstream with its supervisor running, and a watch that turns true on each connection.
    fn spawn(name: &str, config: &UpstreamConfig) -> Result<(Self, watch::Receiver<bool>), String> {
        let launch = Launch::prepare(config)?;
        let rules = NamingRules {
            name: name.to_owned(),
            prefix: config.prefix,
            tools: config.tools.clone(),
            prompts: config.prompts.clone(),
        };
        let published: Arc<RwLock<Arc<Published>>> = Arc::default();
        let sink = published.clone();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            state: RwLock::new(State {
                link: None,
                down: "not connected yet".to_owned(),
                last_generation: 0,
                failed_attempts: 0,
            }),
            on_catalogue: Box::new(move |catalogue| {
                let next = Arc::new(rules.publish(catalogue));
                {
                    let mut slot = sink.write();
                    *slot = next;
                }
            }),
            catalogue: parking_lot::Mutex::default(),
            changes: watch::channel(0).0,
            keep_listed: config.when_down == WhenDown::Error,
            updates: tokio::sync::broadcast::channel(64).0,
            subscribed: parking_lot::Mutex::default(),
        });
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = watch::channel(false);
        let timeout = config.timeout.0;
        let supervisor = tokio::spawn(connection::supervise(
            shared.clone(),
            launch,
            config.protocol,
            timeout.max(MIN_CONNECT_TIMEOUT),
            stop.clone(),
            ready_tx,
        ));
        let upstream = Self {
            name: name.to_owned(),
            timeout,
            shared,
            published,
            stop,
            supervisor: Mutex::new(Some(supervisor)),
        };
        Ok((upstream, ready_rx))
    }

    fn published(&self) -> Arc<Published> {
        self.published.read().clone()
    }

    /// What in `config` cannot be used as it is now, without starting anything: `Err`, what
    /// [`start`](Self::start) would fail on (a `${VAR}` that is not set, a header that is not one); `Ok(Some)`,
    /// why a stdio server's program cannot be started yet (not found on the `PATH` the child gets, or from its
    /// `cwd`) — which its supervisor would retry.
    pub fn check(config: &UpstreamConfig) -> Result<Option<String>, String> {
        Ok(match Launch::prepare(config)? {
            Launch::Stdio { command, env, cwd, .. } => {
                // The child's PATH: the last one its environment sets (the config's, else the gateway's).
                let search =
                    env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or("");
                crate::command::find_program(&command, search.as_ref(), cwd.as_deref()).err()
            }
            _ => None,
        })
    }

    /// Why the last connection attempt failed, while there is no connection and one has failed: for a caller
    /// that wants one try (`mcpgate client`), not the supervisor's retries.
    pub fn failed_attempt(&self) -> Option<String> {
        let state = self.shared.state.read();
        (state.link.is_none() && state.failed_attempts > 0).then(|| state.down.clone())
    }

    /// What the server said of itself when the live connection opened (`initialize` result or discovery:
    /// `protocolVersion`, `serverInfo`, `capabilities`, `instructions`), or `None` while it is not connected.
    pub fn server_info(&self) -> Option<Value> {
        let link = self.shared.state.read().link.clone()?;
        link.peer.peer_info().and_then(|info| serde_json::to_value(info).ok())
    }

    /// The live connection, or why there is none: the outage since the last connection ended.
    fn link(&self) -> Result<Link, BackendError> {
        let state = self.shared.state.read();
        match &state.link {
            Some(link) => Ok(link.clone()),
            None => Err(BackendError::Unavailable {
                backend: self.name.clone(),
                reason: format!("upstream {} is not connected: {}", self.name, state.down),
                outage: Some(state.last_generation),
            }),
        }
    }

    /// The error of a call whose connection died under it: one outage with every other call it failed.
    fn disconnected(&self, link: &Link) -> BackendError {
        BackendError::Unavailable {
            backend: self.name.clone(),
            reason: format!("upstream {} disconnected: {}", self.name, link.reason()),
            outage: Some(link.generation),
        }
    }
}

/// Whether `uri` is one a URI template (RFC 6570) can expand to: every `{…}` expression stands for any text.
fn template_matches(template: &str, uri: &str) -> bool {
    let mut pattern = String::with_capacity(template.len());
    let mut in_expression = false;
    for c in template.chars() {
        match (c, in_expression) {
            ('{', false) => {
                in_expression = true;
                pattern.push('*');
            }
            ('}', true) => in_expression = false,
            (_, true) => {}
            (c, false) => pattern.push(c),
        }
    }
    mcpgate_config::glob(&pattern, uri)
}

fn unexpected(name: &str, what: &str) -> BackendError {
    BackendError::Failed {
        backend: name.to_owned(),
        message: format!("upstream {name} answered {what} with an unexpected result"),
        blame: mcpgate_core::Blame::Upstream,
    }
}

/// A request's params from JSON, so every field the protocol allows passes through.
fn params<T: serde::de::DeserializeOwned>(name: &str, value: Value) -> Result<T, BackendError> {
    serde_json::from_value(value).map_err(|e| BackendError::InvalidArguments(format!("{name}: {e}")))
}

/// The params `{"name": …, "arguments": …}` of a tool call or prompt request, the arguments moved in (`json!`
/// would copy them through their serialized form).
fn named(name: &str, arguments: JsonObject) -> Value {
    Value::Object(JsonObject::from_iter([
        ("name".to_owned(), Value::String(name.to_owned())),
        ("arguments".to_owned(), Value::Object(arguments)),
    ]))
}

#[async_trait]
impl Backend for Upstream {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_tools(&self) -> Result<Vec<ToolDef>, BackendError> {
        Ok(self.published().tools.clone())
    }

    fn catalogue_changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.shared.changes.subscribe())
    }

    fn protocol(&self) -> Option<String> {
        let link = self.shared.state.read().link.clone()?;
        link.peer.peer_info().map(|info| info.protocol_version.to_string())
    }

    async fn call_tool(&self, cx: &CallContext, call: ToolCall) -> Result<ToolOutcome, BackendError> {
        let published = self.published();
        let Some(upstream_name) = published.tool_names.get(&call.name) else {
            // While the upstream is down its tools are hidden, so a call that still names one is told why.
            self.link()?;
            return Err(BackendError::NotFound { kind: "tool", name: call.name });
        };
        match self.with_input(cx, named(upstream_name, call.arguments), Via::ToolCall).await? {
            Answer::Typed(ServerResult::CallToolResult(result)) => read_result(&self.name, &result),
            Answer::Raw(result) => convert::from_raw(&self.name, &result),
            Answer::Typed(_) => Err(unexpected(&self.name, "tools/call")),
        }
    }

    async fn list_resources(&self) -> Result<Vec<ResourceDef>, BackendError> {
        Ok(self.published().resources.clone())
    }

    async fn list_resource_templates(&self) -> Result<Vec<ResourceTemplateDef>, BackendError> {
        Ok(self.published().templates.clone())
    }

    async fn read_resource(&self, cx: &CallContext, uri: &str) -> Result<JsonObject, BackendError> {
        let make = |p: &Value| {
            serde::Deserialize::deserialize(p)
                .map(|p| ClientRequest::ReadResourceRequest(ReadResourceRequest::new(p)))
        };
        match self.with_input(cx, json!({ "uri": uri }), Via::Rmcp(make)).await? {
            Answer::Typed(ServerResult::ReadResourceResult(result)) => read_result(&self.name, &result),
            _ => Err(unexpected(&self.name, "resources/read")),
        }
    }

    async fn owns_resource(&self, uri: &str) -> bool {
        let published = self.published();
        published.resources.iter().any(|r| r.uri == uri)
            || published.templates.iter().any(|t| template_matches(&t.uri_template, uri))
    }

    async fn list_prompts(&self) -> Result<Vec<PromptDef>, BackendError> {
        Ok(self.published().prompts.clone())
    }

    async fn get_prompt(
        &self,
        cx: &CallContext,
        name: &str,
        arguments: JsonObject,
    ) -> Result<JsonObject, BackendError> {
        let published = self.published();
        let Some(upstream_name) = published.prompt_names.get(name) else {
            self.link()?;
            return Err(BackendError::NotFound { kind: "prompt", name: name.to_owned() });
        };
        let request = named(upstream_name, arguments);
        let make = |p: &Value| {
            serde::Deserialize::deserialize(p)
                .map(|p| ClientRequest::GetPromptRequest(GetPromptRequest::new(p)))
        };
        match self.with_input(cx, request, Via::Rmcp(make)).await? {
            Answer::Typed(ServerResult::GetPromptResult(result)) => read_result(&self.name, &result),
            _ => Err(unexpected(&self.name, "prompts/get")),
        }
    }

    async fn complete(
        &self,
        reference: &Value,
        argument_name: &str,
        argument_value: &str,
        context: &JsonObject,
    ) -> Result<CompletionValues, BackendError> {
        let mut reference = reference.clone();
        if reference["type"] == "ref/prompt"
            && let Some(public) = reference["name"].as_str()
            && let Some(upstream_name) = self.published().prompt_names.get(public)
        {
            reference["name"] = Value::String(upstream_name.clone());
        }
        let params = params(
            &self.name,
            json!({
                "ref": reference,
                "argument": { "name": argument_name, "value": argument_value },
                "context": { "arguments": context },
            }),
        )?;
        // Completion has no caller context to cancel with; the upstream timeout still bounds it.
        match self.request(None, ClientRequest::CompleteRequest(CompleteRequest::new(params))).await? {
            ServerResult::CompleteResult(result) => {
                convert::retype(&result.completion).map_err(|e| BackendError::Failed {
                    backend: self.name.clone(),
                    message: format!("cannot read the upstream's completion: {e}"),
                    blame: mcpgate_core::Blame::Upstream,
                })
            }
            _ => Err(unexpected(&self.name, "completion/complete")),
        }
    }

    #[allow(deprecated)] // the legacy revisions this gateway serves still have resources/subscribe
    async fn subscribe(&self, uri: &str) -> Result<(), BackendError> {
        self.shared.subscribed.lock().insert(uri.to_owned());
        // A down upstream is subscribed when it is back; one that cannot subscribe never reports a change.
        let Ok(link) = self.link() else { return Ok(()) };
        if !can_subscribe(&link.peer) {
            tracing::debug!(upstream = %self.name, %uri, "the upstream offers no resources/subscribe");
            return Ok(());
        }
        use rmcp::model::{SubscribeRequest, SubscribeRequestParams};
        let request =
            ClientRequest::SubscribeRequest(SubscribeRequest::new(SubscribeRequestParams::new(uri)));
        self.request(None, request).await.map(drop)
    }

    #[allow(deprecated)] // as above
    async fn unsubscribe(&self, uri: &str) -> Result<(), BackendError> {
        self.shared.subscribed.lock().remove(uri);
        match self.link() {
            Ok(link) if can_subscribe(&link.peer) => {
                use rmcp::model::{UnsubscribeRequest, UnsubscribeRequestParams};
                let request = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
                    UnsubscribeRequestParams::new(uri),
                ));
                self.request(None, request).await.map(drop)
            }
            _ => Ok(()),
        }
    }

    fn resource_updates(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        Some(self.shared.updates.subscribe())
    }

    fn outage(&self) -> Option<u64> {
        let state = self.shared.state.read();
        state.link.is_none().then_some(state.last_generation)
    }

    /// Up when connected and a `ping` is answered — with any response: an error reply still proves the
    /// server reads and answers. Down while not connected, or when the ping cannot be sent or is not answered.
    async fn health(&self) -> BackendHealth {
        {
            let state = self.shared.state.read();
            if state.link.is_none() {
                return BackendHealth::Down(state.down.clone());
            }
        }
        let ping = ClientRequest::PingRequest(rmcp::model::PingRequest::default());
        match self.request(None, ping).await {
            Err(e @ (BackendError::Unavailable { .. } | BackendError::Timeout(_))) => {
                BackendHealth::Down(e.to_string())
            }
            _ => BackendHealth::Up,
        }
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        if let Some(task) = self.supervisor.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // The supervisor kills the child and ends when this fires.
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn uris_match_the_templates_that_expand_to_them() {
        assert!(template_matches("test://template/{id}/data", "test://template/123/data"));
        assert!(template_matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(!template_matches("test://template/{id}/data", "test://other/123/data"));
    }
}
