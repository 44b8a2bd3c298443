//! Core types of mcpgate.
//!
//! Everything a tool call needs on its way through the gateway — the call itself, its outcome, who makes it,
//! the context it runs in, and the [`Backend`] contract every tool source implements — lives here, free of
//! HTTP, protocol-SDK and storage types so the other crates can meet on neutral ground.

mod backend;
mod context;
mod error;
mod operation;
mod principal;
mod script;
mod tool;

pub use backend::{Backend, BackendHealth};
pub use context::{CallContext, ClientPeer, ClientRequestError, LogLevel, Surface};
pub use error::{BackendError, Blame};
pub use operation::{Answer, Dispatch, ListKind, Operation, OperationKind};
pub use principal::{CODE_TOOLS, Mode, Principal};
pub use script::ScriptRunner;
pub use tool::{
    CacheScope, CompletionValues, PromptArgument, PromptDef, ResourceDef, ResourceTemplateDef, ToolCall,
    ToolDef, ToolOutcome,
};

/// A JSON object, the shape of tool arguments, schemas and `_meta`.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// The `tracing` target of the spans exported as OpenTelemetry traces (`mcpgate_server::telemetry`): a callsite
/// of this target is enabled exactly when traces are exported.
pub const TELEMETRY_TARGET: &str = "mcpgate::otel";
