//! Starting one confined worker, and the gateway's handle on it.
//!
//! The gateway runs `<mcpgate> sandbox-worker --launch --cgroup <memory>/cgroup.procs --cgroup
//! <pids>/cgroup.procs [--user 65534:65534] -- <bwrap|runsc> <its arguments> -- <mcpgate> sandbox-worker`:
//! the launcher joins the worker's cgroups, drops to `nobody` when the gateway is root, and becomes the outer
//! sandbox, so nothing of the worker ever runs outside its cgroups. Dropping a [`Worker`] SIGKILLs everything
//! in its cgroup and removes the cgroup once it is empty.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::BufReader,
    process::{Child, ChildStderr, ChildStdin, ChildStdout, Command},
    time::Instant,
};

use super::{
    cgroup::{Cgroups, Group},
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
}

impl Isolation {
    /// Memory a worker may use beyond the program's heap: the process itself (and gVisor's kernel).
    fn overhead(self) -> u64 {
        match self {
            // Measured: 6 MiB idle; a 64 MiB heap filled peaks at 69 MiB.
            Self::Bwrap => 32 << 20,
            // Measured: 27 MiB idle; a 64 MiB heap filled peaks at 89 MiB.
            Self::Gvisor => 128 << 20,
        }
    }

    /// Tasks (threads count) a worker's cgroup may hold: bwrap, its init, the worker's two threads; gVisor's
    /// Go runtime has many (48 measured on 2 cores).
    fn tasks(self) -> u32 {
        match self {
            Self::Bwrap => 8,
            Self::Gvisor => 512,
        }
    }
}

/// What starting a worker needs.
#[derive(Debug)]
pub(crate) struct Spawner {
    /// The outer sandbox.
    pub(crate) isolation: Isolation,
    /// `bwrap` or `runsc`.
    pub(crate) runner: PathBuf,
    /// The mcpgate binary (`sandbox-worker`).
    pub(crate) worker: PathBuf,
    /// Where the workers' cgroups go.
    pub(crate) cgroups: Cgroups,
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

    /// Start a worker and wait for its `ready`.
    pub(crate) async fn start(&self) -> Result<Worker, String> {
        let started = Instant::now();
        let group = self
            .cgroups
            .create(self.memory_for(&self.limits), self.isolation.tasks())
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
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = group.remove();
                return Err(format!("cannot start {}: {e}", self.worker.display()));
            }
        };
        let Some(stdout) = child.stdout.take() else {
            drop(child);
            group.kill_all();
            let _ = group.remove();
            return Err("the worker has no stdout".into());
        };
        let mut worker = Worker {
            stdin: child.stdin.take(),
            stdout: Lines::new(BufReader::new(stdout)),
            stderr: Stderr::new(child.stderr.take()),
            child: Some(child),
            group: Some(group),
            scratch,
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

    /// The runner's arguments, ending with the worker's command line.
    fn arguments(&self) -> Vec<OsString> {
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

/// A started worker: its pipes, its cgroup, and how it confined itself.
pub(crate) struct Worker {
    child: Option<Child>,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: Lines<BufReader<ChildStdout>>,
    pub(crate) stderr: Stderr<ChildStderr>,
    group: Option<Group>,
    /// `runsc`'s `TMPDIR`, removed with the cgroup.
    scratch: Option<PathBuf>,
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

    /// Size its memory limit for a run under `limits`.
    pub(crate) fn fit(&self, spawner: &Spawner, limits: &Limits) -> std::io::Result<()> {
        match &self.group {
            Some(group) if group.memory_limit() != Some(spawner.memory_for(limits)) => {
                group.set_memory(spawner.memory_for(limits))
            }
            _ => Ok(()),
        }
    }

    /// Whether the kernel killed something in it for lack of memory.
    pub(crate) fn oom_killed(&self) -> bool {
        self.group.as_ref().is_some_and(Group::oom_killed)
    }

    /// `problem`, with how the worker ended and what it wrote on stderr.
    pub(crate) async fn explain(&mut self, problem: String) -> String {
        let status = match self.child.as_mut() {
            Some(child) => {
                tokio::time::timeout(Duration::from_secs(1), child.wait()).await.ok().and_then(Result::ok)
            }
            None => None,
        };
        self.stderr.finish(Duration::from_millis(200)).await;
        let mut message = problem;
        if let Some(status) = status {
            use std::os::unix::process::ExitStatusExt;
            // bwrap exits with 128 + the signal that killed the worker.
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
