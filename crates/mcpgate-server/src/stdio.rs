//! MCP over stdin/stdout. Logs must go to stderr: stdout carries only protocol messages.
//!
//! When stdin and stdout are pipes (as when a client or a gateway starts us as its child), they are read and
//! written as non-blocking pipes on the runtime's own event loop. tokio's `stdin()` / `stdout()` instead hand
//! every read and write to a blocking thread: two thread wake-ups per message each way, which made a proxied
//! call cost several times the CPU of the call itself. Anything else (a terminal, a file) falls back to them.

use std::{
    io,
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::FileTypeExt,
    },
    sync::Arc,
};

use rmcp::ServiceExt;
use tokio::net::unix::pipe;

use crate::{gateway::Gateway, handler::McpHandler};

/// Serve one client over stdio until it closes stdin, then release the backends.
pub async fn serve_stdio(gateway: Arc<Gateway>) -> io::Result<()> {
    let handler = McpHandler::new(gateway.clone());
    let running = match pipes()? {
        Some((read, write)) => handler.serve((read, write)).await,
        None => handler.serve(rmcp::transport::io::stdio()).await,
    }
    .map_err(io::Error::other)?;
    let reason = running.waiting().await;
    tracing::debug!(?reason, "stdio session ended");
    gateway.shutdown.cancel();
    gateway.shutdown_backends().await;
    Ok(())
}

/// Stdin and stdout as non-blocking pipes, or `None` when they are not both pipes. Both are checked before
/// either is changed, so the fallback never meets a descriptor made non-blocking; a pipe that then cannot be
/// taken over is an error, not a fallback.
fn pipes() -> io::Result<Option<(pipe::Receiver, pipe::Sender)>> {
    let fifo = |fd: &OwnedFd| -> io::Result<bool> {
        Ok(std::fs::File::from(fd.try_clone()?).metadata()?.file_type().is_fifo())
    };
    let stdin: OwnedFd = io::stdin().as_fd().try_clone_to_owned()?;
    let stdout: OwnedFd = io::stdout().as_fd().try_clone_to_owned()?;
    if !fifo(&stdin)? || !fifo(&stdout)? {
        return Ok(None);
    }
    Ok(Some((pipe::Receiver::from_owned_fd(stdin)?, pipe::Sender::from_owned_fd(stdout)?)))
}
