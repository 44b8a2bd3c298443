//! The JSON-RPC wire, written by this gateway itself (the protocol layer writes its own): every refusal at the
//! door as one [`Rejection`] with its HTTP status and code in one exhaustive match, and the encoding of answers
//! — plain JSON, or an event stream when a call sends its client messages before the answer. A leaf: it knows
//! no gateway, session or registry. The codes are listed in `docs/errors.md`.

use std::{convert::Infallible, future::Future};

use axum::{body::Bytes, response::Response};
use futures::{Stream, StreamExt};
use http::{
    HeaderValue, StatusCode,
    header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER},
};
use mcpgate_core::ToolOutcome;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::errors::{RATE_LIMITED, SESSION_NOT_FOUND, UNAUTHORIZED};

/// JSON-RPC "Parse error".
const PARSE_ERROR: i32 = -32700;
/// JSON-RPC "Invalid Request".
const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC "Internal error".
const INTERNAL_ERROR: i32 = -32603;

/// Why a request to `/mcp` was refused before any operation ran.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// The body is not JSON (syntax, UTF-8, nesting): 400, -32700.
    Parse(String),
    /// JSON, but not a request this endpoint takes (shape, media type, a reused id, a missing session id):
    /// 400 (or `status`: 413 too large, 415 media type), -32600.
    Invalid {
        /// The HTTP status.
        status: StatusCode,
        /// What is wrong.
        message: String,
        /// The request's id, when it could be read.
        id: Option<Value>,
    },
    /// A foreign `Host` or `Origin`, or a client address outside the allowlist: 403, -32600.
    Forbidden(String),
    /// No credential, or one that does not verify: 401, -32004 (the caller adds `WWW-Authenticate`).
    Unauthorized(String),
    /// An unknown or expired `Mcp-Session-Id`: 404, -32001.
    SessionNotFound(String),
    /// Over a request rate limit: 429, -32005, with `Retry-After` in whole seconds and `data` naming the limit.
    RateLimited {
        /// What is exhausted, and when to retry.
        message: String,
        /// `{kind, scope, retryAfterMs}`.
        data: Value,
        /// `Retry-After`, in whole seconds.
        retry_after_secs: u64,
    },
    /// An `initialize` past a session cap (`scope`: `gateway` or `client`): 429, -32005, `data` naming the cap.
    TooManySessions {
        /// Which cap, and what to do.
        message: String,
        /// `gateway` or `client`.
        scope: &'static str,
        /// The request's id.
        id: Option<Value>,
    },
    /// An answer that cannot be encoded (a gateway bug): 500, -32603.
    Internal {
        /// What failed.
        message: String,
        /// The request's id.
        id: Option<Value>,
    },
}

impl Rejection {
    /// 400 "Invalid Request" naming what is wrong.
    pub(crate) fn invalid(message: impl Into<String>, id: Option<Value>) -> Self {
        Self::Invalid { status: StatusCode::BAD_REQUEST, message: message.into(), id }
    }

    /// The HTTP status and JSON-RPC code of each rejection: the one place that decides them.
    fn status_and_code(&self) -> (StatusCode, i32) {
        match self {
            Self::Parse(_) => (StatusCode::BAD_REQUEST, PARSE_ERROR),
            Self::Invalid { status, .. } => (*status, INVALID_REQUEST),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, INVALID_REQUEST),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, UNAUTHORIZED.0),
            Self::SessionNotFound(_) => (StatusCode::NOT_FOUND, SESSION_NOT_FOUND.0),
            Self::RateLimited { .. } | Self::TooManySessions { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED.0)
            }
            Self::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_ERROR),
        }
    }

    /// The response: the status, a JSON-RPC error body, and `Retry-After` for a rate limit.
    pub(crate) fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let (message, id, data, retry_after) = match self {
            Self::Parse(message)
            | Self::Forbidden(message)
            | Self::Unauthorized(message)
            | Self::SessionNotFound(message) => (message, None, None, None),
            Self::Invalid { message, id, .. } | Self::Internal { message, id } => (message, id, None, None),
            Self::RateLimited { message, data, retry_after_secs } => {
                (message, None, Some(data), Some(retry_after_secs))
            }
            Self::TooManySessions { message, scope, id } => {
                (message, id, Some(json!({ "kind": "too_many_sessions", "scope": scope })), None)
            }
        };
        let mut error = json!({ "code": code, "message": message });
        if let Some(data) = data {
            error["data"] = data;
        }
        let body = json!({ "jsonrpc": "2.0", "id": id, "error": error });
        let mut response = Response::new(axum::body::Body::from(body.to_string()));
        *response.status_mut() = status;
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// An answer, serialized straight from the result.
#[derive(Serialize)]
struct Reply<'a, R: Serialize> {
    jsonrpc: &'static str,
    id: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<rmcp::ErrorData>,
}

/// A tool's outcome as a 2026-07-28 `CallToolResult`: `resultType: complete` beside its fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CompleteResult<'a> {
    result_type: &'static str,
    #[serde(flatten)]
    outcome: &'a ToolOutcome,
}

impl<'a> CompleteResult<'a> {
    /// `outcome`, complete.
    pub(crate) fn of(outcome: &'a ToolOutcome) -> Self {
        Self { result_type: "complete", outcome }
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
pub(crate) fn reply<R: Serialize>(
    status: StatusCode,
    id: &Value,
    outcome: Result<R, rmcp::ErrorData>,
) -> Response {
    match encode_answer(id, outcome) {
        Ok(body) => {
            let mut response = Response::new(axum::body::Body::from(body));
            *response.status_mut() = status;
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => {
            let message = format!("result does not serialize: {e}");
            Rejection::Internal { message, id: Some(id.clone()) }.into_response()
        }
    }
}

/// The answer of a call that may send the client messages first: plain JSON when it sent none before its
/// result; otherwise an event stream of those messages, in order, then the answer, streamed as they come.
pub(crate) async fn reply_or_stream(
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
        Ok::<_, Infallible>(Bytes::from(event))
    });
    let mut response = Response::new(axum::body::Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> Value {
        let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn every_rejection_has_its_status_and_code() {
        let cases = [
            (Rejection::Parse("Parse error: x".into()), 400, -32700),
            (Rejection::invalid("no method", Some(json!(7))), 400, -32600),
            (Rejection::Forbidden("Forbidden: Host header is not allowed".into()), 403, -32600),
            (Rejection::Unauthorized("Unauthorized".into()), 401, -32004),
            (Rejection::SessionNotFound("Session not found".into()), 404, -32001),
            (
                Rejection::RateLimited {
                    message: "slow down".into(),
                    data: json!({ "scope": "ip" }),
                    retry_after_secs: 3,
                },
                429,
                -32005,
            ),
            (
                Rejection::TooManySessions { message: "full".into(), scope: "client", id: Some(json!(0)) },
                429,
                -32005,
            ),
            (Rejection::Internal { message: "bug".into(), id: None }, 500, -32603),
        ];
        for (rejection, status, code) in cases {
            let response = rejection.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            let retry = response.headers().get(RETRY_AFTER).cloned();
            let message = body(response).await;
            assert_eq!(
                (message["jsonrpc"].as_str(), message["error"]["code"].as_i64()),
                (Some("2.0"), Some(code))
            );
            assert_eq!(retry.is_some(), message["error"]["data"]["scope"] == "ip", "{message}");
        }
    }
}
