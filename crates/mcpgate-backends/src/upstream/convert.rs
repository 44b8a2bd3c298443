//! Between rmcp's model types and the gateway's own: through serde, so every field — including ones this
//! gateway does not know — passes through unchanged.

use mcpgate_core::{BackendError, Blame};
use rmcp::{ServiceError, model::ErrorCode};
use serde::{Serialize, de::DeserializeOwned};

/// Re-type a value through its JSON form.
pub(super) fn retype<From: Serialize, To: DeserializeOwned>(value: &From) -> Result<To, String> {
    let json = serde_json::to_value(value).map_err(|e| e.to_string())?;
    serde_json::from_value(json).map_err(|e| e.to_string())
}

/// The error a caller sees for an rmcp request error on the connection to upstream `name`.
pub(super) fn service_error(name: &str, error: ServiceError) -> BackendError {
    match error {
        // The upstream's own answer: its message and code travel on. Bad parameters are the caller's mistake;
        // anything else the upstream's.
        ServiceError::McpError(data) if data.code == ErrorCode::INVALID_PARAMS => {
            BackendError::InvalidArguments(format!(
                "{} (upstream {name}, code {})",
                data.message, data.code.0
            ))
        }
        // The upstream needs a client capability the caller's client lacks: the caller's own -32021.
        ServiceError::McpError(data) if data.code == ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY => {
            let required = data.data.as_ref().and_then(|d| d.get("requiredCapabilities")).cloned();
            BackendError::MissingClientCapability { required: required.unwrap_or_default() }
        }
        ServiceError::McpError(data) => BackendError::Failed {
            backend: name.to_owned(),
            message: format!("upstream error {}: {}", data.code.0, data.message),
            blame: Blame::Upstream,
        },
        ServiceError::Timeout { timeout } => BackendError::Timeout(timeout),
        ServiceError::Cancelled { .. } => BackendError::Cancelled,
        ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
            BackendError::unavailable(name, format!("upstream {name}: {error}"))
        }
        other => BackendError::Failed {
            backend: name.to_owned(),
            message: format!("upstream {name}: {other}"),
            blame: Blame::Upstream,
        },
    }
}

/// A result the lane brought unparsed, read into our type.
pub(super) fn from_raw<U: DeserializeOwned>(
    name: &str,
    raw: &serde_json::value::RawValue,
) -> Result<U, BackendError> {
    serde_json::from_str(raw.get()).map_err(|e| unreadable_result(name, &e))
}

fn unreadable_result(name: &str, error: &dyn std::fmt::Display) -> BackendError {
    BackendError::Failed {
        backend: name.to_owned(),
        message: format!("cannot read the upstream's result: {error}"),
        blame: Blame::Upstream,
    }
}

/// An upstream result in another shape (our types, or plain JSON) through its wire form.
pub(super) fn read_result<T: serde::Serialize, U: serde::de::DeserializeOwned>(
    name: &str,
    value: &T,
) -> Result<U, BackendError> {
    retype(value).map_err(|e| unreadable_result(name, &e))
}

#[cfg(test)]
mod tests {
    use rmcp::model::{CallToolResult, ContentBlock, ErrorData};
    use serde_json::json;

    use super::*;

    #[test]
    fn tool_results_keep_every_field() {
        let mut result = CallToolResult::success(vec![ContentBlock::text("hi")]);
        result.structured_content = Some(json!({"sum": 5}));
        let outcome: mcpgate_core::ToolOutcome = retype(&result).unwrap();
        assert_eq!(outcome.content, vec![json!({"type": "text", "text": "hi"})]);
        assert_eq!(outcome.structured_content, Some(json!({"sum": 5})));
        assert!(!outcome.is_error);
    }

    #[test]
    fn upstream_errors_keep_their_message_and_code() {
        let error = service_error("up", ServiceError::McpError(ErrorData::internal_error("boom", None)));
        assert!(error.to_string().contains("-32603") && error.to_string().contains("boom"), "{error}");
        assert!(error.is_retryable());
        let error = service_error("up", ServiceError::McpError(ErrorData::invalid_params("bad", None)));
        assert!(matches!(error, BackendError::InvalidArguments(_)), "{error:?}");
    }
}
