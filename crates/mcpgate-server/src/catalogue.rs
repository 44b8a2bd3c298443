//! The live catalogue: the [`Registry`] in force, replaced whole — never mutated — when a backend's catalogue
//! changes (an upstream reconnected, went down, or announced `list_changed`). Requests take the registry of the
//! moment with one atomic load and keep it for their whole life, so a change never tears a request in two.
//! Legacy sessions and stdio clients hear of each change as `notifications/{tools,prompts,resources}/
//! list_changed`; stateless clients learn from the lists' `ttlMs`.

use std::{
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use arc_swap::ArcSwap;
use rmcp::{Peer, RoleServer};
use tokio_util::sync::CancellationToken;

use crate::registry::{BackendEntry, Registry};

/// Changes arriving together (an upstream's reconnection bumps several lists) are merged into one rebuild.
const SETTLE: Duration = Duration::from_millis(50);

/// The registry in force and the sessions to tell when it changes.
pub struct Catalogue {
    current: ArcSwap<Registry>,
    /// Peers of legacy sessions and stdio clients, told about changes; closed ones are dropped when found.
    listeners: Mutex<Vec<Peer<RoleServer>>>,
    /// One rebuild at a time, so two never race to install their result.
    rebuilding: tokio::sync::Mutex<()>,
}

impl Catalogue {
    /// A catalogue serving `registry`.
    pub fn new(registry: Registry) -> Self {
        Self {
            current: ArcSwap::from_pointee(registry),
            listeners: Mutex::default(),
            rebuilding: tokio::sync::Mutex::default(),
        }
    }

    /// The registry in force.
    pub fn get(&self) -> Arc<Registry> {
        self.current.load_full()
    }

    /// Tell this client about later changes.
    pub(crate) fn listen(&self, peer: Peer<RoleServer>) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        listeners.retain(|p| !p.is_transport_closed());
        listeners.push(peer);
    }

    /// Ask every backend for its catalogue again and put the result in force. A rebuild that fails (two
    /// backends now publish the same name) keeps the catalogue in force and says why.
    pub async fn refresh(&self) -> Result<(), Vec<String>> {
        let _one_at_a_time = self.rebuilding.lock().await;
        let new = Registry::build(self.get().backends().to_vec()).await?;
        self.install(new).await;
        Ok(())
    }

    /// Put `backends` in force instead of the current ones (a reload), keeping the catalogue in force if theirs
    /// does not merge. Returns the registry replaced.
    pub(crate) async fn replace(&self, backends: Vec<BackendEntry>) -> Result<Arc<Registry>, Vec<String>> {
        let _one_at_a_time = self.rebuilding.lock().await;
        let new = Registry::build(backends).await?;
        Ok(self.install(new).await)
    }

    /// Put `new` in force and tell the listening clients what changed; returns the registry replaced.
    async fn install(&self, new: Registry) -> Arc<Registry> {
        let old = self.get();
        let tools = old.wire_tools() != new.wire_tools();
        let prompts = !old.prompts().eq(new.prompts());
        let resources = !old.resources().eq(new.resources()) || !old.templates().eq(new.templates());
        self.current.store(Arc::new(new));
        if tools || prompts || resources {
            tracing::info!(tools, prompts, resources, "catalogue changed");
            self.notify(tools, prompts, resources).await;
        }
        old
    }

    async fn notify(&self, tools: bool, prompts: bool, resources: bool) {
        let listeners: Vec<Peer<RoleServer>> = {
            let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            listeners.retain(|p| !p.is_transport_closed());
            listeners.clone()
        };
        for peer in listeners {
            // A client that has gone away is dropped on the next change; nothing to do about a failed send.
            if tools {
                let _ = peer.notify_tool_list_changed().await;
            }
            if prompts {
                let _ = peer.notify_prompt_list_changed().await;
            }
            if resources {
                let _ = peer.notify_resource_list_changed().await;
            }
        }
    }
}

/// Rebuild `catalogue` whenever `entry`'s backend reports a change, until `stop`.
pub(crate) fn watch_backend(catalogue: &Arc<Catalogue>, entry: &BackendEntry, stop: &CancellationToken) {
    let Some(mut changes) = entry.backend.catalogue_changes() else { return };
    let (weak, stop, name): (Weak<Catalogue>, _, String) =
        (Arc::downgrade(catalogue), stop.clone(), entry.name.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            tokio::time::sleep(SETTLE).await;
            changes.borrow_and_update();
            let Some(catalogue) = weak.upgrade() else { return };
            if let Err(problems) = catalogue.refresh().await {
                tracing::error!(backend = %name, problems = %problems.join("; "), "catalogue change refused; the previous catalogue stays in force");
            }
        }
    });
}
