//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off in every build that serves): thin
//! wrappers over the code that reads untrusted bytes, with types of their own so that nothing crate-private
//! becomes public API. Not an API either: it follows the code it wraps.

use std::collections::BTreeMap;

pub use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use mcpgate_core::{JsonObject, Operation};
use rmcp::model::RequestStateCodec;
use serde_json::Value;

use crate::{
    dispatch, edge,
    fast::{self, SessionView, ToolView},
    jsonrpc::Rejection,
};

// === the /mcp edge ===

/// What the edge made of a POST before any session or protocol logic: refused, or passed on.
#[derive(Debug)]
pub enum EdgeVerdict {
    /// The body is a JSON-RPC message: its id and method as the edge read them.
    Passed {
        /// `id`, when present.
        id: Option<Value>,
        /// `method`, when present.
        method: Option<String>,
    },
    /// Refused with this status and body.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response body (a JSON-RPC error).
        body: Vec<u8>,
    },
}

/// The checks `edge::guard` makes of a POST's headers and body, in its order: media type, then UTF-8, depth,
/// JSON and the JSON-RPC envelope.
pub fn edge(headers: &HeaderMap, body: &[u8]) -> EdgeVerdict {
    let rejection = if !edge::is_json(headers) {
        Rejection::Invalid {
            status: http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "Content-Type must be application/json".into(),
            id: None,
        }
    } else {
        match edge::read_message(body) {
            Ok((envelope, _)) => {
                return EdgeVerdict::Passed {
                    id: envelope.id,
                    method: envelope.method.map(|m| m.into_owned()),
                };
            }
            Err(rejection) => rejection,
        }
    };
    let response = rejection.into_response();
    let status = response.status().as_u16();
    // The body is one in-memory buffer: ready at the first poll.
    let body = futures::executor::block_on(response.into_body().collect())
        .map(|collected| collected.to_bytes().to_vec())
        .unwrap_or_default();
    EdgeVerdict::Refused { status, body }
}

/// The deepest `[`/`{` nesting the edge finds in `bytes`.
pub fn nesting_depth(bytes: &[u8]) -> usize {
    edge::nesting_depth(bytes)
}

/// The deepest nesting the edge accepts.
pub const MAX_DEPTH: usize = edge::MAX_DEPTH;

// === the fast path's classifier ===

/// The fast path's classifier.
pub struct Classifier(fast::Classifier);

/// What the classifier knows of a legacy session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The version it negotiated, once initialized.
    pub version: Option<String>,
    /// Whether its client declared anything a server may ask it.
    pub askable: Option<bool>,
}

/// What the classifier knows of a tool.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// Whether a call may send the client anything before its result.
    pub contacts_client: bool,
    /// Whether its schema declares `x-mcp-header` parameters.
    pub declares_param_headers: bool,
}

/// A call the fast path serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The JSON-RPC id.
    pub id: Value,
    /// The tool's public name.
    pub name: String,
    /// The arguments.
    pub arguments: JsonObject,
    /// `params._meta`.
    pub meta: Option<JsonObject>,
    /// Which era.
    pub era: Era,
}

/// The era of a [`Call`].
#[derive(Debug, Clone, PartialEq)]
pub enum Era {
    /// 2026-07-28.
    Stateless {
        /// `clientCapabilities` of `_meta`.
        capabilities: Value,
        /// `inputResponses`.
        responses: Option<BTreeMap<String, Value>>,
        /// `requestState`.
        state: Option<String>,
    },
    /// A legacy session's call.
    Legacy {
        /// Whether the answer may become an event stream.
        streams: bool,
    },
}

impl Classifier {
    /// A classifier admitting the `Host` values of `allowed_hosts` (`*`: any).
    pub fn new(allowed_hosts: &[String]) -> Self {
        Self(fast::Classifier::new(allowed_hosts))
    }

    /// `Classifier::classify`: the call the fast path would serve, or `None` (the protocol layer's).
    pub fn classify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        session: Option<&Session>,
        tool: impl Fn(&str) -> Option<Tool>,
    ) -> Option<Call> {
        let session = session.map(|s| SessionView { version: s.version.as_deref(), askable: s.askable });
        let tool = |name: &str| {
            tool(name).map(|t| ToolView {
                contacts_client: t.contacts_client,
                declares_param_headers: t.declares_param_headers,
            })
        };
        let call = self.0.classify(headers, body, session, tool)?;
        let era = match call.era {
            fast::Era::Stateless { capabilities, responses, state } => {
                Era::Stateless { capabilities, responses, state }
            }
            fast::Era::Legacy { streams } => Era::Legacy { streams },
        };
        Some(Call { id: call.id, name: call.name, arguments: call.arguments, meta: call.meta, era })
    }
}

// === sealed requestState ===

/// Seals and opens `requestState` as the dispatch does, with a key of the caller's.
pub struct Sealer(RequestStateCodec);

impl Sealer {
    /// A sealer with `key` (at least 32 bytes, as `MCPGATE_SEAL_KEY`).
    pub fn new(key: &[u8]) -> Option<Self> {
        RequestStateCodec::try_new(key.to_vec()).ok().map(Self)
    }

    /// The `requestState` the dispatch hands out for `op` with `answers`.
    pub fn seal(&self, op: &Operation, answers: &BTreeMap<String, Value>) -> Option<String> {
        dispatch::seal_answers(&self.0, &dispatch::binding(op), answers).ok()
    }

    /// The answers the dispatch accepts from `sealed` for a retry of `op`, or `None` (refused as tampered).
    pub fn open(&self, op: &Operation, sealed: &str) -> Option<BTreeMap<String, Value>> {
        dispatch::open_answers(&self.0, &dispatch::binding(op), sealed).ok()
    }
}

/// What binds a `requestState` to `op`.
pub fn binding(op: &Operation) -> Vec<u8> {
    dispatch::binding(op)
}
