//! The `docker` sandbox's containers: the worker in a container of its own, run by Podman or Docker.
//!
//! ```text
//! <engine> run --rm -i --name mcpgate-sb-<gateway pid>-<n> --pull never --network none --ipc none
//!   --hostname sandbox --read-only [--read-only-tmpfs=false --no-hosts --http-proxy=false]
//!   --memory <bytes> --memory-swap <bytes> --pids-limit 8 --cap-drop ALL --security-opt no-new-privileges
//!   --user 65534:65534 --ulimit nofile=64:64 --ulimit nproc=20000:20000 --ulimit core=0:0 --log-driver none
//!   --stop-signal KILL --workdir / --entrypoint /mcpgate <image> sandbox-worker --landlock require
//! ```
//!
//! (the bracketed flags are Podman's). The engine's stdin and stdout are the worker's protocol pipe, relayed;
//! the engine makes the container's cgroups, so its memory and pids limits are the engine's flags. The
//! image is never pulled. A container ends by itself when its worker exits (after its run, or when its stdin
//! closes) and `--rm` removes it; one whose worker is still running when the gateway lets go of it — a
//! timeout, a cancelled run, a pool dropped — is removed with `<engine> rm -f` (killing the engine's client
//! alone would leave it running).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{ExitStatus, Output, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::{process::Child, time::Instant};

/// The prefix of the workers' container names.
pub(crate) const PREFIX: &str = "mcpgate-sb-";

/// Where the worker binary is in the image.
pub(crate) const INSIDE: &str = "/mcpgate";

/// How long a question to the engine (its version, an image) may take.
const ASK: Duration = Duration::from_secs(30);

/// How long a worker that finished its run has to exit (and its container to be removed) before it is
/// removed by force.
const EXIT: Duration = Duration::from_secs(10);

/// `nproc` counts every process of uid 65534 on the host, not the container's: the pids limit bounds the
/// container; this only keeps the engine from setting a limit the host refuses (20000 is allowed where the
/// hard limit is low, as in some CI machines).
const NPROC: u32 = 20_000;

/// Numbers the containers within this process.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Which engine: their `run` flags differ a little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// Podman.
    Podman,
    /// Docker (or anything else answering to the Docker CLI).
    Docker,
}

/// The container engine and the image its workers run.
#[derive(Debug)]
pub(crate) struct Engine {
    /// `podman` or `docker`.
    pub(crate) path: PathBuf,
    /// Which one it is.
    pub(crate) flavour: Flavour,
    /// The image, with `/mcpgate` in it.
    pub(crate) image: String,
}

/// One worker's container.
#[derive(Debug)]
pub(crate) struct Container {
    /// Its unique name.
    pub(crate) name: String,
    /// Its memory limit, in bytes.
    pub(crate) memory: u64,
    /// The engine that runs it.
    engine: PathBuf,
}

impl Engine {
    /// The engine at `path`, asked whether it is Podman, with `image`; `Err` says why it cannot be used: it
    /// does not answer, it would not enforce the memory and pids limits, or the image is not there.
    pub(crate) fn open(path: PathBuf, image: &str) -> Result<Self, String> {
        let version = ask(&path, &["--version"])?;
        let flavour = if String::from_utf8_lossy(&version).to_ascii_lowercase().contains("podman") {
            Flavour::Podman
        } else {
            Flavour::Docker
        };
        let engine = Self { path, flavour, image: image.to_owned() };
        engine.enforces_limits()?;
        engine.image_id()?;
        Ok(engine)
    }

    /// `Err` where the engine would drop `--memory` or `--pids-limit` with a mere warning: rootless Podman on
    /// cgroup v1, or cgroups without the memory or pids controller (for Podman, those delegated to it).
    fn enforces_limits(&self) -> Result<(), String> {
        let (format, fail) = match self.flavour {
            Flavour::Podman => (
                "{{.Host.Security.Rootless}}|{{.Host.CgroupsVersion}}|{{.Host.CgroupControllers}}",
                "Podman would ignore the containers' memory and pids limits",
            ),
            Flavour::Docker => {
                ("{{.MemoryLimit}}|{{.PidsLimit}}", "Docker would ignore the containers' limits")
            }
        };
        let said =
            String::from_utf8_lossy(&ask(&self.path, &["info", "--format", format])?).trim().to_owned();
        let fields: Vec<&str> = said.split('|').collect();
        let problem = match (self.flavour, fields.as_slice()) {
            (Flavour::Podman, ["true", "v1", _]) => Some("it runs rootless on cgroup v1".to_owned()),
            (Flavour::Podman, [_, _, controllers]) => {
                let missing: Vec<&str> =
                    ["memory", "pids"].into_iter().filter(|c| !controllers.contains(c)).collect();
                (!missing.is_empty())
                    .then(|| format!("its cgroups lack the {} controller", missing.join(" and ")))
            }
            (Flavour::Docker, ["true", "true"]) => None,
            (Flavour::Docker, [_, _]) => Some(format!("`docker info` says MemoryLimit|PidsLimit = {said}")),
            _ => Some(format!("cannot read `info --format {format}`: {said:?}")),
        };
        match problem {
            Some(problem) => Err(format!("{fail}: {problem}")),
            None => Ok(()),
        }
    }

