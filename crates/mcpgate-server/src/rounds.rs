//! Stateless (2026-07-28) multi-round calls: a call that needs the client's input ends with `input_required`;
//! the client retries with the answers. The answers gathered so far travel in a sealed `requestState` bound to
//! the operation, so a retry re-runs the operation with every answer, and a forged, replayed or expired state is
//! refused.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use mcpgate_core::{BackendError, CallContext, ClientPeer, JsonObject, LogLevel};
use rmcp::{ErrorData, Peer, RoleServer, model::SealOptions};
use serde_json::{Value, json};

use crate::{
    errors::{tampered_state, to_jsonrpc},
    gateway::Gateway,
    peer::RoundTripPeer,
};

/// How long a sealed `requestState` stays valid.
const REQUEST_STATE_TTL: Duration = Duration::from_secs(600);

/// Result of an operation that may need the client's input first.
pub(crate) enum Rounds<T> {
    /// The operation finished.
    Complete(T),
    /// The client must answer these requests and retry: an `InputRequiredResult` as JSON.
    InputRequired(Value),
}

/// What a multi-round request carried back: `inputResponses` and `requestState`.
pub(crate) struct Retry {
    pub(crate) responses: Option<BTreeMap<String, Value>>,
    pub(crate) state: Option<String>,
}

/// The client of one stateless request, as its `_meta` describes it.
pub(crate) struct StatelessClient {
    /// `clientCapabilities`.
    pub(crate) capabilities: Value,
    /// `logLevel`: log messages are sent only when it is set.
    pub(crate) log_level: Option<LogLevel>,
    /// Where notifications go; `None` when the request cannot receive any (no progress token, no log level).
    pub(crate) notify: Option<Peer<RoleServer>>,
}

/// What binds a `requestState` to one operation: the method, the target and the arguments.
pub(crate) fn binding(method: &str, target: &str, arguments: Option<&JsonObject>) -> String {
    let args = arguments.map(|a| serde_json::to_string(a).unwrap_or_default()).unwrap_or_default();
    format!("{method}\n{target}\n{args}")
}

/// Run `op` for a stateless request, in rounds.
pub(crate) async fn run_stateless<T, F, Fut>(
    gateway: &Gateway,
    mut cx: CallContext,
    binding: &str,
    retry: Retry,
    client: StatelessClient,
    op: F,
) -> Result<Rounds<T>, ErrorData>
where
    F: FnOnce(CallContext) -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let mut answers: BTreeMap<String, Value> = match &retry.state {
        Some(sealed) => {
            gateway.request_state.open_json_with(sealed, binding.as_bytes()).map_err(|_| tampered_state())?
        }
        None => BTreeMap::new(),
    };
    answers.extend(retry.responses.unwrap_or_default());
    let peer = Arc::new(RoundTripPeer::new(client.notify, client.capabilities, client.log_level, answers));
    cx.peer = Some(peer.clone() as Arc<dyn ClientPeer>);
    match op(cx).await {
        Ok(value) => Ok(Rounds::Complete(value)),
        Err(BackendError::InputRequired) => {
            let options = SealOptions::new().associated_data(binding.as_bytes()).ttl(REQUEST_STATE_TTL);
            let sealed = gateway
                .request_state
                .seal_json_with(peer.answers(), &options)
                .map_err(|e| ErrorData::internal_error(format!("cannot seal requestState: {e}"), None))?;
            Ok(Rounds::InputRequired(json!({
                "resultType": "input_required",
                "inputRequests": peer.take_pending(),
                "requestState": sealed,
            })))
        }
        Err(e) => Err(to_jsonrpc(&e)),
    }
}
