//! Where mcpgate keeps what outlives one request: the stores behind the policy's rate limits and result cache,
//! and the key that seals what the gateway hands a client to give back.
//!
//! [`StateBackend`] is built once, from the config, and is the only place that chooses the stores'
//! implementation: the pipeline asks it for a rate store and a cache store instead of naming one, and `/ready`
//! asks it how they are. In memory (the default) each limiter and each cache gets a store of its own, in this
//! process; a shared backend (Redis, for many nodes) will hand every one the same connection. The store traits
//! stay beside the algorithms that use them (`mcpgate_policy::{RateStore, CacheStore}`); their implementations
//! and their choice live here.

use std::sync::Arc;

use mcpgate_config::{CacheConfig, Config};
use mcpgate_policy::{CacheStore, MemoryCache, MemoryStore, RateStore, StoreHealth};

/// Which kind of state a gateway keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// In this process: one node needs nothing else.
    Memory,
}

impl Kind {
    /// Its name in `/status` and `/ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
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
    kind: Kind,
    seal_key: SealKey,
}

impl StateBackend {
    /// The state `config` asks for.
    pub fn from_config(config: &Config) -> Self {
        let seal_key = SealKey::from_config(config);
        if !seal_key.is_shared() {
            tracing::info!(
                "MCPGATE_SEAL_KEY is unset: multi-round requestState is sealed with a key of this process; set the \
                 same key on every node when several serve one endpoint"
            );
        }
        Self { kind: Kind::Memory, seal_key }
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The sealing key.
    pub fn seal_key(&self) -> &SealKey {
        &self.seal_key
    }

    /// A store for a rate limiter's buckets.
    pub fn rate_store(&self) -> Arc<dyn RateStore> {
        match self.kind {
            Kind::Memory => Arc::new(MemoryStore::new()),
        }
    }

    /// A store for the result cache `config` describes (its size bound).
    pub fn cache_store(&self, config: &CacheConfig) -> Arc<dyn CacheStore> {
        match self.kind {
            Kind::Memory => Arc::new(MemoryCache::new(config.max_size.0)),
        }
    }

    /// How each store is, by concern, for `/ready` and `/status`.
    pub async fn health(&self) -> Vec<(&'static str, StoreHealth)> {
        match self.kind {
            // Memory cannot be out of reach.
            Kind::Memory => vec![("rate_limits", StoreHealth::Up), ("cache", StoreHealth::Up)],
        }
    }
}

#[cfg(test)]
mod tests {
    use mcpgate_config::Secret;

    use super::*;

    #[test]
    fn the_seal_key_is_the_configured_one_or_a_fresh_one() {
        let mut config = Config::default();
        let (a, b) = (StateBackend::from_config(&config), StateBackend::from_config(&config));
        assert!(!a.seal_key().is_shared() && a.seal_key().bytes().len() == 32);
        assert_ne!(a.seal_key().bytes(), b.seal_key().bytes(), "per process, random");
        config.security.seal_key = Some(Secret::new("k".repeat(40)));
        let (a, b) = (StateBackend::from_config(&config), StateBackend::from_config(&config));
        assert!(a.seal_key().is_shared());
        assert_eq!(a.seal_key().bytes(), b.seal_key().bytes());
        assert!(!format!("{a:?}").contains("kkkk"), "never printed");
    }

    #[tokio::test]
    async fn memory_state_is_up_and_hands_out_its_own_stores() {
        let state = StateBackend::from_config(&Config::default());
        assert_eq!(state.kind().as_str(), "memory");
        assert!(state.health().await.iter().all(|(_, health)| *health == StoreHealth::Up));
        let (a, b) = (state.rate_store(), state.rate_store());
        assert!(!Arc::ptr_eq(&a, &b), "each limiter its own buckets in memory");
        assert_eq!(a.health().await, StoreHealth::Up);
    }
}
