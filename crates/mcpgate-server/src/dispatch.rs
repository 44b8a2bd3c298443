//! The one door: every surface — the fast path of both eras, the protocol layer (rmcp) of both eras, stdio, and
//! any later one (code mode's inner calls, the REST facade, chat) — turns its request into an [`Operation`] and
//! calls [`Gateway::dispatch_at`] (or [`Dispatch::dispatch`] from another crate). Here the public name is
//! resolved in the registry, the operation runs through the pipeline (authorization, limits, deadline,
//! cancellation, breaker, audit, metrics, traces), and a stateless request's rounds are sealed and opened. No
//! surface does any of that itself.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use mcpgate_core::{
    Answer, BackendError, CallContext, ClientPeer, Dispatch, JsonObject, ListKind, LogLevel, Operation,
    OperationKind, ToolCall,
};
use mcpgate_policy::{Contents, Grant, Target, authz};
use rmcp::{
    ErrorData, Peer, RoleServer,
    model::{RequestStateCodec, RequestStateError, SealOptions},
};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::{
    errors::{tampered_state, to_jsonrpc},
    gateway::{Gateway, Live},
    peer::RoundTripPeer,
    registry::RegistryHandle,
    telemetry::{self, JsonRpcId, RequestTrace, ToolCallTrace},
};

/// How long a sealed `requestState` stays valid.
const REQUEST_STATE_TTL: Duration = Duration::from_secs(600);

/// What a surface took at the door of a request besides its [`CallContext`]: the configuration and the
/// catalogue of that moment (a request keeps both whatever a reload or a catalogue change does meanwhile), and
/// what the tool-call span continues.
pub(crate) struct Door<'a> {
    /// The configuration in force when the request came in.
    pub(crate) live: Arc<Live>,
    /// The catalogue the request resolves names in.
    pub(crate) registry: RegistryHandle,
    /// The JSON-RPC request id, for the trace.
    pub(crate) jsonrpc_id: Option<&'a (dyn std::fmt::Display + Sync)>,
    /// The request's `params._meta`, which may carry a trace context.
    pub(crate) meta: Option<&'a JsonObject>,
    /// The HTTP request's trace context, when the operation runs outside its span (the protocol layer's tasks).
    pub(crate) request: Option<&'a RequestTrace>,
}

impl Door<'_> {
    /// A door with no trace context: the configuration and catalogue in force now.
    pub(crate) fn now(gateway: &Gateway) -> Door<'static> {
        Door::of(gateway.live(), gateway.registry())
    }

    /// A door with no trace context, for `live` and `registry` (those an outer call took: code mode's inner
    /// calls run under their `execute`'s).
    pub(crate) fn of(live: Arc<Live>, registry: RegistryHandle) -> Door<'static> {
        Door { live, registry, jsonrpc_id: None, meta: None, request: None }
    }
}

/// Result of an operation that may need the client's input first.
pub(crate) enum Rounds<T> {
    /// The operation finished.
    Complete(T),
    /// The client must answer these requests and retry: an `InputRequiredResult` as JSON.
    InputRequired(Value),
}

/// What a multi-round request carried back: `inputResponses` and `requestState`.
pub(crate) struct Retry {
    pub(crate) responses: Option<BTreeMap<String, Value>>,
    pub(crate) state: Option<String>,
}

/// The client of one stateless request, as its `_meta` describes it.
pub(crate) struct StatelessClient {
    /// `clientCapabilities`.
    pub(crate) capabilities: Value,
    /// `logLevel`: log messages are sent only when it is set.
    pub(crate) log_level: Option<LogLevel>,
    /// Where notifications go; `None` when the request cannot receive any (no progress token, no log level).
    pub(crate) notify: Option<Peer<RoleServer>>,
}

/// What binds a `requestState` to one operation: the method, the target and the arguments, as the bytes sealing
/// authenticates. Made for every stateless call, so written straight into one buffer (not through `format!`).
pub(crate) fn binding(op: &Operation) -> Vec<u8> {
    let (kind, target) = (op.kind().as_str(), op.target());
    let mut binding = Vec::with_capacity(kind.len() + target.len() + 64);
    binding.extend_from_slice(kind.as_bytes());
    binding.push(b'\n');
    binding.extend_from_slice(target.as_bytes());
    binding.push(b'\n');
    if let Operation::CallTool { arguments, .. } | Operation::GetPrompt { arguments, .. } = op {
        // Writing to a `Vec` never fails, and a map of JSON values has nothing that cannot serialize.
        serde_json::to_writer(&mut binding, arguments).expect("a JSON object serializes into a Vec");
    }
    binding
}

/// The answers a `requestState` holds, sealed for the operation `binding` names, valid for
/// [`REQUEST_STATE_TTL`].
pub(crate) fn seal_answers(
    codec: &RequestStateCodec,
    binding: &[u8],
    answers: &BTreeMap<String, Value>,
) -> Result<String, RequestStateError> {
    let options = SealOptions::new().associated_data(binding).ttl(REQUEST_STATE_TTL);
    codec.seal_json_with(answers, &options)
}

