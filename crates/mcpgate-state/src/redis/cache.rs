//! Cached results in Redis, shared by every node: a result one node stored is a hit on any other.
//!
//! An entry is one string key with a Redis TTL (the rule's, or an upstream's shorter `ttlMs`), named by a SHA-256
//! of its tool, principal and canonical arguments, and holding them beside the result so a lookup compares the
//! whole key. A lookup is one `GET`. Storing runs one script that also keeps the size bound across nodes: it
//! files the entry in an index by expiry with its size, drops what has expired from the index, and while the
//! total is over `cache.max_size` evicts the entries nearest their expiry. Every key carries the hash tag `{c}`,
//! so the script runs unchanged on Redis Cluster. Operators should still give Redis a `maxmemory` with
//! `allkeys-lru`, so that Redis itself never refuses a write.
//!
//! While Redis cannot be reached the cache is bypassed: every lookup misses and nothing is stored. A burst of
//! identical calls is joined per node ([`mcpgate_policy::ResultCache::join`]), not across nodes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use mcpgate_core::ToolOutcome;
use mcpgate_policy::{
    CacheStore, CacheUsage, StoreHealth,
    cache::{CacheKey, CachedResult},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::link::Link;

const PUT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entry, index, sizes, total = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, size, max = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function forget(key)
  local held = tonumber(redis.call('HGET', sizes, key) or '0')
  redis.call('HDEL', sizes, key)
  redis.call('ZREM', index, key)
  redis.call('DECRBY', total, held)
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, 64)) do forget(key) end
forget(entry)
redis.call('SET', entry, ARGV[1], 'PX', ttl)
redis.call('ZADD', index, now + ttl, entry)
redis.call('HSET', sizes, entry, size)
local held = redis.call('INCRBY', total, size)
while held > max do
  local oldest = redis.call('ZRANGE', index, 0, 0)[1]
  if oldest == nil then break end
  forget(oldest)
  redis.call('DEL', oldest)
  held = tonumber(redis.call('GET', total) or '0')
end
return {redis.call('ZCARD', index), held}
";

/// What one entry holds: its whole key, the result, its token count.
#[derive(Serialize, Deserialize)]
struct Stored {
    tool: Arc<str>,
    principal: Option<Arc<str>>,
    arguments: Arc<str>,
    outcome: ToolOutcome,
    tokens: Option<u64>,
    ttl_ms: u64,
    size: u32,
}

/// Cached results in Redis.
#[derive(Debug)]
pub(crate) struct RedisCache {
    link: Arc<Link>,
    script: redis::Script,
    prefix: String,
    max_bytes: u64,
    /// What the index held after this node's last store, for `/status`.
    entries: AtomicU64,
    bytes: AtomicU64,
}

impl RedisCache {
    pub(crate) fn new(link: Arc<Link>, prefix: &str, max_bytes: u64) -> Self {
        Self {
            link,
            script: redis::Script::new(PUT),
            prefix: prefix.to_owned(),
            max_bytes,
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    fn entry_key(&self, key: &CacheKey) -> String {
        let mut hash = Sha256::new();
        for part in
            [key.tool.as_bytes(), key.principal.as_deref().unwrap_or("").as_bytes(), key.arguments.as_bytes()]
        {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.update([u8::from(key.principal.is_some())]);
        format!("{}{{c}}:e:{}", self.prefix, hex::encode(hash.finalize()))
    }

    fn bookkeeping(&self, name: &str) -> String {
        format!("{}{{c}}:{name}", self.prefix)
    }
}

#[async_trait]
impl CacheStore for RedisCache {
    async fn get(&self, key: &CacheKey, now: Instant) -> Option<CachedResult> {
        let mut connection = self.link.connection()?;
        let reply: Option<Vec<u8>> =
            match redis::cmd("GET").arg(self.entry_key(key)).query_async(&mut connection).await {
                Ok(reply) => reply,
                Err(error) => {
                    self.link.failed(&error);
                    return None;
                }
            };
        let stored: Stored = match serde_json::from_slice(&reply?) {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(error = %error, "a cached result in redis does not parse; treated as a miss");
                return None;
            }
        };
        let same =
            stored.tool == key.tool && stored.principal == key.principal && stored.arguments == key.arguments;
        same.then(|| {
            let ttl = Duration::from_millis(stored.ttl_ms);
            // Redis's TTL decided freshness; the entry is fresh now.
            CachedResult {
                outcome: Arc::new(stored.outcome),
                tokens: stored.tokens,
                expires: now + ttl,
                ttl,
                size: stored.size,
            }
        })
    }

    async fn put(&self, key: CacheKey, entry: CachedResult) {
        let Some(mut connection) = self.link.connection() else { return };
        let entry_key = self.entry_key(&key);
        let ttl_ms = u64::try_from(entry.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let stored = Stored {
            tool: key.tool,
            principal: key.principal,
            arguments: key.arguments,
            outcome: ToolOutcome::clone(&entry.outcome),
            tokens: entry.tokens,
            ttl_ms,
            size: entry.size,
        };
        let Ok(value) = serde_json::to_vec(&stored) else { return };
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&entry_key)
            .key(self.bookkeeping("index"))
            .key(self.bookkeeping("sizes"))
            .key(self.bookkeeping("bytes"))
            .arg(value)
            .arg(ttl_ms)
            .arg(entry.size)
            .arg(self.max_bytes);
        match invocation.invoke_async::<(u64, i64)>(&mut connection).await {
            Ok((entries, bytes)) => {
                self.entries.store(entries, Ordering::Relaxed);
                self.bytes.store(u64::try_from(bytes).unwrap_or(0), Ordering::Relaxed);
            }
            Err(error) => {
                self.link.failed(&error);
            }
        }
    }

    fn usage(&self) -> CacheUsage {
        CacheUsage {
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    async fn health(&self) -> StoreHealth {
        self.link.health()
    }
}
