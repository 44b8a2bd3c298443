//! State in Redis, shared by every node that points at it: the link (connections, health, reconnection,
//! Sentinel), rate-limit buckets and cached results.

mod cache;
mod link;
mod rate;

pub(crate) use cache::RedisCache;
pub(crate) use link::Link;
pub(crate) use rate::RedisRates;
