//! `mcpgate sandbox-worker`: one program run by the engine in a process of its own, speaking the
//! [`protocol`] over stdin/stdout. The `process` and `gvisor` sandboxes start it.
//!
//! ```text
//! mcpgate sandbox-worker [--landlock require|best-effort]
//! mcpgate sandbox-worker --launch [--cgroup PROCS_FILE]... [--user UID:GID] [--tmpdir DIR] -- PROGRAM [ARG]...
//! ```
//!
//! As a worker it confines itself first: Landlock and `no_new_privs` on the main thread, then the engine thread
//! starts (it inherits them) and installs the seccomp filter on both threads (`process/confine.rs`); only
//! then does it say `ready` and read its program. `--landlock require` (the default) refuses to run on a kernel
//! without Landlock; gVisor, which has none, passes `best-effort`.
//!
//! `--launch` is the gateway's own step before the outer sandbox: it writes its pid into each cgroup's
//! `cgroup.procs` (so the sandbox and everything in it start inside the cgroups: no race with their first
//! fork), drops to `UID:GID` when asked, makes DIR (mode 0700) and names it `TMPDIR` when asked (where `runsc`
//! keeps its state, so the gateway can remove what a killed one leaves), then `exec`s PROGRAM (`bwrap` or
//! `runsc`).

use std::{
    ffi::{OsStr, OsString},
    fs::File,
    io::{Read, Write},
    os::{fd::AsFd, unix::process::CommandExt},
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::time::Instant;

use crate::{
    engine::{self, Completion, Host, Limits, Stopped},
    process::confine,
    protocol::{self, Confinement, FromWorker, ToWorker},
};

/// The most native stack a program may use (the configuration's own maximum for `max_stack`).
pub const MAX_STACK: usize = 64 << 20;

/// Stack the engine thread has beyond the interpreter's limit (host functions, serde).
const STACK_MARGIN: usize = 2 << 20;

/// Exit code of a worker that could not confine itself or speak the protocol.
const CONFINEMENT_FAILED: u8 = 3;

/// Run `mcpgate sandbox-worker ARGS` (the arguments after the subcommand).
pub fn main(args: Vec<OsString>) -> ExitCode {
    match args.first().map(OsString::as_os_str) {
        Some(flag) if flag == "--launch" => launch(&args[1..]),
        _ => work(&args),
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("mcpgate sandbox-worker: {message}");
    ExitCode::from(2)
}

/// Join the cgroups, drop privileges, and become the outer sandbox.
fn launch(args: &[OsString]) -> ExitCode {
    let mut cgroups = Vec::new();
    let mut user = None;
    let mut tmpdir = None;
    let mut rest = args.iter();
    loop {
        match rest.next().map(|a| a.to_str().unwrap_or("")) {
            Some("--cgroup") => match rest.next() {
                Some(file) => cgroups.push(file.clone()),
                None => return usage("--cgroup needs a cgroup.procs file"),
            },
            Some("--user") => match rest.next().and_then(|u| parse_user(u)) {
                Some(ids) => user = Some(ids),
                None => return usage("--user needs UID:GID"),
            },
            Some("--tmpdir") => match rest.next() {
                Some(dir) => tmpdir = Some(dir.clone()),
                None => return usage("--tmpdir needs a directory"),
            },
            Some("--") => break,
            _ => {
                return usage(
                    "--launch [--cgroup FILE]... [--user UID:GID] [--tmpdir DIR] -- PROGRAM [ARG]...",
                );
            }
        }
    }
    let Some(program) = rest.next() else { return usage("--launch needs a program after --") };
    for file in &cgroups {
        if let Err(e) = std::fs::write(file, std::process::id().to_string()) {
            eprintln!("mcpgate sandbox-worker: cannot join the cgroup ({}): {e}", OsStr::new(file).display());
            return ExitCode::from(CONFINEMENT_FAILED);
        }
    }
    if let Some((uid, gid)) = user {
        use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
        let dropped = setgroups(&[])
            .and_then(|()| setgid(Gid::from_raw(gid)))
            .and_then(|()| setuid(Uid::from_raw(uid)));
        if let Err(e) = dropped {
            eprintln!("mcpgate sandbox-worker: cannot become {uid}:{gid}: {e}");
            return ExitCode::from(CONFINEMENT_FAILED);
        }
    }
    let mut command = std::process::Command::new(program);
    if let Some(dir) = tmpdir {
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            eprintln!("mcpgate sandbox-worker: cannot create {}: {e}", OsStr::new(&dir).display());
            return ExitCode::from(CONFINEMENT_FAILED);
        }
        command.env("TMPDIR", dir);
    }
    let error = command.args(rest).exec();
    eprintln!("mcpgate sandbox-worker: cannot run {}: {error}", OsStr::new(program).display());
    ExitCode::from(126)
}

fn parse_user(value: &OsStr) -> Option<(u32, u32)> {
    let (uid, gid) = value.to_str()?.split_once(':')?;
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// Confine this process, then run the one program the gateway sends.
fn work(args: &[OsString]) -> ExitCode {
    let require = match args.iter().map(|a| a.to_str().unwrap_or("")).collect::<Vec<_>>().as_slice() {
        [] | ["--landlock", "require"] | ["--landlock=require"] => true,
        ["--landlock", "best-effort"] | ["--landlock=best-effort"] => false,
        _ => return usage("[--landlock require|best-effort]"),
    };
    let fail = |message: String| {
        eprintln!("mcpgate sandbox-worker: {message}");
        ExitCode::from(CONFINEMENT_FAILED)
    };
    // Our ends of the pipes as plain files: reads and writes go straight to the descriptors, which poll(2) sees.
    let (input, output) =
        match (std::io::stdin().as_fd().try_clone_to_owned(), std::io::stdout().as_fd().try_clone_to_owned())
        {
            (Ok(input), Ok(output)) => (File::from(input), File::from(output)),
            (Err(e), _) | (_, Err(e)) => return fail(format!("cannot use stdin/stdout: {e}")),
        };
    let landlock = match confine::landlock(require) {
        Ok(state) => state,
        Err(e) => return fail(e),
    };
    // The engine runs on a thread of its own for its stack size; it inherits Landlock and no_new_privs, and
    // installs seccomp on both threads before it reads anything.
    let engine = std::thread::Builder::new()
        .name("mcpgate-js".into())
        .stack_size(MAX_STACK + STACK_MARGIN)
        .spawn(move || serve(Input::new(input), output, landlock));
    match engine.map(std::thread::JoinHandle::join) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => fail("the engine thread panicked".into()),
        Err(e) => fail(format!("cannot start the engine thread: {e}")),
    }
}

/// The engine thread: seccomp, `ready`, the program, `done`.
fn serve(mut input: Input, mut output: File, landlock: &str) -> ExitCode {
    let fail = |message: String| {
        eprintln!("mcpgate sandbox-worker: {message}");
        ExitCode::from(CONFINEMENT_FAILED)
    };
    // The C allocator sets up this thread's arena now, while it may still read what it probes.
    drop(rquickjs::Runtime::new());
    if let Err(e) = confine::seccomp() {
        return fail(e);
    }
    let ready = Confinement { landlock: landlock.into(), seccomp: true, no_new_privs: true };
    if output.write_all(&protocol::encode(&FromWorker::Ready(ready))).is_err() {
        return ExitCode::SUCCESS; // the gateway went away (a pool being dropped)
    }
    let line = match input.line(protocol::FIRST_LINE_LIMIT, None) {
        Ok(Some(line)) => line,
        Ok(None) | Err(Closed::Eof) => return ExitCode::SUCCESS,
        Err(Closed::Broken(e)) => return fail(e),
    };
    let (program, limits) = match serde_json::from_slice(&line) {
        Ok(ToWorker::Run { program, limits }) => (program, limits),
        Ok(_) => return fail("the first line is not a `run`".into()),
        Err(e) => return fail(format!("the `run` line is not valid: {e}")),
    };
    let limits = Limits { stack: limits.stack.min(MAX_STACK), ..limits };
    let mut pipe = Pipe { input, output, answer_limit: protocol::answer_limit(&limits) };
    let run = engine::run(&program, &limits, &mut pipe, &Arc::new(AtomicBool::new(false)));
    // A gateway that stopped listening cannot be told; it has stopped waiting too.
    let _ = pipe.output.write_all(&protocol::encode(&FromWorker::Done(run)));
    ExitCode::SUCCESS
}

/// Why no more lines come.
enum Closed {
    /// The gateway closed our stdin.
    Eof,
    /// A read failed, or a line was too long.
    Broken(String),
}

/// Lines from stdin, read with a deadline.
struct Input {
    file: File,
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no newline.
    scanned: usize,
}

impl Input {
    fn new(file: File) -> Self {
        Self { file, buffer: Vec::new(), scanned: 0 }
    }

    /// The next line (without its newline) of at most `limit` bytes; `Ok(None)` when `deadline` passes first.
    fn line(&mut self, limit: usize, deadline: Option<Instant>) -> Result<Option<Vec<u8>>, Closed> {
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            if let Some(at) = self.buffer[self.scanned..].iter().position(|&b| b == b'\n') {
                let rest = self.buffer.split_off(self.scanned + at + 1);
                let mut line = std::mem::replace(&mut self.buffer, rest);
                line.pop();
                self.scanned = 0;
                return Ok(Some(line));
            }
            self.scanned = self.buffer.len();
            if self.buffer.len() > limit {
                return Err(Closed::Broken(format!("a line from the gateway is over {limit} bytes")));
            }
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    // Rounded up: a timeout of 0 would spin until the deadline.
                    let millis = left.as_micros().div_ceil(1000).min(i32::MAX as u128);
                    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(Closed::Broken(format!("cannot poll stdin: {e}"))),
            }
            match self.file.read(&mut chunk) {
                Ok(0) => return Err(Closed::Eof),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Closed::Broken(format!("cannot read stdin: {e}"))),
            }
        }
    }
}

