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
//! `tests/fast_path.rs` holds both paths to the same answers.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
};

use axum::{body::Bytes, response::Response};
use futures::{Stream, StreamExt};
use http::{
    HeaderMap, HeaderValue, StatusCode,
    header::{CACHE_CONTROL, CONTENT_TYPE},
    request::Parts,
};
use mcpgate_core::{Answer, CallContext, ClientPeer, JsonObject, Operation, ToolOutcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    auth,
    dispatch::{Door, Retry, Rounds, StatelessClient},
    edge::jsonrpc_error,
    errors::{stateless_status, to_jsonrpc},
    gateway::Gateway,
    metrics::{McpMethod, heard},
    peer::StreamPeer,
    sessions::Session,
    telemetry::JsonRpcId,
};

const VERSION: &str = "2026-07-28";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// A `tools/call` request in exactly the shape this path serves; anything else fails to parse and goes to rmcp.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRequest<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    id: Value,
    #[serde(borrow)]
    method: Cow<'a, str>,
    params: CallParams,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CallParams {
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

/// The answer, serialized straight from the outcome.
#[derive(Serialize)]
struct Reply<'a, R: Serialize> {
    jsonrpc: &'static str,
    id: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<rmcp::ErrorData>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CompleteResult<'a> {
    result_type: &'static str,
    #[serde(flatten)]
    outcome: &'a ToolOutcome,
}

/// The fast path: the gateway it calls into and the `Host` values it accepts without rmcp's finer rules.
pub(crate) struct FastPath {
    gateway: Arc<Gateway>,
    any_host: bool,
    hosts: Vec<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl FastPath {
    pub(crate) fn new(gateway: Arc<Gateway>) -> Self {
        let hosts: Vec<String> =
            gateway.config.server.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        Self { any_host: hosts.iter().any(|h| h == "*"), hosts, gateway }
    }

    /// `Host` exactly as configured: a bare name matches it with any port, an entry with a port matches only
    /// itself. Anything subtler (IPv6 forms, odd spellings) goes to rmcp's check.
    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        if self.any_host {
            return true;
        }
        let Some(host) = header(headers, "host").map(str::to_ascii_lowercase) else { return false };
        let bare = match host.rsplit_once(':') {
            Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host.as_str(),
        };
        self.hosts.iter().any(|h| *h == host || (!h.contains(':') && h == bare))
    }

    /// What both eras require of the headers.
    fn headers_fit(&self, headers: &HeaderMap) -> bool {
        let accept = header(headers, "accept").unwrap_or("");
        header(headers, "origin").is_none()
            && accept.contains("application/json")
            && accept.contains("text/event-stream")
            && !accept.contains("q=0")
            && self.host_allowed(headers)
    }

