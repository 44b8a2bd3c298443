//! The fast path: a `tools/call` that needs nothing but its answer, served without the protocol layer.
//!
//! rmcp serves every stateless request by building a service, a transport, channels and two tasks for it, and
//! every request in a legacy session by passing it through the session's worker and an SSE stream; for the
//! calls that make up nearly all traffic that is most of the cost of a request (bench/README.md). This path
//! serves exactly those calls directly — same registry, same pipeline, same multi-round logic, same error
//! mapping — and hands every other request, and every request it has the least doubt about, to rmcp
//! unchanged. It never rejects anything: validation and errors stay rmcp's.
//!
//! Served here only when all hold: POST; `Accept` naming both JSON and SSE; no `Origin` and a `Host` the config
//! allows outright; a body of exactly the `tools/call` shape; a tool the registry knows, and — when the request
//! asks for notifications (a progress token or a log level) — one whose backend never contacts the client, so
//! no notification can be due and the answer is plain JSON. And then, either
//! - stateless: no session id; `MCP-Protocol-Version: 2026-07-28`; `Mcp-Method: tools/call` and `Mcp-Name` equal
//!   to the body's; no `Mcp-Param-*` header and a tool whose schema declares none; `_meta` giving the protocol
//!   version and client capabilities; or
//! - legacy: a session that is initialized, with `MCP-Protocol-Version` equal to the version it negotiated; no
//!   2026-07-28 fields in the body; a tool whose backend says it never contacts the client while it runs — or
//!   one that may, when the client declared nothing it could be asked (no sampling, elicitation or roots):
//!   then what the call sends the client (progress, log messages) goes on this request's own response, which
//!   turns into an event stream when the first message comes, and the answer follows them there.
//!
//! [`Classifier::classify`] alone decides, from the headers, the body and what is known of the session and
//! the tool — no I/O, table-tested here; then [`FastPath::serve`] dispatches the call through the one door
//! and encodes the answer. `tests/fast_path.rs` holds both paths to the same answers.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
};

use axum::{body::Bytes, response::Response};
use http::{
    HeaderMap, StatusCode,
    header::{ACCEPT, ORIGIN},
    request::Parts,
};
use mcpgate_core::{Answer, CallContext, ClientPeer, JsonObject, Operation};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    auth,
    dispatch::{Door, Retry, Rounds, StatelessClient},
    errors::{stateless_status, to_jsonrpc},
    gateway::Gateway,
    handler::McpHandler,
    headers::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, X_REQUEST_ID, header},
    hosts::AllowedHosts,
    jsonrpc::{CompleteResult, reply, reply_or_stream},
    metrics::labels::{McpMethod, heard},
    peer::StreamPeer,
    registry::ToolRoute,
    sessions::{Session, Sessions},
    telemetry::JsonRpcId,
};

const VERSION: &str = "2026-07-28";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// A JSON-RPC request with exactly these members and params `P`; anything else fails to parse and goes to rmcp.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlainRequest<'a, P> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    /// The JSON-RPC id.
    pub(crate) id: Value,
    #[serde(borrow)]
    method: Cow<'a, str>,
    /// The params.
    pub(crate) params: P,
}

impl<P> PlainRequest<'_, P> {
    /// A JSON-RPC 2.0 request of `method` with an id of a kind rmcp would accept.
    pub(crate) fn is_plain(&self, method: &str) -> bool {
        self.jsonrpc == "2.0"
            && self.method == method
            && (self.id.is_string() || self.id.is_i64() || self.id.is_u64())
    }
}

/// A `tools/call` request in exactly the shape this path serves.
pub(crate) type CallRequest<'a> = PlainRequest<'a, CallParams>;

impl CallRequest<'_> {
    /// How deep the body's `[`/`{` nesting goes, from what its parse built (as the edge's scan of the text
    /// counts it: the body's object is 1, `params` 2).
    pub(crate) fn nesting_depth(&self) -> usize {
        let CallParams { arguments, meta, input_responses, .. } = &self.params;
        let object = |fields: &Option<JsonObject>| fields.as_ref().map_or(0, |f| 3 + depth(f.values()));
        let responses = input_responses.as_ref().map_or(0, |r| 3 + depth(r.values()));
        [2, 1 + depth([&self.id]), object(arguments), object(meta), responses].into_iter().max().unwrap_or(2)
    }
}

