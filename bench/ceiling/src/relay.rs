//! What both floor relays do to a JSON-RPC message, whatever the upstream
//! transport: parse the client's request, give it a fresh id for the upstream,
//! and put the client's id back into the upstream's answer.
//!
//! This is the work any MCP proxy must do per call (it cannot route without
//! the method and tool name, and an upstream shared by many clients needs ids
//! of its own). `params`, `result` and `error` are carried as raw JSON: a proxy
//! needs to look into them only to route, which the tool name is enough for.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::rpc::{self, INTERNAL_ERROR, INVALID_PARAMS, Reply};
use crate::serve::{self, HttpResponse};

/// How long a relay waits for its upstream's answer before giving up (504).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// A client's JSON-RPC message: the envelope parsed, `params` kept raw.
#[derive(Deserialize)]
pub struct Inbound<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    /// The client's id; absent for a notification.
    #[serde(default)]
    pub id: Option<Value>,
    /// The method, e.g. `tools/call`.
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    /// The params as the client sent them.
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
}

impl Inbound<'_> {
    /// The client's id (`null` for a notification).
    pub fn id(&self) -> &Value {
        self.id.as_ref().unwrap_or(&Value::Null)
    }
}

/// The part of `tools/call` params a proxy routes on.
#[derive(Deserialize)]
struct ToolRef<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

/// What [`parse`] makes of a client's message.
pub enum Parsed<'a> {
    /// A request, to forward under a fresh id.
    Request(Inbound<'a>),
    /// A notification (no `id`): nothing to correlate.
    Notification,
}

/// Parses a client's message. `Err` is the precise JSON-RPC error to answer
/// (the upstream never sees a message its proxy could not route).
pub fn parse(body: &[u8]) -> Result<Parsed<'_>, Reply> {
    let msg: Inbound<'_> = serde_json::from_slice(body).map_err(|e| rpc::parse_error(&e))?;
    rpc::check_version(&msg.jsonrpc, msg.id())?;
    let Some(id) = msg.id.as_ref() else {
        return Ok(Parsed::Notification);
    };
    if msg.method == "tools/call" {
        let tool = msg.params.and_then(|p| serde_json::from_str::<ToolRef<'_>>(p.get()).ok());
        if tool.and_then(|t| t.name).is_none() {
            let message = "tools/call needs params with a string `name`";
            return Err(rpc::error(StatusCode::OK, id, INVALID_PARAMS, message));
        }
    }
    Ok(Parsed::Request(msg))
}

/// Fresh JSON-RPC ids for the upstream, one counter per relay.
#[derive(Default)]
pub struct IdSource(AtomicU64);

impl IdSource {
    /// The next id (starting at 1).
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[derive(Serialize)]
struct Outbound<'a> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a RawValue>,
}

/// Appends the request as the upstream gets it to `buf`: the client's method
/// and params under the relay's id `id` (no trailing newline).
pub fn reid(msg: &Inbound<'_>, id: u64, buf: &mut Vec<u8>) -> Result<(), UpstreamError> {
    let out = Outbound { jsonrpc: "2.0", id, method: &msg.method, params: msg.params };
    serde_json::to_writer(buf, &out).map_err(|e| UpstreamError::Internal(e.to_string()))
}

/// An upstream's JSON-RPC message, parsed once: the id to correlate on, the
/// answer kept raw.
#[derive(Deserialize)]
pub struct Answer {
    /// The id the upstream answered (the relay's, if all is well).
    #[serde(default)]
    pub id: Option<Value>,
    /// Present when the upstream sends a request or notification of its own.
    #[serde(default)]
    pub method: Option<IgnoredAny>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct Restored<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a RawValue>,
}

impl Answer {
    /// The answer serialized for the client, under the client's `id`.
    pub fn restore(&self, id: &Value) -> Result<Bytes, UpstreamError> {
        if self.result.is_none() && self.error.is_none() {
            return Err(UpstreamError::BadAnswer("a response with neither `result` nor `error`".to_owned()));
        }
        let out =
            Restored { jsonrpc: "2.0", id, result: self.result.as_deref(), error: self.error.as_deref() };
        serde_json::to_vec(&out).map(Bytes::from).map_err(|e| UpstreamError::BadAnswer(e.to_string()))
    }
}

