//! The ceiling's JSON-RPC logic, independent of the transport: parse one
//! message, answer `echo` / `initialize`, serialize the answer.
//!
//! The HTTP ceiling and the stdio server (`--stdio`) both call [`handle_rpc`],
//! so the floor's upstream does exactly the work the ceiling does.

use std::borrow::Cow;

use bytes::Bytes;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A JSON-RPC request (or notification, when `id` is absent).
#[derive(Deserialize)]
struct RpcRequest<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(default)]
    params: Option<CallParams>,
}

/// `tools/call` params; other fields (e.g. `_meta`) are parsed and ignored.
#[derive(Deserialize)]
struct CallParams {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<serde_json::Map<String, Value>>,
    #[serde(default, rename = "_meta")]
    #[allow(dead_code)]
    meta: Option<Value>,
}

#[derive(Serialize)]
struct RpcResponse<'a, R: Serialize> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: R,
}

#[derive(Serialize)]
struct RpcErrorResponse<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    error: RpcError<'a>,
}

#[derive(Serialize)]
struct RpcError<'a> {
    code: i64,
    message: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallToolResult<'a> {
    content: [TextContent<'a>; 1],
    is_error: bool,
    result_type: &'static str,
}

#[derive(Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// JSON-RPC: the message is not valid JSON (or not a request object).
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the message is JSON but not a valid request.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: the method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: the params are missing or wrong.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: the server failed (here: an upstream did not answer).
pub const INTERNAL_ERROR: i64 = -32603;

/// What one JSON-RPC message gets back, whatever carries it.
pub enum Reply {
    /// A JSON-RPC response (result or error), with the HTTP status the ceiling gives it.
    Json(StatusCode, Bytes),
    /// The message was a notification: nothing to answer (HTTP 202, no line on stdio).
    Accepted,
}

/// Serializes `value` as a [`Reply::Json`] with `status`.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(v) => Reply::Json(status, Bytes::from(v)),
        // Unreachable with these types (no maps with non-string keys); still an answer, not a panic.
        Err(_) => Reply::Json(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"serialization error"}}"#,
            ),
        ),
    }
}

/// A JSON-RPC error response for request `id` (`null` when it is unknown).
pub fn error(status: StatusCode, id: &Value, code: i64, message: &str) -> Reply {
    json(status, &RpcErrorResponse { jsonrpc: "2.0", id, error: RpcError { code, message } })
}

/// The answer to a message that is not JSON.
pub fn parse_error(e: &serde_json::Error) -> Reply {
    error(StatusCode::BAD_REQUEST, &Value::Null, PARSE_ERROR, &format!("parse error: {e}"))
}

/// `Err` with the answer to give when a message's `jsonrpc` (its `id`: `id`) is not "2.0".
pub fn check_version(jsonrpc: &str, id: &Value) -> Result<(), Reply> {
    if jsonrpc == "2.0" {
        return Ok(());
    }
    Err(error(StatusCode::BAD_REQUEST, id, INVALID_REQUEST, "jsonrpc must be \"2.0\""))
}

/// Answers one JSON-RPC message the way the ceiling does: `tools/call` on
/// `echo` and `initialize`; a notification is [`Reply::Accepted`]; anything
/// else a precise JSON-RPC error.
pub fn handle_rpc(body: &[u8]) -> Reply {
    let req: RpcRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return parse_error(&e),
    };
    if let Err(reply) = check_version(&req.jsonrpc, req.id.as_ref().unwrap_or(&Value::Null)) {
        return reply;
    }
    let Some(id) = req.id.as_ref() else {
        // Notification (e.g. notifications/initialized): accepted, no answer.
        return Reply::Accepted;
    };
    match req.method.as_ref() {
        "tools/call" => {
            let Some(params) = req.params.as_ref() else {
                return error(StatusCode::OK, id, INVALID_PARAMS, "missing params");
            };
            if params.name.as_deref() != Some("echo") {
                return error(StatusCode::OK, id, INVALID_PARAMS, "unknown tool");
            }
            let message = params.arguments.as_ref().and_then(|a| a.get("message")).and_then(Value::as_str);
            let Some(message) = message else {
                return error(StatusCode::OK, id, INVALID_PARAMS, "echo needs a string `message`");
            };
            json(
                StatusCode::OK,
                &RpcResponse {
                    jsonrpc: "2.0",
                    id,
                    result: CallToolResult {
                        content: [TextContent { kind: "text", text: message }],
                        is_error: false,
                        result_type: "complete",
                    },
                },
            )
        }
        "initialize" => json(
            StatusCode::OK,
            &RpcResponse {
                jsonrpc: "2.0",
                id,
                result: serde_json::json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "mcpgate-bench-ceiling", "version": env!("CARGO_PKG_VERSION")},
                }),
            },
        ),
        _ => error(StatusCode::OK, id, METHOD_NOT_FOUND, "method not found"),
    }
}
