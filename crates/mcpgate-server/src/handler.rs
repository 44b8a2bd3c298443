//! The MCP server handler: protocol requests in, registry and pipeline out. rmcp owns the wire (both eras,
//! sessions, headers); this file turns each request into a gateway operation and the result back into protocol
//! types.

#![allow(deprecated)] // `SetLevelRequestParams`: see `set_level`.

use std::{borrow::Cow, sync::Arc};

use mcpgate_core::{Answer, CallContext, JsonObject, ListKind, Operation, Principal};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams,
        CompleteResult, DiscoverResult, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
        ReadResourceResult, ServerConfig, SetLevelRequestParams, SubscribeRequestParams,
        UnsubscribeRequestParams,
    },
    service::{NotificationContext, RequestContext},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use mcpgate_policy::{Grant, authz};

use crate::{
    auth,
    dispatch::{Door, Retry, Rounds, StatelessClient},
    errors::to_jsonrpc,
    gateway::{Gateway, Live},
    peer::SessionPeer,
    protocol::SUPPORTED,
    registry::page,
    sessions::{SessionState, parse_level},
    telemetry,
};

/// One handler per legacy session (or per stateless request); cheap to create.
#[derive(Clone)]
pub struct McpHandler {
    gateway: Arc<Gateway>,
    session: Arc<SessionState>,
}

impl McpHandler {
    /// A handler with fresh session state.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway, session: Arc::new(SessionState::default()) }
    }
}

/// Convert between our types and rmcp's through their shared wire form.
fn wire<T: DeserializeOwned>(value: impl Serialize) -> Result<T, ErrorData> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| ErrorData::internal_error(format!("result does not fit the protocol: {e}"), None))
}

/// Convert a result, marking it `resultType: complete` unless it says otherwise. rmcp removes the marker for
/// legacy peers, whose wire never had it.
fn wire_result<T: DeserializeOwned>(value: impl Serialize) -> Result<T, ErrorData> {
    let mut value = serde_json::to_value(value)
        .map_err(|e| ErrorData::internal_error(format!("result does not serialize: {e}"), None))?;
    if let Value::Object(map) = &mut value {
        map.entry("resultType").or_insert_with(|| json!("complete"));
    }
    wire(value)
}

/// Whether this request speaks the stateless 2026-07-28 revision.
fn is_stateless(cx: &RequestContext<RoleServer>) -> bool {
    cx.meta.protocol_version().is_some_and(|v| !v.has_initialize())
}

/// Which session a request belongs to: its `Mcp-Session-Id`, or `stdio` (one client per process).
fn session_key(cx: &RequestContext<RoleServer>) -> String {
    cx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("stdio")
        .to_owned()
}

/// The correlation id the HTTP edge assigned (`X-Request-Id`), or a fresh one (stdio).
fn correlation_id(cx: &RequestContext<RoleServer>) -> Arc<str> {
    cx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get("x-request-id"))
        .and_then(|v| v.to_str().ok())
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().to_string()))
}

impl McpHandler {
    /// The configuration the request behind `context` took at the door ([`Gateway::live_of`]); over stdio, the
    /// one in force.
    fn live(&self, context: &RequestContext<RoleServer>) -> Arc<Live> {
        match context.extensions.get::<http::request::Parts>() {
            Some(parts) => self.gateway.live_of(&parts.extensions),
            None => self.gateway.live(),
        }
    }

