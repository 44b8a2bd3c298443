//! Resource subscriptions of sessions shared between nodes. Whichever node takes a `resources/subscribe` records
//! it in Redis (`dispatch.rs`); the node holding the client's listening (`GET`) stream watches every resource in
//! the session's set, for as long as the stream is open, and sends each update into the session's Redis stream —
//! from where it reaches the client wherever its stream is, resumable like any other event. So updates go on when
//! the node that took the subscription is gone, and move with the stream when the client reconnects elsewhere.

use std::{collections::BTreeSet, sync::Arc};

use async_trait::async_trait;
use mcpgate_core::{ClientPeer, ClientRequestError, LogLevel};
use mcpgate_state::{Heard, SharedSessions};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

/// Watch the subscriptions of shared session `id` for the listening stream held here, until `until`.
pub(crate) fn follow(gateway: Arc<Gateway>, id: Arc<str>, until: CancellationToken) {
    let Some(store) = gateway.state.sessions().cloned() else { return };
    tokio::spawn(async move {
        let peer: Arc<dyn ClientPeer> =
            Arc::new(Listener { store: store.clone(), id: id.clone(), until: until.clone() });
        let mut heard = store.heard();
        let mut held = BTreeSet::new();
        loop {
            if let Some(wanted) = store.subscriptions(&id).await {
                let wanted: BTreeSet<String> = wanted.into_iter().collect();
                for uri in wanted.difference(&held) {
                    gateway.watch_resource(uri, &id, peer.clone()).await;
                }
                for uri in held.difference(&wanted) {
                    gateway.unwatch_resource(uri, &id).await;
                }
                held = wanted;
            }
            let changed = loop {
                tokio::select! {
                    () = until.cancelled() => break false,
                    news = heard.recv() => match news {
                        Ok(Heard::Subscriptions(session)) if *session == *id => break true,
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => break false,
                    },
                }
            };
            if !changed {
                for uri in &held {
                    gateway.unwatch_resource(uri, &id).await;
                }
                return;
            }
        }
    });
}

/// The client of a shared session as a resource watch sees it: updates go into the session's Redis stream.
struct Listener {
    store: SharedSessions,
    id: Arc<str>,
    until: CancellationToken,
}

#[async_trait]
impl ClientPeer for Listener {
    async fn progress(&self, _token: &Value, _progress: f64, _total: Option<f64>, _message: Option<String>) {}

    async fn log(&self, _level: LogLevel, _logger: Option<&str>, _data: Value) {}

    async fn request(&self, _key: &str, method: &str, _params: Value) -> Result<Value, ClientRequestError> {
        Err(ClientRequestError::Failed(format!("{method}: not asked from a resource watch")))
    }

    fn client_capabilities(&self) -> Value {
        json!({})
    }

    fn session(&self) -> Option<&str> {
        Some(&self.id)
    }

    async fn resource_updated(&self, uri: &str) {
        let message = json!({ "jsonrpc": "2.0", "method": "notifications/resources/updated", "params": { "uri": uri } });
        if self.store.to_stream(&self.id, &message.to_string()).await.is_none() {
            tracing::debug!(%uri, "a resource update found no shared stream (redis unreachable)");
        }
    }

    fn is_closed(&self) -> bool {
        self.until.is_cancelled()
    }
}
