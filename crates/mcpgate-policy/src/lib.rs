//! The per-call policy pipeline. [`pipeline`] is the one place that decides the order of the steps every
//! `tools/call` goes through; later policies (authorization, rate limits, validation, cache, breaker, retries,
//! budgets, audit) are steps added there.

pub mod arguments;
pub mod pipeline;

pub use arguments::ArgumentSchema;
pub use pipeline::{Pipeline, ToolPolicy};
