//! The names of the headers read on every request, made once, and reading a header as text.
//!
//! A lookup by `&str` parses and checks the name at every call before it hashes it; a lookup by one of these
//! [`HeaderName`]s only hashes it. The `/mcp` path reads a dozen headers per request.

use http::{HeaderMap, HeaderName, header::AsHeaderName};

/// `Mcp-Session-Id`: a legacy session's id.
pub(crate) static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `MCP-Protocol-Version`.
pub(crate) static MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Method`: a 2026-07-28 request's method.
pub(crate) static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name`: a 2026-07-28 request's tool, prompt or resource.
pub(crate) static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// `X-Request-Id`: set on every request by the outermost layer.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Api-Key`.
pub(crate) static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// `X-Forwarded-For`.
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Real-Ip`.
pub(crate) static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The value of header `name` (one of the names above, a standard one, or any `&str`), when it is text.
pub(crate) fn header(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
