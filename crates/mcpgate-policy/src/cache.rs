//! The result cache: successful results of the tools the `cache` section names, filed under the tool, its
//! arguments as canonical JSON and — for results that may not be shared — the principal they belong to.
//!
//! **What is kept.** Only a result that went back to the client as a success (`isError` false), after the budget
//! step (so a hit sends what a miss sent), and only when producing it asked the client nothing: a result built on
//! an elicitation or sampling answer depends on input that is not part of the key (the 2026-07-28 revision says
//! the same of multi-round results). Failures and `input_required` are never kept.
//!
//! **Upstream hints.** The 2026-07-28 revision defines `ttlMs` and `cacheScope` on list, read and discover
//! results (`CacheableResult`), not on `CallToolResult`; a result may still carry them, and when an upstream's
//! tool result does they are honoured as the caching utility defines them: `ttlMs` shortens the TTL (0: not
//! kept), `cacheScope: "private"` keeps the result to the principal that caused it (an authorization context of
//! its own: an API key, or all anonymous callers together).
//!
//! **Time.** Freshness is decided with `tokio::time::Instant` (paused-clock tests are exact); the store's own
//! expiry only reclaims memory.
//!
//! **One call per key at a time.** Calls that miss on a key another call is already answering wait for it
//! ([`ResultCache::join`]), then look again: a burst of identical calls on a cold key costs the backend one call,
//! not one each. A waiting call keeps its own deadline and cancellation; when the first call's result is not
//! kept (a failure, a result private to another principal, one that asked the client something) the waiting ones
//! run their own.
//!
//! **The store seam.** [`CacheStore`] holds entries; [`MemoryCache`] (moka, bounded by the entries' weight) is
//! the default, and a shared store (Redis) can stand behind the same trait.

mod memory;
mod peer;

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use mcpgate_config::{CacheConfig, CacheSharing};
use mcpgate_core::{CacheScope, JsonObject, Principal, ToolOutcome};
use serde_json::Value;
use tokio::{sync::watch, time::Instant};

use crate::tool_rules::{Generation, Resolved, ToolRules};

pub use memory::MemoryCache;
pub(crate) use peer::WatchedPeer;

// === Keys and entries ===

/// What a cached result is filed under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The public tool name.
    pub tool: Arc<str>,
    /// The principal ([`Principal::id`]) whose call produced the result; `None` for a result anyone may be served.
    pub principal: Option<Arc<str>>,
    /// The arguments as canonical JSON ([`canonical_json`]).
    pub arguments: Arc<str>,
}

/// One cached result.
#[derive(Debug, Clone)]
pub struct CachedResult {
    /// The result as it went back to the client.
    pub outcome: Arc<ToolOutcome>,
    /// Its tokens, when the budget step counted them.
    pub tokens: Option<u64>,
    /// When it stops being fresh.
    pub expires: Instant,
    /// How long it was fresh for when stored.
    pub ttl: Duration,
    /// Roughly how many bytes it and its key take, for the store's size bound.
    pub size: u32,
}

/// What a store holds, for `/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Entries held (expired ones may linger until the store reclaims them).
    pub entries: u64,
    /// Their total weight, in bytes (roughly).
    pub bytes: u64,
}

/// Where cached results live: in this process ([`MemoryCache`]) or, shared by every node, in Redis.
#[async_trait]
pub trait CacheStore: Send + Sync + fmt::Debug {
    /// The result filed under `key` if it is still fresh at `now`. A store with a clock of its own (Redis TTLs)
    /// may use it instead.
    async fn get(&self, key: &CacheKey, now: Instant) -> Option<CachedResult>;

    /// File `entry` under `key`, replacing what was there.
    async fn put(&self, key: CacheKey, entry: CachedResult);

    /// What the store holds.
    fn usage(&self) -> CacheUsage;

    /// Whether the store answers. One in this process always does.
    async fn health(&self) -> crate::ratelimit::StoreHealth {
        crate::ratelimit::StoreHealth::Up
    }
}

// === Rules ===

/// How one tool's results are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheRule {
    /// How long a result stays fresh (an upstream's `ttlMs` may shorten it).
    pub ttl: Duration,
    /// Whether results are kept to the principal that caused them, whatever the upstream says.
    pub per_principal: bool,
}

/// Where the pipeline keeps a tool's [`CacheRule`] between calls: resolved from the cache in force on the first
/// call, resolved afresh (and not kept) under a cache built later (a reload).
pub type ToolCache = Resolved<Option<CacheRule>>;