    /// The session's protocol state: the gateway's record of the HTTP session holds it (the fast path reads
    /// it too); stdio's one client keeps its own.
    fn state(&self, context: &RequestContext<RoleServer>) -> Arc<SessionState> {
        let id = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get("mcp-session-id"));
        let session = id.and_then(|id| id.to_str().ok()).and_then(|id| self.gateway.session(id));
        session.map_or_else(|| self.session.clone(), |session| session.state().clone())
    }

    fn page_size(&self) -> usize {
        self.gateway.live().config.server.page_size
    }

    fn list_ttl_ms(&self) -> u64 {
        self.gateway.live().config.server.list_ttl.0.as_millis() as u64
    }

    /// Who the HTTP request authenticated as (`auth`); over stdio, anonymous in the default mode.
    fn principal(&self, context: &RequestContext<RoleServer>) -> Arc<Principal> {
        match context.extensions.get::<http::request::Parts>() {
            Some(parts) => auth::principal(&parts.extensions),
            None => Arc::new(self.gateway.live().access.local()),
        }
    }

    /// Run `op` through the gateway's one door. Legacy sessions ask the client in-line; stateless requests run
    /// in rounds (see [`Gateway::dispatch_rounds`]).
    async fn run(
        &self,
        rcx: &RequestContext<RoleServer>,
        op: Operation,
        retry: Retry,
    ) -> Result<Rounds<Answer>, ErrorData> {
        let http = rcx.extensions.get::<http::request::Parts>();
        let door = Door {
            live: self.live(rcx),
            registry: self.gateway.registry(),
            jsonrpc_id: Some(&rcx.id),
            meta: Some(&rcx.meta.0.0),
            request: http.and_then(|parts| parts.extensions.get::<telemetry::RequestTrace>()),
        };
        let mut cx = CallContext {
            cancel: rcx.ct.clone(),
            progress_token: rcx.meta.get_progress_token().and_then(|t| serde_json::to_value(t).ok()),
            principal: self.principal(rcx),
            ..CallContext::detached(correlation_id(rcx))
        };
        if !is_stateless(rcx) {
            let peer = SessionPeer::new(rcx.peer.clone(), self.state(rcx), session_key(rcx));
            cx.peer = Some(Arc::new(peer));
            let answer = self.gateway.dispatch_at(&door, cx, op).await;
            return answer.map(Rounds::Complete).map_err(|e| to_jsonrpc(&e));
        }
        let capabilities =
            rcx.meta.client_capabilities().and_then(|c| serde_json::to_value(c).ok()).unwrap_or(json!({}));
        let log_level = rcx
            .meta
            .log_level()
            .and_then(|l| serde_json::to_value(l).ok())
            .and_then(|l| l.as_str().and_then(parse_level));
        let client = StatelessClient { capabilities, log_level, notify: Some(rcx.peer.clone()) };
        self.gateway.dispatch_rounds(&door, cx, op, retry, client).await
    }

    /// Run `op`, which needs no rounds (a list, a completion, a subscription), and take its answer.
    async fn once(&self, rcx: &RequestContext<RoleServer>, op: Operation) -> Result<Answer, ErrorData> {
        match self.run(rcx, op, Retry { responses: None, state: None }).await? {
            Rounds::Complete(answer) => Ok(answer),
            Rounds::InputRequired(_) => Err(ErrorData::internal_error("unexpected input_required", None)),
        }
    }

    /// A list result, filtered for the caller, as the protocol's type.
    async fn listed<T: Serialize>(
        &self,
        context: &RequestContext<RoleServer>,
        list: ListKind,
        pick: fn(Answer) -> Option<Vec<T>>,
    ) -> Result<Vec<T>, ErrorData> {
        let answer = self.once(context, Operation::List(list)).await?;
        pick(answer).ok_or_else(|| unexpected(list))
    }
}

/// The error for an answer of another kind than the operation's (a gateway bug).
fn unexpected(what: impl std::fmt::Debug) -> ErrorData {
    ErrorData::internal_error(format!("the gateway answered {what:?} with another kind of result"), None)
}

/// Whether `principal` sees every item of every list, so lists may be shared between callers.
fn sees_every_list(principal: &Principal) -> bool {
    [Grant::Tool, Grant::Resource, Grant::Prompt].into_iter().all(|grant| authz::allows_all(principal, grant))
}