/// The deepest nesting among `values` (a scalar is 0, `[]` 1).
fn depth<'a>(values: impl IntoIterator<Item = &'a Value>) -> usize {
    let one = |value: &Value| match value {
        Value::Array(items) => 1 + depth(items),
        Value::Object(fields) => 1 + depth(fields.values()),
        _ => 0,
    };
    values.into_iter().map(one).max().unwrap_or(0)
}

/// The body as a plain `tools/call` request, or `None`. The edge reads every POST body with this first: a call
/// (nearly all traffic) is then parsed once, for the edge's checks and for this path.
pub(crate) fn read_call(body: &[u8]) -> Option<CallRequest<'_>> {
    serde_json::from_slice::<CallRequest<'_>>(body).ok().filter(|r| r.is_plain("tools/call"))
}

/// The params of a [`CallRequest`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CallParams {
    name: String,
    #[serde(default)]
    arguments: Option<JsonObject>,
    #[serde(rename = "_meta", default)]
    meta: Option<JsonObject>,
    #[serde(default)]
    input_responses: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    request_state: Option<String>,
}

/// What classification needs to know of a legacy session the request names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionView<'a> {
    /// The version it negotiated, once it is initialized.
    pub(crate) version: Option<&'a str>,
    /// Whether its client declared anything a server may ask it (sampling, elicitation, roots); `None` until
    /// the session knows.
    pub(crate) askable: Option<bool>,
}

/// What classification needs to know of a tool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolView {
    /// Whether a call may send the client anything before its result.
    pub(crate) contacts_client: bool,
    /// Whether its schema declares `x-mcp-header` parameters, which only the protocol layer checks.
    pub(crate) declares_param_headers: bool,
}

impl ToolView {
    fn of(route: &ToolRoute) -> Self {
        Self { contacts_client: route.contacts_client, declares_param_headers: route.declares_param_headers }
    }
}

/// A call this path serves, as [`Classifier::classify`] found it.
#[derive(Debug, PartialEq)]
pub(crate) struct DirectCall {
    /// The JSON-RPC id.
    pub(crate) id: Value,
    /// The public tool name.
    pub(crate) name: String,
    /// The arguments (empty when none were sent).
    pub(crate) arguments: JsonObject,
    /// `params._meta`.
    pub(crate) meta: Option<JsonObject>,
    /// Which era, with what that era carries.
    pub(crate) era: Era,
}

/// The era of a [`DirectCall`].
#[derive(Debug, PartialEq)]
pub(crate) enum Era {
    /// 2026-07-28: the client's declared capabilities and what it carried back of earlier rounds.
    Stateless {
        /// `clientCapabilities` of `_meta`.
        capabilities: Value,
        /// `inputResponses`.
        responses: Option<BTreeMap<String, Value>>,
        /// `requestState`.
        state: Option<String>,
    },
    /// A legacy session's call. `streams`: the tool may send the client messages, which go on the request's
    /// own response before the answer (only for a client that declared nothing it could be asked).
    Legacy {
        /// Whether the answer may become an event stream.
        streams: bool,
    },
}

/// The one place that decides whether a request takes the fast path. Pure: headers, body and what is known of
/// the session and the tool in, a [`DirectCall`] or `None` (rmcp serves it) out.
pub(crate) struct Classifier {
    hosts: AllowedHosts,
}

impl Classifier {
    /// A classifier admitting the `Host` values of `allowed_hosts` (`*`: any).
    pub(crate) fn new(allowed_hosts: &[String]) -> Self {
        Self { hosts: AllowedHosts::new(allowed_hosts) }
    }

    /// What both eras require of the headers.
    pub(crate) fn headers_fit(&self, headers: &HeaderMap) -> bool {
        let accept = header(headers, ACCEPT).unwrap_or("");
        !headers.contains_key(ORIGIN)
            && accept.contains("application/json")
            && accept.contains("text/event-stream")
            && !accept.contains("q=0")
            && self.hosts.admit(headers)
    }

