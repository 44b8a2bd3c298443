//! Code mode's engine and sandboxes.
//!
//! A model-written program is JavaScript run by QuickJS ([`engine`]): a fresh runtime per run, held to a time,
//! memory, stack, output and tool-call limit, with no ambient capability — no file, network, timer or module
//! access. Its only way out is `tools.<namespace>.<tool>(args)`, which the engine hands to a [`Host`]; the
//! gateway's host sends each call through the dispatch with the caller's principal, so code reaches exactly
//! what the caller may reach directly.
//!
//! Where the engine runs is the [`Sandbox`]: `quickjs` ([`local`]) on a thread of the gateway's own process;
//! `process`, `gvisor` and `docker` ([`process`]) in a worker process of the gateway's own binary (`mcpgate
//! sandbox-worker`, [`worker`]) that confines itself (no new privileges, Landlock, a seccomp allow-list) inside
//! bubblewrap's namespaces, gVisor, or a Podman/Docker container, with its memory and tasks bounded (cgroups we
//! make, or the container engine's), talking to the gateway over a pipe ([`protocol`]); a small pool keeps such
//! workers started. A backend that cannot run here is built as [`Unavailable`] and fails closed.

pub mod describe;
pub mod engine;
pub mod local;
pub mod names;
pub mod process;
pub mod protocol;
pub mod search;
pub mod worker;

pub use engine::{Binding, Completion, Failure, Host, Limits, LogLine, Program, Run, Stopped};
pub use local::{Quickjs, ToolCaller};

use std::sync::Arc;

use async_trait::async_trait;
use mcpgate_config::{SandboxBackend, SandboxConfig};

/// Where programs run: one implementation per `code_mode.sandbox.backend`.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// Its name in config, metrics and `/status` (`quickjs`, …).
    fn name(&self) -> &'static str;

    /// Run `program` within `limits`, its tool calls answered by `tools`. Dropping the future stops the program
    /// and the calls in flight.
    async fn run(&self, program: Program, limits: Limits, tools: &dyn ToolCaller) -> Run;

    /// Whether it can run programs now; the reason it cannot fails `/ready` (and every run fails with it).
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// Its state for `/status`: slots in use, pooled workers.
    fn status(&self) -> serde_json::Value;
}

/// The sandbox `config` chooses. It never falls back: a backend that cannot run here is built anyway, answers
/// every run with the reason, and fails readiness with it.
pub fn build(config: &SandboxConfig) -> Arc<dyn Sandbox> {
    match config.backend {
        SandboxBackend::Quickjs => Arc::new(Quickjs::new(config.max_concurrent as usize)),
        SandboxBackend::Process => process::bubblewrap(config),
        SandboxBackend::Gvisor => process::gvisor(config),
        SandboxBackend::Docker => process::docker(config),
        SandboxBackend::Firecracker => Arc::new(Unavailable {
            name: "firecracker",
            reason: "firecracker needs KVM guests, which mcpgate does not support".into(),
        }),
    }
}

/// The limits `code_mode.sandbox` sets on each program.
impl From<&SandboxConfig> for Limits {
    fn from(config: &SandboxConfig) -> Self {
        Self {
            time: config.max_execution_time.0,
            memory: config.max_memory.0 as usize,
            stack: config.max_stack.0 as usize,
            output: config.max_output.0 as usize,
            logs: config.max_logs.0 as usize,
            calls: config.max_calls,
        }
    }
}

/// A configured sandbox that cannot run here: every run fails with the reason, and so does readiness.
pub struct Unavailable {
    /// The backend's name.
    pub name: &'static str,
    /// Why it cannot run.
    pub reason: String,
}

#[async_trait]
impl Sandbox for Unavailable {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn run(&self, _program: Program, _limits: Limits, _tools: &dyn ToolCaller) -> Run {
        let reason = format!("the {} sandbox cannot run: {}", self.name, self.reason);
        Run::failed(Failure::Sandbox(reason))
    }

    fn ready(&self) -> Result<(), String> {
        Err(format!("the {} sandbox cannot run: {}", self.name, self.reason))
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({ "ready": false, "reason": self.reason })
    }
}

#[cfg(test)]
mod tests;
