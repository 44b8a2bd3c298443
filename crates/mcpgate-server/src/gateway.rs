//! The shared state of a running gateway: its configuration, catalogue and pipeline.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::AtomicU64},
    time::SystemTime,
};

use arc_swap::ArcSwap;
use mcpgate_config::Config;
use mcpgate_policy::{AuditLog, Backoff, Pipeline, RateLimiter};
use mcpgate_state::StateBackend;
use rmcp::model::RequestStateCodec;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use mcpgate_backends::BackendKind;
use mcpgate_core::BackendHealth;
use mcpgate_policy::BreakerPhase;

use crate::{
    catalogue::{Catalogue, watch_backend},
    errors::StartError,
    metrics::{BackendReading, Metrics, Readings},
    registry::{BackendEntry, Registry, RegistryHandle},
    subscriptions::{Subscriptions, watch_updates},
};

/// What a reload replaces as one piece: the configuration and everything prepared from it that applies per
/// request. A request takes the `Live` of the moment ([`Gateway::live`]) and keeps it, so it never sees half of
/// a reload.
pub struct Live {
    /// The configuration in force (the latest that loaded and built).
    pub config: Arc<Config>,
    /// The per-call pipeline.
    pub pipeline: Pipeline,
    /// The `security` section, prepared: who may use `/mcp`, and from where.
    pub(crate) access: Arc<crate::auth::Access>,
    /// The audit log, when `audit.file` is set (also one of the pipeline's observers).
    pub(crate) audit: Option<Arc<AuditLog>>,
}

/// Everything request handlers share.
pub struct Gateway {
    /// The configuration the gateway started with. What a reload cannot change (the listener, the metrics
    /// port, session and drain timeouts, allowed hosts and origins) is read here; the rest from [`Gateway::live`].
    pub config: Config,
    /// The catalogue: the registry in force, replaced when a backend's catalogue changes or a reload changes
    /// the backends.
    pub catalogue: Arc<Catalogue>,
    /// The configuration in force and what is prepared from it; replaced whole by a reload.
    pub(crate) live: ArcSwap<Live>,
    /// Seals `requestState` of multi-round calls so a client cannot forge it (with the state's sealing key).
    pub request_state: RequestStateCodec,
    /// Where rate-limit buckets and cached results live, chosen once from the config.
    pub state: StateBackend,
    /// When the process started serving.
    pub started_at: SystemTime,
    /// Monotonic start, for uptime.
    pub started: Instant,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
    /// What `initialize` and `server/discover` report, built once.
    pub server_info: rmcp::model::ServerConfig,
    /// Calls answered on the stateless fast path (shown in `/status`).
    pub fast_path_calls: AtomicU64,
    /// Prometheus metrics, recorded whether or not they are served.
    pub metrics: Arc<Metrics>,
    /// Legacy sessions' resource subscriptions.
    pub subscriptions: Arc<Subscriptions>,
    /// The tasks that watch each backend (catalogue changes, resource updates, health checks), by backend name;
    /// a reload stops those of the backends it removes.
    pub(crate) watchers: parking_lot::Mutex<HashMap<String, BackendWatch>>,
    /// One reload at a time.
    pub(crate) reloading: tokio::sync::Mutex<()>,
    /// Reloads so far, for `/status`.
    pub(crate) reloads: parking_lot::Mutex<ReloadLog>,
    /// Code mode: its sandbox and what it remembers.
    pub(crate) code: Arc<crate::code::CodeMode>,
    /// The legacy sessions of the HTTP server, once it serves.
    pub(crate) sessions: std::sync::OnceLock<std::sync::Weak<crate::sessions::Sessions>>,
    /// The last tool calls, for the admin page (one of the pipeline's observers); `None` while it is off.
    pub(crate) recent: Option<Arc<crate::recent::RecentCalls>>,
}

impl Gateway {
    /// Build every enabled backend and the catalogue.
    pub async fn build(config: Config) -> Result<Arc<Self>, StartError> {
        let code = Arc::new(crate::code::CodeMode::new(&config));
        let entries = crate::backends::build(&config, None, &code).await?;
        Self::assemble(config, entries, code).await
    }

    /// A gateway serving `backends` (already running) with `config`'s server settings: for embedding and
    /// tests. The config's own `backends` and `upstreams` are not built.
    pub async fn with_backends(config: Config, backends: Vec<BackendEntry>) -> Result<Arc<Self>, StartError> {
        let code = Arc::new(crate::code::CodeMode::new(&config));
        Self::assemble(config, backends, code).await
    }