// === The cache ===

/// The `cache` section, prepared, and the store its entries live in.
#[derive(Debug)]
pub struct ResultCache {
    rules: ToolRules<CacheRule>,
    max_entry_size: u64,
    store: Arc<dyn CacheStore>,
    /// Whether any result was kept per principal: until then a miss needs no second look.
    private_kept: AtomicBool,
    generation: Generation,
    /// Keys a call is answering now, each with what tells its waiters that it is done ([`ResultCache::join`]).
    in_flight: parking_lot::Mutex<HashMap<CacheKey, watch::Receiver<()>>>,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh result.
    Hit(CachedResult),
    /// Nothing fresh: the call runs, and its result may be stored under this key (its principal set by
    /// [`ResultCache::store`]).
    Miss(CacheKey),
}

impl ResultCache {
    /// The cache `config` asks for, with entries in memory; `None` when no tool is cached.
    pub fn from_config(config: &CacheConfig) -> Option<Arc<Self>> {
        Self::with_store(config, || Arc::new(MemoryCache::new(config.max_size.0)))
    }

    /// The cache `config` asks for (`None` when no tool is cached), its entries in the store `store` gives.
    pub fn with_store(
        config: &CacheConfig,
        store: impl FnOnce() -> Arc<dyn CacheStore>,
    ) -> Option<Arc<Self>> {
        config.is_active().then(|| Arc::new(Self::new(config, store())))
    }

    /// The cache `config` asks for, with entries in `store`.
    pub fn new(config: &CacheConfig, store: Arc<dyn CacheStore>) -> Self {
        let rules = (config.tools.iter())
            .map(|(pattern, rule)| {
                let ttl = rule.ttl.unwrap_or(config.ttl).0;
                (pattern.clone(), CacheRule { ttl, per_principal: rule.scope == CacheSharing::PerPrincipal })
            })
            .collect();
        Self {
            rules,
            max_entry_size: config.max_entry_size.0,
            store,
            private_kept: AtomicBool::new(false),
            generation: Generation::next(),
            in_flight: parking_lot::Mutex::default(),
        }
    }

    /// How `tool` (public name) is cached, if it is: an exact name wins over a glob, a longer glob over a
    /// shorter one.
    pub fn rule_for(&self, tool: &str) -> Option<CacheRule> {
        self.rules.get(tool).copied()
    }

    /// [`rule_for`](Self::rule_for), kept in `slot` after the first call.
    pub fn rule(&self, slot: &ToolCache, tool: &str) -> Option<CacheRule> {
        *slot.get(self.generation, || self.rule_for(tool))
    }

    /// Look `tool` called with `arguments` up for `principal`: a result kept to `principal` first (the most
    /// specific answer), then one anyone may be served.
    pub async fn lookup(
        &self,
        rule: CacheRule,
        tool: &str,
        principal: &Principal,
        arguments: &JsonObject,
        now: Instant,
    ) -> Lookup {
        let mut key =
            CacheKey { tool: tool.into(), principal: None, arguments: canonical_arguments(arguments) };
        if rule.per_principal || self.private_kept.load(Ordering::Relaxed) {
            key.principal = Some(principal.id.clone());
            if let Some(hit) = self.store.get(&key, now).await {
                return Lookup::Hit(hit);
            }
            if rule.per_principal {
                return Lookup::Miss(key);
            }
            key.principal = None;
        }
        match self.store.get(&key, now).await {
            Some(hit) => Lookup::Hit(hit),
            None => Lookup::Miss(key),
        }
    }

    /// Keep `outcome` (the call's successful result, as sent) under `key` for `principal`, honouring (and
    /// removing) the upstream's `ttlMs` and `cacheScope`. Returns whether it was kept: not when the TTL is zero or
    /// the result is larger than `max_entry_size`.
    pub async fn store(
        &self,
        rule: CacheRule,
        mut key: CacheKey,
        outcome: &mut ToolOutcome,
        tokens: Option<u64>,
        principal: &Principal,
        now: Instant,
    ) -> bool {
        let (ttl_ms, scope) = (outcome.ttl_ms.take(), outcome.cache_scope.take());
        let ttl = ttl_ms.map_or(rule.ttl, |ms| rule.ttl.min(Duration::from_millis(ms)));
        let private = rule.per_principal || scope == Some(CacheScope::Private);
        key.principal = private.then(|| principal.id.clone());
        let size = outcome_size(outcome)
            + key.tool.len()
            + key.arguments.len()
            + key.principal.as_deref().map_or(0, str::len);
        if ttl.is_zero() || size as u64 > self.max_entry_size {
            return false;
        }
        if private {
            self.private_kept.store(true, Ordering::Relaxed);
        }
        let entry = CachedResult {
            outcome: Arc::new(outcome.clone()),
            tokens,
            expires: now + ttl,
            ttl,
            size: u32::try_from(size).unwrap_or(u32::MAX),
        };
        self.store.put(key, entry).await;
        true
    }

