//! Keyed rate limits: GCRA buckets behind a store seam.
//!
//! Every limit is a Generic Cell Rate Algorithm bucket: `requests` per `per` admits a burst of `requests`, then one
//! request every `per / requests` — a token bucket of that size and refill rate, kept as one number per key, its
//! theoretical arrival time (TAT). A bucket whose TAT has passed is full again and cannot be told from one never
//! used, so it may be forgotten: that is how idle buckets expire, and why forgetting one changes no answer.
//!
//! A request is checked against every limit that applies to it in one [`RateStore::acquire`]: when all have room,
//! one request is taken from each; when any has none, nothing is taken, so a refused request never spends another
//! scope's budget. [`MemoryStore`] does that under the locks of the shards involved; a Redis store does the same
//! in one Lua script over the same keys ([`BucketKey`]'s `Display`), reading Redis `TIME` instead of `now`.
//!
//! Scopes: at the HTTP edge `global` (everyone), `ip` (one client address), `key` (one principal) or, when the
//! principal's tier has a limit of its own, `tier` (one principal, the tier's budget); inside `tools/call`, `tool`
//! (one tool, every caller).

mod memory;

use std::{
    cmp::Reverse,
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv6Addr},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use mcpgate_config::{HumanDuration, RateLimit, RateLimitsConfig};
use mcpgate_core::{BackendError, Principal};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::tool_rules::{Generation, Resolved, ToolRules};

pub use memory::{DEFAULT_MAX_BUCKETS, MemoryStore};

// === Limit, scope, key ===

/// A budget: `requests` per `per`, as a burst of `requests` and then one request every `per / requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    requests: u32,
    per: Duration,
    /// `per / requests` in nanoseconds: what one request costs.
    interval: u64,
}

impl Limit {
    /// `requests` per `per`; `None` for zero requests, a window past `u64` nanoseconds, or a request costing less
    /// than a nanosecond.
    pub fn new(requests: u32, per: Duration) -> Option<Self> {
        let per_nanos = u64::try_from(per.as_nanos()).ok()?;
        let interval = per_nanos.checked_div(u64::from(requests))?;
        (interval > 0).then_some(Self { requests, per, interval })
    }

    /// Requests per window; also the largest burst.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The window.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// What one request costs: `per / requests`.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// The same budget with the cost of one request rounded up to whole microseconds, for a store that counts in
    /// microseconds (exact in a double, as Redis Lua numbers are).
    pub fn in_micros(&self) -> Self {
        let interval = self.interval.div_ceil(1000) * 1000;
        Self { interval, ..*self }
    }

    fn from_config(limit: &RateLimit) -> Option<Self> {
        Self::new(limit.requests.get(), limit.per.0)
    }

    /// How far ahead of now the TAT may be and still admit a request.
    fn tolerance(&self) -> u64 {
        self.interval * u64::from(self.requests - 1)
    }

    /// The whole bucket, in nanoseconds.
    fn capacity(&self) -> u64 {
        self.interval * u64::from(self.requests)
    }
}

/// Which limit a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The whole gateway.
    Global,
    /// One client address (IPv6: its /64).
    Ip,
    /// One principal, under `per_key`.
    Key,
    /// One principal, under its tier's limit.
    Tier,
    /// One tool, every caller.
    Tool,
    /// One resource, every caller.
    Resource,
    /// One prompt, every caller.
    Prompt,
}

impl Scope {
    /// The scope's name in headers, errors, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Ip => "ip",
            Self::Key => "key",
            Self::Tier => "tier",
            Self::Tool => "tool",
            Self::Resource => "resource",
            Self::Prompt => "prompt",
        }
    }
}

/// A bucket's identity. Its `Display` (`global`, `ip:192.0.2.7`, `key:ci-bot`, `jwt:alice`, `anonymous`,
/// `tool:search`) is the key a shared store uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BucketKey {
    /// The gateway's one bucket.
    Global,
    /// A client address, as [`BucketKey::ip`] normalises it.
    Ip(IpAddr),
    /// A principal by [`Principal::id`] (its `per_key` or tier budget: one bucket either way, as a key has one
    /// tier).
    Principal(Arc<str>),
    /// A tool by public name.
    Tool(Arc<str>),
    /// A resource by URI.
    Resource(Arc<str>),
    /// A prompt by name.
    Prompt(Arc<str>),
}

impl BucketKey {
    /// The bucket of a client address: IPv4 as it is (IPv4-mapped IPv6 too); IPv6 by its /64, one site's usual
    /// allocation, so hopping between the addresses of one's own prefix buys nothing.
    pub fn ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => Self::Ip(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX))))),
            v4 => Self::Ip(v4),
        }
    }
}

