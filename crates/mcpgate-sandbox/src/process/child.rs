//! Starting one confined worker, and the gateway's handle on it.
//!
//! For `process` and `gvisor` the gateway runs `<mcpgate> sandbox-worker --launch --cgroup
//! <memory>/cgroup.procs --cgroup <pids>/cgroup.procs [--user 65534:65534] -- <bwrap|runsc> <its arguments>
//! -- <mcpgate> sandbox-worker`: the launcher joins the worker's cgroups, drops to `nobody` when the gateway
//! is root, and becomes the outer sandbox, so nothing of the worker ever runs outside its cgroups. Dropping a
//! [`Worker`] SIGKILLs everything in its cgroup and removes the cgroup once it is empty. For `docker` it runs
//! the container engine (`container.rs`), which makes the container's cgroups; dropping the worker removes the
//! container.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::{
    io::BufReader,
    process::{Child, ChildStderr, ChildStdin, ChildStdout, Command},
    time::Instant,
};

use super::{
    cgroup::{Cgroups, Group},
    container::{Container, Engine},
    lines::{Line, Lines, Stderr},
};
use crate::{
    engine::Limits,
    protocol::{self, Confinement, FromWorker},
};

/// How long a worker may take to start and say `ready`.
const STARTUP: Duration = Duration::from_secs(20);

/// Where the worker binary is mounted inside bubblewrap.
const INSIDE: &str = "/mcpgate";

/// The user workers run as when the gateway is root: `nobody`.
const NOBODY: (u32, u32) = (65534, 65534);

/// The outer sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// Bubblewrap: namespaces (user, pid, net, ipc, uts, mount, cgroup), an empty read-only root.
    Bwrap,
    /// gVisor's `runsc do`: a user-space kernel, no network.
    Gvisor,
    /// A container run by Podman or Docker.
    Container,
}

impl Isolation {
    /// Memory a worker may use beyond the program's heap: the process itself (and gVisor's kernel).
    fn overhead(self) -> u64 {
        match self {
            // Measured: 6 MiB idle; a 64 MiB heap filled peaks at 69 MiB.
            Self::Bwrap => 32 << 20,
            // Measured: 27 MiB idle; a 64 MiB heap filled peaks at 89 MiB.
            Self::Gvisor => 128 << 20,
            // The same process as under bubblewrap, alone in its container's cgroup.
            Self::Container => 32 << 20,
        }
    }

    /// Tasks (threads count) a worker's cgroup may hold: bwrap, its init, the worker's two threads (a
    /// container holds only the worker); gVisor's Go runtime has many (48 measured on 2 cores).
    fn tasks(self) -> u32 {
        match self {
            Self::Bwrap | Self::Container => 8,
            Self::Gvisor => 512,
        }
    }
}

/// What starting a worker needs.
#[derive(Debug)]
pub(crate) struct Spawner {
    /// The outer sandbox.
    pub(crate) isolation: Isolation,
    /// `bwrap`, `runsc`, or the container engine.
    pub(crate) runner: PathBuf,
    /// The mcpgate binary (`sandbox-worker`); in a container, its path in the image.
    pub(crate) worker: PathBuf,
    /// Where the workers' cgroups go; `None` for containers (the engine makes theirs).
    pub(crate) cgroups: Option<Cgroups>,
    /// The container engine and image, for `docker`.
    pub(crate) engine: Option<Engine>,
    /// The limits workers are sized for until a run says otherwise.
    pub(crate) limits: Limits,
}

impl Spawner {
    /// The memory limit for a run under `limits`: the heap, the result and logs on their way out (serialized
    /// more than once), and the process's own.
    pub(crate) fn memory_for(&self, limits: &Limits) -> u64 {
        let data = limits
            .memory
            .saturating_add(limits.output.saturating_mul(3))
            .saturating_add(limits.logs.saturating_mul(6));
        (data as u64).saturating_add(self.isolation.overhead())
    }

    /// Start a worker sized for the spawner's limits and wait for its `ready`.
    pub(crate) async fn start(&self) -> Result<Worker, String> {
        self.start_for(&self.limits).await
    }

