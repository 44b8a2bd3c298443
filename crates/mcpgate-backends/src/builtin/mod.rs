//! Tool sets compiled into mcpgate.

pub mod conformance;
pub mod demo;
