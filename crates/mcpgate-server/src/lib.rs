//! mcpgate's server: the registry of everything the gateway serves, the MCP handler behind both protocol eras,
//! the HTTP edge with its ops endpoints, and stdio.

mod auth;
mod backends;
mod catalogue;
pub mod chat;
mod code;
mod compression;
mod cors;
mod dispatch;
mod edge;
mod errors;
mod fast;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod gateway;
mod handler;
mod headers;
mod hosts;
mod http;
mod jsonrpc;
mod jwks;
mod jwt;
mod limits;
mod listener;
mod listening;
pub mod metrics;
mod opening;
mod ops;
mod peer;
mod protocol;
mod recent;
pub mod registry;
mod reload;
mod resource_metadata;
mod rest;
mod sessions;
mod stdio;
pub mod subscriptions;
pub mod telemetry;
mod ui;

pub use catalogue::Catalogue;
pub use errors::{StartError, to_jsonrpc};
pub use gateway::Gateway;
pub use handler::McpHandler;
pub use http::{Server, serve_http};
pub use reload::Reloaded;
pub use stdio::serve_stdio;
