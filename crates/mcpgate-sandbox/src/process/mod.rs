//! The `process`, `gvisor` and `docker` sandboxes: each program runs in a `mcpgate sandbox-worker` process of
//! its own (the [`worker`](crate::worker)), inside an outer sandbox — bubblewrap namespaces, gVisor's
//! user-space kernel, or a Podman/Docker container (`container.rs`) — and a cgroup bounding its memory and
//! tasks (ours, or the container engine's), and it confines itself further before it reads the program
//! (Landlock, seccomp: `confine.rs`). The gateway answers the program's tool calls over the worker's
//! pipes as the in-process sandbox does over channels ([`protocol`](crate::protocol)).
//!
//! A worker runs one program and is killed (its whole cgroup, or its container) when the run ends, is
//! cancelled or times out.
//! `pool.rs` keeps some started and waiting. Nothing falls back: a backend that cannot run here is
//! [`Unavailable`] with the reason, and a worker that cannot start fails the run and
//! readiness with its own.

mod cgroup;
mod child;
pub(crate) mod confine;
mod container;
mod drive;
mod lines;
mod pool;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use mcpgate_config::SandboxConfig;
use tokio::{sync::Semaphore, time::Instant};

use self::{
    child::{Isolation, Spawner},
    container::Engine,
    pool::Pool,
};
use crate::{
    Sandbox, Unavailable,
    engine::{Failure, Limits, Program, Run},
    local::ToolCaller,
    worker::MAX_STACK,
};

/// A sandbox running each program in a confined worker process.
pub struct Process {
    name: &'static str,
    spawner: Arc<Spawner>,
    pool: Arc<Pool>,
    slots: Arc<Semaphore>,
    size: usize,
}

/// The `process` sandbox (bubblewrap), or why it cannot run here.
pub(crate) fn bubblewrap(config: &SandboxConfig) -> Arc<dyn Sandbox> {
    build(config, "process", Isolation::Bwrap, "bwrap", "Debian package bubblewrap")
}

/// The `gvisor` sandbox (`runsc`), or why it cannot run here.
pub(crate) fn gvisor(config: &SandboxConfig) -> Arc<dyn Sandbox> {
    build(config, "gvisor", Isolation::Gvisor, "runsc", "gVisor; Debian package runsc")
}

/// The `docker` sandbox (Podman or Docker), or why it cannot run here.
pub(crate) fn docker(config: &SandboxConfig) -> Arc<dyn Sandbox> {
    let unavailable =
        |reason: String| -> Arc<dyn Sandbox> { Arc::new(Unavailable { name: "docker", reason }) };
    let path = match config.container_engine.as_deref() {
        Some(path) if executable(Path::new(path)) => PathBuf::from(path),
        Some(path) => {
            return unavailable(format!(
                "the container engine {path} is not an executable file (code_mode.sandbox.container_engine)"
            ));
        }
        None => match on_path("podman").or_else(|| on_path("docker")) {
            Some(path) => path,
            None => {
                return unavailable("neither podman nor docker is on PATH (Debian package podman)".into());
            }
        },
    };
    let engine = match Engine::open(path, &config.image) {
        Ok(engine) => engine,
        Err(reason) => return unavailable(reason),
    };
    let spawner = Spawner {
        isolation: Isolation::Container,
        runner: engine.path.clone(),
        worker: PathBuf::from(container::INSIDE),
        cgroups: None,
        engine: Some(engine),
        limits: limits(config),
    };
    assemble(config, "docker", spawner)
}

fn build(
    config: &SandboxConfig,
    name: &'static str,
    isolation: Isolation,
    program: &str,
    package: &str,
) -> Arc<dyn Sandbox> {
    let unavailable = |reason: String| -> Arc<dyn Sandbox> { Arc::new(Unavailable { name, reason }) };
    let runner = match config.runner.as_deref() {
        Some(path) if executable(Path::new(path)) => PathBuf::from(path),
        Some(path) => {
            return unavailable(format!("{program} not found at {path} (code_mode.sandbox.runner)"));
        }
        None => match on_path(program) {
            Some(path) => path,
            None => return unavailable(format!("{program} not found on PATH ({package})")),
        },
    };
    let worker = match config.worker_command.as_deref() {
        Some(path) => PathBuf::from(path),
        None => match std::env::current_exe() {
            Ok(path) => path,
            Err(e) => return unavailable(format!("cannot find the mcpgate executable for the workers: {e}")),
        },
    };
    if !executable(&worker) {
        return unavailable(format!("the worker executable {} is not an executable file", worker.display()));
    }
    let cgroups = match cgroup::Cgroups::open() {
        Ok(cgroups) => cgroups,
        Err(reason) => return unavailable(reason),
    };
    if isolation == Isolation::Gvisor {
        child::sweep_scratch();
    }
    let spawner =
        Spawner { isolation, runner, worker, cgroups: Some(cgroups), engine: None, limits: limits(config) };
    assemble(config, name, spawner)
}

