//! The processes a backend started, found through `/proc`.
//!
//! A backend under test is configured to pass a [`Marker`] into its children's environment (a command tool's
//! `env`, an upstream's `env`); children inherit it, and so do their own children, even after they are
//! orphaned and re-parented — which a parent-pid walk would lose. Tests running side by side in one process
//! each use their own marker, so none sees another's processes.
//!
//! A process is named by its pid *and* its start time ([`Proc`]), so a pid reused by an unrelated process is
//! never mistaken for the one seen before.

use std::{
    collections::BTreeSet,
    fs,
    sync::atomic::{AtomicUsize, Ordering},
};

/// The environment variable carrying a [`Marker`].
pub const MARKER_VARIABLE: &str = "MCPGATE_CONTRACT_MARK";

/// A value, unique in this machine for the life of the test, carried in the environment of every process a
/// backend under test starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    value: String,
}

impl Marker {
    /// A fresh marker: `label`, this process's id and a sequence number.
    pub fn unique(label: &str) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        Self { value: format!("{label}-{}-{seq}", std::process::id()) }
    }

    /// The variable's value (its name is [`MARKER_VARIABLE`]).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The processes alive now whose environment carries this marker. Zombies have no environment left, so
    /// they are not among them; [`Proc::lingers`] tells an unreaped child of ours apart.
    pub fn processes(&self) -> BTreeSet<Proc> {
        let wanted = format!("{MARKER_VARIABLE}={}", self.value);
        let Ok(entries) = fs::read_dir("/proc") else { return BTreeSet::new() };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                // Processes of other users cannot be read: they are not ours anyway.
                fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|environ| environ.split(|b| *b == 0).any(|item| item == wanted.as_bytes()))
            })
            .filter_map(Proc::of)
            .collect()
    }
}

/// One process: its pid and its start time (clock ticks after boot), which together never name another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Proc {
    /// Process id.
    pub pid: u32,
    start: u64,
}

/// What `/proc/PID/stat` says of a process.
struct Stat {
    state: char,
    ppid: u32,
    start: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp …`: comm may hold spaces and parentheses, so read after the last `)`.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        // Field 22 of stat(5), the 20th after the command name.
        start: fields.get(19)?.parse().ok()?,
    })
}

impl Proc {
    /// The process `pid` as it is now, if it exists.
    pub fn of(pid: u32) -> Option<Self> {
        stat(pid).map(|stat| Self { pid, start: stat.start })
    }

    /// Whether this process still holds anything: it runs (or sleeps, or is stopped), or it exited but is a
    /// child of this test process that nobody reaped — the backend's to reap, so a leak too. A zombie whose
    /// parent is someone else (an orphan re-parented to an init that may never reap it, in a container) runs
    /// no more and is not ours to reap: it is gone.
    pub fn lingers(&self) -> bool {
        match stat(self.pid) {
            Some(stat) if stat.start == self.start => {
                stat.state != 'Z' && stat.state != 'X' || stat.ppid == std::process::id()
            }
            _ => false,
        }
    }

    /// Its command line, for messages.
    pub fn command_line(&self) -> String {
        fs::read(format!("/proc/{}/cmdline", self.pid))
            .map(|line| String::from_utf8_lossy(&line).replace('\0', " ").trim_end().to_owned())
            .unwrap_or_default()
    }
}

/// Those of `processes` that still [linger](Proc::lingers), shown as `pid command line` for messages.
pub fn lingering(processes: &BTreeSet<Proc>) -> Vec<String> {
    processes.iter().filter(|p| p.lingers()).map(|p| format!("{} {}", p.pid, p.command_line())).collect()
}

/// Send SIGKILL to each of `processes` still alive (with `kill`, the program: this crate has no unsafe code
/// and no signal library). Used to take a stdio upstream away under its backend.
pub fn kill(processes: &BTreeSet<Proc>) {
    for process in processes.iter().filter(|p| p.lingers()) {
        let _ = std::process::Command::new("kill").args(["-KILL", &process.pid.to_string()]).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_by_pid_and_lingers() {
        let me = Proc::of(std::process::id()).unwrap();
        assert!(me.lingers());
        assert!(!me.command_line().is_empty());
        // A start time that differs names another process.
        assert!(!Proc { pid: me.pid, start: me.start + 1 }.lingers());
    }

    #[test]
    fn a_marked_child_is_found_and_gone_once_reaped() {
        let marker = Marker::unique("selftest");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(MARKER_VARIABLE, marker.value())
            .spawn()
            .unwrap();
        // Until the child has exec'd, /proc shows the environment it forked with, without the marker.
        let found = (0..5000)
            .find_map(|_| {
                let found = marker.processes();
                if found.is_empty() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    return None;
                }
                Some(found)
            })
            .expect("the marked child did not show within 5 s");
        assert_eq!(found.iter().map(|p| p.pid).collect::<Vec<_>>(), [child.id()]);
        child.kill().unwrap();
        // Killed but not reaped: a zombie child of ours still lingers.
        let dead = (0..5000).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            stat(child.id()).is_some_and(|s| s.state == 'Z')
        });
        assert!(dead, "the child did not die within 5 s");
        assert!(marker.processes().is_empty(), "a zombie has no environment");
        assert_eq!(lingering(&found).len(), 1);
        child.wait().unwrap();
        assert!(lingering(&found).is_empty());
    }
}
