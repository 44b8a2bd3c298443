//! The wire format every other file of `upstream/` writes and reads, and nothing else: a leaf that imports no
//! sibling but [`convert`] and [`trace`](super::trace). The lane's request line and the reading
//! of its answer, the `_meta` the gateway puts on requests (the connection's, the caller's), what it tells
//! upstreams it is as a client, and how the caller's client's answers (or refusals) are put to an upstream.
//!
//! rmcp marks logging deprecated (SEP-2577, a revision after 2026-07-28); the revisions served here still
//! have it, so the deprecation is allowed in this file.
#![allow(deprecated)]

use mcpgate_core::{BackendError, Blame, CallContext, ClientRequestError, LogLevel};
use rmcp::{
    Peer, RoleClient, ServiceError,
    model::{
        ClientCapabilities, ClientConfig, ElicitationCapability, ErrorCode, ErrorData, Implementation,
        LoggingLevel, RequestMetaObject,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json, value::RawValue};

use super::convert;

/// Largest message read from an upstream, on any transport (rmcp's own limit for stdio and Streamable HTTP).
pub(super) const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A request line written on the lane.
#[derive(Serialize)]
pub(super) struct LaneRequest<'a> {
    jsonrpc: &'static str,
    id: &'a str,
    method: &'static str,
    params: LaneParams<'a>,
}

#[derive(Serialize)]
struct LaneParams<'a> {
    #[serde(flatten)]
    params: &'a Value,
    #[serde(rename = "_meta")]
    meta: Meta<'a>,
}

/// A request's `_meta`: the connection's, with this request's own entries over it — written as one object
/// without copying the connection's map for every request.
struct Meta<'a> {
    connection: &'a RequestMetaObject,
    request: &'a RequestMetaObject,
}

impl Serialize for Meta<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.connection.iter().filter(|(key, _)| !self.request.contains_key(*key)) {
            map.serialize_entry(key, value)?;
        }
        for (key, value) in self.request.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'a> LaneRequest<'a> {
    /// `method` with `params`, its `_meta` the `connection`'s with the `request`'s own entries over them.
    pub(super) fn new(
        id: &'a str,
        method: &'static str,
        params: &'a Value,
        connection: &'a RequestMetaObject,
        request: &'a RequestMetaObject,
    ) -> Self {
        Self { jsonrpc: "2.0", id, method, params: LaneParams { params, meta: Meta { connection, request } } }
    }

    pub(super) fn to_line(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }
}

/// A line from an upstream, its parts borrowed from it in one scan: what the lane reads of each line to tell an
/// answer to one of its requests, and then the answer.
#[derive(Deserialize)]
pub(super) struct Reply<'a> {
    /// The id.
    #[serde(borrow)]
    pub(super) id: Option<&'a RawValue>,
    /// Present on a request or notification, which is no answer.
    pub(super) method: Option<serde::de::IgnoredAny>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// The id and the method of a line [`Reply`] cannot read (a member twice, say): enough to tell whose answer it was.
#[derive(Deserialize)]
pub(super) struct Head<'a> {
    /// The id.
    #[serde(borrow)]
    pub(super) id: Option<&'a RawValue>,
    /// Present on a request or notification, which is no answer.
    pub(super) method: Option<serde::de::IgnoredAny>,
}

impl Reply<'_> {
    /// The `result` as it came (read into its type once, by whoever knows the type), or the `error` as the
    /// caller should see it.
    pub(super) fn answer(&self, name: &str) -> Result<Box<RawValue>, BackendError> {
        match (self.error, self.result) {
            (Some(error), _) => match serde_json::from_str::<ErrorData>(error.get()) {
                Ok(error) => Err(convert::service_error(name, ServiceError::McpError(error))),
                Err(e) => Err(unreadable(name, &format!("its error: {e}"))),
            },
            (None, Some(result)) => Ok(result.to_owned()),
            (None, None) => Err(unreadable(name, "neither a result nor an error")),
        }
    }
}

/// The answer in a whole answer line (an HTTP body, an event's data): its `result` as it came, or its `error` as
/// the caller should see it.
pub(super) fn read_answer(name: &str, line: &[u8]) -> Result<Box<RawValue>, BackendError> {
    match serde_json::from_slice::<Reply<'_>>(line) {
        Ok(reply) => reply.answer(name),
        Err(e) => Err(unreadable(name, &e.to_string())),
    }
}

/// An answer from upstream `name` that cannot be read, and why.
pub(super) fn unreadable(name: &str, why: &str) -> BackendError {
    BackendError::Failed {
        backend: name.to_owned(),
        message: format!("cannot read the upstream's answer: {why}"),
        blame: Blame::Upstream,
    }
}

/// What the upstream is told when the caller's client gives no answer to its request.
pub(super) fn refusal(error: ClientRequestError) -> ErrorData {
    match error {
        ClientRequestError::Deferred => ErrorData::internal_error(
            "the client answers in a later round; forwarding over several rounds is not supported yet",
            None,
        ),
        ClientRequestError::Unsupported(what) => {
            ErrorData::new(ErrorCode::METHOD_NOT_FOUND, format!("the client does not support {what}"), None)
        }
        ClientRequestError::Failed(message) => ErrorData::internal_error(message, None),
    }
}

