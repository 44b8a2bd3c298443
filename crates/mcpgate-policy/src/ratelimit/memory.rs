//! Buckets in this process: a sharded map from key to TAT, with bounded memory.
//!
//! A bucket whose TAT has passed is full and is dropped when its shard is swept: on growth (a shard sweeps when it
//! has doubled since its last sweep, so sweeping costs O(1) per new bucket) and when `/status` counts. Memory is
//! thus bounded by the buckets in use; against a flood of new keys (many addresses) each shard also has a hard cap,
//! past which the half of its buckets nearest to full are forgotten — the least a forgotten bucket can cost.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Mutex, MutexGuard, PoisonError},
};

use async_trait::async_trait;
use tokio::time::Instant;

use super::{BucketKey, Check, Decision, RateStore, gcra, untaken};

/// Shards by default: enough that requests of different keys rarely wait for each other.
const SHARDS: usize = 64;
/// A shard is not swept before it holds this many buckets.
const MIN_SWEEP: usize = 64;
/// Buckets kept at most by default (about 100 bytes each).
pub const DEFAULT_MAX_BUCKETS: usize = 1 << 20;

#[derive(Debug, Default)]
struct Shard {
    /// TAT per bucket, in nanoseconds since the store's epoch.
    tats: HashMap<BucketKey, u64>,
    /// Sweep when a new bucket would make the shard this large.
    sweep_at: usize,
}

impl Shard {
    fn stored(&self, key: &BucketKey) -> u64 {
        self.tats.get(key).copied().unwrap_or(0)
    }

    fn put(&mut self, key: &BucketKey, tat: u64, now: u64, cap: usize) {
        if let Some(stored) = self.tats.get_mut(key) {
            *stored = tat;
            return;
        }
        if self.tats.len() >= self.sweep_at {
            self.sweep(now, cap);
        }
        self.tats.insert(key.clone(), tat);
    }

    /// Forget full buckets; at the cap, forget the half nearest to full as well.
    fn sweep(&mut self, now: u64, cap: usize) {
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.len() >= cap {
            let mut tats: Vec<u64> = self.tats.values().copied().collect();
            let middle = tats.len() / 2;
            let cut = *tats.select_nth_unstable(middle).1;
            let before = self.tats.len();
            self.tats.retain(|_, tat| *tat > cut);
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
        let shards = shards.max(1).next_power_of_two();
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

    fn shard_of(&self, key: &BucketKey) -> usize {
        self.hasher.hash_one(key) as usize & (self.shards.len() - 1)
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A panic elsewhere cannot leave a shard half-written (each update is one map operation).
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`RateStore::acquire`], synchronously: no lock is held across an await.
    pub fn acquire_now(&self, checks: &[Check], now: Instant) -> Vec<Decision> {
        let now = self.nanos(now);
        let shard_of: Vec<usize> = checks.iter().map(|c| self.shard_of(&c.key)).collect();
        let mut order = shard_of.clone();
        order.sort_unstable();
        order.dedup();
        // Shards locked in index order, so two requests sharing shards never wait on each other in a cycle.
        let mut guards: Vec<MutexGuard<'_, Shard>> = order.iter().map(|&i| self.lock(i)).collect();
        let at = |shard: usize| order.partition_point(|&i| i < shard);
        let steps: Vec<(Decision, u64)> = checks
            .iter()
            .zip(&shard_of)
            .map(|(check, &shard)| gcra(guards[at(shard)].stored(&check.key), now, check.limit))
            .collect();
        let all = steps.iter().all(|(decision, _)| decision.allowed);
        if all {
            for ((check, &shard), (_, tat)) in checks.iter().zip(&shard_of).zip(&steps) {
                guards[at(shard)].put(&check.key, *tat, now, self.cap);
            }
        }
        drop(guards);
        steps.into_iter().map(|(decision, _)| if all { decision } else { untaken(decision) }).collect()
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
}
