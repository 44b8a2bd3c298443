//! The direct lane of a Streamable HTTP upstream that speaks 2026-07-28: stateless, so a `tools/call` is one
//! POST that needs nothing from the connection but its pooled HTTP client. The caller's task sends it and
//! reads the answer — plain JSON, or an event stream whose progress and log messages go straight to the
//! caller's client, since they can only be about this request, and whose requests (sampling, elicitation,
//! roots) are put to that client, their answers POSTed back. rmcp's client would route the same POST
//! through its service task, a spawned send task and its transport worker, and type the result twice.
//! Older (session) upstreams keep using rmcp, which owns their session.
//!
//! rmcp marks logging deprecated (SEP-2577, a revision after 2026-07-28); the revisions served here still
//! have it, so the deprecation is allowed in this file.
#![allow(deprecated)]

use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, stream::FuturesUnordered};
use mcpgate_core::{BackendError, Blame, CallContext};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use rmcp::{
    Peer, RoleClient,
    model::{
        ErrorCode, ErrorData, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
        RequestMetaObject,
    },
};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};
use sse_stream::SseStream;

use super::{
    sse::EventSize,
    wire::{self, MAX_MESSAGE, read_answer},
};

/// `tools/call` straight to a stateless Streamable HTTP upstream.
pub(super) struct HttpLane {
    client: reqwest::Client,
    /// Parsed once: reqwest would parse a string again for every request.
    url: reqwest::Url,
    headers: HeaderMap,
    meta: RequestMetaObject,
    next: AtomicU64,
}

/// One message of an event-stream answer.
#[derive(Deserialize)]
struct Message {
    id: Option<Value>,
    method: Option<String>,
    params: Option<Value>,
}

impl HttpLane {
    /// The lane of a connection, when its upstream negotiated a revision without sessions.
    pub(super) fn new(
        client: &reqwest::Client,
        url: &str,
        configured: &std::collections::HashMap<HeaderName, HeaderValue>,
        peer: &Peer<RoleClient>,
    ) -> Option<Self> {
        let version = peer.peer_info()?.protocol_version.clone();
        let url = reqwest::Url::parse(url).ok()?;
        if version.has_initialize() {
            return None;
        }
        let mut headers: HeaderMap = configured.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        headers.insert(
            HeaderName::from_static("mcp-protocol-version"),
            HeaderValue::from_str(&version.to_string()).ok()?,
        );
        headers.insert(HeaderName::from_static("mcp-method"), HeaderValue::from_static("tools/call"));
        Some(Self {
            client: client.clone(),
            url,
            headers,
            meta: wire::connection_meta(peer),
            next: AtomicU64::new(1),
        })
    }

