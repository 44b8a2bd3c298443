//! Buckets in this process: a sharded map from key to TAT, with bounded memory.
//!
//! A bucket whose TAT has passed is full and is dropped when its shard is swept: on growth (a shard sweeps when it
//! has doubled since its last sweep, so sweeping costs O(1) per new bucket) and when `/status` counts. Memory is
//! thus bounded by the buckets in use; against a flood of new keys (many addresses) each shard also has a hard cap,
//! past which the half of its buckets nearest to full are forgotten — the least a forgotten bucket can cost.

use std::{
    hash::{BuildHasher, RandomState},
    sync::{Mutex, MutexGuard, PoisonError},
};

use async_trait::async_trait;
use hashbrown::HashTable;
use smallvec::SmallVec;
use tokio::time::Instant;

use super::{BucketKey, Check, Decision, RateStore, gcra, untaken};

/// Shards by default: enough that requests of different keys rarely wait for each other. At most 64, so a
/// request's shards fit one bitmask.
const SHARDS: usize = 64;
/// A shard is not swept before it holds this many buckets.
const MIN_SWEEP: usize = 64;
/// Buckets kept at most by default (about 100 bytes each).
pub const DEFAULT_MAX_BUCKETS: usize = 1 << 20;

/// Checks per request handled without a heap allocation (the edge's global, address and key, or a tool's one).
const INLINE: usize = 4;

/// One bucket: its key, the key's hash (computed once per request, for the shard and the table alike) and its
/// TAT in nanoseconds since the store's epoch.
#[derive(Debug)]
struct Bucket {
    key: BucketKey,
    hash: u64,
    tat: u64,
}

#[derive(Debug, Default)]
struct Shard {
    tats: HashTable<Bucket>,
    /// Sweep when a new bucket would make the shard this large.
    sweep_at: usize,
}

impl Shard {
    fn stored(&self, hash: u64, key: &BucketKey) -> u64 {
        self.tats.find(hash, |bucket| bucket.key == *key).map_or(0, |bucket| bucket.tat)
    }

    fn put(&mut self, hash: u64, key: &BucketKey, tat: u64, now: u64, cap: usize) {
        if let Some(bucket) = self.tats.find_mut(hash, |bucket| bucket.key == *key) {
            bucket.tat = tat;
            return;
        }
        if self.tats.len() >= self.sweep_at {
            self.sweep(now, cap);
        }
        self.tats.insert_unique(hash, Bucket { key: key.clone(), hash, tat }, |bucket| bucket.hash);
    }

    /// Forget full buckets; at the cap, forget the half nearest to full as well.
    fn sweep(&mut self, now: u64, cap: usize) {
        self.tats.retain(|bucket| bucket.tat > now);
        if self.tats.len() >= cap {
            let mut tats: Vec<u64> = self.tats.iter().map(|bucket| bucket.tat).collect();
            let middle = tats.len() / 2;
            let cut = *tats.select_nth_unstable(middle).1;
            let before = self.tats.len();
            self.tats.retain(|bucket| bucket.tat > cut);
            tracing::warn!(
                forgotten = before - self.tats.len(),
                cap,
                "rate-limit buckets at their cap: the nearest to full were forgotten"
            );
        }
        self.sweep_at = (self.tats.len() * 2).max(MIN_SWEEP).min(cap);
    }
}

/// Rate-limit buckets in this process's memory: the default store, and the fallback of a shared one.
#[derive(Debug)]
pub struct MemoryStore {
    /// TATs count from here.
    epoch: Instant,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Buckets per shard at most.
    cap: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store keeping at most [`DEFAULT_MAX_BUCKETS`] buckets.
    pub fn new() -> Self {
        Self::with_max_buckets(DEFAULT_MAX_BUCKETS)
    }

    /// A store keeping at most about `max` buckets.
    pub fn with_max_buckets(max: usize) -> Self {
        Self::with_shards(SHARDS, max)
    }