    /// The gateway serving `backends` with `config`, its code mode `code` (which script backends may already
    /// hold) attached to it.
    async fn assemble(
        config: Config,
        backends: Vec<BackendEntry>,
        code: Arc<crate::code::CodeMode>,
    ) -> Result<Arc<Self>, StartError> {
        let registry = Registry::build(backends).await.map_err(StartError::Catalogue)?;
        let server_info = crate::protocol::server_info(&config.server).map_err(StartError::Internal)?;
        let access = Arc::new(
            crate::auth::Access::new(&config.security, &config.code_mode).map_err(StartError::Security)?,
        );
        let shutdown = CancellationToken::new();
        let catalogue = Arc::new(Catalogue::new(registry));
        let subscriptions = Arc::new(Subscriptions::default());
        let metrics = Arc::new(Metrics::new());
        catalogue.get().prime_metrics(|name| metrics.tool(name));
        let state = StateBackend::from_config(&config).map_err(StartError::Internal)?;
        let recent =
            config.ui.enabled.then(|| Arc::new(crate::recent::RecentCalls::new(config.ui.recent_calls)));
        let (pipeline, audit) = pipeline(&config, &state, &metrics, recent.as_ref(), None)?;
        let live = Live { config: Arc::new(config.clone()), pipeline, access, audit };
        let request_state = RequestStateCodec::try_new(state.seal_key().bytes().to_vec())
            .map_err(|e| StartError::Internal(e.to_string()))?;
        let gateway = Arc::new(Self {
            config,
            catalogue,
            live: ArcSwap::from_pointee(live),
            request_state,
            state,
            started_at: SystemTime::now(),
            started: Instant::now(),
            shutdown,
            server_info,
            fast_path_calls: AtomicU64::new(0),
            metrics,
            subscriptions,
            watchers: parking_lot::Mutex::default(),
            reloading: tokio::sync::Mutex::default(),
            reloads: parking_lot::Mutex::default(),
            sessions: std::sync::OnceLock::new(),
            recent,
            code,
        });
        gateway.code.attach(&gateway);
        for entry in gateway.registry().backends() {
            gateway.watch(entry);
        }
        let readings: std::sync::Weak<Gateway> = Arc::downgrade(&gateway);
        gateway.metrics.read_from(readings);
        Ok(gateway)
    }

    /// The gateway's record of legacy session `id`, when it serves HTTP and the session exists.
    pub(crate) fn session(&self, id: &str) -> Option<Arc<crate::sessions::Session>> {
        self.sessions.get().and_then(std::sync::Weak::upgrade).and_then(|sessions| sessions.get(id))
    }

    /// What the nodes share of legacy session `id`, when it is shared (sealed, with shared state).
    pub(crate) fn shared_session(&self, id: &str) -> Option<&mcpgate_state::SharedSessions> {
        self.session(id).filter(|session| session.is_shared())?;
        self.state.sessions()
    }

    /// Watch resource `uri` for session `key`, its updates going to `peer`: the backend owning it is asked when
    /// this is its first watcher. Failures are logged: the caller has no one to answer.
    pub(crate) async fn watch_resource(&self, uri: &str, key: &str, peer: Arc<dyn mcpgate_core::ClientPeer>) {
        let registry = self.registry();
        let Some(owner) = registry.resource_owner(uri).await else {
            tracing::debug!(%uri, "a shared subscription names no resource of this node's catalogue");
            return;
        };
        let entry = &registry.backends()[owner];
        if self.subscriptions.add(uri, key, peer)
            && let Err(e) = entry.backend.subscribe(uri).await
        {
            self.subscriptions.remove(uri, key);
            tracing::warn!(%uri, backend = %entry.name, "cannot watch a shared subscription: {e}");
        }
    }

    /// Stop watching resource `uri` for session `key`; the backend is told when that was its last watcher.
    pub(crate) async fn unwatch_resource(&self, uri: &str, key: &str) {
        if self.subscriptions.remove(uri, key) {
            let registry = self.registry();
            if let Some(owner) = registry.resource_owner(uri).await
                && let Err(e) = registry.backends()[owner].backend.unsubscribe(uri).await
            {
                tracing::debug!(%uri, "cannot unsubscribe: {e}");
            }
        }
    }

    /// The configuration in force and what is prepared from it; hold it for the whole of a request.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Start the tasks that watch `entry`: its catalogue changes, its resource updates, its health checks. They
    /// end with the gateway, or when a reload removes the backend.
    pub(crate) fn watch(&self, entry: &BackendEntry) {
        let stop = self.shutdown.child_token();
        watch_backend(&self.catalogue, entry, &stop);
        watch_updates(entry, &self.subscriptions, &stop);
        let health = entry.health.as_ref().map(|checker| checker.spawn());
        let previous = self.watchers.lock().insert(entry.name.clone(), BackendWatch { stop, health });
        drop(previous);
    }

    /// The `Live` a request took at the door of `/mcp` (the key check puts it in the request's extensions), so
    /// its layers and its handler see one configuration even when a reload lands meanwhile; the one in force for
    /// what came in through no door (stdio).
    pub(crate) fn live_of(&self, extensions: &http::Extensions) -> Arc<Live> {
        extensions.get::<Arc<Live>>().cloned().unwrap_or_else(|| self.live())
    }

    /// The registry in force; hold it for the whole of a request.
    pub fn registry(&self) -> RegistryHandle {
        self.catalogue.get()
    }