    /// A fresh request id (`"~N"`, as on the stdio lane).
    pub(super) fn next_id(&self) -> String {
        format!("~{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// The `_meta` every request carries.
    pub(super) fn base_meta(&self) -> &RequestMetaObject {
        &self.meta
    }

    /// POST one request line and read its answer's `result`.
    pub(super) async fn call(
        &self,
        upstream: &str,
        cx: &CallContext,
        id: &str,
        token: &ProgressToken,
        tool: &str,
        line: Vec<u8>,
    ) -> Result<Box<RawValue>, BackendError> {
        let unavailable =
            |why: String| BackendError::unavailable(upstream, format!("upstream {upstream}: {why}"));
        let name = HeaderValue::from_str(tool).map_err(|_| BackendError::Failed {
            backend: upstream.to_owned(),
            message: format!(
                "upstream {upstream}: the tool name {tool:?} cannot be sent as an Mcp-Name header"
            ),
            blame: Blame::Upstream,
        })?;
        let mut headers = self.headers.clone();
        headers.insert(HeaderName::from_static("mcp-name"), name);
        super::trace::add_to_headers(&mut headers);
        let response = (self.client.post(self.url.clone()).headers(headers).body(line).send().await)
            .map_err(|e| unavailable(format!("cannot send: {}", e.without_url())))?;
        let status = response.status();
        let event_stream = (response.headers().get(CONTENT_TYPE))
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if status.is_success() && event_stream {
            return self.read_events(upstream, cx, id, token, response).await;
        }
        if response.content_length().is_some_and(|n| n > MAX_MESSAGE as u64) {
            return Err(too_large(upstream));
        }
        let body =
            response.bytes().await.map_err(|e| unavailable(format!("cannot read: {}", e.without_url())))?;
        if body.len() > MAX_MESSAGE {
            return Err(too_large(upstream));
        }
        match read_answer(upstream, &body) {
            // A JSON-RPC error says more than the status that came with it.
            Err(BackendError::Failed { message, .. }) if !status.is_success() => Err(BackendError::Failed {
                backend: upstream.to_owned(),
                message: format!("upstream {upstream} answered HTTP {status}: {message}"),
                blame: Blame::Upstream,
            }),
            other => other,
        }
    }

    /// Read an event stream to the answer, forwarding the progress and log messages before it, in the order
    /// they come, and relaying the upstream's own requests on it (sampling, elicitation, roots: SEP-2260 lets a
    /// 2026-07-28 server ask on the stream of the request it is serving) to the caller's client, each answer
    /// POSTed back as it comes while the stream is read on.
    async fn read_events(
        &self,
        upstream: &str,
        cx: &CallContext,
        id: &str,
        token: &ProgressToken,
        response: reqwest::Response,
    ) -> Result<Box<RawValue>, BackendError> {
        let mut size = EventSize::new(MAX_MESSAGE);
        let body = response.bytes_stream().map(move |chunk| match chunk {
            Ok(chunk) if size.fits(&chunk) => Ok(chunk),
            Ok(_) => Err(std::io::Error::other(format!("an event over {MAX_MESSAGE} bytes"))),
            Err(e) => Err(std::io::Error::other(e.without_url())),
        });
        let mut events = SseStream::from_bytes_stream(body);
        let mut asked = FuturesUnordered::new();
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                Some(()) = asked.next(), if !asked.is_empty() => continue,
            };
            let Some(event) = event else { break };
            let event = event.map_err(|e| {
                BackendError::unavailable(
                    upstream,
                    format!("upstream {upstream}: the answer's event stream broke: {e}"),
                )
            })?;
            let Some(data) = event.data.filter(|d| !d.is_empty()) else { continue };
            let Ok(message) = serde_json::from_str::<Message>(&data) else {
                tracing::warn!(upstream = %upstream, "ignored a malformed message in an answer's event stream");
                continue;
            };
            match (message.method, message.id) {
                (None, Some(Value::String(answered))) if answered == id => {
                    return read_answer(upstream, data.as_bytes());
                }
                (Some(method), Some(asked_id)) => {
                    asked.push(self.answer(upstream, cx, method, asked_id, message.params));
                }
                (Some(method), None) if method == "notifications/progress" => {
                    let progress = message
                        .params
                        .and_then(|p| serde_json::from_value::<ProgressNotificationParam>(p).ok());
                    if let Some(p) = progress.filter(|p| &p.progress_token == token) {
                        cx.progress(p.progress, p.total, p.message).await;
                    }
                }
                (Some(method), None) if method == "notifications/message" => {
                    let log = message
                        .params
                        .and_then(|p| serde_json::from_value::<LoggingMessageNotificationParam>(p).ok());
                    if let Some(log) = log {
                        cx.log(wire::log_level(log.level), log.logger.as_deref(), log.data).await;
                    }
                }
                (method, _) => {
                    tracing::debug!(upstream = %upstream, ?method, "ignored a message in an answer's event stream");
                }
            }
        }
        Err(BackendError::unavailable(
            upstream,
            format!("upstream {upstream}: the answer's event stream ended without the answer"),
        ))
    }

    /// Answer one request the upstream sent on a call's stream: put it to the caller's client (under the
    /// upstream's name and the request's id, as over rmcp) and POST the answer — or why there is none — back.
    async fn answer(
        &self,
        upstream: &str,
        cx: &CallContext,
        method: String,
        id: Value,
        params: Option<Value>,
    ) {
        let outcome = match method.as_str() {
            "ping" => Ok(json!({})),
            "sampling/createMessage" | "elicitation/create" | "roots/list" => {
                let key = match &id {
                    Value::String(id) => format!("{upstream}:{id}"),
                    other => format!("{upstream}:{other}"),
                };
                let params = params.unwrap_or_else(|| json!({}));
                cx.request_client(&key, &method, params).await.map_err(wire::refusal)
            }
            _ => Err(ErrorData::new(ErrorCode::METHOD_NOT_FOUND, format!("{method} is not supported"), None)),
        };
        let reply = match outcome {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err(error) => json!({ "jsonrpc": "2.0", "id": id, "error": error }),
        };
        // An answer is no request: no Mcp-Method (nor Mcp-Name) header.
        let mut headers = self.headers.clone();
        headers.remove(HeaderName::from_static("mcp-method"));
        super::trace::add_to_headers(&mut headers);
        match self.client.post(self.url.clone()).headers(headers).body(reply.to_string()).send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                let status = response.status();
                tracing::warn!(upstream = %upstream, %method, %status, "the upstream refused the answer to its request");
            }
            Err(e) => {
                tracing::warn!(upstream = %upstream, %method, "cannot send the answer to its request: {}", e.without_url());
            }
        }
    }
}

fn too_large(upstream: &str) -> BackendError {
    BackendError::Failed {
        backend: upstream.to_owned(),
        message: format!("upstream {upstream} answered with more than {MAX_MESSAGE} bytes"),
        blame: Blame::Upstream,
    }
}
