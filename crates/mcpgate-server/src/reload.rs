//! Reloading the configuration (SIGHUP) without dropping a call. A new config is checked by the caller (the same
//! loading and validation as at start); here it is built — backends whose settings did not change are kept
//! running as they are, new ones started — and then put in force in two atomic swaps: the catalogue, then the
//! [`Live`] settings (keys, limits, the pipeline; what a section left unchanged has cached is kept: rate-limit
//! buckets, cached results, the audit file, the JWT issuer's key set). Requests in flight keep the registry and
//! settings they started with. A config that does not build (a backend fails to start, two backends publish one
//! name) changes nothing: what was started for it is stopped and the error returned, the old config stays in
//! force.

use std::{sync::Arc, time::Duration};

use mcpgate_config::Config;

use crate::{
    errors::StartError,
    gateway::{Gateway, Live, pipeline},
    registry::{BackendEntry, Registry},
};

/// What a reload changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Backends started for the new config.
    pub started: Vec<String>,
    /// Backends kept running as they were.
    pub kept: Vec<String>,
    /// Backends stopped (once the requests using them finish).
    pub stopped: Vec<String>,
    /// Settings that changed but take effect only after a restart.
    pub need_restart: Vec<&'static str>,
}

/// The settings read once at start that a reload cannot change, each with the config path an operator edits;
/// `old` is the config the gateway started with (an earlier reload did not apply them either).
fn need_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let checks: [(&'static str, bool); 16] = [
        ("server.listen", o.listen != n.listen),
        (
            "server.allowed_hosts / allowed_origins",
            o.allowed_hosts != n.allowed_hosts || o.allowed_origins != n.allowed_origins,
        ),
        ("server.max_request_size", o.max_request_size != n.max_request_size),
        (
            "server.session_idle_timeout / session_park_after / max_sessions / max_sessions_per_client",
            o.session_idle_timeout != n.session_idle_timeout
                || o.session_park_after != n.session_park_after
                || o.max_sessions != n.max_sessions
                || o.max_sessions_per_client != n.max_sessions_per_client,
        ),
        ("server.drain_timeout", o.drain_timeout != n.drain_timeout),
        ("server.health_path / workers", o.health_path != n.health_path || o.workers != n.workers),
        (
            "server.header_read_timeout / body_read_timeout / idle_timeout / max_connections",
            o.header_read_timeout != n.header_read_timeout
                || o.body_read_timeout != n.body_read_timeout
                || o.idle_timeout != n.idle_timeout
                || o.max_connections != n.max_connections,
        ),
        ("server.name / instructions", o.name != n.name || o.instructions != n.instructions),
        ("logging", old.logging != new.logging),
        ("metrics", old.metrics != new.metrics),
        ("telemetry", old.telemetry != new.telemetry),
        ("server.compression", o.compression != n.compression),
        ("state", old.state != new.state),
        ("rest", old.rest != new.rest),
        ("ui", old.ui != new.ui),
        ("chat", old.chat != new.chat),
    ];
    checks.into_iter().filter(|(_, changed)| *changed).map(|(path, _)| path).collect()
}

impl Gateway {
    /// Reload with what loading the config again gave (`Err`: why it did not load or validate), log the
    /// outcome and count it for `/status`. Whatever fails, the config in force stays.
    pub async fn reload_with(&self, loaded: Result<Config, String>) -> Result<Reloaded, String> {
        let result = match loaded {
            Ok(config) => self.reload(config).await.map_err(|e| e.to_string()),
            Err(error) => Err(error),
        };
        // SIGHUP is also the log-rotation signal: the audit log in force opens its path again, whatever became
        // of the config.
        if let Some(audit) = &self.live().audit
            && let Err(error) = audit.reopen()
        {
            tracing::error!(%error, "cannot reopen the audit log; lines keep going to the file open before");
        }
        match &result {
            Ok(r) => tracing::info!(
                started = ?r.started, kept = r.kept.len(), stopped = ?r.stopped, "configuration reloaded"
            ),
            Err(error) => {
                tracing::error!(%error, "configuration reload refused; the previous configuration stays in force")
            }
        }
        if let Ok(r) = &result
            && !r.need_restart.is_empty()
        {
            tracing::warn!(settings = ?r.need_restart, "changed settings take effect only after a restart");
        }
        self.reloads.lock().record(result.as_ref().map(|_| ()).map_err(Clone::clone));
        result
    }

