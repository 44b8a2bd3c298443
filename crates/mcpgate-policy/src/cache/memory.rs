//! The in-process store: a moka cache bounded by its entries' weight (their size in bytes, roughly), least
//! frequently and recently used first out (TinyLFU), each entry expiring after its own TTL.

use std::time::Duration;

use async_trait::async_trait;
use moka::{Expiry, sync::Cache};
use tokio::time::Instant;

use super::{CacheKey, CacheStore, CacheUsage, CachedResult};

/// Cached results in this process.
#[derive(Debug)]
pub struct MemoryCache {
    entries: Cache<CacheKey, CachedResult>,
}

impl MemoryCache {
    /// A store holding at most `max_bytes` of results (by [`CachedResult::size`]).
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &CacheKey, entry: &CachedResult| entry.size)
            .expire_after(OwnTtl)
            .build();
        Self { entries }
    }

    /// Apply pending evictions now (moka applies them in batches, on later calls).
    #[cfg(test)]
    pub(crate) fn settle(&self) {
        self.entries.run_pending_tasks();
    }
}

/// Each entry leaves moka after its own TTL, by moka's clock: that only reclaims memory. Freshness is decided in
/// [`MemoryCache::get`] by the tokio clock, which tests can pause.
struct OwnTtl;

impl Expiry<CacheKey, CachedResult> for OwnTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        entry: &CachedResult,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        entry: &CachedResult,
        _updated_at: std::time::Instant,
        _until_now: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

#[async_trait]
impl CacheStore for MemoryCache {
    async fn get(&self, key: &CacheKey, now: Instant) -> Option<CachedResult> {
        let entry = self.entries.get(key)?;
        if entry.expires > now {
            Some(entry)
        } else {
            self.entries.invalidate(key);
            None
        }
    }

    async fn put(&self, key: CacheKey, entry: CachedResult) {
        self.entries.insert(key, entry);
    }

    fn usage(&self) -> CacheUsage {
        // moka counts lazily: apply what is pending first, so the numbers are current (cheap; /status only).
        self.entries.run_pending_tasks();
        CacheUsage { entries: self.entries.entry_count(), bytes: self.entries.weighted_size() }
    }
}