    /// What the store holds.
    pub fn usage(&self) -> CacheUsage {
        self.store.usage()
    }

    /// Take the call that missed on `key` into the flight of calls on it: the first answers it (until its
    /// [`Leading`] is dropped, after the result is stored or the call failed), the others wait for that first.
    pub fn join(&self, key: &CacheKey) -> Flight<'_> {
        let mut in_flight = self.in_flight.lock();
        if let Some(done) = in_flight.get(key) {
            return Flight::Wait(done.clone());
        }
        let (sender, done) = watch::channel(());
        in_flight.insert(key.clone(), done);
        Flight::Lead(Leading { cache: self, key: key.clone(), _done: sender })
    }
}

/// Where a call that missed stands among the calls on its key ([`ResultCache::join`]).
#[derive(Debug)]
pub enum Flight<'a> {
    /// No other call is answering the key: this one does, and holds the key until it is done.
    Lead(Leading<'a>),
    /// Another call is answering the key: wait until [`Flight::wait`] returns, then look up again.
    Wait(watch::Receiver<()>),
}

impl Flight<'_> {
    /// Until the call answering the key is done (at once for the one answering it).
    pub async fn wait(self) {
        if let Flight::Wait(mut done) = self {
            // The leader only ever drops its sender: `changed` returns when it does.
            let _ = done.changed().await;
        }
    }
}

/// The call answering a key while others may wait for it. Dropped (its result stored, or the call failed or was
/// abandoned), it frees the key and wakes the waiting calls.
#[derive(Debug)]
pub struct Leading<'a> {
    cache: &'a ResultCache,
    key: CacheKey,
    _done: watch::Sender<()>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        // Removed before the sender drops (after this body): a call woken up and missing again finds the key free.
        self.cache.in_flight.lock().remove(&self.key);
    }
}

// === Canonical JSON and sizes ===

/// `value` as canonical JSON: object keys sorted at every depth, no whitespace, strings and numbers as
/// serde_json writes them. Two argument objects that differ only in key order file under one key, whatever order
/// the map type keeps (serde_json's `preserve_order`, if a dependency ever turns it on, would keep insertion
/// order).
pub fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => canonical_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

fn canonical_object(map: &JsonObject, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    // Already sorted unless the map keeps insertion order: then this sorts.
    if !entries.is_sorted_by_key(|(key, _)| *key) {
        entries.sort_unstable_by_key(|(key, _)| *key);
    }
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(key, out);
        out.push(b':');
        canonical_json(value, out);
    }
    out.push(b'}');
}

/// A string or scalar as serde_json writes it, straight into `out`.
fn write_json<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing a string or scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn canonical_arguments(arguments: &JsonObject) -> Arc<str> {
    let mut out = Vec::with_capacity(64);
    canonical_object(arguments, &mut out);
    // serde_json writes UTF-8 only.
    String::from_utf8_lossy(&out).into()
}

/// Roughly the bytes a JSON value takes in memory: its strings, plus a few bytes per node.
fn json_size(value: &Value) -> usize {
    const NODE: usize = 16;
    match value {
        Value::String(s) => NODE + s.len(),
        Value::Array(items) => NODE + items.iter().map(json_size).sum::<usize>(),
        Value::Object(map) => NODE + map.iter().map(|(k, v)| NODE + k.len() + json_size(v)).sum::<usize>(),
        _ => NODE,
    }
}

/// Roughly the bytes a kept result takes, with the entry's own bookkeeping.
fn outcome_size(outcome: &ToolOutcome) -> usize {
    const ENTRY: usize = 128;
    ENTRY
        + outcome.content.iter().map(json_size).sum::<usize>()
        + outcome.structured_content.as_ref().map_or(0, json_size)
        + outcome.meta.as_ref().map_or(0, |meta| meta.iter().map(|(k, v)| k.len() + json_size(v)).sum())
}

#[cfg(test)]
mod tests;