    /// The image's id; `Err` when it is missing (or the engine cannot say).
    fn image_id(&self) -> Result<String, String> {
        match ask(&self.path, &["image", "inspect", "--format", "{{.Id}}", &self.image]) {
            Ok(id) => Ok(String::from_utf8_lossy(&id).trim().to_owned()),
            Err(e) => {
                let lower = e.to_ascii_lowercase();
                if ["no such image", "image not known", "not found"].iter().any(|m| lower.contains(m)) {
                    Err(format!("image {} not found: build it with scripts/sandbox-image.sh", self.image))
                } else {
                    Err(format!("cannot inspect the image {}: {e}", self.image))
                }
            }
        }
    }

    /// A new container's name and size.
    pub(crate) fn container(&self, memory: u64) -> Container {
        let name = format!("{PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        Container { name, memory, engine: self.path.clone() }
    }

    /// The engine's arguments that run `container`'s worker: `tasks` tasks at most.
    pub(crate) fn arguments(&self, container: &Container, tasks: u32) -> Vec<OsString> {
        let memory = container.memory.to_string();
        let mut args: Vec<String> = ["run", "--rm", "-i", "--name", &container.name, "--pull", "never"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut push = |items: &[&str]| args.extend(items.iter().map(|&s| s.to_owned()));
        push(&["--network", "none", "--ipc", "none", "--hostname", "sandbox", "--read-only"]);
        if self.flavour == Flavour::Podman {
            // No tmpfs on /tmp, /run, /var/tmp; no /etc/hosts; no proxy variables.
            push(&["--read-only-tmpfs=false", "--no-hosts", "--http-proxy=false"]);
        }
        push(&["--memory", &memory, "--memory-swap", &memory, "--pids-limit", &tasks.to_string()]);
        push(&["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "65534:65534"]);
        push(&["--ulimit", "nofile=64:64", "--ulimit", &format!("nproc={NPROC}:{NPROC}")]);
        push(&["--ulimit", "core=0:0", "--log-driver", "none", "--stop-signal", "KILL", "--workdir", "/"]);
        push(&["--entrypoint", INSIDE, &self.image, "sandbox-worker", "--landlock", "require"]);
        args.into_iter().map(OsString::from).collect()
    }
}

impl Container {
    /// Let go of it: a finished worker's container goes by itself (`--rm`) once the engine's `client` exits;
    /// otherwise (or when it does not exit within [`EXIT`]) the client is killed and the container removed.
    pub(crate) fn dispose(self, client: Option<Child>, finished: bool) {
        let mut client = client;
        let exited = |status: Option<ExitStatus>| status.is_some_and(|s| s.code().is_some());
        if exited(client.as_mut().and_then(|c| c.try_wait().ok().flatten())) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if finished && let Some(client) = client.as_mut() {
                        let status = tokio::time::timeout(EXIT, client.wait()).await;
                        if exited(status.ok().and_then(Result::ok)) {
                            return;
                        }
                    }
                    drop(client); // kill_on_drop
                    let mut remove = tokio::process::Command::new(&self.engine);
                    let removed = remove.args(self.remove_arguments()).stdin(Stdio::null()).output().await;
                    self.removed(removed);
                });
            }
            Err(_) => {
                drop(client);
                let removed = std::thread::Builder::new().name("mcpgate-container".into()).spawn(move || {
                    let mut remove = std::process::Command::new(&self.engine);
                    let removed = remove.args(self.remove_arguments()).stdin(Stdio::null()).output();
                    self.removed(removed);
                });
                if let Err(e) = removed {
                    tracing::warn!(error = %e, "cannot start the thread that removes a sandbox container");
                }
            }
        }
    }

    fn remove_arguments(&self) -> [&str; 3] {
        ["rm", "-f", &self.name]
    }

    fn removed(&self, removed: std::io::Result<Output>) {
        match removed {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                // Already gone (it exited and `--rm` removed it meanwhile): nothing is left.
                let lower = stderr.to_ascii_lowercase();
                if !["no such container", "no container with name"].iter().any(|m| lower.contains(m)) {
                    let error = stderr.trim();
                    tracing::warn!(container = %self.name, error, "cannot remove a sandbox container");
                }
            }
            Err(e) => {
                let container = &self.name;
                tracing::warn!(container, error = %e, "cannot run the engine to remove a sandbox container");
            }
        }
    }
}

/// Run `program args` and return its stdout; `Err` with its stderr when it fails or takes over [`ASK`].
fn ask(program: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let deadline = Instant::now() + ASK;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} did not answer within {} s", ASK.as_secs()));
            }
            Err(e) => return Err(format!("cannot wait for {shown}: {e}")),
        }
    }
    let output = child.wait_with_output().map_err(|e| format!("cannot read what {shown} said: {e}"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "{shown}: {} ({})",
            stderr.split_whitespace().collect::<Vec<_>>().join(" "),
            output.status
        ))
    }
}
