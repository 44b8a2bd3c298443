//! State in Redis, shared by every node that points at it: the link (connections, health, reconnection,
//! Sentinel), rate-limit buckets, cached results, and what the nodes share about legacy sessions.

mod cache;
mod link;
mod rate;
mod sessions;

pub(crate) use cache::RedisCache;
pub(crate) use link::Link;
pub(crate) use rate::RedisRates;
pub use sessions::{Heard, Life, SharedSessions};
