//! Running a program: one thread per call owns the child. It spawns the program as the leader of its own
//! process group, waits for it to exit without reaping it (`waitid(WNOWAIT)`), kills the whole group, and
//! only then reaps it — so nothing the program left running outlives the call, and the group id (the
//! unreaped leader's pid) cannot be reused while it is being signalled. The call reads and writes the pipes
//! and holds a [`GroupKiller`], which kills the group on timeout, oversized output or cancellation.

use std::{
    io,
    os::unix::process::CommandExt,
    process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus, Stdio},
    sync::{Arc, Mutex, PoisonError},
};

use nix::{
    errno::Errno,
    sys::{
        signal::{Signal, killpg},
        wait::{Id, WaitPidFlag, waitid},
    },
    unistd::Pid,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::unix::pipe,
    sync::oneshot,
    time::Instant,
};

use super::Tool;

/// How a run ended, short of a [`RunError`].
pub(super) enum Ran {
    /// The program exited (or was killed by someone else); its output.
    Finished(Finished),
    /// Standard output passed `max_stdout`; the group was killed.
    StdoutTooLarge,
}

pub(super) struct Finished {
    pub(super) status: ExitStatus,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
    /// `Some(limit)` when standard error was cut at `limit` bytes.
    pub(super) stderr_cut: Option<usize>,
}

pub(super) enum RunError {
    /// `timeout` passed; the group was killed.
    Timeout,
    /// The program could not be started.
    Spawn(io::Error),
    /// The pipes or the waiter failed.
    Io(io::Error),
}

/// Kills the program's process group — on [`GroupKiller::kill`] and on drop — unless the program was reaped.
struct GroupKiller {
    pgid: Pid,
    /// Set, under the lock, by the thread that reaps the program: after that the group id may be reused.
    reaped: Arc<Mutex<bool>>,
}

impl GroupKiller {
    fn kill(&self) {
        let reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*reaped {
            // ESRCH (the group is empty already) is fine.
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the owner thread hands the call once the program runs. Dropped unreceived, it kills the group.
struct Started {
    group: GroupKiller,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
}

/// The call's end of the thread that owns a program.
struct Owner {
    /// The running program, or why it could not start.
    started: oneshot::Receiver<io::Result<Started>>,
    /// Its exit status, once it is reaped (after its group was killed).
    exited: oneshot::Receiver<io::Result<ExitStatus>>,
}

/// Start `command` on a thread of its own, which owns the child until it is reaped.
fn start(mut command: std::process::Command) -> io::Result<Owner> {
    let (started_tx, started_rx) = oneshot::channel();
    let (exited_tx, exited_rx) = oneshot::channel();
    std::thread::Builder::new().name("mcpgate-command".into()).spawn(move || {
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                let _ = started_tx.send(Err(error));
                return;
            }
        };
        // A pid is a positive pid_t, so this cast is exact.
        let pgid = Pid::from_raw(child.id() as i32);
        let reaped = Arc::new(Mutex::new(false));
        let started = Started {
            group: GroupKiller { pgid, reaped: Arc::clone(&reaped) },
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        };
        // If the call is gone already, the value comes back and dropping it kills the group.
        let _ = started_tx.send(Ok(started));
        let exited = loop {
            match waitid(Id::Pid(pgid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Err(Errno::EINTR) => continue,
                result => break result.is_ok(),
            }
        };
        let status = {
            let mut reaped = reaped.lock().unwrap_or_else(PoisonError::into_inner);
            if exited {
                // The leader is a zombie still, so the group id is ours: whatever it left running goes too.
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            let status = child.wait();
            *reaped = true;
            status
        };
        let _ = exited_tx.send(status);
    })?;
    Ok(Owner { started: started_rx, exited: exited_rx })
}

pub(super) async fn run(tool: &Tool, argv: Vec<String>, input: Option<String>) -> Result<Ran, RunError> {
    let deadline = Instant::now() + tool.timeout;
    let mut command = std::process::Command::new(&tool.program);
    command
        .args(argv)
        .env_clear()
        .envs(tool.env.iter().map(|(name, value)| (name, value)))
        .process_group(0)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &tool.cwd {
        command.current_dir(cwd);
    }
    let Owner { started, exited } = start(command).map_err(RunError::Io)?;
    let gone = || RunError::Io(io::Error::other("the thread owning the program ended"));
    let Started { group, stdin, stdout, stderr } =
        started.await.map_err(|_| gone())?.map_err(RunError::Spawn)?;

    let missing = || RunError::Io(io::Error::other("a pipe to the program is missing"));
    let stdout = pipe::Receiver::from_owned_fd(stdout.ok_or_else(missing)?.into()).map_err(RunError::Io)?;
    let stderr = pipe::Receiver::from_owned_fd(stderr.ok_or_else(missing)?.into()).map_err(RunError::Io)?;
    let stdin = stdin.map(|s| pipe::Sender::from_owned_fd(s.into())).transpose().map_err(RunError::Io)?;

    // The input is written while the output is read, so a program that answers before it has read all its
    // input cannot deadlock against us.
    let write = async move {
        if let (Some(mut pipe), Some(input)) = (stdin, input) {
            // A program that exits without reading its input is not an error of ours.
            let _ = pipe.write_all(input.as_bytes()).await;
        }
    };
    let io = async {
        let (stdout, stderr, ()) = tokio::join!(
            read_stdout(stdout, tool.max_stdout, &group),
            read_stderr(stderr, tool.max_stderr),
            write
        );
        (stdout, stderr)
    };
    let Ok((stdout, stderr)) = tokio::time::timeout_at(deadline, io).await else {
        group.kill();
        return Err(RunError::Timeout);
    };
    let Some(stdout) = stdout.map_err(RunError::Io)? else {
        return Ok(Ran::StdoutTooLarge);
    };
    let (stderr, stderr_cut) = stderr.map_err(RunError::Io)?;
    let status = match tokio::time::timeout_at(deadline, exited).await {
        Ok(status) => status.map_err(|_| gone())?.map_err(RunError::Io)?,
        Err(_) => {
            group.kill();
            return Err(RunError::Timeout);
        }
    };
    let stderr_cut = stderr_cut.then_some(tool.max_stderr);
    Ok(Ran::Finished(Finished { status, stdout, stderr, stderr_cut }))
}

/// Standard output up to `max` bytes; `None` (and the group killed) when there is more.
async fn read_stdout(
    pipe: impl AsyncRead + Unpin,
    max: usize,
    group: &GroupKiller,
) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    pipe.take((max as u64).saturating_add(1)).read_to_end(&mut out).await?;
    if out.len() > max {
        group.kill();
        return Ok(None);
    }
    Ok(Some(out))
}

/// Standard error up to `max` bytes, and whether there was more (read and thrown away, so the program never
/// blocks on a full pipe).
async fn read_stderr(mut pipe: impl AsyncRead + Unpin, max: usize) -> io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    (&mut pipe).take(max as u64).read_to_end(&mut kept).await?;
    let rest = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await?;
    Ok((kept, rest > 0))
}
