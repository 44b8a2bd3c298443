//! The per-call policy pipeline. [`pipeline`] is the one place that decides the order of the steps every
//! `tools/call` goes through; each policy (validation, circuit breaker, retries, later authorization, rate
//! limits, cache, budgets, audit) is a module here and a step there.

pub mod arguments;
pub mod breaker;
pub mod health;
pub mod pipeline;
pub mod retry;

pub use arguments::ArgumentSchema;
pub use breaker::{Breaker, BreakerPhase, BreakerSnapshot, Permit, Verdict};
pub use health::{HealthChecker, HealthSnapshot};
pub use pipeline::{Pipeline, ToolPolicy};
pub use retry::{Backoff, retries_for};