    /// Start a worker sized for `limits` and wait for its `ready`.
    pub(crate) async fn start_for(&self, limits: &Limits) -> Result<Worker, String> {
        let started = Instant::now();
        let (mut command, group, scratch, container) = match &self.engine {
            Some(engine) => {
                let container = engine.container(self.memory_for(limits));
                let mut command = Command::new(&self.runner);
                command.args(engine.arguments(&container, self.isolation.tasks()));
                // The engine's client keeps its environment (HOME, XDG_RUNTIME_DIR, DOCKER_HOST, PATH); the
                // container gets none of it.
                command.current_dir("/");
                (command, None, None, Some(container))
            }
            None => {
                let (command, group, scratch) = self.launcher(limits)?;
                (command, Some(group), scratch, None)
            }
        };
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                if let Some(group) = &group {
                    let _ = group.remove();
                }
                return Err(format!("cannot start {}: {e}", command.as_std().get_program().display()));
            }
        };
        let Some(stdout) = child.stdout.take() else {
            drop(child);
            if let Some(group) = &group {
                group.kill_all();
                let _ = group.remove();
            }
            return Err("the worker has no stdout".into());
        };
        let mut worker = Worker {
            stdin: child.stdin.take(),
            stdout: Lines::new(BufReader::new(stdout)),
            stderr: Stderr::new(child.stderr.take()),
            child: Some(child),
            group,
            scratch,
            container,
            finished: false,
            status: None,
            confinement: None,
            start_time: Duration::ZERO,
        };
        let said = tokio::time::timeout(STARTUP, async {
            loop {
                tokio::select! {
                    line = worker.stdout.next(protocol::READY_LINE_LIMIT) => break line,
                    () = worker.stderr.pump() => {}
                }
            }
        })
        .await;
        let problem = match said {
            Err(_) => format!("the worker did not start within {} s", STARTUP.as_secs()),
            Ok(Ok(Line::Complete(line))) => match serde_json::from_slice(&line) {
                Ok(FromWorker::Ready(confinement)) => {
                    worker.confinement = Some(confinement);
                    worker.start_time = started.elapsed();
                    return Ok(worker);
                }
                _ => format!("the worker's first line is not `ready`: {:?}", String::from_utf8_lossy(&line)),
            },
            Ok(Ok(Line::TooLong)) => "the worker's first line is too long".into(),
            Ok(Ok(Line::Eof)) => "the worker exited before it was ready".into(),
            Ok(Err(e)) => format!("cannot read from the worker: {e}"),
        };
        Err(worker.explain(problem).await)
    }

    /// The launcher's command line for `process` and `gvisor`, the worker's new cgroup (sized for `limits`)
    /// and `runsc`'s state directory.
    fn launcher(&self, limits: &Limits) -> Result<(Command, Group, Option<PathBuf>), String> {
        let Some(cgroups) = &self.cgroups else { return Err("no cgroups for the workers".into()) };
        let group = cgroups
            .create(self.memory_for(limits), self.isolation.tasks())
            .map_err(|e| format!("cannot create the worker's cgroup: {e}"))?;
        let mut command = Command::new(&self.worker);
        command.arg("sandbox-worker").arg("--launch");
        for file in group.procs_files() {
            command.arg("--cgroup").arg(file);
        }
        if nix::unistd::geteuid().is_root() {
            command.arg("--user").arg(format!("{}:{}", NOBODY.0, NOBODY.1));
        }
        let scratch = (self.isolation == Isolation::Gvisor)
            .then(|| std::env::temp_dir().join(format!("mcpgate-runsc-{}", group.name)));
        if let Some(dir) = &scratch {
            command.arg("--tmpdir").arg(dir);
        }
        command.arg("--").arg(&self.runner).args(self.arguments());
        command.env_clear().current_dir("/");
        Ok((command, group, scratch))
    }

    /// The runner's arguments, ending with the worker's command line.
    fn arguments(&self) -> Vec<OsString> {
        if let Some(engine) = &self.engine {
            // As a worker is started, with the name and size of the next container.
            return engine
                .arguments(&engine.container(self.memory_for(&self.limits)), self.isolation.tasks());
        }
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        match self.isolation {
            Isolation::Bwrap => {
                push(&["--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]);
                push(&["--cap-drop", "ALL", "--uid", "65534", "--gid", "65534", "--hostname", "sandbox"]);
                for dir in ["/usr/lib", "/usr/lib64", "/lib", "/lib64"] {
                    match std::fs::read_link(dir) {
                        Ok(target) => {
                            args.extend(["--symlink".into(), target.into_os_string(), dir.into()]);
                        }
                        Err(_) if Path::new(dir).is_dir() => {
                            args.extend(["--ro-bind", dir, dir].map(OsString::from));
                        }
                        Err(_) => {}
                    }
                }
                args.extend(["--ro-bind".into(), self.worker.clone().into_os_string(), INSIDE.into()]);
                args.extend(["--remount-ro", "/", "--chdir", "/", "--", INSIDE].map(OsString::from));
                args.extend(["sandbox-worker", "--landlock", "require"].map(OsString::from));
            }
            Isolation::Gvisor => {
                push(&[
                    "--rootless",
                    "--network=none",
                    "--ignore-cgroups",
                    "do",
                    "-quiet",
                    "-cwd",
                    "/",
                    "--",
                ]);
                args.push(self.worker.clone().into_os_string());
                // gVisor implements no Landlock; its own kernel and the seccomp filter confine the worker.
                args.extend(["sandbox-worker", "--landlock", "best-effort"].map(OsString::from));
            }
            Isolation::Container => {}
        }
        args
    }

    /// The full command line a worker is started with (for the docs and `/status`).
    pub(crate) fn command_line(&self) -> Vec<String> {
        let mut line = vec![self.runner.display().to_string()];
        line.extend(self.arguments().iter().map(|a| a.to_string_lossy().into_owned()));
        line
    }
}

/// Remove the `runsc` state directories workers of gateways no longer running left behind.
pub(crate) fn sweep_scratch() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner =
            name.to_str().and_then(|n| n.strip_prefix("mcpgate-runsc-")).and_then(|n| n.split_once('-'));
        match owner.and_then(|(pid, _)| pid.parse::<u32>().ok()) {
            Some(pid) if !Path::new(&format!("/proc/{pid}")).exists() => {
                let _ = std::fs::remove_dir_all(entry.path());
            }
            _ => {}
        }
    }
}

