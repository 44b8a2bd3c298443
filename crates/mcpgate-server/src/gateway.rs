//! The shared state of a running gateway: its configuration, catalogue and pipeline.

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::SystemTime,
};

use mcpgate_config::Config;
use mcpgate_policy::{Backoff, HealthChecker, Pipeline, RateLimiter};
use rmcp::model::RequestStateCodec;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    catalogue::{Catalogue, watch_backends},
    metrics::Metrics,
    registry::{BackendEntry, Registry, RegistryHandle},
    subscriptions::{Subscriptions, watch_updates},
};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A backend could not be built.
    #[error(transparent)]
    Backend(#[from] mcpgate_backends::BuildError),
    /// The merged catalogue is inconsistent (collisions).
    #[error("catalogue problems:\n  {}", .0.join("\n  "))]
    Catalogue(Vec<String>),
    /// An internal component failed to initialise.
    #[error("internal: {0}")]
    Internal(String),
    /// The `security` section cannot be used (a config that skipped validation).
    #[error("security: {0}")]
    Security(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Everything request handlers share.
pub struct Gateway {
    /// The configuration in force.
    pub config: Config,
    /// The catalogue: the registry in force, replaced when a backend's catalogue changes.
    pub catalogue: Arc<Catalogue>,
    /// The per-call pipeline.
    pub pipeline: Pipeline,
    /// Seals `requestState` of multi-round calls so a client cannot forge it.
    pub request_state: RequestStateCodec,
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
    pub metrics: Metrics,
    /// The `security` section, prepared: who may use `/mcp`, and from where.
    pub(crate) access: Arc<crate::auth::Access>,
    /// Legacy sessions' resource subscriptions.
    pub subscriptions: Arc<Subscriptions>,
}

impl Gateway {
    /// Build every enabled backend and the catalogue.
    pub async fn build(config: Config) -> Result<Arc<Self>, StartError> {
        let resilience = &config.resilience;
        let mut entries = Vec::new();
        for (name, backend) in config.backends.iter().filter(|(_, b)| b.enabled()) {
            let built = mcpgate_backends::build(name, backend).await?;
            entries.push(BackendEntry::new(name, backend.kind(), built, resilience));
        }
        for (name, upstream) in config.all_upstreams().filter(|(_, u)| u.enabled) {
            let started = mcpgate_backends::upstream::Upstream::start(name, upstream)
                .await
                .map_err(|message| mcpgate_backends::BuildError { name: name.clone(), message })?;
            let mut entry = BackendEntry::new(name, "upstream", Arc::new(started), resilience);
            entry.health = Some(HealthChecker::new(
                entry.backend.clone(),
                upstream.health_check_interval.0,
                Some(entry.breaker.clone()),
            ));
            entry.max_retries = upstream.max_retries;
            entry.required = upstream.required;
            entries.push(entry);
        }
        Self::with_backends(config, entries).await
    }

    /// A gateway serving `backends` (already running) with `config`'s server settings: for embedding and
    /// tests. The config's own `backends` and `upstreams` are not built.
    pub async fn with_backends(config: Config, backends: Vec<BackendEntry>) -> Result<Arc<Self>, StartError> {
        let registry = Registry::build(backends).await.map_err(StartError::Catalogue)?;
        let resilience = &config.resilience;
        let rate_limiter = RateLimiter::from_config(&config.rate_limits).map_err(StartError::Internal)?;
        let pipeline = Pipeline::new(config.server.request_timeout.0)
            .with_backoff(Backoff::new(resilience.retry_backoff_base.0, resilience.retry_backoff_max.0))
            .with_rate_limits(rate_limiter);
        let server_info = crate::handler::server_info(&config.server).map_err(StartError::Internal)?;
        let access = Arc::new(crate::auth::Access::new(&config.security).map_err(StartError::Security)?);
        let shutdown = CancellationToken::new();
        let checkers: Vec<_> =
            registry.backends().iter().filter_map(|e| e.health.as_ref().map(|h| h.spawn())).collect();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            checkers.iter().for_each(|checker| checker.abort());
        });
        let catalogue = Arc::new(Catalogue::new(registry));
        watch_backends(&catalogue, &shutdown);
        let subscriptions = Arc::new(Subscriptions::default());
        watch_updates(&catalogue, &subscriptions, &shutdown);
        let metrics = Metrics::new(catalogue.clone());
        metrics.prime(&catalogue.get());
        Ok(Arc::new(Self {
            config,
            catalogue,
            pipeline,
            request_state: RequestStateCodec::try_new(random_key())
                .map_err(|e| StartError::Internal(e.to_string()))?,
            started_at: SystemTime::now(),
            started: Instant::now(),
            shutdown,
            server_info,
            fast_path_calls: AtomicU64::new(0),
            metrics,
            access,
            subscriptions,
        }))
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

/// 32 random bytes from the OS generator (through UUID v4, already a dependency).
fn random_key() -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}
