//! What a worker does to itself before it reads its program, beneath the outer sandbox (bubblewrap or gVisor):
//! `no_new_privs`, a Landlock ruleset that handles every access right and allows none, and seccomp filters.
//!
//! The seccomp policy is an allow-list of what the engine needs once it runs — `read`/`write` on the pipes it
//! already holds, `poll`, memory (`mmap`, `munmap`, `mremap`, `mprotect`, `brk`, `madvise`), `futex`, clocks,
//! `getrandom`, `sched_yield`, signal return and masks, `fcntl(F_GETFD)`, `prctl(PR_SET_VMA)`, `exit` — and every other system call kills the process
//! (`SECCOMP_RET_KILL_PROCESS`): sockets, `execve`, `fork`/`clone` (threads included: the engine thread exists
//! before the filter does), `ptrace`, `mount`, `kill`, `openat2`, … `open`/`openat` fail with `EACCES` when
//! read-only (the C library may probe a file, as glibc's allocator does) and kill the process when they ask to
//! write, create, truncate or append. The filters are installed on every thread at once (TSYNC).

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use std::collections::BTreeMap;

use landlock::{ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetStatus, Scope};
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

/// Restrict the calling thread (and the threads it starts) with Landlock: every filesystem and network access
/// right and every scope the crate knows is handled, and no rule allows any. Sets `no_new_privs`. Returns
/// Landlock's state; `Err` when it cannot be applied, or when `require` and the kernel has no Landlock.
pub(crate) fn landlock(require: bool) -> Result<&'static str, String> {
    let abi = ABI::V10;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("cannot apply the Landlock ruleset: {e}"))?;
    if !status.no_new_privs {
        return Err("cannot set no_new_privs".into());
    }
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok("fully_enforced"),
        RulesetStatus::PartiallyEnforced => Ok("partially_enforced"),
        RulesetStatus::NotEnforced if require => {
            Err("this kernel does not enforce Landlock (Linux 5.13+ with landlock in the `lsm=` list)".into())
        }
        RulesetStatus::NotEnforced => Ok("not_enforced"),
    }
}

/// Install the seccomp filters on every thread of the process. After this the process can only compute, use
/// the descriptors it holds, and exit.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn seccomp() -> Result<(), String> {
    let fail = |e: seccompiler::BackendError| format!("cannot build the seccomp filter: {e}");
    let opening = arch::OPENS.iter().map(|&(nr, _)| nr);
    let mut allow: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().chain(arch::ALSO_ALLOWED).copied().chain(opening).map(|nr| (nr, Vec::new())).collect();
    // Closing a file checks it is open first (debug builds of the standard library).
    let getfd = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::F_GETFD as u64);
    allow.insert(libc::SYS_fcntl, vec![SeccompRule::new(vec![getfd.map_err(fail)?]).map_err(fail)?]);
    // mimalloc names the memory it maps (`prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, …)`): nothing else of prctl.
    let vma = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, PR_SET_VMA);
    allow.insert(libc::SYS_prctl, vec![SeccompRule::new(vec![vma.map_err(fail)?]).map_err(fail)?]);
    let mut write_opens = BTreeMap::new();
    let mut opens = BTreeMap::new();
    for (nr, flags_arg) in arch::OPENS {
        write_opens.insert(nr, write_flag_rules(flags_arg).map_err(fail)?);
        opens.insert(nr, Vec::new());
    }
    // The strictest action of all filters applies. The allow-list goes last: installing a filter takes `prctl`
    // and `seccomp`, which it forbids.
    let filters = [
        // Opening to write, create, truncate or append kills the process.
        SeccompFilter::new(write_opens, SeccompAction::Allow, SeccompAction::KillProcess, arch::TARGET),
        // Any other open fails.
        SeccompFilter::new(
            opens,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EACCES as u32),
            arch::TARGET,
        ),
        // Anything not listed kills the process.
        SeccompFilter::new(allow, SeccompAction::KillProcess, SeccompAction::Allow, arch::TARGET),
    ];
    for filter in filters {
        let program: BpfProgram = filter.map_err(fail)?.try_into().map_err(fail)?;
        seccompiler::apply_filter_all_threads(&program)
            .map_err(|e| format!("cannot install the seccomp filter: {e}"))?;
    }
    Ok(())
}

/// `prctl` option naming anonymous memory (Linux 5.17; not in the libc crate).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const PR_SET_VMA: u64 = 0x5356_4d41;

/// No filter is written for this architecture: the worker refuses to run.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn seccomp() -> Result<(), String> {
    Err(format!(
        "no seccomp filter is written for {}; the worker runs on x86_64 and aarch64",
        std::env::consts::ARCH
    ))
}

/// One rule per flag that makes an open write something: any of them set matches.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn write_flag_rules(flags_arg: u8) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let tmpfile = (libc::O_TMPFILE & !libc::O_DIRECTORY) as u64;
    [
        libc::O_WRONLY as u64,
        libc::O_RDWR as u64,
        libc::O_CREAT as u64,
        libc::O_TRUNC as u64,
        libc::O_APPEND as u64,
        tmpfile,
    ]
    .into_iter()
    .map(|flag| {
        let condition =
            SeccompCondition::new(flags_arg, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(flag), flag)?;
        SeccompRule::new(vec![condition])
    })
    .collect()
}

/// What the engine may call on every architecture (the opening calls are added from `arch::OPENS`: their own
/// filters decide how an open ends).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const ALLOWED: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_close,
    libc::SYS_ppoll,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_getrandom,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

#[cfg(target_arch = "x86_64")]
mod arch {
    /// The filters' architecture (a call from another ABI, such as x32 or i386, kills the process).
    pub(super) const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;

    /// Opening system calls, with the index of their flags argument.
    pub(super) const OPENS: [(i64, u8); 2] = [(libc::SYS_open, 1), (libc::SYS_openat, 2)];

    /// What the engine may call here besides [`super::ALLOWED`].
    pub(super) const ALSO_ALLOWED: &[i64] = &[libc::SYS_poll];
}

#[cfg(target_arch = "aarch64")]
mod arch {
    /// The filters' architecture.
    pub(super) const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

    /// Opening system calls, with the index of their flags argument.
    pub(super) const OPENS: [(i64, u8); 1] = [(libc::SYS_openat, 2)];

    /// What the engine may call here besides [`super::ALLOWED`].
    pub(super) const ALSO_ALLOWED: &[i64] = &[];
}