/// Options of a request made for a caller. To a 2026-07-28 upstream (which reads them per request): the
/// caller's own client capabilities, so the upstream asks the caller only what its client can answer and
/// refuses (-32021) what it cannot; and every log message (it sends none unless the request names a level),
/// which the caller's own level filters on the way down.
pub(super) fn caller_meta(cx: &CallContext) -> RequestMetaObject {
    let mut meta = RequestMetaObject::default();
    meta.set_log_level(LoggingLevel::Debug);
    let capabilities = cx.peer.as_ref().map(|peer| peer.client_capabilities()).unwrap_or_else(|| json!({}));
    if let Ok(capabilities) = serde_json::from_value::<ClientCapabilities>(capabilities) {
        meta.set_client_capabilities(capabilities);
    }
    super::trace::add_to_meta(&mut meta);
    meta
}

/// The gateway as a client: what it tells upstreams it is and can forward. A caller whose client lacks a
/// capability gets the upstream an error.
pub(super) fn client_config() -> ClientConfig {
    let mut elicitation = ElicitationCapability::default();
    elicitation.form = Some(Default::default());
    let mut capabilities = ClientCapabilities::default();
    capabilities.sampling = Some(Default::default());
    capabilities.elicitation = Some(elicitation);
    capabilities.roots = Some(Default::default());
    ClientConfig::new(capabilities, Implementation::new("mcpgate", env!("CARGO_PKG_VERSION")))
}

/// The `_meta` every request on this connection carries: for a 2026-07-28 upstream the protocol version,
/// client info and capabilities (what rmcp adds to its own requests), for an older one nothing.
pub(super) fn connection_meta(peer: &Peer<RoleClient>) -> RequestMetaObject {
    let mut meta = RequestMetaObject::default();
    if let Some(info) = peer.peer_info()
        && !info.protocol_version.has_initialize()
    {
        let config = client_config();
        meta.set_protocol_version(info.protocol_version.clone());
        meta.set_client_info(config.client_info);
        meta.set_client_capabilities(config.capabilities);
    }
    meta
}

/// The caller's client's answer, as the type the upstream's request expects.
pub(super) fn answer<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ErrorData> {
    serde_json::from_value(value)
        .map_err(|e| ErrorData::internal_error(format!("the client's answer is malformed: {e}"), None))
}

/// The upstream's request params, for the caller's client.
pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ErrorData> {
    serde_json::to_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

/// A log level from the wire as the gateway's.
pub(super) fn log_level(level: LoggingLevel) -> LogLevel {
    match level {
        LoggingLevel::Debug => LogLevel::Debug,
        LoggingLevel::Info => LogLevel::Info,
        LoggingLevel::Notice => LogLevel::Notice,
        LoggingLevel::Warning => LogLevel::Warning,
        LoggingLevel::Error => LogLevel::Error,
        LoggingLevel::Critical => LogLevel::Critical,
        LoggingLevel::Alert => LogLevel::Alert,
        LoggingLevel::Emergency => LogLevel::Emergency,
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{NumberOrString, ProgressToken};

    use super::*;

    #[test]
    fn a_lane_request_is_one_json_rpc_line_with_its_meta() {
        let mut connection = RequestMetaObject::default();
        connection.set_log_level(LoggingLevel::Error);
        connection.set_traceparent("connection's");
        let mut request = RequestMetaObject::default();
        request.set_progress_token(ProgressToken(NumberOrString::String("~5".into())));
        request.set_log_level(LoggingLevel::Debug);
        let params = json!({ "name": "echo", "arguments": { "message": "hi" } });
        let line = LaneRequest::new("~5", "tools/call", &params, &connection, &request).to_line().unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        // One `logLevel` key: the request's entry replaces the connection's.
        assert_eq!(String::from_utf8_lossy(&line).matches("logLevel").count(), 1);
        let sent: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            sent,
            json!({ "jsonrpc": "2.0", "id": "~5", "method": "tools/call", "params": {
                "name": "echo", "arguments": { "message": "hi" },
                "_meta": {
                    "progressToken": "~5",
                    "io.modelcontextprotocol/logLevel": "debug",
                    "traceparent": "connection's",
                } } })
        );
    }

    #[test]
    fn answers_are_results_or_the_upstreams_errors() {
        let ok = read_answer("up", br#"{"jsonrpc":"2.0","id":"~1","result":{"content":[]}}"#).unwrap();
        assert_eq!(ok.get(), r#"{"content":[]}"#);
        let bad_params =
            read_answer("up", br#"{"jsonrpc":"2.0","id":"~1","error":{"code":-32602,"message":"no"}}"#);
        assert!(matches!(bad_params, Err(BackendError::InvalidArguments(m)) if m.contains("upstream up")));
        let failed =
            read_answer("up", br#"{"jsonrpc":"2.0","id":"~1","error":{"code":-32000,"message":"boom"}}"#);
        assert!(matches!(failed, Err(BackendError::Failed { message, .. }) if message.contains("boom")));
        assert!(read_answer("up", br#"{"jsonrpc":"2.0","id":"~1"}"#).is_err());
    }
}
