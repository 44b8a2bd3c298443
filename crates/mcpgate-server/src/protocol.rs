//! What this server says about itself: the protocol revisions it serves and what `initialize` and
//! `server/discover` report. A leaf, built once at start (`Gateway`) and read by the protocol layer.

use rmcp::model::{ProtocolVersion, ServerConfig};
use serde_json::json;

/// Protocol revisions served, oldest first.
pub(crate) const SUPPORTED: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// What `initialize` and `server/discover` say about this server; built once, at startup.
pub(crate) fn server_info(server: &mcpgate_config::ServerConfig) -> Result<ServerConfig, String> {
    let info = json!({
        "protocolVersion": ProtocolVersion::LATEST_WITH_INITIALIZE,
        "capabilities": {
            "tools": { "listChanged": true },
            "resources": { "subscribe": true, "listChanged": true },
            "prompts": { "listChanged": true },
            "logging": {},
            "completions": {}
        },
        "serverInfo": { "name": server.name, "version": env!("CARGO_PKG_VERSION") },
        "instructions": server.instructions,
    });
    serde_json::from_value(info).map_err(|e| format!("server info does not fit the protocol: {e}"))
}
