//! Legacy `resources/subscribe`: which sessions want which resources. The backend that owns a resource is asked
//! once, when its first subscriber comes, and told to stop when the last one leaves; each change it reports
//! goes to every session subscribed to it as `notifications/resources/updated`. A session whose transport has
//! closed is dropped the next time a change would reach it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use mcpgate_core::ClientPeer;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::registry::BackendEntry;

/// The sessions subscribed to one resource: each its key and its way back.
type Subscribers = Vec<(String, Arc<dyn ClientPeer>)>;

/// Subscribers per resource URI.
#[derive(Default)]
pub struct Subscriptions {
    by_uri: Mutex<HashMap<String, Subscribers>>,
}

impl Subscriptions {
    /// Subscribe session `key` to `uri`. `true` when it is the resource's first subscriber, so its backend is to
    /// be asked.
    pub(crate) fn add(&self, uri: &str, key: &str, peer: Arc<dyn ClientPeer>) -> bool {
        let mut by_uri = self.by_uri.lock().unwrap_or_else(|e| e.into_inner());
        let subscribers = by_uri.entry(uri.to_owned()).or_default();
        let first = subscribers.is_empty();
        if !subscribers.iter().any(|(k, _)| k == key) {
            subscribers.push((key.to_owned(), peer));
        }
        first
    }

    /// Unsubscribe session `key` from `uri`. `true` when that was the resource's last subscriber.
    pub(crate) fn remove(&self, uri: &str, key: &str) -> bool {
        let mut by_uri = self.by_uri.lock().unwrap_or_else(|e| e.into_inner());
        let Some(subscribers) = by_uri.get_mut(uri) else { return false };
        let before = subscribers.len();
        subscribers.retain(|(k, _)| k != key);
        let last = before > 0 && subscribers.is_empty();
        if subscribers.is_empty() {
            by_uri.remove(uri);
        }
        last
    }

    /// Tell every live subscriber of `uri` that it changed. `true` when no subscriber is left (every one had
    /// closed), so its backend may be told to stop.
    async fn updated(&self, uri: &str) -> bool {
        let peers: Vec<Arc<dyn ClientPeer>> = {
            let mut by_uri = self.by_uri.lock().unwrap_or_else(|e| e.into_inner());
            let Some(subscribers) = by_uri.get_mut(uri) else { return false };
            subscribers.retain(|(_, peer)| !peer.is_closed());
            if subscribers.is_empty() {
                by_uri.remove(uri);
                return true;
            }
            subscribers.iter().map(|(_, peer)| peer.clone()).collect()
        };
        for peer in peers {
            peer.resource_updated(uri).await;
        }
        false
    }
}

/// Forward `entry`'s resource changes to their subscribers until `stop`.
pub(crate) fn watch_updates(
    entry: &BackendEntry,
    subscriptions: &Arc<Subscriptions>,
    stop: &CancellationToken,
) {
    let Some(mut updates) = entry.backend.resource_updates() else { return };
    let (backend, subscriptions, stop) = (entry.backend.clone(), Arc::downgrade(subscriptions), stop.clone());
    let name = entry.name.clone();
    tokio::spawn(async move {
        loop {
            let uri = tokio::select! {
                () = stop.cancelled() => return,
                uri = updates.recv() => match uri {
                    Ok(uri) => uri,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(backend = %name, missed, "resource updates came faster than they were forwarded; some were dropped");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                },
            };
            let Some(subscriptions) = Weak::upgrade(&subscriptions) else { return };
            if subscriptions.updated(&uri).await
                && let Err(e) = backend.unsubscribe(&uri).await
            {
                tracing::debug!(backend = %name, %uri, "cannot unsubscribe: {e}");
            }
        }
    });
}
