//! A cgroup per worker, for its memory and its number of tasks, and to kill everything it started.
//!
//! cgroup v1 (the `memory` and `pids` hierarchies) or v2 (one hierarchy with both controllers). The workers'
//! cgroups are made under the gateway's own (`<hierarchy>/<our cgroup>/mcpgate-sandbox/<pid>-<n>`), so a
//! limit on the gateway covers its workers too. A v2 cgroup holding processes cannot have children with
//! controllers, so v2 works where mcpgate runs at the root of its hierarchy or in an empty delegated one;
//! elsewhere the backend is unavailable, with the reason.

use std::{
    io,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use nix::{sys::signal::Signal, unistd::Pid};

/// Where cgroup hierarchies are mounted.
const MOUNT: &str = "/sys/fs/cgroup";

/// The directory made under the gateway's cgroup for its workers'.
const PARENT: &str = "mcpgate-sandbox";

/// The hierarchies the workers' cgroups go in.
#[derive(Debug, Clone)]
pub(crate) enum Cgroups {
    /// v1: the `mcpgate-sandbox` directories in the memory and the pids hierarchy.
    V1 {
        /// In the memory hierarchy.
        memory: PathBuf,
        /// In the pids hierarchy.
        pids: PathBuf,
    },
    /// v2: the `mcpgate-sandbox` directory, with `memory` and `pids` enabled for its children.
    V2(PathBuf),
}

/// One worker's cgroup (two directories on v1).
#[derive(Debug)]
pub(crate) struct Group {
    /// `<gateway pid>-<n>`: unique on this host while the gateway runs.
    pub(crate) name: String,
    dirs: Vec<PathBuf>,
    version: Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Numbers the workers' cgroups within this process.
static NEXT: AtomicU64 = AtomicU64::new(1);

impl Cgroups {
    /// Find the hierarchies, make the `mcpgate-sandbox` parents and remove what a previous gateway left; `Err`
    /// names what is missing or refused.
    pub(crate) fn open() -> Result<Self, String> {
        let root = Path::new(MOUNT);
        let own = own_cgroups().map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let v1 = |controller: &str| own.iter().find(|(c, _)| c.split(',').any(|c| c == controller));
        let cgroups = match (v1("memory"), v1("pids")) {
            (Some((_, memory)), Some((_, pids))) => Self::V1 {
                memory: root.join("memory").join(relative(memory)).join(PARENT),
                pids: root.join("pids").join(relative(pids)).join(PARENT),
            },
            _ => match own.iter().find(|(c, _)| c.is_empty()) {
                Some((_, path)) if root.join("cgroup.controllers").exists() => {
                    Self::V2(root.join(relative(path)).join(PARENT))
                }
                _ => {
                    return Err(format!(
                        "no memory and pids cgroup controllers are mounted under {MOUNT} (cgroup v1 or v2 is \
                         needed to bound a worker's memory and tasks)"
                    ));
                }
            },
        };
        cgroups.prepare()?;
        Ok(cgroups)
    }

    fn prepare(&self) -> Result<(), String> {
        let make = |dir: &Path| match std::fs::create_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(format!(
                "cannot create the cgroup {}: {e} (the process and gvisor sandboxes need root, or a cgroup \
                 delegated to mcpgate's user)",
                dir.display()
            )),
        };
        match self {
            Self::V1 { memory, pids } => {
                make(memory)?;
                make(pids)?;
                for dir in [memory, pids] {
                    sweep(dir, Version::V1);
                }
            }
            Self::V2(dir) => {
                let parent = dir.parent().unwrap_or(Path::new(MOUNT));
                let enable = |at: &Path| {
                    std::fs::write(at.join("cgroup.subtree_control"), "+memory +pids").map_err(|e| {
                        format!(
                            "cannot enable the memory and pids controllers in {}: {e} (on cgroup v2 mcpgate must \
                             run at the root of its cgroup namespace or in an empty delegated cgroup)",
                            at.display()
                        )
                    })
                };
                enable(parent)?;
                make(dir)?;
                enable(dir)?;
                sweep(dir, Version::V2);
            }
        }
        Ok(())
    }

    /// A new cgroup for one worker: at most `memory` bytes (no swap) and `tasks` tasks (threads count).
    pub(crate) fn create(&self, memory: u64, tasks: u32) -> io::Result<Group> {
        let name = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let (dirs, version) = match self {
            Self::V1 { memory, pids } => (vec![memory.join(&name), pids.join(&name)], Version::V1),
            Self::V2(dir) => (vec![dir.join(&name)], Version::V2),
        };
        let group = Group { name, dirs, version };
        for dir in &group.dirs {
            std::fs::create_dir(dir)?;
        }
        group.set_memory(memory)?;
        let pids = group.dirs.last().map(|d| d.join("pids.max")).unwrap_or_default();
        std::fs::write(pids, tasks.to_string())?;
        Ok(group)
    }
}

impl Group {
    /// The `cgroup.procs` files a process writes its pid into to join.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The memory directory (v1) or the cgroup (v2).
    fn memory_dir(&self) -> &Path {
        &self.dirs[0]
    }

    /// Set the memory limit (and, where swap is accounted, the same limit on memory plus swap).
    pub(crate) fn set_memory(&self, bytes: u64) -> io::Result<()> {
        let dir = self.memory_dir();
        match self.version {
            Version::V1 => {
                let current = read_u64(&dir.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                // memory.memsw.limit_in_bytes may never be below memory.limit_in_bytes.
                let order: [&str; 2] = if bytes > current {
                    ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
                } else {
                    ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
                };
                for file in order {
                    if file.starts_with("memory.memsw") && !memsw.exists() {
                        continue;
                    }
                    std::fs::write(dir.join(file), bytes.to_string())?;
                }
                Ok(())
            }
            Version::V2 => {
                std::fs::write(dir.join("memory.max"), bytes.to_string())?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    std::fs::write(swap, "0")?;
                }
                Ok(())
            }
        }
    }

    /// The memory limit in force, in bytes.
    pub(crate) fn memory_limit(&self) -> Option<u64> {
        match self.version {
            Version::V1 => read_u64(&self.memory_dir().join("memory.limit_in_bytes")),
            Version::V2 => read_u64(&self.memory_dir().join("memory.max")),
        }
    }

    /// Whether the kernel killed something in it for lack of memory.
    pub(crate) fn oom_killed(&self) -> bool {
        let (file, key) = match self.version {
            Version::V1 => ("memory.oom_control", "oom_kill"),
            Version::V2 => ("memory.events", "oom_kill"),
        };
        let text = std::fs::read_to_string(self.memory_dir().join(file)).unwrap_or_default();
        let counted = text.lines().filter_map(|l| l.split_once(' ')).find(|(k, _)| *k == key);
        counted.and_then(|(_, n)| n.trim().parse::<u64>().ok()).is_some_and(|n| n > 0)
            // Kernels without the counter: the limit was hit at least once.
            || (counted.is_none() && read_u64(&self.memory_dir().join("memory.failcnt")).is_some_and(|n| n > 0))
    }

    /// The processes in it.
    pub(crate) fn pids(&self) -> Vec<i32> {
        let file = self.dirs.last().map(|d| d.join("cgroup.procs")).unwrap_or_default();
        let text = std::fs::read_to_string(file).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// SIGKILL every process in it, again until none is left (a process may fork meanwhile) or 50 rounds.
    pub(crate) fn kill_all(&self) {
        if self.version == Version::V2 && std::fs::write(self.memory_dir().join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// Remove its directories: `Err` while a process is still in it.
    pub(crate) fn remove(&self) -> io::Result<()> {
        let mut result = Ok(());
        for dir in &self.dirs {
            match std::fs::remove_dir(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => result = Err(e),
                _ => {}
            }
        }
        result
    }
}

/// `/proc/self/cgroup`: (controllers, path) per hierarchy; v2's controllers are empty.
fn own_cgroups() -> io::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string("/proc/self/cgroup")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers.to_owned(), path.to_owned()))
        })
        .collect())
}

/// A cgroup path made relative, for joining under a mount point.
fn relative(path: &str) -> &str {
    path.trim_start_matches('/')
}

fn read_u64(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    match text.trim() {
        "max" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// Remove the cgroups workers of gateways no longer running left behind (`<pid>-<n>` of a dead pid), killing
/// what is still in them.
fn sweep(parent: &Path, version: Version) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) =
            name.to_str().and_then(|n| n.split_once('-')).and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue;
        };
        if owner == std::process::id() || Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let group = Group { name: String::new(), dirs: vec![entry.path()], version };
        group.kill_all();
        let _ = group.remove();
    }
}
