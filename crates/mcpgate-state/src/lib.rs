//! Where mcpgate keeps what outlives one request: the stores behind the policy's rate limits and result cache,
//! and the key that seals what the gateway hands a client to give back.
//!
//! [`StateBackend`] is built once, from the config, and is the only place that chooses the stores'
//! implementation: the pipeline asks it for a rate store and a cache store instead of naming one, and `/ready`
//! asks it how they are. In memory (the default) each limiter and each cache gets a store of its own, in this
//! process; with Redis (`state.backend: redis`, for many nodes) every store shares this node's one link to Redis,
//! and every node's stores share the same keys. The store traits stay beside the algorithms that use them
//! (`mcpgate_policy::{RateStore, CacheStore}`); their implementations and their choice live here.

mod redis;

pub use redis::{Heard, Life, SharedSessions};

use std::sync::Arc;

use mcpgate_config::{CacheConfig, Config, StateBackendKind, StateConfig};
use mcpgate_policy::{CacheStore, MemoryCache, MemoryStore, RateStore, StoreHealth};

/// Which kind of state a gateway keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// In this process: one node needs nothing else.
    Memory,
    /// In Redis, shared by every node.
    Redis,
}

impl Kind {
    /// Its name in `/status` and `/ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

/// The key that seals what a client carries between requests (a 2026-07-28 multi-round call's `requestState`).
#[derive(Clone)]
pub struct SealKey {
    bytes: Arc<[u8]>,
    /// Whether it came from the configuration (every node shares it) or was made for this process.
    shared: bool,
}

impl SealKey {
    /// `MCPGATE_SEAL_KEY` when set; else 32 random bytes of this process's own.
    fn from_config(config: &Config) -> Self {
        match &config.security.seal_key {
            Some(key) => Self { bytes: key.expose().as_bytes().into(), shared: true },
            None => {
                let mut bytes = Vec::with_capacity(32);
                bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
                bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
                Self { bytes: bytes.into(), shared: false }
            }
        }
    }

    /// The key.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether every node configured alike has the same key (it came from `MCPGATE_SEAL_KEY`).
    pub fn is_shared(&self) -> bool {
        self.shared
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey").field("shared", &self.shared).finish_non_exhaustive()
    }
}

/// The stores of one gateway, chosen once from its config.
#[derive(Debug, Clone)]
pub struct StateBackend {
    seal_key: SealKey,
    /// The `state` section it was built from (a reload does not rebuild it).
    config: StateConfig,
    /// This node's link to Redis, for `backend: redis`.
    link: Option<Arc<redis::Link>>,
    /// What the nodes share about legacy sessions, for `backend: redis`.
    sessions: Option<SharedSessions>,
}

impl StateBackend {
    /// The state `config` asks for. With Redis, the link starts connecting in the background (a node starts
    /// whether Redis answers or not); must be called within a tokio runtime then. Fails on a Redis setting the
    /// client refuses.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let seal_key = SealKey::from_config(config);
        let state = config.state.clone();
        let link = match state.backend {
            StateBackendKind::Memory => None,
            StateBackendKind::Redis => Some(redis::Link::start(&state)?),
        };
        if !seal_key.is_shared() {
            let why = if link.is_some() {
                "the nodes sharing this Redis will refuse each other's multi-round retries"
            } else {
                "set the same key on every node when several serve one endpoint"
            };
            tracing::info!(
                "MCPGATE_SEAL_KEY is unset: multi-round requestState is sealed with a key of this process; {why}"
            );
        }
        let sessions = link.as_ref().map(|link| {
            SharedSessions::start(link.clone(), &state.key_prefix, config.server.session_idle_timeout.0)
        });
        Ok(Self { seal_key, config: state, link, sessions })
    }

    /// What the nodes share about legacy sessions: `None` in memory (one node has them all).
    pub fn sessions(&self) -> Option<&SharedSessions> {
        self.sessions.as_ref()
    }

    /// Whether the shared store answers (always, in memory).
    pub fn is_up(&self) -> bool {
        self.link.as_ref().is_none_or(|link| link.is_up())
    }

    /// Whether `/ready` fails while the shared store cannot be reached (`state.required`).
    pub fn required(&self) -> bool {
        self.config.required
    }

    /// Where the shared store is, for `/status` (never a password).
    pub fn location(&self) -> Option<&str> {
        self.link.as_deref().map(|link| link.describe.as_str())
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        if self.link.is_some() { Kind::Redis } else { Kind::Memory }
    }

    /// The sealing key.
    pub fn seal_key(&self) -> &SealKey {
        &self.seal_key
    }

    /// A store for a rate limiter's buckets.
    pub fn rate_store(&self) -> Arc<dyn RateStore> {
        match &self.link {
            None => Arc::new(MemoryStore::new()),
            Some(link) => Arc::new(redis::RedisRates::new(
                link.clone(),
                &self.config.key_prefix,
                self.config.on_unavailable.rate_limits,
            )),
        }
    }

    /// A store for the result cache `config` describes (its size bound).
    pub fn cache_store(&self, config: &CacheConfig) -> Arc<dyn CacheStore> {
        match &self.link {
            None => Arc::new(MemoryCache::new(config.max_size.0)),
            Some(link) => {
                Arc::new(redis::RedisCache::new(link.clone(), &self.config.key_prefix, config.max_size.0))
            }
        }
    }

    /// How the stores are, for `/ready` and `/status`: memory cannot be out of reach; Redis is one link for
    /// every concern.
    pub async fn health(&self) -> StoreHealth {
        self.link.as_ref().map_or(StoreHealth::Up, |link| link.health())
    }
}

#[cfg(test)]
mod tests {
    use mcpgate_config::Secret;

    use super::*;

    #[test]
    fn the_seal_key_is_the_configured_one_or_a_fresh_one() {
        let mut config = Config::default();
        let (a, b) =
            (StateBackend::from_config(&config).unwrap(), StateBackend::from_config(&config).unwrap());
        assert!(!a.seal_key().is_shared() && a.seal_key().bytes().len() == 32);
        assert_ne!(a.seal_key().bytes(), b.seal_key().bytes(), "per process, random");
        config.security.seal_key = Some(Secret::new("k".repeat(40)));
        let (a, b) =
            (StateBackend::from_config(&config).unwrap(), StateBackend::from_config(&config).unwrap());
        assert!(a.seal_key().is_shared());
        assert_eq!(a.seal_key().bytes(), b.seal_key().bytes());
        assert!(!format!("{a:?}").contains("kkkk"), "never printed");
    }

    #[tokio::test]
    async fn memory_state_is_up_and_hands_out_its_own_stores() {
        let state = StateBackend::from_config(&Config::default()).unwrap();
        assert_eq!(state.kind().as_str(), "memory");
        assert_eq!(state.health().await, StoreHealth::Up);
        let (a, b) = (state.rate_store(), state.rate_store());
        assert!(!Arc::ptr_eq(&a, &b), "each limiter its own buckets in memory");
        assert_eq!(a.health().await, StoreHealth::Up);
    }
}