    /// The call this path serves, or `None`. `session`: the legacy session the request belongs to (the edge
    /// found it by its id); `tool`: what the catalogue knows of a tool, by public name.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn classify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        session: Option<SessionView<'_>>,
        tool: impl Fn(&str) -> Option<ToolView>,
    ) -> Option<DirectCall> {
        self.classify_call(headers, read_call(body)?, session, tool)
    }

    /// [`Classifier::classify`] of a body already read as a call ([`read_call`]).
    pub(crate) fn classify_call(
        &self,
        headers: &HeaderMap,
        request: CallRequest<'_>,
        session: Option<SessionView<'_>>,
        tool: impl Fn(&str) -> Option<ToolView>,
    ) -> Option<DirectCall> {
        if !self.headers_fit(headers) {
            return None;
        }
        let CallParams { name, arguments, meta, input_responses, request_state } = request.params;
        let view = tool(&name)?;
        let era = match session {
            None => {
                let headers_fit = !headers.contains_key(&MCP_SESSION_ID)
                    && header(headers, &MCP_PROTOCOL_VERSION) == Some(VERSION)
                    && header(headers, &MCP_METHOD) == Some("tools/call")
                    && header(headers, &MCP_NAME) == Some(name.as_str())
                    && !headers.keys().any(|k| k.as_str().starts_with("mcp-param-"));
                let meta = meta.as_ref()?;
                let meta_fits = meta.get(META_VERSION).and_then(Value::as_str) == Some(VERSION)
                    && meta.get(META_CAPABILITIES).is_some_and(Value::is_object);
                // A progress token or a log level asks for notifications, which only a tool that may contact
                // the client can send (and then the answer is a stream): such calls go to the protocol layer.
                let wants_notifications =
                    meta.contains_key("progressToken") || meta.contains_key(META_LOG_LEVEL);
                if !headers_fit
                    || !meta_fits
                    || view.declares_param_headers
                    || (wants_notifications && view.contacts_client)
                {
                    return None;
                }
                let capabilities = meta.get(META_CAPABILITIES).cloned().unwrap_or_default();
                Era::Stateless { capabilities, responses: input_responses, state: request_state }
            }
            Some(session) => {
                let version = session.version?;
                let fits = header(headers, &MCP_PROTOCOL_VERSION) == Some(version)
                    && input_responses.is_none()
                    && request_state.is_none();
                // A tool that may contact the client (every upstream tool) only when the client declared
                // nothing it could be asked.
                if !fits || (view.contacts_client && session.askable != Some(false)) {
                    return None;
                }
                Era::Legacy { streams: view.contacts_client }
            }
        };
        Some(DirectCall { id: request.id, name, arguments: arguments.unwrap_or_default(), meta, era })
    }
}

/// The fast path: the classifier, and the gateway whose door the calls go through.
pub(crate) struct FastPath {
    gateway: Arc<Gateway>,
    classifier: Classifier,
}

impl FastPath {
    pub(crate) fn new(gateway: Arc<Gateway>) -> Self {
        Self { classifier: Classifier::new(&gateway.config.server.allowed_hosts), gateway }
    }

    /// Answer a plain `initialize` and open its session parked in `sessions` (`opening.rs`); `None` hands it
    /// to rmcp.
    pub(crate) fn initialize(&self, parts: &Parts, body: &Bytes, sessions: &Sessions) -> Option<Response> {
        let opening = self.classifier.classify_initialize(&parts.headers, body)?;
        crate::opening::open(&McpHandler::new(self.gateway.clone()), sessions, opening)
    }

