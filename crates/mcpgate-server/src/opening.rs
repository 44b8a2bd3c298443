//! A legacy session opened without the protocol layer: a plain `initialize` is answered here, and the session
//! starts parked — a record of under 1 KB and no worker (`sessions`). Its first request that needs rmcp
//! restores a worker from the record, replaying this `initialize`; a client that only calls tools on the fast
//! path never costs one.
//!
//! Answered here only when all hold (else rmcp opens the session, as before): the headers the fast path asks of
//! every request (`Accept` naming JSON and SSE, no `Origin`, an allowed `Host`); no session id; `Mcp-Method`
//! absent or `initialize`; `MCP-Protocol-Version` absent or equal to the body's; a body of exactly a JSON-RPC
//! `initialize` request whose params rmcp reads; and a negotiated revision that has `initialize`. The answer is
//! the one rmcp would give — its own negotiation, through the handler — as plain JSON.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode};
use rmcp::{
    ServerHandler,
    model::{InitializeRequestParams, InitializeResult},
};
use serde_json::Value;

use crate::{
    fast::{Classifier, PlainRequest},
    handler::McpHandler,
    headers::{MCP_METHOD, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, header},
    jsonrpc::reply,
    metrics::labels::{McpMethod, heard},
    sessions::Sessions,
};

/// An `initialize` answered here, as [`Classifier::classify_initialize`] found it.
#[derive(Debug)]
pub(crate) struct Opening {
    /// The JSON-RPC id.
    pub(crate) id: Value,
    /// The client's params.
    pub(crate) params: InitializeRequestParams,
}

impl Classifier {
    /// The `initialize` answered without the protocol layer, or `None` (rmcp serves it). Pure.
    pub(crate) fn classify_initialize(&self, headers: &HeaderMap, body: &[u8]) -> Option<Opening> {
        if !self.headers_fit(headers) || headers.contains_key(&MCP_SESSION_ID) {
            return None;
        }
        if header(headers, &MCP_METHOD).is_some_and(|m| m != "initialize") {
            return None;
        }
        let request = serde_json::from_slice::<PlainRequest<'_, InitializeRequestParams>>(body).ok()?;
        let version = header(headers, &MCP_PROTOCOL_VERSION);
        if !request.is_plain("initialize")
            || version.is_some_and(|v| v != request.params.protocol_version.as_str())
        {
            return None;
        }
        Some(Opening { id: request.id, params: request.params })
    }
}

/// Answer `opening` and open its session, parked, in `sessions`; `None` when the negotiated revision has no
/// `initialize` (rmcp then answers).
pub(crate) fn open(handler: &McpHandler, sessions: &Sessions, opening: Opening) -> Option<Response> {
    let Opening { id, params } = opening;
    let result: InitializeResult = handler.negotiate_initialize(&params).ok()?;
    if !result.protocol_version.has_initialize() {
        return None;
    }
    let saved = serde_json::to_string(&params).ok()?.into_boxed_str();
    let capabilities = serde_json::to_value(&params.capabilities).ok();
    heard(McpMethod::Initialize);
    let session = sessions.open(saved, capabilities, result.protocol_version.to_string());
    let mut response = reply(StatusCode::OK, &id, Ok(result));
    if let Ok(value) = HeaderValue::from_str(&session) {
        response.headers_mut().insert(MCP_SESSION_ID.clone(), value);
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn headers(extra: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("host", "localhost:8000".parse().unwrap());
        map.insert("accept", "application/json, text/event-stream".parse().unwrap());
        for (name, value) in extra {
            match *value {
                "" => drop(map.remove(*name)),
                value => drop(map.insert(*name, value.parse().unwrap())),
            }
        }
        map
    }

    fn body(extra: serde_json::Value) -> Vec<u8> {
        let mut request = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": { "roots": {} },
            "clientInfo": { "name": "c", "version": "1" } } });
        request.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        request.to_string().into_bytes()
    }

    #[test]
    fn only_a_plain_initialize_is_answered_here() {
        let classifier = Classifier::new(&["localhost".to_owned()]);
        let opening = classifier.classify_initialize(&headers(&[]), &body(json!({}))).unwrap();
        assert_eq!(opening.id, json!(1));
        assert_eq!(opening.params.protocol_version.as_str(), "2025-06-18");
        assert!(opening.params.capabilities.roots.is_some());
        let matching = [("mcp-protocol-version", "2025-06-18"), ("mcp-method", "initialize")];
        assert!(classifier.classify_initialize(&headers(&matching), &body(json!({}))).is_some());

        let refused: [(&str, HeaderMap, Vec<u8>); 9] = [
            ("a session id", headers(&[("mcp-session-id", "s")]), body(json!({}))),
            ("another method header", headers(&[("mcp-method", "tools/list")]), body(json!({}))),
            (
                "a version header unlike the body",
                headers(&[("mcp-protocol-version", "2025-11-25")]),
                body(json!({})),
            ),
            ("an Origin", headers(&[("origin", "http://localhost:3000")]), body(json!({}))),
            ("a foreign Host", headers(&[("host", "evil.example")]), body(json!({}))),
            ("no event-stream in Accept", headers(&[("accept", "application/json")]), body(json!({}))),
            ("another method", headers(&[]), body(json!({ "method": "ping" }))),
            ("an unknown member", headers(&[]), body(json!({ "extra": true }))),
            ("a notification", headers(&[]), {
                let mut b: serde_json::Value = serde_json::from_slice(&body(json!({}))).unwrap();
                b.as_object_mut().unwrap().remove("id");
                b.to_string().into_bytes()
            }),
        ];
        for (what, headers, body) in refused {
            assert!(classifier.classify_initialize(&headers, &body).is_none(), "{what}");
        }
        let broken =
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
        assert!(classifier.classify_initialize(&headers(&[]), broken).is_none(), "params rmcp cannot read");
    }
}