    /// Put `config` (already loaded and validated) in force without dropping a call: see the module docs. On
    /// error the config in force is unchanged.
    pub async fn reload(&self, config: Config) -> Result<Reloaded, StartError> {
        let _one_at_a_time = self.reloading.lock().await;
        let live = self.live();
        let old_registry = self.registry();
        let mut access =
            crate::auth::Access::new(&config.security, &config.code_mode).map_err(StartError::Security)?;
        access.keep_caches(&live.access);
        let access = Arc::new(access);
        let (pipeline, audit) =
            pipeline(&config, &self.state, &self.metrics, self.recent.as_ref(), Some(&live))?;
        let entries =
            crate::backends::build(&config, Some((&live.config, old_registry.backends())), &self.code)
                .await?;
        let keep = |entry: &BackendEntry| {
            old_registry.backends().iter().any(|old| Arc::ptr_eq(&old.backend, &entry.backend))
        };
        let mut reloaded =
            Reloaded { need_restart: need_restart(&self.config, &config), ..Reloaded::default() };
        for entry in &entries {
            let list = if keep(entry) { &mut reloaded.kept } else { &mut reloaded.started };
            list.push(entry.name.clone());
        }
        let removed: Vec<BackendEntry> = old_registry
            .backends()
            .iter()
            .filter(|old| !entries.iter().any(|new| Arc::ptr_eq(&old.backend, &new.backend)))
            .cloned()
            .collect();
        let fresh: Vec<BackendEntry> = entries.iter().filter(|e| !keep(e)).cloned().collect();
        let watched_again: Vec<BackendEntry> = entries
            .iter()
            .filter(|e| {
                keep(e) && !old_registry.backends().iter().any(|old| Arc::ptr_eq(&old.breaker, &e.breaker))
            })
            .cloned()
            .collect();
        let replaced = match self.catalogue.replace(entries).await {
            Ok(replaced) => replaced,
            Err(problems) => {
                crate::backends::stop(fresh.iter().map(|e| e.backend.clone())).await;
                return Err(StartError::Catalogue(problems));
            }
        };
        self.registry().prime_metrics(|name| self.metrics.tool(name));
        self.live.store(Arc::new(Live { config: Arc::new(config), pipeline, access, audit }));
        {
            let mut watchers = self.watchers.lock();
            for entry in &removed {
                watchers.remove(&entry.name);
            }
        }
        // A kept backend under a new breaker gets new watchers (its health checker feeds the breaker).
        for entry in fresh.iter().chain(&watched_again) {
            self.watch(entry);
        }
        reloaded.stopped = removed.iter().map(|e| e.name.clone()).collect();
        if !removed.is_empty() {
            let drain = self.config.server.drain_timeout.0;
            tokio::spawn(retire(replaced, removed, drain));
        }
        Ok(reloaded)
    }
}

/// Shut down backends a reload removed, once the requests holding the registry they were in have finished (at
/// most `drain` later). Requests that started before an earlier catalogue change may still hold an older
/// registry; the bound covers them.
async fn retire(replaced: Arc<Registry>, removed: Vec<BackendEntry>, drain: Duration) {
    let until = tokio::time::Instant::now() + drain;
    while Arc::strong_count(&replaced) > 1 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(replaced);
    for entry in removed {
        tracing::info!(backend = %entry.name, "stopping a backend the reload removed");
        entry.backend.shutdown().await;
    }
}
