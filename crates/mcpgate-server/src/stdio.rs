//! MCP over stdin/stdout. Logs must go to stderr: stdout carries only protocol messages.

use std::sync::Arc;

use rmcp::ServiceExt;

use crate::{gateway::Gateway, handler::McpHandler};

/// Serve one client over stdio until it closes stdin, then release the backends.
pub async fn serve_stdio(gateway: Arc<Gateway>) -> std::io::Result<()> {
    let handler = McpHandler::new(gateway.clone());
    let running = handler.serve(rmcp::transport::io::stdio()).await.map_err(std::io::Error::other)?;
    let reason = running.waiting().await;
    tracing::debug!(?reason, "stdio session ended");
    gateway.shutdown.cancel();
    gateway.shutdown_backends().await;
    Ok(())
}