/// Why a relay has no answer from its upstream for one request.
#[derive(Debug)]
pub enum UpstreamError {
    /// The upstream cannot be reached or is gone (connection refused, child exited): 502.
    Unavailable(String),
    /// The upstream answered something a proxy cannot pass on: 502.
    BadAnswer(String),
    /// No answer within [`UPSTREAM_TIMEOUT`]: 504.
    TimedOut,
    /// The relay failed to serialize a message: 500.
    Internal(String),
}

impl UpstreamError {
    /// The error as the client sees it: a JSON-RPC error under the client's id,
    /// with 502 or 504.
    pub fn into_response(self, id: &Value) -> HttpResponse {
        let (status, message) = match self {
            Self::Unavailable(why) => (StatusCode::BAD_GATEWAY, format!("upstream unavailable: {why}")),
            Self::BadAnswer(why) => (StatusCode::BAD_GATEWAY, format!("bad answer from the upstream: {why}")),
            Self::TimedOut => (
                StatusCode::GATEWAY_TIMEOUT,
                format!("the upstream did not answer within {} s", UPSTREAM_TIMEOUT.as_secs()),
            ),
            Self::Internal(why) => (StatusCode::INTERNAL_SERVER_ERROR, format!("relay error: {why}")),
        };
        serve::reply(rpc::error(status, id, INTERNAL_ERROR, &message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::{INVALID_REQUEST, PARSE_ERROR};

    fn request(body: &[u8]) -> Inbound<'_> {
        match parse(body) {
            Ok(Parsed::Request(msg)) => msg,
            Ok(Parsed::Notification) => panic!("a notification"),
            Err(_) => panic!("rejected"),
        }
    }

    fn rejected(body: &[u8]) -> (StatusCode, Value) {
        match parse(body) {
            Err(Reply::Json(status, body)) => (status, serde_json::from_slice(&body).unwrap()),
            _ => panic!("not rejected"),
        }
    }

    #[test]
    fn reid_keeps_method_and_params_and_restore_puts_the_client_id_back() {
        let body = br#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#;
        let msg = request(body);
        let mut out = Vec::new();
        reid(&msg, 42, &mut out).unwrap();
        let sent: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}})
        );
        let answer: Answer =
            serde_json::from_slice(br#"{"jsonrpc":"2.0","id":42,"result":{"ok":true}}"#).unwrap();
        let restored: Value = serde_json::from_slice(&answer.restore(msg.id()).unwrap()).unwrap();
        assert_eq!(restored, serde_json::json!({"jsonrpc":"2.0","id":"c-1","result":{"ok":true}}));
    }

    #[test]
    fn an_error_answer_is_restored_and_an_empty_one_is_refused() {
        let answer: Answer =
            serde_json::from_slice(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}"#)
                .unwrap();
        let restored: Value = serde_json::from_slice(&answer.restore(&Value::from(9)).unwrap()).unwrap();
        assert_eq!(restored["error"]["message"], "no");
        assert_eq!(restored["id"], 9);
        let empty: Answer = serde_json::from_slice(br#"{"jsonrpc":"2.0","id":1}"#).unwrap();
        assert!(matches!(empty.restore(&Value::Null), Err(UpstreamError::BadAnswer(_))));
    }

    #[test]
    fn bad_messages_get_precise_errors() {
        let (status, err) = rejected(b"{nope");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err["error"]["code"], PARSE_ERROR);
        let (status, err) = rejected(br#"{"jsonrpc":"1.0","id":3,"method":"x"}"#);
        assert_eq!(
            (status, &err["id"], &err["error"]["code"]),
            (StatusCode::BAD_REQUEST, &Value::from(3), &Value::from(INVALID_REQUEST))
        );
        let (_, err) = rejected(br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":7}}"#);
        assert_eq!(err["error"]["code"], INVALID_PARAMS);
        let (_, err) = rejected(br#"{"jsonrpc":"2.0","id":5,"method":"tools/call"}"#);
        assert_eq!(err["error"]["code"], INVALID_PARAMS);
    }

    #[test]
    fn a_message_without_id_is_a_notification() {
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Parsed::Notification)
        ));
    }
}
