//! Rate-limit buckets in Redis: every bucket of one request checked and taken in one Lua script, on Redis's
//! clock.
//!
//! The script reads `TIME` (so nodes with skewed clocks agree), reads each bucket's TAT, and — only when every
//! bucket has room — writes each one's next TAT with an expiry at the moment the bucket is full again (a full
//! bucket and a missing key read alike, so nothing is lost when it goes). It answers Redis's time and the TATs
//! it read; the decisions are then made here by the same GCRA the in-memory store uses
//! ([`mcpgate_policy::ratelimit::gcra`]), on the same numbers, so both stores decide alike. Times are whole
//! microseconds since 2026-01-01, exact in the doubles Lua computes with.
//!
//! Every key carries the hash tag `{rl}`: one request's buckets (the global one included) always share a slot,
//! so the script runs unchanged on Redis Cluster.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use mcpgate_config::Fallback;
use mcpgate_policy::{
    MemoryStore, RateStore, StoreHealth,
    ratelimit::{Check, Decision, Limit, gcra, untaken},
};
use tokio::time::Instant;

use super::link::Link;

/// Seconds from the Unix epoch to 2026-01-01, where the script's microseconds start.
const EPOCH_SECS: u64 = 1_767_225_600;

const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = (tonumber(t[1]) - tonumber(ARGV[1])) * 1000000 + tonumber(t[2])
local tats, taken = {}, 1
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  tats[i] = tat
  if math.max(tat, now) - now > tonumber(ARGV[2 * i + 1]) then taken = 0 end
end
if taken == 1 then
  for i = 1, #KEYS do
    local next = math.max(tats[i], now) + tonumber(ARGV[2 * i])
    redis.call('SET', KEYS[i], string.format('%d', next), 'PX', math.ceil((next - now) / 1000))
  end
end
local out = {now, taken}
for i = 1, #KEYS do out[i + 2] = tats[i] end
return out
";

/// Buckets in Redis, with what to do while it cannot be reached.
#[derive(Debug)]
pub(crate) struct RedisRates {
    link: Arc<Link>,
    script: redis::Script,
    prefix: String,
    fallback: Fallback,
    /// This node's own buckets, used while Redis is down under `on_unavailable.rate_limits: local`.
    local: MemoryStore,
}

impl RedisRates {
    pub(crate) fn new(link: Arc<Link>, prefix: &str, fallback: Fallback) -> Self {
        let script = redis::Script::new(ACQUIRE);
        Self { link, script, prefix: prefix.to_owned(), fallback, local: MemoryStore::new() }
    }

    fn key(&self, check: &Check) -> String {
        format!("{}{{rl}}:{}", self.prefix, check.key)
    }

    /// Run the script: Redis's time and the TATs it read (microseconds), and whether it took the request.
    async fn run(&self, checks: &[Check], limits: &[Limit]) -> Result<(u64, bool, Vec<u64>), ()> {
        let Some(mut connection) = self.link.connection() else { return Err(()) };
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(EPOCH_SECS);
        for (check, limit) in checks.iter().zip(limits) {
            let interval = limit.interval().as_micros() as u64;
            invocation.key(self.key(check)).arg(interval).arg(interval * u64::from(limit.requests() - 1));
        }
        match invocation.invoke_async::<Vec<i64>>(&mut connection).await {
            Ok(reply) if reply.len() == checks.len() + 2 => {
                let micros = |v: i64| u64::try_from(v).unwrap_or(0);
                Ok((micros(reply[0]), reply[1] == 1, reply[2..].iter().copied().map(micros).collect()))
            }
            Ok(reply) => {
                tracing::warn!(len = reply.len(), "rate-limit script answered an unexpected reply");
                Err(())
            }
            Err(error) => {
                self.link.failed(&error);
                Err(())
            }
        }
    }

    /// The answer while Redis cannot be reached.
    async fn unavailable(&self, checks: &[Check], now: Instant) -> Vec<Decision> {
        match self.fallback {
            Fallback::Local => self.local.acquire(checks, now).await,
            Fallback::Refuse => (checks.iter())
                .map(|check| Decision {
                    allowed: false,
                    limit: check.limit,
                    remaining: 0,
                    reset: Duration::from_secs(1),
                    retry_after: Duration::from_secs(1),
                })
                .collect(),
        }
    }
}

#[async_trait]
impl RateStore for RedisRates {
    async fn acquire(&self, checks: &[Check], now: Instant) -> Vec<Decision> {
        let limits: Vec<Limit> = checks.iter().map(|c| c.limit.in_micros()).collect();
        let Ok((redis_now, taken, tats)) = self.run(checks, &limits).await else {
            return self.unavailable(checks, now).await;
        };
        (limits.iter().zip(tats))
            .map(|(limit, tat)| {
                let (decision, _) = gcra(tat * 1000, redis_now * 1000, *limit);
                if taken { decision } else { untaken(decision) }
            })
            .collect()
    }

    async fn buckets(&self, now: Instant) -> usize {
        // Counting shared buckets would mean scanning Redis's keys: `/status` shows this node's fallback buckets,
        // which hold state only while Redis is down.
        self.local.buckets(now).await
    }

    async fn health(&self) -> StoreHealth {
        self.link.health()
    }
}