impl fmt::Display for BucketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Global => f.write_str("global"),
            Self::Ip(ip) => write!(f, "ip:{ip}"),
            Self::Principal(id) => f.write_str(id),
            Self::Tool(name) => write!(f, "tool:{name}"),
            Self::Resource(uri) => write!(f, "resource:{uri}"),
            Self::Prompt(name) => write!(f, "prompt:{name}"),
        }
    }
}

/// One bucket to check: which scope, which key, which budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The scope, for reporting.
    pub scope: Scope,
    /// The bucket.
    pub key: BucketKey,
    /// Its budget.
    pub limit: Limit,
}

// === GCRA ===

/// One bucket's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the bucket had room.
    pub allowed: bool,
    /// The bucket's budget.
    pub limit: Limit,
    /// Requests the bucket still admits at once, after this one when it was taken.
    pub remaining: u32,
    /// Time until the bucket is full again.
    pub reset: Duration,
    /// Time until the bucket admits a request; zero when it did.
    pub retry_after: Duration,
}

/// GCRA for one bucket at `now`, with stored TAT `stored` (both in nanoseconds since the store's epoch; 0 for a
/// bucket never used): the decision if a request is taken, and the TAT to store if it is. A shared store that
/// runs the algorithm elsewhere (a Redis script) reads its answers back through this, so every store decides
/// alike.
pub fn gcra(stored: u64, now: u64, limit: Limit) -> (Decision, u64) {
    let tat = stored.max(now);
    let ahead = tat - now;
    if ahead > limit.tolerance() {
        let decision = Decision {
            allowed: false,
            limit,
            remaining: 0,
            reset: Duration::from_nanos(ahead),
            retry_after: Duration::from_nanos(ahead - limit.tolerance()),
        };
        return (decision, stored);
    }
    let next = tat.saturating_add(limit.interval);
    let ahead = next - now;
    let remaining = limit.capacity().saturating_sub(ahead) / limit.interval;
    let decision = Decision {
        allowed: true,
        limit,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset: Duration::from_nanos(ahead),
        retry_after: Duration::ZERO,
    };
    (decision, next)
}

/// An admitting decision as it reads when nothing was taken after all (another bucket of the request refused).
pub fn untaken(mut decision: Decision) -> Decision {
    if decision.allowed {
        decision.remaining = decision.remaining.saturating_add(1).min(decision.limit.requests);
        decision.reset = decision.reset.saturating_sub(Duration::from_nanos(decision.limit.interval));
    }
    decision
}

/// Every bucket's answer to one request, in the order of its checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    decisions: Vec<(Scope, Decision)>,
}

impl Verdict {
    /// Whether every bucket had room (and one request was taken from each).
    pub fn allowed(&self) -> bool {
        self.decisions.iter().all(|(_, d)| d.allowed)
    }

    /// The refusal to report: of the buckets without room, the one that frees last (the first such).
    pub fn denied(&self) -> Option<(Scope, Decision)> {
        self.decisions.iter().filter(|(_, d)| !d.allowed).min_by_key(|(_, d)| Reverse(d.retry_after)).copied()
    }

    /// Each checked scope with its bucket's answer.
    pub fn decisions(&self) -> &[(Scope, Decision)] {
        &self.decisions
    }
}

// === The store seam ===

/// Where buckets live: in this process ([`MemoryStore`]) or, shared by every node, in Redis.
#[async_trait]
pub trait RateStore: Send + Sync + fmt::Debug {
    /// Check every bucket of `checks` (distinct keys) at `now`, atomically: when all have room take one request
    /// from each, when any has none take nothing. One decision per check, in order; a decision that admits but
    /// was not taken reads as if the request had not come. A store with a clock of its own (Redis `TIME`) uses it
    /// instead of `now`.
    async fn acquire(&self, checks: &[Check], now: Instant) -> Vec<Decision>;

    /// Buckets that hold state at `now` (not yet full again), forgetting the others.
    async fn buckets(&self, now: Instant) -> usize;

    /// Whether the store answers. One in this process always does.
    async fn health(&self) -> StoreHealth {
        StoreHealth::Up
    }
}

/// Whether a store answers, for `/ready` and `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    /// It answers.
    Up,
    /// It cannot be reached, and why.
    Down(String),
}

// === The limiter ===