    /// Release every backend's resources.
    pub async fn shutdown_backends(&self) {
        for entry in self.registry().backends() {
            entry.backend.shutdown().await;
        }
    }
}

/// Reloads so far, for `/status`.
#[derive(Debug, Default)]
pub(crate) struct ReloadLog {
    succeeded: u64,
    failed: u64,
    last: Option<(std::time::SystemTime, Result<(), String>)>,
}

impl ReloadLog {
    /// Count a reload that ended with `result`, now.
    pub(crate) fn record(&mut self, result: Result<(), String>) {
        match &result {
            Ok(()) => self.succeeded += 1,
            Err(_) => self.failed += 1,
        }
        self.last = Some((std::time::SystemTime::now(), result));
    }

    /// `/status`'s `reloads`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let last = self.last.as_ref().map(|(at, result)| {
            serde_json::json!({
                "at": humantime::format_rfc3339_seconds(*at).to_string(),
                "ok": result.is_ok(),
                "error": result.as_ref().err(),
            })
        });
        serde_json::json!({ "succeeded": self.succeeded, "failed": self.failed, "last": last })
    }
}

/// What `/metrics` reads when scraped: the backends of the catalogue in force, as `/status` shows them, and the
/// legacy sessions open.
impl Readings for Gateway {
    fn backends(&self) -> Vec<BackendReading> {
        let registry = self.registry();
        let readings = registry.backends().iter().map(|entry| {
            let phase = entry.breaker.snapshot().phase;
            let up = (entry.kind == BackendKind::Upstream)
                .then(|| match (phase, entry.health.as_ref().and_then(|health| health.last())) {
                    (BreakerPhase::Open, _) => Some(false),
                    (_, Some(last)) => Some(last.health == BackendHealth::Up),
                    (_, None) => None,
                })
                .flatten();
            BackendReading { name: entry.name.clone(), phase, up }
        });
        readings.collect()
    }

    fn sessions(&self) -> (usize, usize) {
        let sessions = self.sessions.get().and_then(std::sync::Weak::upgrade);
        sessions.map_or((0, 0), |sessions| (sessions.len(), sessions.workers()))
    }

    fn state(&self) -> (&'static str, bool) {
        (self.state.kind().as_str(), self.state.is_up())
    }
}

/// The tasks watching one backend; dropping this stops them.
pub(crate) struct BackendWatch {
    stop: CancellationToken,
    health: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for BackendWatch {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(health) = &self.health {
            health.abort();
        }
    }
}

/// The per-call pipeline `config` asks for: its deadline, backoff, limits and observers (metrics, the audit log,
/// returned too, and the admin page's `recent` calls). Built at start and again by every reload, which passes the settings in force as `previous`: a
/// rate limiter, cache, budget or audit log whose section did not change is kept as it is (buckets, cached
/// results, the loaded tokenizer, the open file).
pub(crate) fn pipeline(
    config: &Config,
    state: &StateBackend,
    metrics: &Metrics,
    recent: Option<&Arc<crate::recent::RecentCalls>>,
    previous: Option<&Live>,
) -> Result<(Pipeline, Option<Arc<AuditLog>>), StartError> {
    let resilience = &config.resilience;
    let kept = |same: fn(&Config, &Config) -> bool| previous.filter(|live| same(&live.config, config));
    let rate_limiter = match kept(|a, b| a.rate_limits == b.rate_limits) {
        Some(live) => live.pipeline.rate_limiter().cloned(),
        None => RateLimiter::with_store(&config.rate_limits, || state.rate_store())
            .map_err(StartError::Internal)?,
    };
    let cache = match kept(|a, b| a.cache == b.cache) {
        Some(live) => live.pipeline.cache().cloned(),
        None => mcpgate_policy::ResultCache::with_store(&config.cache, || state.cache_store(&config.cache)),
    };
    let budget = match kept(|a, b| a.budget == b.budget) {
        Some(live) => live.pipeline.budget().cloned(),
        None => mcpgate_policy::Budget::from_config(&config.budget),
    };
    let audit = match kept(|a, b| a.audit == b.audit) {
        Some(live) => live.audit.clone(),
        None => AuditLog::open(&config.audit, metrics.audit_counters()).map_err(|e| {
            let file = config.audit.file.as_deref().unwrap_or(std::path::Path::new("")).display();
            StartError::Audit(format!("{file}: cannot open for appending: {e}"))
        })?,
    };
    let mut pipeline = Pipeline::new(config.server.request_timeout.0)
        .with_backoff(Backoff::new(resilience.retry_backoff_base.0, resilience.retry_backoff_max.0))
        .with_rate_limits(rate_limiter)
        .with_cache(cache)
        .with_budget(budget)
        .with_observer(metrics.call_observer());
    if let Some(audit) = &audit {
        pipeline = pipeline.with_observer(audit.clone());
    }
    if let Some(recent) = recent {
        pipeline = pipeline.with_observer(recent.clone());
    }
    Ok((pipeline, audit))
}