    /// Serve a stateless request (`parts` and its `body`) if it is one this path is for; `None` hands it to
    /// rmcp.
    pub(crate) async fn try_serve(&self, parts: &Parts, body: &Bytes) -> Option<Response> {
        let headers = &parts.headers;
        let headers_fit = header(headers, "mcp-session-id").is_none()
            && header(headers, "mcp-protocol-version") == Some(VERSION)
            && header(headers, "mcp-method") == Some("tools/call")
            && !headers.keys().any(|k| k.as_str().starts_with("mcp-param-"))
            && self.headers_fit(headers);
        if !headers_fit {
            return None;
        }
        let request =
            serde_json::from_slice::<CallRequest<'_>>(body).ok().filter(CallRequest::is_plain_call)?;
        let CallParams { name, arguments, meta, input_responses, request_state } = request.params;
        let meta = meta?;
        let meta_fits = header(headers, "mcp-name") == Some(name.as_str())
            && meta.get(META_VERSION).and_then(Value::as_str) == Some(VERSION)
            && meta.get(META_CAPABILITIES).is_some_and(Value::is_object);
        if !meta_fits {
            return None;
        }
        // A progress token or a log level asks for notifications, which only a tool that may contact the client
        // can send (and then the answer is a stream): such calls go to the protocol layer.
        let wants_notifications = meta.contains_key("progressToken") || meta.contains_key(META_LOG_LEVEL);
        let registry = self.gateway.registry();
        let route = registry.tool(&name)?;
        if route.declares_param_headers || (wants_notifications && route.contacts_client) {
            return None;
        }
        heard(McpMethod::ToolsCall);
        let request_id = header(headers, "x-request-id").unwrap_or("");
        let cx = CallContext {
            principal: auth::principal(&parts.extensions),
            ..CallContext::detached(request_id)
        };
        let client = StatelessClient {
            capabilities: meta.get(META_CAPABILITIES).cloned().unwrap_or_default(),
            log_level: None,
            notify: None,
        };
        let retry = Retry { responses: input_responses, state: request_state };
        let id = &request.id;
        let door = Door {
            live: self.gateway.live_of(&parts.extensions),
            registry,
            jsonrpc_id: Some(&JsonRpcId(id)),
            meta: Some(&meta),
            request: None,
        };
        let op = Operation::CallTool { name, arguments: arguments.unwrap_or_default() };
        let rounds = self.gateway.dispatch_rounds(&door, cx, op, retry, client).await;
        self.gateway.fast_path_calls.fetch_add(1, Ordering::Relaxed);
        // The call has run: from here on never hand it to rmcp (that would run it again).
        Some(match rounds {
            Ok(Rounds::Complete(Answer::Tool(outcome))) => {
                let result = CompleteResult { result_type: "complete", outcome: &outcome };
                reply(StatusCode::OK, id, Ok(result))
            }
            Ok(Rounds::Complete(_)) => unreachable!("a tools/call is answered with a tool's outcome"),
            Ok(Rounds::InputRequired(input)) => reply(StatusCode::OK, id, Ok(input)),
            Err(error) => reply(stateless_status(error.code), id, Err::<(), _>(error)),
        })
    }