/// The answers of a `requestState` the client sent back, if it is one [`seal_answers`] made for the operation
/// `binding` names and has not expired; anything else (forged, altered, for another operation) is an error.
pub(crate) fn open_answers(
    codec: &RequestStateCodec,
    binding: &[u8],
    sealed: &str,
) -> Result<BTreeMap<String, Value>, RequestStateError> {
    codec.open_json_with(sealed, binding)
}

#[async_trait]
impl Dispatch for Gateway {
    async fn dispatch(&self, cx: CallContext, op: Operation) -> Result<Answer, BackendError> {
        self.dispatch_at(&Door::now(self), cx, op).await
    }
}

impl Gateway {
    /// Run `op` for the caller `cx` describes, with what the surface took at `door`.
    pub(crate) async fn dispatch_at(
        &self,
        door: &Door<'_>,
        cx: CallContext,
        op: Operation,
    ) -> Result<Answer, BackendError> {
        let (registry, pipeline) = (&door.registry, &door.live.pipeline);
        let kind = op.kind();
        match op {
            Operation::CallTool { name, arguments } => {
                if self.offers_code_tool(&door.live, &cx.principal, &name) {
                    let span = tracing::info_span!("tools/call", request_id = %cx.request_id, tool = %name);
                    let run = self.code_call(door, &cx, &name, arguments);
                    return run.instrument(span).await.map(Answer::Tool);
                }
                let Some(route) = registry.tool(&name) else {
                    self.metrics.unknown_tool();
                    pipeline.not_found(&cx, kind, &name, Some(&arguments)).await;
                    return Err(BackendError::NotFound { kind: "tool", name });
                };
                let entry = &registry.backends()[route.backend];
                let span = tracing::info_span!("tools/call", request_id = %cx.request_id, tool = %name);
                let traced = telemetry::tool_span(ToolCallTrace {
                    tool: &name,
                    backend: &entry.name,
                    request_id: &cx.request_id,
                    jsonrpc_id: door.jsonrpc_id.unwrap_or(&JsonRpcId(&Value::Null)),
                    meta: door.meta,
                    request: door.request,
                });
                let call = ToolCall { name: route.original.clone(), arguments };
                // Boxed once: the pipeline's future is large, and each wrapper below would copy it whole.
                let run = Box::pin(pipeline.call_tool(&cx, &*entry.backend, &name, &route.policy, call));
                let timed = self.metrics.timed_call(
                    route.metrics_or(|name| self.metrics.tool(name)),
                    telemetry::traced(traced, run),
                );
                timed.instrument(span).await.map(Answer::Tool)
            }
            Operation::ReadResource { uri } => {
                let Some(owner) = registry.resource_owner(&uri).await else {
                    pipeline.not_found(&cx, kind, &uri, None).await;
                    return Err(BackendError::NotFound { kind: "resource", name: uri });
                };
                let entry = &registry.backends()[owner];
                let target =
                    Target { operation: kind, grant: Grant::Resource, name: &uri, backend: &entry.name };
                let read = async { Ok((entry.backend.read_resource(&cx, &uri).await?, Contents::Resource)) };
                let read = pipeline.run_operation(&cx, target, Some(&entry.breaker), read).await;
                read.map(|(contents, _)| Answer::Resource(contents))
            }
            Operation::GetPrompt { name, arguments } => {
                let Some(owner) = registry.prompt_owner(&name) else {
                    pipeline.not_found(&cx, kind, &name, Some(&arguments)).await;
                    return Err(BackendError::NotFound { kind: "prompt", name });
                };
                let entry = &registry.backends()[owner];
                let target =
                    Target { operation: kind, grant: Grant::Prompt, name: &name, backend: &entry.name };
                let get =
                    async { Ok((entry.backend.get_prompt(&cx, &name, arguments).await?, Contents::Prompt)) };
                let got = pipeline.run_operation(&cx, target, Some(&entry.breaker), get).await;
                got.map(|(messages, _)| Answer::Prompt(messages))
            }
            Operation::Complete { reference, argument, value, context } => {
                let by_prompt = reference.get("type").and_then(Value::as_str) == Some("ref/prompt");
                let (grant, field) =
                    if by_prompt { (Grant::Prompt, "name") } else { (Grant::Resource, "uri") };
                let name = reference.get(field).and_then(Value::as_str).unwrap_or_default();
                let owner = match reference.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => registry.prompt_owner(name),
                    Some("ref/resource") => registry.template_owner(name),
                    _ => None,
                };
                // Nothing to complete from — an unknown reference, or one the caller may not see: no suggestion.
                let none = Answer::Completion(Default::default());
                let Some(owner) = owner else {
                    pipeline.not_found(&cx, kind, name, None).await;
                    return Ok(none);
                };
                let entry = &registry.backends()[owner];
                let target = Target { operation: kind, grant, name, backend: &entry.name };
                let complete = entry.backend.complete(&reference, &argument, &value, &context);
                let mut values =
                    match pipeline.run_operation(&cx, target, Some(&entry.breaker), complete).await {
                        Err(BackendError::NotFound { .. }) => return Ok(none),
                        other => other?,
                    };
                values.has_more |= values.values.len() > 100;
                values.values.truncate(100);
                Ok(Answer::Completion(values))
            }
            Operation::Subscribe { uri } | Operation::Unsubscribe { uri } => {
                self.subscription(door, &cx, kind, uri).await.map(|()| Answer::Done)
            }
            Operation::List(list) => Ok(self.list(door, &cx.principal, list)),
        }
    }

    /// `resources/subscribe` or `resources/unsubscribe` of the caller's session. The backend that owns the
    /// resource is asked once, when its first subscriber comes, and told to stop when the last one leaves.
    async fn subscription(
        &self,
        door: &Door<'_>,
        cx: &CallContext,
        kind: OperationKind,
        uri: String,
    ) -> Result<(), BackendError> {
        let (registry, pipeline) = (&door.registry, &door.live.pipeline);
        let Some(owner) = registry.resource_owner(&uri).await else {
            pipeline.not_found(cx, kind, &uri, None).await;
            return Err(BackendError::NotFound { kind: "resource", name: uri });
        };
        let entry = &registry.backends()[owner];
        let peer = cx.peer.clone().filter(|peer| peer.session().is_some()).ok_or_else(|| {
            BackendError::InvalidArguments("resource subscriptions need a session to send updates to".into())
        })?;
        let key = peer.session().unwrap_or_default().to_owned();
        let subscriptions = &self.subscriptions;
        let change = async {
            // A shared session's subscriptions live in Redis: the node holding its listening stream watches them.
            if let Some(shared) = self.shared_session(&key)
                && shared.set_subscription(&key, &uri, kind == OperationKind::Subscribe).await
            {
                return Ok(());
            }
            if kind == OperationKind::Subscribe {
                if subscriptions.add(&uri, &key, peer)
                    && let Err(e) = entry.backend.subscribe(&uri).await
                {
                    subscriptions.remove(&uri, &key);
                    return Err(e);
                }
            } else if subscriptions.remove(&uri, &key) {
                entry.backend.unsubscribe(&uri).await?;
            }
            Ok(())
        };
        let target = Target { operation: kind, grant: Grant::Resource, name: &uri, backend: &entry.name };
        pipeline.run_operation(cx, target, Some(&entry.breaker), change).await
    }

    /// The items of a catalogue list `principal` may see (in code mode, the code-mode tools first).
    fn list(&self, door: &Door<'_>, principal: &mcpgate_core::Principal, list: ListKind) -> Answer {
        let registry = &door.registry;
        match list {
            ListKind::Tools => Answer::Tools(
                self.code_tools(&door.live, principal)
                    .chain(registry.tools().filter(|tool| authz::may_use(principal, &tool.name)))
                    .cloned()
                    .collect(),
            ),
            ListKind::Resources => Answer::Resources(
                registry
                    .resources()
                    .filter(|r| authz::allows(principal, Grant::Resource, &r.uri))
                    .cloned()
                    .collect(),
            ),
            ListKind::ResourceTemplates => Answer::ResourceTemplates(
                (registry.templates())
                    .filter(|t| authz::allows(principal, Grant::Resource, &t.uri_template))
                    .cloned()
                    .collect(),
            ),
            ListKind::Prompts => Answer::Prompts(
                registry
                    .prompts()
                    .filter(|p| authz::allows(principal, Grant::Prompt, &p.name))
                    .cloned()
                    .collect(),
            ),
        }
    }

    /// Run `op` for a stateless (2026-07-28) request, in rounds: the answers the client gave so far travel in a
    /// sealed `requestState` bound to the operation, so a retry re-runs it with every answer, and a forged,
    /// replayed or expired state is refused. A call that asks the client something it has not answered yet
    /// ends with `input_required`, listing every such request.
    pub(crate) async fn dispatch_rounds(
        &self,
        door: &Door<'_>,
        mut cx: CallContext,
        op: Operation,
        retry: Retry,
        client: StatelessClient,
    ) -> Result<Rounds<Answer>, ErrorData> {
        let binding = binding(&op);
        let mut answers = match &retry.state {
            Some(sealed) => {
                open_answers(&self.request_state, &binding, sealed).map_err(|_| tampered_state())?
            }
            None => BTreeMap::new(),
        };
        answers.extend(retry.responses.unwrap_or_default());
        let peer =
            Arc::new(RoundTripPeer::new(client.notify, client.capabilities, client.log_level, answers));
        cx.peer = Some(peer.clone() as Arc<dyn ClientPeer>);
        match self.dispatch_at(door, cx, op).await {
            Ok(answer) => Ok(Rounds::Complete(answer)),
            Err(BackendError::InputRequired) => {
                let sealed = seal_answers(&self.request_state, &binding, peer.answers())
                    .map_err(|e| ErrorData::internal_error(format!("cannot seal requestState: {e}"), None))?;
                Ok(Rounds::InputRequired(json!({
                    "resultType": "input_required",
                    "inputRequests": peer.take_pending(),
                    "requestState": sealed,
                })))
            }
            Err(e) => Err(to_jsonrpc(&e)),
        }
    }
}