    /// Serve the request (`parts`, its body read as a plain `call` by [`read_call`]) if it is one this path is
    /// for; `None` hands it to rmcp. `session`: the legacy session it belongs to, with the request's token in the
    /// session record, which `notifications/cancelled` fires.
    pub(crate) async fn serve(
        &self,
        parts: &Parts,
        call: Option<CallRequest<'_>>,
        session: Option<(&Session, CancellationToken)>,
    ) -> Option<Response> {
        let call = call?;
        let registry = self.gateway.registry();
        let view = session.as_ref().map(|(session, _)| SessionView {
            version: session.ready_version(),
            askable: session.link().map(|link| link.askable),
        });
        let call = self
            .classifier
            .classify_call(&parts.headers, call, view, |name| registry.tool(name).map(ToolView::of))?;
        heard(McpMethod::ToolsCall);
        let request_id = header(&parts.headers, &X_REQUEST_ID).unwrap_or("");
        let cx = CallContext {
            principal: auth::principal(&parts.extensions),
            ..CallContext::detached(request_id)
        };
        let live = self.gateway.live_of(&parts.extensions);
        let DirectCall { id, name, arguments, meta, era } = call;
        let op = Operation::CallTool { name, arguments };
        // The call runs from here on: never hand it to rmcp (that would run it again).
        match (era, session) {
            (Era::Stateless { capabilities, responses, state }, _) => {
                let door = Door {
                    live,
                    registry,
                    jsonrpc_id: Some(&JsonRpcId(&id)),
                    meta: meta.as_ref(),
                    request: None,
                };
                let client = StatelessClient { capabilities, log_level: None, notify: None };
                let rounds =
                    self.gateway.dispatch_rounds(&door, cx, op, Retry { responses, state }, client).await;
                self.gateway.fast_path_calls.fetch_add(1, Ordering::Relaxed);
                Some(match rounds {
                    Ok(Rounds::Complete(Answer::Tool(outcome))) => {
                        reply(StatusCode::OK, &id, Ok(CompleteResult::of(&outcome)))
                    }
                    Ok(Rounds::Complete(_)) => unreachable!("a tools/call is answered with a tool's outcome"),
                    Ok(Rounds::InputRequired(input)) => reply(StatusCode::OK, &id, Ok(input)),
                    Err(error) => reply(stateless_status(error.code), &id, Err::<(), _>(error)),
                })
            }
            (Era::Legacy { streams }, Some((session, cancel))) => {
                // What the call sends the client — progress, log messages — goes into this request's own
                // response, ahead of the answer; a tool that never contacts the client has nowhere to send a
                // progress token, as on rmcp's path.
                let (peer, messages) = match session.link().filter(|_| streams) {
                    Some(link) => {
                        let (sender, messages) = mpsc::unbounded_channel();
                        let peer =
                            StreamPeer::new(sender, session.state().clone(), link.capabilities.clone());
                        (Some(Arc::new(peer) as Arc<dyn ClientPeer>), Some(messages))
                    }
                    None => (None, None),
                };
                let progress_token =
                    peer.as_ref().and(meta.as_ref()).and_then(|meta| meta.get("progressToken")).cloned();
                let cx = CallContext { cancel, peer, progress_token, ..cx };
                let gateway = self.gateway.clone();
                let answer = {
                    let id = id.clone();
                    async move {
                        let jsonrpc_id = JsonRpcId(&id);
                        let door = Door {
                            live,
                            registry,
                            jsonrpc_id: Some(&jsonrpc_id),
                            meta: meta.as_ref(),
                            request: None,
                        };
                        let answer = gateway.dispatch_at(&door, cx, op).await;
                        gateway.fast_path_calls.fetch_add(1, Ordering::Relaxed);
                        // Legacy sessions answer every JSON-RPC error with 200; a cancelled call gets its error
                        // too (the client has stopped waiting for it, and a stream ending without a message would
                        // say less).
                        match answer {
                            Ok(Answer::Tool(outcome)) => Ok(outcome),
                            Ok(_) => unreachable!("a tools/call is answered with a tool's outcome"),
                            Err(error) => Err(to_jsonrpc(&error)),
                        }
                    }
                };
                Some(match messages {
                    None => reply(StatusCode::OK, &id, answer.await),
                    Some(messages) => reply_or_stream(answer, messages, id).await,
                })
            }
            (Era::Legacy { .. }, None) => unreachable!("classified as legacy only with a session"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const QUIET: ToolView = ToolView { contacts_client: false, declares_param_headers: false };
    const TALKS: ToolView = ToolView { contacts_client: true, declares_param_headers: false };
    const PARAMS: ToolView = ToolView { contacts_client: false, declares_param_headers: true };

    fn tools(name: &str) -> Option<ToolView> {
        match name {
            "quiet" => Some(QUIET),
            "talks" => Some(TALKS),
            "params" => Some(PARAMS),
            _ => None,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    /// The headers of a stateless call of `tool`, with `extra` over them (an empty value removes one).
    fn stateless(tool: &str, extra: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = headers(&[
            ("host", "localhost:8000"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", VERSION),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
        ]);
        for (name, value) in extra {
            match *value {
                "" => drop(map.remove(*name)),
                value => drop(map.insert(*name, value.parse().unwrap())),
            }
        }
        map
    }

    fn body(tool: &str, meta: Value, extra: Value) -> Vec<u8> {
        let mut params = json!({ "name": tool, "arguments": { "x": 1 }, "_meta": meta });
        params.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params })
            .to_string()
            .into_bytes()
    }

    fn meta() -> Value {
        json!({ META_VERSION: VERSION, META_CAPABILITIES: {} })
    }

    const READY: SessionView<'static> = SessionView { version: Some("2025-11-25"), askable: Some(false) };

    #[test]
    fn classification_table() {
        let classifier = Classifier::new(&["localhost".into(), "127.0.0.1:8000".into()]);
        let legacy = |extra: &[(&'static str, &str)]| {
            let mut map = headers(&[
                ("host", "127.0.0.1:8000"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-session-id", "s1"),
            ]);
            for (name, value) in extra {
                map.insert(*name, value.parse().unwrap());
            }
            map
        };
        let with_token = json!({ META_VERSION: VERSION, META_CAPABILITIES: {}, "progressToken": "p" });
        let with_level = json!({ META_VERSION: VERSION, META_CAPABILITIES: {}, META_LOG_LEVEL: "debug" });
        let plain_legacy = |tool: &str| body(tool, json!({}), json!({}));
        // (what, headers, body, session, expected era: None for "rmcp serves it")
        type Case<'a> = (&'a str, HeaderMap, Vec<u8>, Option<SessionView<'a>>, Option<Era>);
        let cases: Vec<Case<'_>> = vec![
            (
                "a plain stateless call",
                stateless("quiet", &[]),
                body("quiet", meta(), json!({})),
                None,
                Some(Era::Stateless { capabilities: json!({}), responses: None, state: None }),
            ),
            (
                "a retry with its state",
                stateless("quiet", &[]),
                body("quiet", meta(), json!({ "requestState": "s", "inputResponses": { "k": 1 } })),
                None,
                Some(Era::Stateless {
                    capabilities: json!({}),
                    responses: Some([("k".to_owned(), json!(1))].into()),
                    state: Some("s".into()),
                }),
            ),
            (
                "an Origin",
                stateless("quiet", &[("origin", "http://localhost")]),
                body("quiet", meta(), json!({})),
                None,
                None,
            ),
            (
                "a foreign Host",
                stateless("quiet", &[("host", "evil.example")]),
                body("quiet", meta(), json!({})),
                None,
                None,
            ),
            (
                "a foreign port of a Host named with its port",
                stateless("quiet", &[("host", "127.0.0.1:9")]),
                body("quiet", meta(), json!({})),
                None,
                None,
            ),
            (
                "a bare Host name on any port",
                stateless("quiet", &[("host", "LOCALHOST:1234")]),
                body("quiet", meta(), json!({})),
                None,
                Some(Era::Stateless { capabilities: json!({}), responses: None, state: None }),
            ),
            ("no Host", stateless("quiet", &[("host", "")]), body("quiet", meta(), json!({})), None, None),
            (
                "Accept without SSE",
                stateless("quiet", &[("accept", "application/json")]),
                body("quiet", meta(), json!({})),
                None,
                None,
            ),
            (
                "Accept refusing one",
                stateless("quiet", &[("accept", "application/json, text/event-stream;q=0")]),
                body("quiet", meta(), json!({})),
                None,
                None,
            ),
            (
                "Mcp-Name naming another tool",
                stateless("other", &[]),
                body("quiet", meta(), json!({})),
                None,
                None,
            ),
            (
                "Mcp-Method of another method",
                stateless("quiet", &[("mcp-method", "tools/list")]),
                body("quiet", meta(), json!({})),
                None,
                None,
            ),
            (
                "an older protocol header",
                stateless("quiet", &[("mcp-protocol-version", "2025-11-25")]),
                body("quiet", meta(), json!({})),
                None,
                None,
            ),
            (
                "an Mcp-Param header",
                stateless("quiet", &[("mcp-param-x", "1")]),
                body("quiet", meta(), json!({})),
                None,
                None,
            ),
            (
                "a tool declaring param headers",
                stateless("params", &[]),
                body("params", meta(), json!({})),
                None,
                None,
            ),
            ("an unknown tool", stateless("nope", &[]), body("nope", meta(), json!({})), None, None),
            ("no _meta", stateless("quiet", &[]), body("quiet", Value::Null, json!({})), None, None),
            (
                "_meta without capabilities",
                stateless("quiet", &[]),
                body("quiet", json!({ META_VERSION: VERSION }), json!({})),
                None,
                None,
            ),
            (
                "an unknown params field",
                stateless("quiet", &[]),
                body("quiet", meta(), json!({ "task": {} })),
                None,
                None,
            ),
            (
                "a progress token to a tool that may send progress",
                stateless("talks", &[]),
                body("talks", with_token.clone(), json!({})),
                None,
                None,
            ),
            (
                "a log level to a tool that may log",
                stateless("talks", &[]),
                body("talks", with_level, json!({})),
                None,
                None,
            ),
            (
                "a progress token to a quiet tool",
                stateless("quiet", &[]),
                body("quiet", with_token, json!({})),
                None,
                Some(Era::Stateless { capabilities: json!({}), responses: None, state: None }),
            ),
            (
                "a session id without a known session",
                stateless("quiet", &[("mcp-session-id", "gone")]),
                body("quiet", meta(), json!({})),
                None,
                None,
            ),
            (
                "a legacy call of a quiet tool",
                legacy(&[]),
                plain_legacy("quiet"),
                Some(READY),
                Some(Era::Legacy { streams: false }),
            ),
            (
                "a legacy call of a talking tool, client asks nothing",
                legacy(&[]),
                plain_legacy("talks"),
                Some(READY),
                Some(Era::Legacy { streams: true }),
            ),
            (
                "a legacy call of a talking tool, client may be asked",
                legacy(&[]),
                plain_legacy("talks"),
                Some(SessionView { askable: Some(true), ..READY }),
                None,
            ),
            (
                "a legacy call of a talking tool, client not known yet",
                legacy(&[]),
                plain_legacy("talks"),
                Some(SessionView { askable: None, ..READY }),
                None,
            ),
            (
                "a legacy call before initialized",
                legacy(&[]),
                plain_legacy("quiet"),
                Some(SessionView { version: None, ..READY }),
                None,
            ),
            (
                "a legacy call with another version",
                legacy(&[("mcp-protocol-version", "2025-06-18")]),
                plain_legacy("quiet"),
                Some(READY),
                None,
            ),
            (
                "a legacy call carrying 2026 rounds",
                legacy(&[]),
                body("quiet", json!({}), json!({ "requestState": "s" })),
                Some(READY),
                None,
            ),
        ];
        for (what, headers, body, session, expected) in cases {
            let found = classifier.classify(&headers, &body, session, tools);
            assert_eq!(found.map(|call| call.era), expected, "{what}");
        }
    }

    #[test]
    fn what_is_classified_is_what_was_sent() {
        let classifier = Classifier::new(&["*".into()]);
        let call = classifier.classify(
            &stateless("quiet", &[("host", "anything")]),
            &body("quiet", meta(), json!({})),
            None,
            tools,
        );
        let call = call.unwrap();
        assert_eq!((call.id, call.name.as_str()), (json!(7), "quiet"));
        assert_eq!(Value::Object(call.arguments), json!({ "x": 1 }));
        assert_eq!(call.meta.map(Value::Object), Some(meta()));
        // The same body, one thing wrong at a time: only the exact shape is served here.
        let good: Value = serde_json::from_slice(&body("quiet", meta(), json!({}))).unwrap();
        let headers = stateless("quiet", &[]);
        assert!(classifier.classify(&headers, good.to_string().as_bytes(), None, tools).is_some());
        for (pointer, wrong) in [
            ("/jsonrpc", json!("1.0")),
            ("/id", Value::Null),
            ("/id", json!(1.5)),
            ("/method", json!("tools/list")),
            ("/extra", json!(1)),
            ("/params/arguments", json!([1])),
        ] {
            let mut bad = good.clone();
            match bad.pointer_mut(pointer) {
                Some(slot) => *slot = wrong.clone(),
                None => drop(bad.as_object_mut().unwrap().insert("extra".into(), wrong.clone())),
            }
            let bytes = bad.to_string();
            assert!(
                classifier.classify(&headers, bytes.as_bytes(), None, tools).is_none(),
                "{pointer}: {wrong}"
            );
        }
        assert!(classifier.classify(&headers, b"not json", None, tools).is_none());
    }
}