/// The limits in force, prepared from the `rate_limits` section.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    global: Option<Limit>,
    per_ip: Option<Limit>,
    per_key: Option<Limit>,
    tiers: HashMap<String, Limit>,
    /// By tool name or glob.
    tools: ToolRules<Limit>,
    /// By resource URI or glob.
    resources: ToolRules<Limit>,
    /// By prompt name or glob.
    prompts: ToolRules<Limit>,
    /// The section as configured, for `/status`.
    config: RateLimitsConfig,
}

impl RateLimits {
    /// Prepare `config`. Fails (naming every bad limit) only on a config that skipped validation.
    pub fn from_config(config: &RateLimitsConfig) -> Result<Self, String> {
        let mut bad = Vec::new();
        let mut prepare = |path: String, limit: &RateLimit| {
            let prepared = Limit::from_config(limit);
            if prepared.is_none() {
                bad.push(format!(
                    "rate_limits.{path}: {} per {} cannot be enforced",
                    limit.requests, limit.per
                ));
            }
            prepared
        };
        let mut limits = Self { config: config.clone(), ..Self::default() };
        limits.global = config.global.as_ref().and_then(|l| prepare("global".into(), l));
        limits.per_ip = config.per_ip.as_ref().and_then(|l| prepare("per_ip".into(), l));
        limits.per_key = config.per_key.as_ref().and_then(|l| prepare("per_key".into(), l));
        for (tier, limit) in &config.tiers {
            if let Some(limit) = prepare(format!("tiers.{tier}"), limit) {
                limits.tiers.insert(tier.clone(), limit);
            }
        }
        let mut rules = |section: &str, map: &std::collections::BTreeMap<String, RateLimit>| {
            (map.iter())
                .filter_map(|(pattern, limit)| {
                    Some((pattern.clone(), prepare(format!("{section}.{pattern}"), limit)?))
                })
                .collect::<ToolRules<Limit>>()
        };
        limits.tools = rules("tools", &config.tools);
        limits.resources = rules("resources", &config.resources);
        limits.prompts = rules("prompts", &config.prompts);
        if bad.is_empty() { Ok(limits) } else { Err(bad.join("; ")) }
    }

    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        !self.limits_requests()
            && self.tools.is_empty()
            && self.resources.is_empty()
            && self.prompts.is_empty()
    }

    /// Whether HTTP requests are limited (`global`, `per_ip`, `per_key` or a tier).
    pub fn limits_requests(&self) -> bool {
        self.global.is_some() || self.per_ip.is_some() || self.per_key.is_some() || !self.tiers.is_empty()
    }

    /// The buckets one HTTP request by `principal` is checked against.
    pub fn request_checks(&self, principal: &Principal) -> Vec<Check> {
        let mut checks = Vec::with_capacity(3);
        if let Some(limit) = self.global {
            checks.push(Check { scope: Scope::Global, key: BucketKey::Global, limit });
        }
        if let (Some(limit), Some(ip)) = (self.per_ip, principal.client_ip) {
            checks.push(Check { scope: Scope::Ip, key: BucketKey::ip(ip), limit });
        }
        let tier = principal.tier.as_deref().and_then(|tier| self.tiers.get(tier));
        let key = match (tier, self.per_key) {
            (Some(&limit), _) => Some((Scope::Tier, limit)),
            (None, Some(limit)) => Some((Scope::Key, limit)),
            (None, None) => None,
        };
        if let Some((scope, limit)) = key {
            checks.push(Check { scope, key: BucketKey::Principal(principal.id.clone()), limit });
        }
        checks
    }

    /// The bucket a `tools/call` of `tool` (its public name) is checked against, if any.
    pub fn tool_check(&self, tool: &str) -> Option<Check> {
        let limit = *self.tools.get(tool)?;
        Some(Check { scope: Scope::Tool, key: BucketKey::Tool(tool.into()), limit })
    }

    /// The bucket a read or subscription of the resource `uri`, or a get of the prompt `name`, is checked
    /// against, if any (`scope` is [`Scope::Resource`] or [`Scope::Prompt`]; any other has none).
    pub fn named_check(&self, scope: Scope, name: &str) -> Option<Check> {
        let (rules, key): (_, fn(Arc<str>) -> BucketKey) = match scope {
            Scope::Resource => (&self.resources, BucketKey::Resource),
            Scope::Prompt => (&self.prompts, BucketKey::Prompt),
            _ => return None,
        };
        let limit = *rules.get(name)?;
        Some(Check { scope, key: key(name.into()), limit })
    }
}

/// Where the pipeline keeps a tool's bucket between calls: resolved from the limiter in force on the first call,
/// resolved afresh (and not kept) under a limiter built later.
pub type ToolRateLimit = Resolved<Option<Check>>;