    fn with_shards(shards: usize, max: usize) -> Self {
        let shards = shards.clamp(1, SHARDS).next_power_of_two();
        let cap = max.div_ceil(shards).max(1);
        Self {
            epoch: Instant::now(),
            shards: (0..shards)
                .map(|_| Mutex::new(Shard { sweep_at: MIN_SWEEP.min(cap), ..Shard::default() }))
                .collect(),
            hasher: RandomState::new(),
            cap,
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The shard of a key's hash: bits the shard's table does not use (it places a bucket by the low bits and
    /// tags it with the top seven), so the buckets of one shard still spread over its whole table.
    fn shard_of(&self, hash: u64) -> usize {
        (hash >> 32) as usize & (self.shards.len() - 1)
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A panic elsewhere cannot leave a shard half-written (each update is one map operation).
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`RateStore::acquire`], synchronously: no lock is held across an await. Each key is hashed once; the
    /// shards involved are a bitmask, locked in index order, so two requests sharing shards never wait on each
    /// other in a cycle; nothing but the answer is allocated for up to `INLINE` (4) checks.
    pub fn acquire_now(&self, checks: &[Check], now: Instant) -> Vec<Decision> {
        let now = self.nanos(now);
        let hashes: SmallVec<[u64; INLINE]> = checks.iter().map(|c| self.hasher.hash_one(&c.key)).collect();
        let locked = hashes.iter().fold(0u64, |mask, &hash| mask | 1 << self.shard_of(hash));
        let mut guards: SmallVec<[MutexGuard<'_, Shard>; INLINE]> =
            set_bits(locked).map(|shard| self.lock(shard)).collect();
        // A shard's guard comes after those of the locked shards below it.
        let at = |hash: u64| (locked & ((1 << self.shard_of(hash)) - 1)).count_ones() as usize;
        let mut decisions = Vec::with_capacity(checks.len());
        let mut tats: SmallVec<[u64; INLINE]> = SmallVec::with_capacity(checks.len());
        for (check, &hash) in checks.iter().zip(&hashes) {
            let (decision, tat) = gcra(guards[at(hash)].stored(hash, &check.key), now, check.limit);
            decisions.push(decision);
            tats.push(tat);
        }
        let all = decisions.iter().all(|decision| decision.allowed);
        if all {
            for ((check, &hash), &tat) in checks.iter().zip(&hashes).zip(&tats) {
                guards[at(hash)].put(hash, &check.key, tat, now, self.cap);
            }
        }
        drop(guards);
        if !all {
            decisions.iter_mut().for_each(|decision| *decision = untaken(*decision));
        }
        decisions
    }

    /// [`RateStore::buckets`], synchronously.
    pub fn buckets_now(&self, now: Instant) -> usize {
        let now = self.nanos(now);
        (0..self.shards.len())
            .map(|i| {
                let mut shard = self.lock(i);
                shard.sweep(now, self.cap);
                shard.tats.len()
            })
            .sum()
    }
}

/// The indexes of the bits set in `mask`, lowest first.
fn set_bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let bit = (mask != 0).then(|| mask.trailing_zeros() as usize)?;
        mask &= mask - 1;
        Some(bit)
    })
}

#[async_trait]
impl RateStore for MemoryStore {
    async fn acquire(&self, checks: &[Check], now: Instant) -> Vec<Decision> {
        self.acquire_now(checks, now)
    }

    async fn buckets(&self, now: Instant) -> usize {
        self.buckets_now(now)
    }
}

#[cfg(test)]
impl MemoryStore {
    /// One shard, so a test knows which buckets share it.
    pub(super) fn single_shard(max: usize) -> Self {
        Self::with_shards(1, max)
    }

    /// `shards` shards (clamped to 1..=64), so a test can make keys share shards or spread over many.
    pub(super) fn sharded(shards: usize) -> Self {
        Self::with_shards(shards, DEFAULT_MAX_BUCKETS)
    }

    /// Shards in use.
    pub(super) fn shards(&self) -> usize {
        self.shards.len()
    }
}
