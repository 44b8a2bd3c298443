//! The benchmark "ceiling": a minimal, fast hyper 1.x server that answers the
//! same JSON-RPC `tools/call` on `echo` that mcpgate answers.
//!
//! It exists only to give `bench/run.sh` a reference point measured in the same
//! run on the same machine: whatever mcpgate does on top of "parse the JSON-RPC
//! request, build the result, serialize it" is the gateway's overhead.
//!
//! It stays honest: every request body is parsed with `serde_json` into typed
//! structures, and every answer is serialized for real.
//!
//! Usage: `mcpgate-bench-ceiling [ADDR]` (default `127.0.0.1:8100`).
//!
//! * `POST /mcp`, `tools/call` with `name: "echo"` →
//!   `{"jsonrpc":"2.0","id":<id>,"result":{"content":[{"type":"text","text":<message>}],"isError":false,"resultType":"complete"}}`
//! * `POST /mcp`, `initialize` → a minimal initialize result (no session header:
//!   the ceiling is stateless).
//! * `POST /mcp`, a notification (no `id`) → `202 Accepted`, empty body.
//! * `GET /health` → `200 ok`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;

const DEFAULT_ADDR: &str = "127.0.0.1:8100";
/// Largest request body accepted (same order of magnitude as a gateway limit).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A JSON-RPC request (or notification, when `id` is absent).
#[derive(Deserialize)]
struct RpcRequest<'a> {
    #[serde(borrow)]
    jsonrpc: std::borrow::Cow<'a, str>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(borrow)]
    method: std::borrow::Cow<'a, str>,
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
    error: RpcError,
}

#[derive(Serialize)]
struct RpcError {
    code: i64,
    message: String,
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

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    if !content_type.is_empty() {
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    resp
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(v) => response(status, "application/json", Bytes::from(v)),
        Err(_) => response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            Bytes::from_static(b"serialization error"),
        ),
    }
}

fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        &RpcErrorResponse { jsonrpc: "2.0", id, error: RpcError { code, message: message.to_owned() } },
    )
}

fn handle_rpc(body: &[u8]) -> Response<Full<Bytes>> {
    let req: RpcRequest<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return rpc_error(StatusCode::BAD_REQUEST, &Value::Null, -32700, &format!("parse error: {e}"));
        }
    };
    if req.jsonrpc != "2.0" {
        let id = req.id.as_ref().unwrap_or(&Value::Null);
        return rpc_error(StatusCode::BAD_REQUEST, id, -32600, "jsonrpc must be \"2.0\"");
    }
    let Some(id) = req.id.as_ref() else {
        // Notification (e.g. notifications/initialized): accepted, no body.
        return response(StatusCode::ACCEPTED, "", Bytes::new());
    };
    match req.method.as_ref() {
        "tools/call" => {
            let Some(params) = req.params.as_ref() else {
                return rpc_error(StatusCode::OK, id, -32602, "missing params");
            };
            if params.name.as_deref() != Some("echo") {
                return rpc_error(StatusCode::OK, id, -32602, "unknown tool");
            }
            let message = params.arguments.as_ref().and_then(|a| a.get("message")).and_then(Value::as_str);
            let Some(message) = message else {
                return rpc_error(StatusCode::OK, id, -32602, "echo needs a string `message`");
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
        _ => rpc_error(StatusCode::OK, id, -32601, "method not found"),
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => response(StatusCode::OK, "text/plain", Bytes::from_static(b"ok")),
        (&Method::POST, "/mcp") => {
            let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
            match limited.collect().await {
                Ok(collected) => handle_rpc(&collected.to_bytes()),
                Err(_) => response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain",
                    Bytes::from_static(b"body too large or unreadable"),
                ),
            }
        }
        _ => response(StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"not found")),
    };
    Ok(resp)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(addr).await?;
    eprintln!("mcpgate-bench-ceiling listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // e.g. EMFILE: back off briefly instead of spinning.
                eprintln!("accept error: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}