/// A started worker: its pipes, its cgroup or container, and how it confined itself.
pub(crate) struct Worker {
    child: Option<Child>,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: Lines<BufReader<ChildStdout>>,
    pub(crate) stderr: Stderr<ChildStderr>,
    group: Option<Group>,
    /// `runsc`'s `TMPDIR`, removed with the cgroup.
    scratch: Option<PathBuf>,
    /// Its container (`docker`), removed when it is dropped unless it went by itself.
    container: Option<Container>,
    /// Whether it sent its `done` (its container then ends by itself).
    pub(crate) finished: bool,
    /// How its process (the engine's client, for a container) ended, once known.
    status: Option<ExitStatus>,
    /// What its `ready` said.
    pub(crate) confinement: Option<Confinement>,
    /// From spawn to `ready`.
    pub(crate) start_time: Duration,
}

impl Worker {
    /// Whether it has exited (a pooled worker killed from outside).
    pub(crate) fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// Size its memory limit for a run under `limits`: `Ok(false)` when it is a container of another size
    /// (the engine fixed its limit at start: it must be replaced).
    pub(crate) fn fit(&self, spawner: &Spawner, limits: &Limits) -> std::io::Result<bool> {
        let memory = spawner.memory_for(limits);
        match (&self.group, &self.container) {
            (Some(group), _) if group.memory_limit() != Some(memory) => {
                group.set_memory(memory).map(|()| true)
            }
            (_, Some(container)) => Ok(container.memory == memory),
            _ => Ok(true),
        }
    }

    /// Whether the kernel killed something in it for lack of memory. In a container the worker is alone, and
    /// nothing but the kernel's OOM killer sends it SIGKILL while the gateway waits for it: the engine's
    /// client exits with 137 (128 + SIGKILL) then.
    pub(crate) fn oom_killed(&self) -> bool {
        self.group.as_ref().is_some_and(Group::oom_killed)
            || (self.container.is_some() && self.status.and_then(|s| s.code()) == Some(137))
    }

    /// `problem`, with how the worker ended and what it wrote on stderr.
    pub(crate) async fn explain(&mut self, problem: String) -> String {
        // The engine's client removes the container (`--rm`) before it exits.
        let wait = if self.container.is_some() { Duration::from_secs(5) } else { Duration::from_secs(1) };
        let status = match self.child.as_mut() {
            Some(child) => tokio::time::timeout(wait, child.wait()).await.ok().and_then(Result::ok),
            None => None,
        };
        self.status = status;
        self.stderr.finish(Duration::from_millis(200)).await;
        let mut message = problem;
        if let Some(status) = status {
            use std::os::unix::process::ExitStatusExt;
            // bwrap and the container engines exit with 128 + the signal that killed the worker.
            let signal =
                status.signal().or_else(|| status.code().filter(|c| (129..160).contains(c)).map(|c| c - 128));
            match signal {
                Some(signal) if signal == libc::SIGSYS => {
                    message.push_str(" (killed by its seccomp filter: it made a forbidden system call)")
                }
                Some(signal) => message.push_str(&format!(" (killed by signal {signal})")),
                None => message.push_str(&format!(" ({status})")),
            }
        }
        let stderr = self.stderr.text();
        if !stderr.is_empty() {
            message.push_str(": ");
            message.push_str(&stderr);
        }
        message
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(container) = self.container.take() {
            container.dispose(self.child.take(), self.finished);
        }
        if let Some(group) = &self.group {
            group.kill_all();
        }
        if let Some(mut child) = self.child.take() {
            // kill_on_drop: tokio reaps it.
            let _ = child.start_kill();
        }
        if let Some(group) = self.group.take() {
            let scratch = self.scratch.take();
            // The processes take a moment to go; the cgroup can only be removed once they have.
            let removed = std::thread::Builder::new().name("mcpgate-cgroup".into()).spawn(move || {
                for _ in 0..500 {
                    if group.remove().is_ok() {
                        if let Some(dir) = scratch {
                            let _ = std::fs::remove_dir_all(dir);
                        }
                        return;
                    }
                    group.kill_all();
                    std::thread::sleep(Duration::from_millis(10));
                }
                tracing::warn!(?group, "cannot remove a sandbox worker's cgroup");
            });
            if let Err(e) = removed {
                tracing::warn!(error = %e, "cannot start the thread that removes a worker's cgroup");
            }
        }
    }
}