/// The limits in force and the store their buckets live in.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    store: Arc<dyn RateStore>,
    generation: Generation,
}

impl RateLimiter {
    /// A limiter enforcing `limits` with buckets in `store`.
    pub fn new(limits: RateLimits, store: Arc<dyn RateStore>) -> Self {
        Self { limits, store, generation: Generation::next() }
    }

    /// The limiter for `config` with in-memory buckets, or `None` when it sets no limit (nothing to check).
    pub fn from_config(config: &RateLimitsConfig) -> Result<Option<Arc<Self>>, String> {
        Self::with_store(config, || Arc::new(MemoryStore::new()))
    }

    /// The limiter `config` asks for (`None` when it sets no limit), its buckets in the store `store` gives.
    pub fn with_store(
        config: &RateLimitsConfig,
        store: impl FnOnce() -> Arc<dyn RateStore>,
    ) -> Result<Option<Arc<Self>>, String> {
        let limits = RateLimits::from_config(config)?;
        Ok((!limits.is_empty()).then(|| Arc::new(Self::new(limits, store()))))
    }

    /// Whether its store answers.
    pub async fn health(&self) -> StoreHealth {
        self.store.health().await
    }

    /// The limits in force.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Check one HTTP request by `principal` against the edge limits; an empty verdict when none applies.
    pub async fn check_request(&self, principal: &Principal, now: Instant) -> Verdict {
        let checks = self.limits.request_checks(principal);
        if checks.is_empty() {
            return Verdict::default();
        }
        let decisions = self.store.acquire(&checks, now).await;
        Verdict { decisions: checks.iter().map(|c| c.scope).zip(decisions).collect() }
    }

    /// Check one `tools/call` of `tool` (public name) against its tool limit, keeping the resolved bucket in
    /// `slot`; refused as [`BackendError::RateLimited`].
    pub async fn check_tool(
        &self,
        slot: &ToolRateLimit,
        tool: &str,
        now: Instant,
    ) -> Result<(), BackendError> {
        let check = slot.get(self.generation, || self.limits.tool_check(tool));
        let Some(check) = check.as_ref() else { return Ok(()) };
        match self.store.acquire(std::slice::from_ref(check), now).await.first() {
            Some(decision) if !decision.allowed => {
                tracing::debug!(
                    tool,
                    retry_after_ms = decision.retry_after.as_millis() as u64,
                    "tool rate limited"
                );
                Err(BackendError::RateLimited {
                    scope: Scope::Tool.as_str(),
                    retry_after: decision.retry_after,
                })
            }
            _ => Ok(()),
        }
    }

    /// Take one request from the bucket of the resource or prompt `name` (`scope` says which), if it has one:
    /// `Err(RateLimited)` when it has no room.
    pub async fn check_named(&self, scope: Scope, name: &str, now: Instant) -> Result<(), BackendError> {
        let Some(check) = self.limits.named_check(scope, name) else { return Ok(()) };
        match self.store.acquire(std::slice::from_ref(&check), now).await.first() {
            Some(decision) if !decision.allowed => {
                tracing::debug!(
                    scope = scope.as_str(),
                    name,
                    retry_after_ms = decision.retry_after.as_millis() as u64,
                    "rate limited"
                );
                Err(BackendError::RateLimited { scope: scope.as_str(), retry_after: decision.retry_after })
            }
            _ => Ok(()),
        }
    }

    /// The limits as configured and the buckets holding state, for `/status`.
    pub async fn status(&self, now: Instant) -> Value {
        status_json(&self.limits.config, self.store.buckets(now).await)
    }
}

/// `/status`'s `rate_limits` entry: every configured limit (`null` / `{}` where none) and the live bucket count.
pub fn status_json(config: &RateLimitsConfig, buckets: usize) -> Value {
    let limit =
        |l: &RateLimit| json!({ "requests": l.requests.get(), "per": HumanDuration(l.per.0).to_string() });
    let map = |m: &std::collections::BTreeMap<String, RateLimit>| {
        m.iter().map(|(k, l)| (k.clone(), limit(l))).collect::<Map<String, Value>>()
    };
    json!({
        "global": config.global.as_ref().map(limit),
        "per_ip": config.per_ip.as_ref().map(limit),
        "per_key": config.per_key.as_ref().map(limit),
        "tiers": map(&config.tiers),
        "tools": map(&config.tools),
        "buckets": buckets,
    })
}

#[cfg(test)]
mod tests;