/// The limits workers are sized for until a run says otherwise.
fn limits(config: &SandboxConfig) -> Limits {
    let limits = Limits::from(config);
    Limits { stack: limits.stack.min(MAX_STACK), ..limits }
}

/// The sandbox whose workers `spawner` starts, its pool filling.
fn assemble(config: &SandboxConfig, name: &'static str, spawner: Spawner) -> Arc<dyn Sandbox> {
    let spawner = Arc::new(spawner);
    let warm = if config.enabled { config.pool_size as usize } else { 0 };
    tracing::debug!(sandbox = name, command = ?spawner.command_line(), "sandbox workers start with");
    let size = (config.max_concurrent as usize).max(1);
    Arc::new(Process {
        name,
        pool: Pool::new(spawner.clone(), warm),
        spawner,
        slots: Arc::new(Semaphore::new(size)),
        size,
    })
}

/// Whether `path` is a file someone may execute.
fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `program` in a directory of `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| executable(candidate))
}

impl Process {
    fn cannot_start(&self, reason: &str) -> Run {
        Run::failed(Failure::Sandbox(format!("cannot start a {} worker: {reason}", self.name)))
    }
}

#[async_trait::async_trait]
impl Sandbox for Process {
    fn name(&self) -> &'static str {
        self.name
    }

    /// Run `program` in a worker (a warm one when there is one). Waiting for a slot and starting a worker
    /// count against the time limit.
    async fn run(&self, program: Program, limits: Limits, tools: &dyn ToolCaller) -> Run {
        let deadline = Instant::now() + limits.time;
        let _slot = match crate::local::slot(&self.slots, deadline, limits.time).await {
            Ok(slot) => slot,
            Err(run) => return run,
        };
        let mut worker = match tokio::time::timeout_at(deadline, self.pool.take()).await {
            Ok(Ok((worker, _warm))) => worker,
            Ok(Err(reason)) => return self.cannot_start(&reason),
            Err(_) => return Run::failed(Failure::Timeout(limits.time)),
        };
        match worker.fit(&self.spawner, &limits) {
            Ok(true) => {}
            // A container sized for other limits: one of this run's size instead.
            Ok(false) => match tokio::time::timeout_at(deadline, self.spawner.start_for(&limits)).await {
                Ok(Ok(sized)) => worker = sized,
                Ok(Err(reason)) => return self.cannot_start(&reason),
                Err(_) => return Run::failed(Failure::Timeout(limits.time)),
            },
            Err(e) => {
                return Run::failed(Failure::Sandbox(format!("cannot set the worker's memory limit: {e}")));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let sent = Limits { time: left, stack: limits.stack.min(MAX_STACK), ..limits };
        // Dropping the worker (here, or with this future) kills everything in its cgroup.
        drive::drive(&mut worker, program, sent, &limits, tools, deadline).await
    }

    fn ready(&self) -> Result<(), String> {
        match self.pool.snapshot().error {
            Some(error) => Err(format!("the {} sandbox cannot start workers: {error}", self.name)),
            None => Ok(()),
        }
    }

    fn status(&self) -> serde_json::Value {
        let pool = self.pool.snapshot();
        let mut status = serde_json::json!({
            "ready": pool.error.is_none(),
            "pool": { "size": pool.size, "warm": pool.warm, "starting": pool.starting },
            "running": self.size - self.slots.available_permits(),
            "slots": self.size,
            "confinement": pool.confinement,
            "last_cold_start_ms": pool.last_cold_ms,
        });
        if let Some(error) = pool.error {
            status["reason"] = error.into();
        }
        status
    }
}
