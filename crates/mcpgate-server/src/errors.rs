//! The one mapping from gateway errors to JSON-RPC errors. HTTP statuses for JSON-RPC errors follow from the
//! code on the 2026-07-28 wire (the transport maps `-32601` to 404 and `-32020`/`-32021`/`-32022` to 400); legacy
//! sessions always answer 200. The table lives in `docs/errors.md`.

use mcpgate_core::BackendError;
use rmcp::{ErrorData, model::ErrorCode};
use serde_json::json;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A backend could not be built.
    #[error(transparent)]
    Backend(#[from] mcpgate_backends::BuildError),
    /// The merged catalogue is inconsistent (collisions).
    #[error("catalogue problems:\n  {}", .0.join("\n  "))]
    Catalogue(Vec<String>),
    /// An internal component failed to initialise.
    #[error("internal: {0}")]
    Internal(String),
    /// The `security` section cannot be used (a config that skipped validation).
    #[error("security: {0}")]
    Security(String),
    /// The audit log's file cannot be opened for appending (`audit.file`: the path and why).
    #[error("audit.file {0}")]
    Audit(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// JSON-RPC code for an unknown or expired legacy session (HTTP 404), as other MCP servers answer it.
pub const SESSION_NOT_FOUND: ErrorCode = ErrorCode(-32001);
/// JSON-RPC code for a call that ran past its deadline (implementation-defined server error range). Not -32001,
/// which other MCP servers use for a missing session.
pub const TIMEOUT: ErrorCode = ErrorCode(-32006);
/// JSON-RPC code for a backend that cannot be reached.
pub const UNAVAILABLE: ErrorCode = ErrorCode(-32002);
/// JSON-RPC code for a call cancelled by the client or by shutdown.
pub const CANCELLED: ErrorCode = ErrorCode(-32003);
/// JSON-RPC code for a request refused for want of a valid credential (HTTP 401).
pub const UNAUTHORIZED: ErrorCode = ErrorCode(-32004);
/// JSON-RPC code for a request or call a rate limit refused (HTTP 429 at the edge, 200 inside a `tools/call`);
/// `data.retryAfterMs` says when to try again. (-32004 is taken by a missing or wrong API key.)
pub const RATE_LIMITED: ErrorCode = ErrorCode(-32005);

/// Map a backend error to the JSON-RPC error the client sees. Exhaustive: a new variant must choose its code.
pub fn to_jsonrpc(error: &BackendError) -> ErrorData {
    let kind = json!({ "kind": error.kind() });
    match error {
        BackendError::NotFound { kind: "resource", name } => {
            ErrorData::resource_not_found(format!("Resource not found: {name}"), Some(json!({ "uri": name })))
        }
        BackendError::NotFound { kind: what, name } => {
            ErrorData::invalid_params(format!("Unknown {what}: {name}"), Some(json!({ "name": name })))
        }
        BackendError::InvalidArguments(message) => ErrorData::invalid_params(message.clone(), Some(kind)),
        BackendError::MissingClientCapability { required } => ErrorData::new(
            ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
            "Missing required client capability",
            Some(json!({ "requiredCapabilities": required })),
        ),
        BackendError::Unavailable { .. } => ErrorData::new(UNAVAILABLE, error.to_string(), Some(kind)),
        BackendError::Timeout(_) => ErrorData::new(TIMEOUT, error.to_string(), Some(kind)),
        BackendError::Cancelled => ErrorData::new(CANCELLED, error.to_string(), Some(kind)),
        BackendError::ClientRequest(_) => ErrorData::invalid_request(error.to_string(), Some(kind)),
        // Reaching here means the protocol layer had no way to ask the client (no multi-round support).
        BackendError::InputRequired => ErrorData::invalid_request(
            "the call needs input from the client, which this transport cannot request",
            Some(kind),
        ),
        BackendError::Failed { .. } => ErrorData::internal_error(error.to_string(), Some(kind)),
        BackendError::RateLimited { scope, retry_after } => {
            ErrorData::new(RATE_LIMITED, error.to_string(), Some(rate_limited_data(scope, *retry_after)))
        }
    }
}

/// `data` of a rate-limit refusal: its kind, the scope that refused, and the wait in milliseconds (rounded up).
pub(crate) fn rate_limited_data(scope: &str, retry_after: std::time::Duration) -> serde_json::Value {
    let retry_after_ms = u64::try_from(retry_after.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    json!({ "kind": "rate_limited", "scope": scope, "retryAfterMs": retry_after_ms })
}

/// The HTTP status of a JSON-RPC error answering a well-formed stateless (2026-07-28) request, as the
/// transport maps it: typed protocol errors are 400, an unknown method 404, everything else travels with 200.
pub fn stateless_status(code: ErrorCode) -> http::StatusCode {
    match code {
        ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
        | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
        | ErrorCode::HEADER_MISMATCH => http::StatusCode::BAD_REQUEST,
        ErrorCode::METHOD_NOT_FOUND => http::StatusCode::NOT_FOUND,
        _ => http::StatusCode::OK,
    }
}

/// The error for a `requestState` that fails its integrity check.
pub fn tampered_state() -> ErrorData {
    ErrorData::invalid_params(
        "requestState integrity check failed",
        Some(json!({ "kind": "invalid_request_state" })),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_error_kind_has_a_distinct_meaningful_code() {
        let unknown_tool = to_jsonrpc(&BackendError::NotFound { kind: "tool", name: "x".into() });
        assert_eq!(unknown_tool.code, ErrorCode::INVALID_PARAMS);
        assert!(unknown_tool.message.contains("Unknown tool: x"));
        assert_eq!(to_jsonrpc(&BackendError::Timeout(Duration::from_secs(1))).code, TIMEOUT);
        let cap = to_jsonrpc(&BackendError::MissingClientCapability { required: json!({"sampling": {}}) });
        assert_eq!(cap.code, ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY);
        assert_eq!(cap.data.unwrap()["requiredCapabilities"], json!({"sampling": {}}));
        let missing = to_jsonrpc(&BackendError::NotFound { kind: "resource", name: "test://x".into() });
        assert_eq!(missing.data.unwrap()["uri"], "test://x");
        let limited = BackendError::RateLimited { scope: "tool", retry_after: Duration::from_micros(1500) };
        let limited = to_jsonrpc(&limited);
        assert_eq!(limited.code, RATE_LIMITED);
        assert_eq!(
            limited.data.unwrap(),
            json!({ "kind": "rate_limited", "scope": "tool", "retryAfterMs": 2 })
        );
    }
}
