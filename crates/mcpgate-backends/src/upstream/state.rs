//! What the supervisor and the callers share about one upstream: the live connection ([`Link`]) or why there is
//! none ([`State`]), and the catalogue last published ([`Shared`]). The supervisor
//! (`connection`) writes it; the backend and the calls read it.

use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use rmcp::{
    Peer, RoleClient,
    model::{Prompt, Resource, ResourceTemplate, Tool},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{calls::Calls, lane::Lane};

/// The raw catalogue an upstream offered on connection, under its own names.
#[derive(Debug, Default, Clone)]
pub(super) struct Catalogue {
    /// Tools.
    pub tools: Vec<Tool>,
    /// Resources.
    pub resources: Vec<Resource>,
    /// Resource templates.
    pub templates: Vec<ResourceTemplate>,
    /// Prompts.
    pub prompts: Vec<Prompt>,
}

/// A live connection as callers see it: the peer to send on, and the token the supervisor cancels (after
/// setting `reason`) the moment the connection dies, so calls in flight fail at once.
#[derive(Clone)]
pub(super) struct Link {
    /// Sends requests upstream.
    pub peer: Peer<RoleClient>,
    /// The direct lane for `tools/call`, when the transport has one.
    pub lane: Option<Lane>,
    /// Cancelled when the connection is gone.
    pub dead: CancellationToken,
    /// Why it is gone; set before `dead` is cancelled.
    pub reason: Arc<OnceLock<String>>,
    /// The calls in flight on it, for what the upstream sends back.
    pub calls: Arc<Calls>,
    /// Which connection of the upstream this is (1 for the first): when it dies, the number of the outage
    /// its failed calls report ([`BackendError::outage`](mcpgate_core::BackendError::outage)).
    pub generation: u64,
}

impl Link {
    /// Why the connection ended.
    pub(super) fn reason(&self) -> String {
        self.reason.get().cloned().unwrap_or_else(|| "connection closed".to_owned())
    }
}

/// What the supervisor publishes and callers read. The lock is never held across an await.
pub(super) struct State {
    /// The live connection, if any.
    pub link: Option<Link>,
    /// Why there is none.
    pub down: String,
    /// The generation of the last connection published (0 before the first): while there is no link, the
    /// outage calls fail in — every call between one connection's end and the next one is the same outage.
    pub last_generation: u64,
    /// Connection attempts that failed (spawn, connect, handshake or catalogue), since the start.
    pub failed_attempts: u64,
}

/// Shared between the supervisor and the backend.
pub(super) struct Shared {
    /// Upstream name.
    pub name: String,
    /// Connection state.
    pub state: RwLock<State>,
    /// Called with each new catalogue.
    pub on_catalogue: Box<dyn Fn(Catalogue) + Send + Sync>,
    /// The catalogue last published, under upstream names. Its lock also orders publications.
    pub catalogue: Mutex<Catalogue>,
    /// Moves on each publication ([`Backend::catalogue_changes`](mcpgate_core::Backend::catalogue_changes)).
    pub changes: watch::Sender<u64>,
    /// Keep the last catalogue listed while down (`when_down: error`) instead of hiding it.
    pub keep_listed: bool,
    /// URIs the upstream reported changed (`notifications/resources/updated`).
    pub updates: tokio::sync::broadcast::Sender<String>,
    /// URIs subscribed to, subscribed again on each new connection.
    pub subscribed: Mutex<std::collections::BTreeSet<String>>,
}

impl Shared {
    /// Publish the live connection, or why there is none.
    pub(super) fn set(&self, link: Option<Link>, down: String) {
        let mut state = self.state.write();
        if let Some(link) = &link {
            state.last_generation = link.generation;
        }
        state.link = link;
        state.down = down;
    }

    /// Record a connection attempt that failed, and why.
    pub(super) fn attempt_failed(&self, error: String) {
        let mut state = self.state.write();
        state.failed_attempts += 1;
        state.down = error;
    }

    /// Publish a whole new catalogue (after a connection), or an empty one (the upstream is down past a restart
    /// and its tools are hidden rather than listed and failing, unless `keep_listed`).
    pub(super) fn publish(&self, catalogue: Catalogue) {
        let mut current = self.catalogue.lock();
        *current = catalogue.clone();
        (self.on_catalogue)(catalogue);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Change part of the catalogue (a list the upstream said changed) unless the connection that fetched it
    /// is gone by now, so a late refetch never brings back a dead upstream's tools.
    pub(super) fn update(&self, connection: &CancellationToken, change: impl FnOnce(&mut Catalogue)) {
        let mut current = self.catalogue.lock();
        if connection.is_cancelled() {
            return;
        }
        change(&mut current);
        (self.on_catalogue)(current.clone());
        self.changes.send_modify(|n| *n += 1);
    }
}
