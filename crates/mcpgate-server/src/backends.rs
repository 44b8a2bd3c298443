//! The backends the config enables, running: started through `mcpgate_backends::start` (every kind, upstreams
//! included), each with its breaker, retries and health checks; kept as they are across a reload that leaves
//! their settings alone.

use std::{collections::HashMap, sync::Arc};

use mcpgate_backends::Facts;
use mcpgate_config::Config;

use mcpgate_core::ScriptRunner;

use crate::{code::CodeMode, errors::StartError, registry::BackendEntry};

/// The backends `config` enables, as registry entries. With `previous` (the config in force and its entries), a
/// backend whose settings and the resilience settings are unchanged is kept as it is (same connection, breaker,
/// health checker); one whose own settings are unchanged keeps its connection under a new breaker.
pub(crate) async fn build(
    config: &Config,
    previous: Option<(&Config, &[BackendEntry])>,
    code: &Arc<CodeMode>,
) -> Result<Vec<BackendEntry>, StartError> {
    let scripts: Arc<dyn ScriptRunner> = code.clone();
    let resilience = &config.resilience;
    let same_resilience = previous.is_some_and(|(old, _)| old.resilience == *resilience);
    let running: HashMap<&str, &BackendEntry> = previous
        .map(|(_, entries)| entries.iter().map(|e| (e.name.as_str(), e)).collect())
        .unwrap_or_default();
    let mut entries = Vec::new();
    let mut started: Vec<BackendEntry> = Vec::new();
    let result = async {
        for (name, source) in config.sources() {
            let unchanged = previous.is_some_and(|(old, _)| old.source(name) == Some(source));
            let kept = running.get(name.as_str()).filter(|_| unchanged);
            if let (Some(entry), true) = (kept, same_resilience) {
                entries.push((*entry).clone());
                continue;
            }
            // Unchanged itself but not the resilience settings: the same connection under a new breaker.
            let backend = match kept {
                Some(entry) => entry.backend.clone(),
                None => mcpgate_backends::start_with(name, source, Some(&scripts)).await?,
            };
            let entry = BackendEntry::started(name, Facts::of(source), backend, resilience);
            if kept.is_none() {
                started.push(entry.clone());
            }
            entries.push(entry);
        }
        Ok::<_, StartError>(())
    }
    .await;
    match result {
        Ok(()) => Ok(entries),
        Err(error) => {
            stop(started.iter().map(|e| e.backend.clone())).await;
            Err(error)
        }
    }
}

/// Shut `backends` down, one after the other.
pub(crate) async fn stop(backends: impl Iterator<Item = Arc<dyn mcpgate_core::Backend>>) {
    for backend in backends {
        backend.shutdown().await;
    }
}