    /// Serve a request of a legacy session (`parts` and its `body`) if it is one this path is for; `None` hands
    /// it to rmcp. `cancel` is the request's token in the session record, which `notifications/cancelled` fires.
    pub(crate) async fn try_serve_in_session(
        &self,
        parts: &Parts,
        body: &Bytes,
        session: &Session,
        cancel: CancellationToken,
    ) -> Option<Response> {
        let headers = &parts.headers;
        let version = session.ready_version()?;
        if !(header(headers, "mcp-protocol-version") == Some(version) && self.headers_fit(headers)) {
            return None;
        }
        let request =
            serde_json::from_slice::<CallRequest<'_>>(body).ok().filter(CallRequest::is_plain_call)?;
        let CallParams { name, arguments, meta, input_responses, request_state } = request.params;
        let body_fits = input_responses.is_none() && request_state.is_none();
        if !body_fits {
            return None;
        }
        let registry = self.gateway.registry();
        let route = registry.tool(&name)?;
        // A tool that never contacts the client: a progress token leads nowhere, as on rmcp's path. One that may
        // (every upstream tool) only when the client declared nothing it could be asked; what the call sends it
        // — progress, log messages — goes into this request's own response, ahead of the answer.
        let (peer, messages) = if route.contacts_client {
            let link = session.link().filter(|link| !link.askable)?;
            let (sender, messages) = mpsc::unbounded_channel();
            let peer = StreamPeer::new(sender, link.state.clone(), link.capabilities.clone());
            (Some(Arc::new(peer) as Arc<dyn ClientPeer>), Some(messages))
        } else {
            (None, None)
        };
        heard(McpMethod::ToolsCall);
        let progress_token =
            peer.as_ref().and(meta.as_ref()).and_then(|meta| meta.get("progressToken")).cloned();
        let request_id = header(headers, "x-request-id").unwrap_or("");
        let principal = auth::principal(&parts.extensions);
        let cx = CallContext { cancel, principal, peer, progress_token, ..CallContext::detached(request_id) };
        let op = Operation::CallTool { name, arguments: arguments.unwrap_or_default() };
        let (gateway, live) = (self.gateway.clone(), self.gateway.live_of(&parts.extensions));
        let id = request.id;
        let answer = {
            let id = id.clone();
            async move {
                let door = Door {
                    live,
                    registry,
                    jsonrpc_id: Some(&JsonRpcId(&id)),
                    meta: meta.as_ref(),
                    request: None,
                };
                let answer = gateway.dispatch_at(&door, cx, op).await;
                gateway.fast_path_calls.fetch_add(1, Ordering::Relaxed);
                // Legacy sessions answer every JSON-RPC error with 200; a cancelled call gets its error too (the
                // client has stopped waiting for it, and a stream ending without a message would say less).
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
}

/// The answer of a call that may send the client messages first: plain JSON when it sent none before its
/// result; otherwise an event stream of those messages, in order, then the answer, streamed as they come.
async fn reply_or_stream(
    answer: impl Future<Output = Result<ToolOutcome, rmcp::ErrorData>> + Send + 'static,
    mut messages: mpsc::UnboundedReceiver<Vec<u8>>,
    id: Value,
) -> Response {
    let mut answer = Box::pin(answer);
    let first = tokio::select! {
        biased;
        outcome = &mut answer => {
            // Whatever the call sent was queued before it returned.
            let mut events: Vec<Vec<u8>> = std::iter::from_fn(|| messages.try_recv().ok()).collect();
            if events.is_empty() {
                return reply(StatusCode::OK, &id, outcome);
            }
            events.push(encode(&id, outcome));
            return event_stream(futures::stream::iter(events));
        }
        Some(first) = messages.recv() => first,
    };
    // The call goes on in a task of its own, and ends early if the client leaves (the stream is dropped).
    let (done, answered) = oneshot::channel();
    tokio::spawn(async move {
        let mut done = done;
        tokio::select! {
            outcome = answer => drop(done.send(encode(&id, outcome))),
            () = done.closed() => {}
        }
    });
    // Messages before the answer: all of the call's were queued by the time the answer is, and the queue is
    // read first.
    let rest = futures::stream::unfold(Some((messages, answered)), |state| async move {
        let (mut messages, mut answered) = state?;
        tokio::select! {
            biased;
            Some(message) = messages.recv() => Some((message, Some((messages, answered)))),
            answer = &mut answered => answer.ok().map(|answer| (answer, None)),
        }
    });
    event_stream(futures::stream::once(async { first }).chain(rest))
}

/// An SSE response carrying each JSON-RPC message of `messages` as one event.
fn event_stream(messages: impl Stream<Item = Vec<u8>> + Send + 'static) -> Response {
    let events = messages.map(|message| {
        let mut event = Vec::with_capacity(message.len() + 8);
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(&message);
        event.extend_from_slice(b"\n\n");
        Ok::<_, std::convert::Infallible>(Bytes::from(event))
    });
    let mut response = Response::new(axum::body::Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

impl CallRequest<'_> {
    /// A JSON-RPC 2.0 `tools/call` with an id of a kind rmcp would accept.
    fn is_plain_call(&self) -> bool {
        self.jsonrpc == "2.0"
            && self.method == "tools/call"
            && (self.id.is_string() || self.id.is_i64() || self.id.is_u64())
    }
}

/// The JSON-RPC answer to request `id`: its result, or its error.
fn encode_answer<R: Serialize>(
    id: &Value,
    outcome: Result<R, rmcp::ErrorData>,
) -> serde_json::Result<Vec<u8>> {
    let (result, error) = match outcome {
        Ok(result) => (Some(result), None),
        Err(error) => (None, Some(error)),
    };
    serde_json::to_vec(&Reply { jsonrpc: "2.0", id, result, error })
}

/// [`encode_answer`], or the error saying the result does not serialize.
fn encode<R: Serialize>(id: &Value, outcome: Result<R, rmcp::ErrorData>) -> Vec<u8> {
    encode_answer(id, outcome).unwrap_or_else(|e| {
        let error = rmcp::ErrorData::internal_error(format!("result does not serialize: {e}"), None);
        encode_answer(id, Err::<(), _>(error)).unwrap_or_default()
    })
}

/// A JSON response carrying the result or the error for request `id`.
fn reply<R: Serialize>(status: StatusCode, id: &Value, outcome: Result<R, rmcp::ErrorData>) -> Response {
    match encode_answer(id, outcome) {
        Ok(body) => {
            let mut response = Response::new(axum::body::Body::from(body));
            *response.status_mut() = status;
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => {
            let message = format!("result does not serialize: {e}");
            jsonrpc_error(StatusCode::INTERNAL_SERVER_ERROR, -32603, message, Some(id.clone()))
        }
    }
}
