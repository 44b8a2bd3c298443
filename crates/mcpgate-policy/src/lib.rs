//! The per-call policy pipeline. [`pipeline`] is the one place that decides the order of the steps every
//! `tools/call` goes through; each policy (authorization, rate limits, validation, circuit breaker,
//! retries, later cache, budgets, audit) is a module here and a step there.

pub mod arguments;
pub mod authz;
pub mod breaker;
pub mod health;
pub mod pipeline;
pub mod ratelimit;
pub mod retry;

pub use arguments::ArgumentSchema;
pub use breaker::{Breaker, BreakerPhase, BreakerSnapshot, Permit, Verdict};
pub use health::{HealthChecker, HealthSnapshot};
pub use pipeline::{CallObserver, CallReport, Pipeline, ToolPolicy};
pub use ratelimit::{MemoryStore, RateLimiter, RateLimits, RateStore};
pub use retry::{Backoff, retries_for};