/// The engine's host in a worker: calls go out on stdout, answers come in on stdin.
struct Pipe {
    input: Input,
    output: File,
    answer_limit: usize,
}

impl Host for Pipe {
    fn call(&mut self, id: u64, tool: &str, arguments: &str) {
        let call = FromWorker::Call { id, tool: tool.to_owned(), arguments: arguments.to_owned() };
        // A gateway that went away closes stdin too; `wait` reports it.
        let _ = self.output.write_all(&protocol::encode(&call));
    }

    fn wait(&mut self, deadline: Instant) -> Result<Option<Completion>, Stopped> {
        match self.input.line(self.answer_limit, Some(deadline)) {
            Ok(None) => Ok(None),
            Ok(Some(line)) => match serde_json::from_slice(&line) {
                Ok(ToWorker::Answer(completion)) => Ok(Some(completion)),
                Ok(ToWorker::Run { .. }) => {
                    eprintln!("mcpgate sandbox-worker: a second `run` line");
                    Err(Stopped)
                }
                Err(e) => {
                    eprintln!("mcpgate sandbox-worker: an answer is not valid: {e}");
                    Err(Stopped)
                }
            },
            Err(Closed::Eof) => Err(Stopped),
            Err(Closed::Broken(e)) => {
                eprintln!("mcpgate sandbox-worker: {e}");
                Err(Stopped)
            }
        }
    }
}