/// One page of a catalogue list as the protocol's list result: items converted once, the next cursor, and
/// caching hints for 2026-07-28 clients (lists are the same for every caller until authorization lands).
macro_rules! list_page {
    ($handler:expr, $result:ty, $items:expr, $convert:expr, $request:expr, $context:expr) => {{
        let cursor = $request.as_ref().and_then(|r| r.cursor.as_deref());
        let (items, next) =
            page($items, cursor, $handler.page_size()).map_err(|e| ErrorData::invalid_params(e, None))?;
        let mut result = <$result>::with_all_items($convert(items)?);
        result.next_cursor = next;
        if is_stateless(&$context) {
            // What a list holds depends on who asked unless the caller sees everything: then no shared cache
            // may keep it.
            let scope = if sees_every_list(&$handler.principal(&$context)) {
                CacheScope::Public
            } else {
                CacheScope::Private
            };
            result = result.with_ttl_ms($handler.list_ttl_ms()).with_cache_scope(scope);
        }
        Ok(result)
    }};
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        self.gateway.server_info.clone()
    }

    /// A legacy session (or stdio client) is ready: tell it when the catalogue changes.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.gateway.catalogue.listen(context.peer);
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(SUPPORTED)
    }

    async fn discover(&self, _context: RequestContext<RoleServer>) -> Result<DiscoverResult, ErrorData> {
        let mut info = self.get_info();
        // Resource subscriptions and list-change notifications are legacy-only until `subscriptions/listen`
        // (SEP-2575) is served: a 2026-07-28 client learns of changes from the lists' `ttlMs`.
        if let Some(resources) = info.capabilities.resources.as_mut() {
            resources.subscribe = None;
            resources.list_changed = None;
        }
        if let Some(tools) = info.capabilities.tools.as_mut() {
            tools.list_changed = None;
        }
        if let Some(prompts) = info.capabilities.prompts.as_mut() {
            prompts.list_changed = None;
        }
        let mut result = DiscoverResult::from_server_info(SUPPORTED.to_vec(), info);
        result.ttl_ms = self.list_ttl_ms();
        Ok(result)
    }

    // Deprecated after 2026-07-28 (SEP-2577); legacy sessions still use it.
    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let name = serde_json::to_value(request.level).ok().and_then(|v| v.as_str().map(str::to_owned));
        let level = name
            .as_deref()
            .and_then(parse_level)
            .ok_or_else(|| ErrorData::invalid_params("unknown level", None))?;
        self.state(&context).set_log_level(level);
        Ok(())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let registry = self.gateway.registry();
        // A principal sees only the tools it may call (its key's globs): the filter of the dispatch's own
        // `tools/list`, over the items converted once.
        let principal = self.principal(&context);
        if authz::sees_everything(&principal) {
            return list_page!(
                self,
                ListToolsResult,
                registry.wire_tools(),
                Ok::<_, ErrorData>,
                request,
                context
            );
        }
        // In code mode the code-mode tools come first.
        let live = self.live(&context);
        let visible: Vec<_> = (self.gateway.code_wire_tools(&live, &principal))
            .chain(registry.wire_tools().iter().filter(|tool| authz::may_use(&principal, &tool.name)))
            .cloned()
            .collect();
        list_page!(self, ListToolsResult, &visible, Ok::<_, ErrorData>, request, context)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let retry = Retry { responses: request.input_responses, state: request.request_state };
        let op = Operation::CallTool {
            name: request.name.into_owned(),
            arguments: request.arguments.unwrap_or_default(),
        };
        match self.run(&context, op, retry).await? {
            Rounds::Complete(Answer::Tool(outcome)) => {
                Ok(CallToolResponse::Complete(wire_result::<CallToolResult>(outcome)?))
            }
            Rounds::InputRequired(input) => Ok(CallToolResponse::InputRequired(wire(input)?)),
            Rounds::Complete(other) => Err(unexpected(other)),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let pick = |answer| if let Answer::Resources(items) = answer { Some(items) } else { None };
        let all = self.listed(&context, ListKind::Resources, pick).await?;
        list_page!(self, ListResourcesResult, &all, wire, request, context)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let pick = |answer| if let Answer::ResourceTemplates(items) = answer { Some(items) } else { None };
        let all = self.listed(&context, ListKind::ResourceTemplates, pick).await?;
        list_page!(self, ListResourceTemplatesResult, &all, wire, request, context)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let retry = Retry { responses: request.input_responses, state: request.request_state };
        match self.run(&context, Operation::ReadResource { uri: request.uri }, retry).await? {
            Rounds::Complete(Answer::Resource(contents)) => {
                let mut result: ReadResourceResult = wire_result(contents)?;
                if is_stateless(&context) {
                    // Reads may differ per caller (authorization) and per moment: private, not kept.
                    result.ttl_ms = Some(0);
                    result.cache_scope = Some(CacheScope::Private);
                }
                Ok(ReadResourceResponse::Complete(result))
            }
            Rounds::InputRequired(input) => Ok(ReadResourceResponse::InputRequired(wire(input)?)),
            Rounds::Complete(other) => Err(unexpected(other)),
        }
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Updates reach the session through its worker: it is kept from now on, never parked.
        self.state(&context).keep_worker();
        self.once(&context, Operation::Subscribe { uri: request.uri }).await.map(drop)
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.once(&context, Operation::Unsubscribe { uri: request.uri }).await.map(drop)
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let pick = |answer| if let Answer::Prompts(items) = answer { Some(items) } else { None };
        let all = self.listed(&context, ListKind::Prompts, pick).await?;
        list_page!(self, ListPromptsResult, &all, wire, request, context)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let arguments: JsonObject =
            request.arguments.map(|args| args.into_iter().collect()).unwrap_or_default();
        let retry = Retry { responses: request.input_responses, state: request.request_state };
        match self.run(&context, Operation::GetPrompt { name: request.name, arguments }, retry).await? {
            Rounds::Complete(Answer::Prompt(result)) => {
                Ok(GetPromptResponse::Complete(wire_result::<GetPromptResult>(result)?))
            }
            Rounds::InputRequired(input) => Ok(GetPromptResponse::InputRequired(wire(input)?)),
            Rounds::Complete(other) => Err(unexpected(other)),
        }
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let request =
            serde_json::to_value(&request).map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
        let text = |pointer: &str| request.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_owned();
        let op = Operation::Complete {
            reference: request.get("ref").cloned().unwrap_or(Value::Null),
            argument: text("/argument/name"),
            value: text("/argument/value"),
            context: request
                .pointer("/context/arguments")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        };
        let Answer::Completion(values) = self.once(&context, op).await? else {
            return Err(unexpected("completion/complete"));
        };
        wire_result(
            json!({ "completion": { "values": values.values, "total": values.total, "hasMore": values.has_more } }),
        )
    }
}
