//! The way back to the client, per protocol era.
//!
//! * [`SessionPeer`] (legacy sessions): notifications and server-to-client requests travel over the session.
//! * [`StreamPeer`] (legacy sessions, fast path): notifications into the call's own response stream.
//! * [`RoundTripPeer`] (2026-07-28, stateless): requests cannot be sent mid-call; a request whose answer the
//!   client has not supplied yet is recorded and the call stops with `Deferred`, so the gateway can answer
//!   `input_required` and run the call again when the client retries with the answers.
//!
//! Sampling, roots and logging are marked deprecated in rmcp (SEP-2577, a revision after 2026-07-28); every
//! revision this gateway serves still has them, so they are used here on purpose.
#![allow(deprecated)]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use mcpgate_core::{ClientPeer, ClientRequestError, LogLevel};
use rmcp::{
    Peer, RoleServer,
    model::{
        CreateMessageRequestParams, ElicitRequestParams, JsonRpcNotification, JsonRpcVersion2_0,
        LoggingMessageNotificationParam, Notification, ProgressNotificationParam,
        ResourceUpdatedNotificationParam, ServerNotification,
    },
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::sessions::SessionState;

/// The capability a server-to-client request needs, if the method is one the gateway may send.
fn required_capability(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

fn check_capability(capabilities: &Value, method: &str) -> Result<(), ClientRequestError> {
    match required_capability(method) {
        None => Err(ClientRequestError::Failed(format!("{method} is not a request a server may send"))),
        Some(cap) if capabilities.get(cap).is_none() => Err(ClientRequestError::Unsupported(cap)),
        Some(_) => Ok(()),
    }
}

/// `notifications/progress` params, or `None` (logged) when the values do not make one.
fn progress_params(
    token: &Value,
    progress: f64,
    total: Option<f64>,
    message: Option<String>,
) -> Option<ProgressNotificationParam> {
    let params = json!({ "progressToken": token, "progress": progress, "total": total, "message": message });
    serde_json::from_value(params)
        .map_err(|e| tracing::warn!(error = %e, "progress notification malformed"))
        .ok()
}

/// `notifications/message` params, or `None` (logged) when the values do not make one.
fn log_params(level: LogLevel, logger: Option<&str>, data: Value) -> Option<LoggingMessageNotificationParam> {
    let params = json!({ "level": level.as_str(), "logger": logger, "data": data });
    serde_json::from_value(params).map_err(|e| tracing::warn!(error = %e, "log notification malformed")).ok()
}

async fn send_progress(
    peer: &Peer<RoleServer>,
    token: &Value,
    progress: f64,
    total: Option<f64>,
    message: Option<String>,
) {
    if let Some(params) = progress_params(token, progress, total, message)
        && let Err(e) = peer.notify_progress(params).await
    {
        tracing::debug!(error = %e, "progress notification not delivered");
    }
}

async fn send_log(peer: &Peer<RoleServer>, level: LogLevel, logger: Option<&str>, data: Value) {
    if let Some(params) = log_params(level, logger, data)
        && let Err(e) = peer.notify_logging_message(params).await
    {
        tracing::debug!(error = %e, "log notification not delivered");
    }
}

/// A legacy session's (or the stdio client's) way back to its client.
pub struct SessionPeer {
    peer: Peer<RoleServer>,
    session: Arc<SessionState>,
    /// The session's id (`stdio` for the one stdio client): subscriptions are kept under it.
    id: String,
}

impl SessionPeer {
    /// Wrap the rmcp peer of the session `id`.
    pub fn new(peer: Peer<RoleServer>, session: Arc<SessionState>, id: String) -> Self {
        Self { peer, session, id }
    }
}

#[async_trait]
impl ClientPeer for SessionPeer {
    async fn progress(&self, token: &Value, progress: f64, total: Option<f64>, message: Option<String>) {
        send_progress(&self.peer, token, progress, total, message).await;
    }

    async fn log(&self, level: LogLevel, logger: Option<&str>, data: Value) {
        if self.session.log_enabled(level) {
            send_log(&self.peer, level, logger, data).await;
        }
    }

    async fn request(&self, _key: &str, method: &str, params: Value) -> Result<Value, ClientRequestError> {
        check_capability(&self.client_capabilities(), method)?;
        let failed = |e: &dyn std::fmt::Display| ClientRequestError::Failed(format!("{method}: {e}"));
        let result = match method {
            "sampling/createMessage" => {
                let params: CreateMessageRequestParams =
                    serde_json::from_value(params).map_err(|e| failed(&e))?;
                serde_json::to_value(self.peer.create_message(params).await.map_err(|e| failed(&e))?)
            }
            "elicitation/create" => {
                let params: ElicitRequestParams = serde_json::from_value(params).map_err(|e| failed(&e))?;
                serde_json::to_value(self.peer.create_elicitation(params).await.map_err(|e| failed(&e))?)
            }
            _ => serde_json::to_value(self.peer.list_roots().await.map_err(|e| failed(&e))?),
        };
        result.map_err(|e| failed(&e))
    }

    /// What the client declared at `initialize` (`{}` before it has).
    fn client_capabilities(&self) -> Value {
        self.peer
            .peer_info()
            .and_then(|info| serde_json::to_value(&info.capabilities).ok())
            .unwrap_or_else(|| json!({}))
    }

    fn session(&self) -> Option<&str> {
        Some(&self.id)
    }

    async fn resource_updated(&self, uri: &str) {
        let params = ResourceUpdatedNotificationParam::new(uri);
        if let Err(e) = self.peer.notify_resource_updated(params).await {
            tracing::debug!(error = %e, uri, "resource update not delivered");
        }
    }

    fn is_closed(&self) -> bool {
        self.peer.is_transport_closed()
    }
}

/// A legacy session's call served on the fast path (`fast.rs`): its notifications go, in the order it sends
/// them, into its own response, as serialized JSON-RPC messages; the response becomes an event stream when the
/// first one comes. Only for clients that declared nothing a server may ask them (sampling, elicitation,
/// roots): a request to the client would need its answer routed back through the session, which only the
/// protocol layer does.
pub(crate) struct StreamPeer {
    messages: mpsc::UnboundedSender<Vec<u8>>,
    session: Arc<SessionState>,
    capabilities: Value,
}

impl StreamPeer {
    /// A peer writing into `messages`, filtering log messages by the session's level; `capabilities`: what the
    /// client declared at `initialize`.
    pub(crate) fn new(
        messages: mpsc::UnboundedSender<Vec<u8>>,
        session: Arc<SessionState>,
        capabilities: Value,
    ) -> Self {
        Self { messages, session, capabilities }
    }

    fn send(&self, notification: ServerNotification) {
        let message = JsonRpcNotification { jsonrpc: JsonRpcVersion2_0, notification };
        match serde_json::to_vec(&message) {
            // The receiver is gone only when the response is (the client left): nothing to do then.
            Ok(bytes) => drop(self.messages.send(bytes)),
            Err(e) => tracing::warn!(error = %e, "notification does not serialize"),
        }
    }
}

#[async_trait]
impl ClientPeer for StreamPeer {
    async fn progress(&self, token: &Value, progress: f64, total: Option<f64>, message: Option<String>) {
        if let Some(params) = progress_params(token, progress, total, message) {
            self.send(ServerNotification::ProgressNotification(Notification::new(params)));
        }
    }

    async fn log(&self, level: LogLevel, logger: Option<&str>, data: Value) {
        if self.session.log_enabled(level)
            && let Some(params) = log_params(level, logger, data)
        {
            self.send(ServerNotification::LoggingMessageNotification(Notification::new(params)));
        }
    }

    async fn request(&self, _key: &str, method: &str, _params: Value) -> Result<Value, ClientRequestError> {
        // The client declared none of the capabilities a request needs (see the type's docs).
        check_capability(&self.capabilities, method)?;
        Err(ClientRequestError::Failed(format!("{method}: the client cannot be asked on this path")))
    }

    fn client_capabilities(&self) -> Value {
        self.capabilities.clone()
    }
}

/// A stateless (2026-07-28) request's way back: notifications on the response stream, requests deferred to the
/// client's retry.
pub struct RoundTripPeer {
    peer: Option<Peer<RoleServer>>,
    capabilities: Value,
    log_level: Option<LogLevel>,
    answers: BTreeMap<String, Value>,
    pending: Mutex<BTreeMap<String, Value>>,
}

impl RoundTripPeer {
    /// A peer for one stateless request. `answers` holds every answer the client has given so far; `peer` is
    /// where notifications go (`None` when the request asked for none: no progress token, no log level).
    pub fn new(
        peer: Option<Peer<RoleServer>>,
        capabilities: Value,
        log_level: Option<LogLevel>,
        answers: BTreeMap<String, Value>,
    ) -> Self {
        Self { peer, capabilities, log_level, answers, pending: Mutex::new(BTreeMap::new()) }
    }

    /// The answers this round started with.
    pub fn answers(&self) -> &BTreeMap<String, Value> {
        &self.answers
    }

    /// The requests the call made that the client has not answered yet, as `inputRequests`.
    pub fn take_pending(&self) -> BTreeMap<String, Value> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl ClientPeer for RoundTripPeer {
    async fn progress(&self, token: &Value, progress: f64, total: Option<f64>, message: Option<String>) {
        if let Some(peer) = &self.peer {
            send_progress(peer, token, progress, total, message).await;
        }
    }

    async fn log(&self, level: LogLevel, logger: Option<&str>, data: Value) {
        // 2026-07-28: a server sends log messages only when the request asked for a level.
        if let Some(peer) = &self.peer
            && self.log_level.is_some_and(|min| level >= min)
        {
            send_log(peer, level, logger, data).await;
        }
    }

    async fn request(&self, key: &str, method: &str, params: Value) -> Result<Value, ClientRequestError> {
        check_capability(&self.capabilities, method)?;
        if let Some(answer) = self.answers.get(key) {
            return Ok(answer.clone());
        }
        let request = json!({ "method": method, "params": params });
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned(), request);
        Err(ClientRequestError::Deferred)
    }

    fn client_capabilities(&self) -> Value {
        self.capabilities.clone()
    }
}
