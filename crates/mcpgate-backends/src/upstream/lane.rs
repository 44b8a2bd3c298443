//! The direct lane for `tools/call`: a stdio upstream's pipes ([`PipeLane`]) or a stateless Streamable HTTP
//! upstream's POST ([`HttpLane`]), both behind one [`Lane::call`], so the caller (`Upstream::with_input`) never
//! asks which it has.
//!
//! A call on a lane is two steps, because the call must be registered (under its id and progress token, see
//! `Calls`) before anything is sent: [`Lane::call`] fixes the id and writes the request line, [`Sent::answer`]
//! sends it and waits for its `result`.

use std::sync::Arc;

use mcpgate_core::{BackendError, CallContext};
use rmcp::model::{NumberOrString, ProgressToken, RequestId};
use serde_json::{Value, value::RawValue};

use super::{
    http_lane::HttpLane,
    pipe::{Pending, PipeLane},
    wire::{LaneRequest, caller_meta},
};

/// Where a `tools/call` can go without rmcp's client.
#[derive(Clone)]
pub(super) enum Lane {
    /// The child's pipes (stdio).
    Pipe(Arc<PipeLane>),
    /// One POST per call (stateless Streamable HTTP).
    Http(Arc<HttpLane>),
}

/// A lane request ready to go, its id and progress token already fixed.
pub(super) struct Sent<'a> {
    to: To<'a>,
    id: String,
    token: ProgressToken,
    /// The tool called (the HTTP lane names it in a header).
    tool: &'a str,
    line: Vec<u8>,
}

/// Where a lane request goes: on a pipe its answer arrives through `pending`; over HTTP it is the POST's own
/// response.
enum To<'a> {
    Pipe(&'a PipeLane, Pending<'a>),
    Http(&'a HttpLane),
}

impl Lane {
    /// A `tools/call` with `params` for the caller of `cx` on upstream `upstream`: a fresh id, which is also its
    /// progress token, and the request line with the connection's `_meta`, the caller's, and that token.
    pub(super) fn call<'a>(
        &'a self,
        upstream: &str,
        cx: &CallContext,
        params: &'a Value,
    ) -> Result<Sent<'a>, BackendError> {
        let (to, id, connection) = match self {
            Lane::Pipe(pipe) => {
                let pending = pipe.expect();
                let id = pending.id();
                (To::Pipe(pipe, pending), id, pipe.base_meta())
            }
            Lane::Http(http) => (To::Http(http), http.next_id(), http.base_meta()),
        };
        let token = ProgressToken(NumberOrString::String(id.as_str().into()));
        let mut meta = caller_meta(cx);
        meta.set_progress_token(token.clone());
        let line = LaneRequest::new(&id, "tools/call", params, connection, &meta).to_line().map_err(|e| {
            BackendError::InvalidArguments(format!("{upstream}: cannot write the request: {e}"))
        })?;
        let tool = params.get("name").and_then(Value::as_str).unwrap_or_default();
        Ok(Sent { to, id, token, tool, line })
    }
}

impl Sent<'_> {
    /// The request's JSON-RPC id.
    pub(super) fn request_id(&self) -> RequestId {
        RequestId::String(self.id.as_str().into())
    }

    /// The request's progress token.
    pub(super) fn progress_token(&self) -> &ProgressToken {
        &self.token
    }

    /// Send the request and wait for its `result`. `closed` is the error when the connection closes before the
    /// answer comes (or a child's stdin is closed already): the caller knows the connection, and so why.
    pub(super) async fn answer(
        self,
        upstream: &str,
        cx: &CallContext,
        closed: impl Future<Output = BackendError>,
    ) -> Result<Box<RawValue>, BackendError> {
        match self.to {
            To::Pipe(pipe, mut pending) => {
                if pipe.write(self.line).await.is_err() {
                    return Err(closed.await);
                }
                match (&mut pending.answer).await {
                    Ok(answer) => answer,
                    Err(_) => Err(closed.await),
                }
            }
            To::Http(http) => http.call(upstream, cx, &self.id, &self.token, self.tool, self.line).await,
        }
    }
}
