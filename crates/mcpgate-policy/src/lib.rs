//! The per-call policy pipeline. [`pipeline`] is the one place that decides the order of the steps every
//! `tools/call` goes through; each policy (authorization, rate limits, validation, circuit breaker,
//! retries, cache, budgets, audit) is a module here and a step there.

pub mod arguments;
pub mod audit;
pub mod authz;
pub mod breaker;
pub mod budget;
pub mod cache;
pub mod health;
pub mod pipeline;
pub mod ratelimit;
pub mod retry;
pub mod tool_rules;

pub use arguments::ArgumentSchema;
pub use audit::{AuditCounters, AuditLog};
pub use authz::Grant;
pub use breaker::{Breaker, BreakerPhase, BreakerSnapshot, Permit, Verdict};
pub use budget::{Applied, Budget, BudgetVerdict, Contents, ResultSize};
pub use cache::{CacheStore, CacheUsage, Flight, Leading, MemoryCache, ResultCache};
pub use health::{HealthChecker, HealthSnapshot};
pub use pipeline::{
    Answered, CacheStatus, CallObserver, CallReport, Outcome, Pipeline, Settling, Target, TokenUsage,
    ToolPolicy,
};
pub use ratelimit::{MemoryStore, RateLimiter, RateLimits, RateStore, Scope, StoreHealth};
pub use retry::{Backoff, retries_for};
