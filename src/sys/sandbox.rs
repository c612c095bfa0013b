//! The sandbox's system calls (Linux and Android, feature `sandbox`): what
//! the parent builds once ([`prepare`]) and what the child does with it
//! before the callable ([`enter`]).
//!
//! Two mechanisms, each for what it does best:
//!
//! - **seccomp** refuses system calls by number and argument. seccompiler
//!   compiles the rules to a BPF program in the parent, once; the child
//!   installs it with the raw `seccomp(SECCOMP_SET_MODE_FILTER)` call. Not
//!   `seccompiler::apply_filter`: that returns an error type that may
//!   allocate, and sets `no_new_privs` once per filter.
//! - **Landlock** refuses file-system and TCP access by what it touches,
//!   whatever the descriptor came from (a TCP socket inherited from the
//!   parent, a file opened through `io_uring`). The ruleset's description
//!   (`landlock_ruleset_attr`) is worked out in the parent, once, and the
//!   parent builds the ruleset through the `landlock` crate once to learn
//!   that the kernel takes it; the child makes its own copy
//!   (`landlock_create_ruleset`), restricts itself (`landlock_restrict_self`)
//!   and closes it. Our policies grant nothing back, so a ruleset has no
//!   rules and costs the child three system calls. A ruleset descriptor
//!   kept between calls instead could not be checked before use: every
//!   ruleset is an anonymous inode, with the same device and inode number
//!   as every other one, so a number the program closed and reused for a
//!   ruleset of its own would pass any identity check (see
//!   [`KeptFile`](super::KeptFile)), and the child would be restricted by
//!   the program's rules rather than ours.
//!
//! Nothing in [`enter`] allocates or takes a lock: a few raw system calls,
//! and a store of the child's pid into its own copy of the filter.
//!
//! # Cost
//!
//! A filter costs its child far more than the system call that installs
//! it suggests, and the cost grows with the program's length. Measured on
//! a 2-core VM (Linux 6.18, BPF JIT on): the kernel compiles the program
//! to native code (about 17 µs plus 0.17 µs per instruction), runs it in
//! emulation for every system call number to fill its cache of
//! always-allowed calls (another 0.5 µs per instruction: two thirds of
//! the install), and frees the compiled code when the child is reaped
//! (tens of µs, paid in the parent's `wait`). So: one filter per policy,
//! never two (`clone3`'s `ENOSYS` is patched into `compute_only`'s
//! program, see [`fail_clone3_with_enosys`]); `compute_only`'s program
//! skips the cache's emulation (see [`load_an_argument_first`]); and the
//! deny-lists name x32's numbers only on a kernel that takes them. What
//! remains (about 0.2 ms per call there, most of it the JIT's) is the
//! price of a filter per child; only a process that installed the filter
//! once and forks the children, which inherit it for free, would avoid
//! it.

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use rustix::io::Errno;

use super::SandboxPolicy as Policy;
use crate::errors::SandboxUnsupported;

/// `__X32_SYSCALL_BIT`: `x86_64` kernels built with the x32 ABI take
/// system calls numbered with this bit under the same audit architecture
/// as native ones, so a filter that refuses by number refuses both.
#[cfg(target_arch = "x86_64")]
const X32: i64 = 0x4000_0000;

/// `getpid()` by its x32 number—Whether this kernel takes x32 system
/// calls (`ENOSYS` if it was built or booted without them, as most are):
/// only then must a deny-list name each call twice (each name costs the
/// child time when it installs the filter).
#[cfg(target_arch = "x86_64")]
fn x32_enabled() -> bool {
    // SAFETY: `getpid` takes no arguments and touches no memory.
    unsafe { libc::syscall(libc::SYS_getpid | X32) >= 0 }
}

/// Stands for the child's pid in the compiled filter until the child
/// writes its own in ([`enter`]): `kill`, `tkill` and `tgkill` are allowed
/// under `compute_only` for the child itself only (`abort` signals the
/// process itself), and the pid is not known before the fork. A value no
/// pid (at most 2^22 on Linux), system call number, flag or audit
/// architecture in the program takes.
const SELF_PID: u32 = 0x7E1F_5E1F;

/// How many comparisons with [`SELF_PID`] the `compute_only` program holds:
/// one each for `kill`, `tkill` and `tgkill`.
const SELF_PID_SLOTS: usize = 3;

/// The Landlock ABI each part of a policy needs: write rights up to
/// `Truncate` (ABI 3, Linux 6.2), `Execute` (ABI 1, Linux 5.13), TCP
/// bind and connect (ABI 4, Linux 6.7).
const READ_ONLY_ABI: u8 = 3;
const DENY_EXEC_ABI: u8 = 1;
const DENY_NETWORK_ABI: u8 = 4;

/// A compiled BPF program. Written only in a forked child, into the
/// child's own copy ([`enter`] stores the child's pid), which has one
/// thread: the parent and its threads only ever read it.
struct Program(Box<[UnsafeCell<libc::sock_filter>]>);

/// `struct landlock_ruleset_attr`: what a ruleset handles. The child
/// passes only the bytes up to the last field in use, so an older kernel
/// that does not know a later field accepts it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
}

/// A sandbox ready to enter: built in the parent once, used by every call
/// that asks for it.
pub(crate) struct Prepared {
    /// The policy's filter, if it has one: an allow-list under
    /// `compute_only`, a deny-list otherwise.
    filter: Option<Program>,
    /// Where the filter compares with [`SELF_PID`] (`compute_only`'s
    /// filter only).
    self_pid: Option<[usize; SELF_PID_SLOTS]>,
    /// The Landlock ruleset, if the policy needs one, and its size in
    /// bytes.
    landlock: Option<(RulesetAttr, usize)>,
}

// SAFETY: see `Program`: no thread of the parent writes a `Prepared`
// after `prepare` returns it; only a forked child writes its own copy.
unsafe impl Sync for Prepared {}
// SAFETY: as above; it owns its memory.
unsafe impl Send for Prepared {}

/// Builds what [`enter`] needs for `policy`, in the parent, once: the
/// filters, compiled, and the Landlock ruleset's description, after
/// asking the kernel whether it can enforce them. Refuses (unless the
/// policy is best effort) what the kernel cannot.
pub(crate) fn prepare(policy: Policy) -> Result<Prepared, SandboxUnsupported> {
    let deny = policy.deny_network || policy.deny_exec || policy.read_only_filesystem;
    let wants_filter = policy.compute_only || deny;
    let seccomp = if wants_filter {
        match seccomp_available() {
            Ok(()) => true,
            Err(_) if policy.best_effort => false,
            Err(e) => return Err(SandboxUnsupported::Seccomp(e)),
        }
    } else {
        false
    };
    let landlock = if policy.compute_only {
        // Every call Landlock would police is refused outright.
        None
    } else {
        landlock_ruleset(policy)?
    };
    let (filter, self_pid) = if !seccomp {
        (None, None)
    } else if policy.compute_only {
        let (program, at) = compute_only_filter(policy.kill_on_violation)?;
        (Some(program), Some(at))
    } else {
        (Some(deny_filter(policy)?), None)
    };
    Ok(Prepared {
        filter,
        self_pid,
        landlock,
    })
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`, `landlock_create_ruleset`,
/// `landlock_restrict_self`, `close`, `getpid`, then
/// `seccomp(SECCOMP_SET_MODE_FILTER)`—In the child, after the crate's own
/// setup and right before the callable: enters the sandbox. Nothing here
/// allocates or takes a lock.
///
/// `no_new_privs` first (Landlock and an unprivileged filter need it, and
/// a set-uid program the callable might run could otherwise shed them);
/// then Landlock, whose calls `compute_only`'s filter would refuse; then
/// the filter, with the child's pid written into its own copy.
///
/// # Safety
///
/// `prepared` must point to a [`Prepared`] that was alive in the parent
/// at the fork (the child's copy of it is then never freed), in a child
/// with one thread.
///
/// # References
///  - [`prctl(2)`](https://man7.org/linux/man-pages/man2/prctl.2.html)
///  - [`landlock_create_ruleset(2)`](https://man7.org/linux/man-pages/man2/landlock_create_ruleset.2.html)
///  - [`landlock_restrict_self(2)`](https://man7.org/linux/man-pages/man2/landlock_restrict_self.2.html)
///  - [`seccomp(2)`](https://man7.org/linux/man-pages/man2/seccomp.2.html)
#[inline(never)]
pub(crate) unsafe fn enter(prepared: NonNull<Prepared>) -> Result<(), Errno> {
    // SAFETY: the caller's promise.
    let prepared = unsafe { prepared.as_ref() };
    rustix::thread::set_no_new_privs(true)?;
    if let Some((attr, size)) = &prepared.landlock {
        restrict_self(attr, *size)?;
    }
    if let Some(filter) = &prepared.filter {
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        for &at in prepared.self_pid.iter().flatten() {
            if let Some(slot) = filter.0.get(at) {
                // SAFETY: this child's own copy of the program, written by
                // its one thread, with no reference into it alive (see
                // `Program`).
                #[allow(clippy::cast_sign_loss)] // a pid is positive
                unsafe {
                    (*slot.get()).k = pid as u32;
                }
            }
        }
        install(filter)?;
    }
    Ok(())
}

/// `landlock_create_ruleset(attr)`, `landlock_restrict_self(fd, 0)`,
/// `close(fd)`—Restricts this process by a ruleset with no rules: all it
/// handles is refused.
fn restrict_self(attr: &RulesetAttr, size: usize) -> Result<(), Errno> {
    // SAFETY: `attr` is a valid `landlock_ruleset_attr` prefix of `size`
    // bytes.
    let fd = unsafe {
        libc::syscall(
            SYS_LANDLOCK_CREATE_RULESET,
            core::ptr::from_ref(attr),
            size,
            0u32,
        )
    };
    if fd < 0 {
        return Err(last_errno());
    }
    #[allow(clippy::cast_possible_truncation)] // a descriptor is an int
    let fd = fd as libc::c_int;
    // SAFETY: `fd` is the ruleset just made, and owned here.
    let restricted = unsafe { libc::syscall(SYS_LANDLOCK_RESTRICT_SELF, fd, 0u32) };
    let result = if restricted < 0 {
        Err(last_errno())
    } else {
        Ok(())
    };
    // SAFETY: closes the descriptor made above, once.
    unsafe { libc::close(fd) };
    result
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, 0, program)`—Installs a filter on
/// this thread (the child's only one; threads it starts later inherit it).
fn install(program: &Program) -> Result<(), Errno> {
    let prog = libc::sock_fprog {
        #[allow(clippy::cast_possible_truncation)] // at most BPF_MAXINSNS (checked when built)
        len: program.0.len() as libc::c_ushort,
        filter: program.0.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `prog` describes the program's instructions, which live
    // until the process ends; the kernel copies them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            0u32,
            core::ptr::from_ref(&prog),
        )
    };
    if r < 0 { Err(last_errno()) } else { Ok(()) }
}

/// The `errno` of the last failed libc call.
fn last_errno() -> Errno {
    Errno::from_raw_os_error(super::last_errno())
}

/// `landlock_create_ruleset` (its number is 444 on every architecture).
const SYS_LANDLOCK_CREATE_RULESET: libc::c_long = 444;
/// `landlock_restrict_self` (its number is 446 on every architecture).
const SYS_LANDLOCK_RESTRICT_SELF: libc::c_long = 446;
/// `LANDLOCK_CREATE_RULESET_VERSION`.
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
/// `fstat` and `rseq`, which the `libc` crate does not name on every
/// target (Android).
#[cfg(target_arch = "x86_64")]
const SYS_FSTAT: libc::c_long = 5;
#[cfg(target_arch = "x86_64")]
const SYS_RSEQ: libc::c_long = 334;
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
const SYS_FSTAT: libc::c_long = 80;
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
const SYS_RSEQ: libc::c_long = 293;
/// `BPF_JMP | BPF_JEQ | BPF_K`: a jump if the accumulator equals the
/// instruction's constant.
const BPF_JEQ_K: u16 = 0x05 | 0x10;
/// `SECCOMP_SET_MODE_FILTER`.
const SECCOMP_SET_MODE_FILTER: u32 = 1;
/// `SECCOMP_GET_ACTION_AVAIL`.
const SECCOMP_GET_ACTION_AVAIL: u32 = 2;

/// `seccomp(SECCOMP_GET_ACTION_AVAIL)` for every action the filters
/// return—Whether this kernel installs seccomp filters at all (and with
/// the actions ours use), asked without installing one.
///
/// # References
///  - [`seccomp(2)`](https://man7.org/linux/man-pages/man2/seccomp.2.html)
fn seccomp_available() -> Result<(), Errno> {
    for action in [
        libc::SECCOMP_RET_ALLOW,
        libc::SECCOMP_RET_ERRNO,
        libc::SECCOMP_RET_KILL_PROCESS,
    ] {
        let action: u32 = action;
        // SAFETY: the kernel reads one `u32` from the pointer.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_GET_ACTION_AVAIL,
                0u32,
                core::ptr::from_ref(&action),
            )
        };
        if r < 0 {
            return Err(last_errno());
        }
    }
    Ok(())
}

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`—The
/// Landlock ABI this kernel offers; 0 without Landlock (`ENOSYS`: not built
/// in, or an emulator that does not know the call; `EOPNOTSUPP`: not
/// enabled at boot).
///
/// # References
///  - [`landlock_create_ruleset(2)`](https://man7.org/linux/man-pages/man2/landlock_create_ruleset.2.html)
fn landlock_abi() -> u8 {
    // SAFETY: the version query reads and writes no memory.
    let v = unsafe {
        libc::syscall(
            SYS_LANDLOCK_CREATE_RULESET,
            core::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u8::try_from(v.max(0)).unwrap_or(u8::MAX)
}

/// The Landlock ruleset `policy` needs, if any: what it handles (all of it
/// refused, as no rule grants anything back), and its size. Checked with
/// the kernel by building it once through the `landlock` crate.
fn landlock_ruleset(policy: Policy) -> Result<Option<(RulesetAttr, usize)>, SandboxUnsupported> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, Ruleset,
        RulesetAttr as _,
    };
    let needed = [
        (policy.read_only_filesystem, READ_ONLY_ABI),
        (policy.deny_exec, DENY_EXEC_ABI),
        (policy.deny_network, DENY_NETWORK_ABI),
    ]
    .iter()
    .filter(|(wanted, _)| *wanted)
    .map(|&(_, abi)| abi)
    .max();
    let Some(needed) = needed else {
        return Ok(None);
    };
    let available = landlock_abi();
    if available < needed && !policy.best_effort {
        return Err(SandboxUnsupported::Landlock { needed, available });
    }
    // What this kernel can take, for a best-effort policy; all of it
    // otherwise (checked just above).
    let abi = ABI::from(i32::from(
        available.min(READ_ONLY_ABI.max(DENY_NETWORK_ABI)),
    ));
    let mut fs: BitFlags<AccessFs> = BitFlags::EMPTY;
    if policy.read_only_filesystem {
        fs |= AccessFs::from_write(abi.min(ABI::V3));
    }
    if policy.deny_exec && available >= DENY_EXEC_ABI {
        fs |= AccessFs::Execute;
    }
    let mut net: BitFlags<AccessNet> = BitFlags::EMPTY;
    if policy.deny_network && available >= DENY_NETWORK_ABI {
        net = AccessNet::from_all(ABI::V4);
    }
    if fs.is_empty() && net.is_empty() {
        // Best effort on a kernel without Landlock.
        return Ok(None);
    }
    // Built once through the `landlock` crate, as a check that this
    // kernel takes exactly this ruleset; then dropped (see the module
    // docs for why the child makes its own).
    let unsupported = SandboxUnsupported::Landlock { needed, available };
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    if !fs.is_empty() {
        ruleset = ruleset.handle_access(fs).map_err(|_| unsupported.clone())?;
    }
    if !net.is_empty() {
        ruleset = ruleset
            .handle_access(net)
            .map_err(|_| unsupported.clone())?;
    }
    drop(ruleset.create().map_err(|_| unsupported)?);
    let attr = RulesetAttr {
        handled_access_fs: fs.bits(),
        handled_access_net: net.bits(),
    };
    let size = if net.is_empty() { 8 } else { 16 };
    Ok(Some((attr, size)))
}

/// What a filter does with a call it refuses.
fn refusal(kill: bool) -> seccompiler::SeccompAction {
    if kill {
        seccompiler::SeccompAction::KillProcess
    } else {
        #[allow(clippy::cast_sign_loss)] // EPERM is positive
        seccompiler::SeccompAction::Errno(libc::EPERM as u32)
    }
}

/// The architecture the filters are compiled for: those seccompiler
/// knows.
#[cfg(target_arch = "x86_64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;
#[cfg(target_arch = "riscv64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::riscv64;

/// Compiles `rules` to a [`Program`].
fn compile(
    rules: std::collections::BTreeMap<i64, Vec<seccompiler::SeccompRule>>,
    mismatch: seccompiler::SeccompAction,
    matched: seccompiler::SeccompAction,
) -> Result<Program, SandboxUnsupported> {
    let failed = |_| SandboxUnsupported::Seccomp(Errno::INVAL);
    let filter = seccompiler::SeccompFilter::new(rules, mismatch, matched, ARCH).map_err(failed)?;
    let program: seccompiler::BpfProgram = filter.try_into().map_err(failed)?;
    // The kernel's limit on one program (`BPF_MAXINSNS`).
    if program.len() > 4096 {
        return Err(SandboxUnsupported::Seccomp(Errno::INVAL));
    }
    Ok(Program(
        program
            .iter()
            .map(|i| {
                UnsafeCell::new(libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
            })
            .collect(),
    ))
}

/// A condition on a system call's argument `index`.
fn arg(
    index: u8,
    len: seccompiler::SeccompCmpArgLen,
    op: seccompiler::SeccompCmpOp,
    value: u64,
) -> Result<seccompiler::SeccompRule, SandboxUnsupported> {
    let failed = |_| SandboxUnsupported::Seccomp(Errno::INVAL);
    let condition = seccompiler::SeccompCondition::new(index, len, op, value).map_err(failed)?;
    seccompiler::SeccompRule::new(vec![condition]).map_err(failed)
}

/// The deny-list for the `deny_*` policies: everything not named is
/// allowed. Refused whatever the policy: `ptrace`, `process_vm_readv`
/// and `process_vm_writev`, `pidfd_getfd` (each reaches into another
/// process) and `io_uring` (its operations bypass a filter: a socket
/// made by `IORING_OP_SOCKET` passes no `socket` rule). `deny_exec`:
/// `execve`, `execveat`. `deny_network`: `socket` of any family but
/// `AF_UNIX`.
fn deny_filter(policy: Policy) -> Result<Program, SandboxUnsupported> {
    use seccompiler::{SeccompCmpArgLen::Dword, SeccompCmpOp::Ne};
    let mut rules = std::collections::BTreeMap::new();
    #[cfg(target_arch = "x86_64")]
    let x32 = x32_enabled();
    let mut refuse = |nr: libc::c_long, rule: Vec<seccompiler::SeccompRule>| {
        #[cfg(target_arch = "x86_64")]
        if x32 {
            rules.insert(nr | X32, rule.clone());
        }
        rules.insert(nr, rule);
    };
    for nr in [
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ] {
        refuse(nr, vec![]);
    }
    if policy.deny_exec {
        refuse(libc::SYS_execve, vec![]);
        refuse(libc::SYS_execveat, vec![]);
        // x32's own numbers for the two.
        #[cfg(target_arch = "x86_64")]
        if x32 {
            refuse(520, vec![]);
            refuse(545, vec![]);
        }
    }
    if policy.deny_network {
        #[allow(clippy::cast_sign_loss)] // AF_UNIX is positive
        let not_unix = arg(0, Dword, Ne, libc::AF_UNIX as u64)?;
        refuse(libc::SYS_socket, vec![not_unix]);
    }
    compile(
        rules,
        seccompiler::SeccompAction::Allow,
        refusal(policy.kill_on_violation),
    )
}

/// The calls `compute_only` allows without condition (see
/// [`compute_only_filter`]).
fn computing_calls() -> std::collections::BTreeMap<i64, Vec<seccompiler::SeccompRule>> {
    let mut rules = std::collections::BTreeMap::new();
    for nr in [
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_set_robust_list,
        SYS_RSEQ,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_gettid,
        libc::SYS_getpid,
        libc::SYS_getppid,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_clock_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_nanosleep,
        libc::SYS_getrandom,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_pwrite64,
        libc::SYS_ppoll,
        SYS_FSTAT,
        libc::SYS_close,
        libc::SYS_exit,
        libc::SYS_exit_group,
        // Made to fail with ENOSYS (`fail_clone3_with_enosys`).
        libc::SYS_clone3,
    ] {
        rules.insert(nr, vec![]);
    }
    #[cfg(target_arch = "x86_64")]
    for nr in [libc::SYS_poll, libc::SYS_getrlimit] {
        rules.insert(nr, vec![]);
    }
    rules
}

/// `compute_only`'s allow-list: what allocating, computing, threads and
/// the crate's own delivery of the result need; every other call is
/// refused. Returns the program and where it compares with
/// [`SELF_PID`].
///
/// Allowed without condition: memory (`brk`, `mmap`, `munmap`, `mremap`,
/// `mprotect`, `madvise`), threads and waiting (`futex`,
/// `set_robust_list`, `rseq`, `sched_yield`, `sched_getaffinity`,
/// `gettid`, `getpid`, `getppid`), signals to itself (`rt_sigaction`,
/// `rt_sigprocmask`, `rt_sigreturn`, `sigaltstack`, `restart_syscall`),
/// clocks and sleeping, `getrandom` (a `HashMap`'s seed), and what the
/// result's delivery calls on an inherited descriptor: `write`, `writev`,
/// `pwrite64`, `poll`/`ppoll`, `fstat`, `close`; `exit` and `exit_group`.
/// With a condition: `clone` of a thread (`CLONE_THREAD`), not of a
/// process; `prlimit64` that reads this process's limit but sets none;
/// `kill`, `tkill` and `tgkill` of this process; `prctl` that names a
/// thread.
fn compute_only_filter(
    kill: bool,
) -> Result<(Program, [usize; SELF_PID_SLOTS]), SandboxUnsupported> {
    use seccompiler::SeccompCmpArgLen::{Dword, Qword};
    use seccompiler::SeccompCmpOp::{Eq, MaskedEq};
    let mut rules = computing_calls();
    let mut allow = |nr: libc::c_long, rule: Vec<seccompiler::SeccompRule>| {
        rules.insert(nr, rule);
    };
    #[allow(clippy::cast_sign_loss)] // positive flags
    let thread = libc::CLONE_THREAD as u64;
    allow(
        libc::SYS_clone,
        vec![arg(0, Qword, MaskedEq(thread), thread)?],
    );
    // prlimit64(0, resource, NULL, old): a read of its own limit.
    let failed = |_| SandboxUnsupported::Seccomp(Errno::INVAL);
    let reads_own_limit = seccompiler::SeccompRule::new(vec![
        seccompiler::SeccompCondition::new(0, Dword, Eq, 0).map_err(failed)?,
        seccompiler::SeccompCondition::new(2, Qword, Eq, 0).map_err(failed)?,
    ])
    .map_err(failed)?;
    allow(libc::SYS_prlimit64, vec![reads_own_limit]);
    for nr in [libc::SYS_kill, libc::SYS_tkill, libc::SYS_tgkill] {
        allow(nr, vec![arg(0, Dword, Eq, u64::from(SELF_PID))?]);
    }
    #[allow(clippy::cast_sign_loss)] // positive options
    let names = vec![
        arg(0, Dword, Eq, libc::PR_SET_NAME as u64)?,
        arg(0, Dword, Eq, libc::PR_GET_NAME as u64)?,
    ];
    allow(libc::SYS_prctl, names);
    let program = compile(rules, refusal(kill), seccompiler::SeccompAction::Allow)?;
    let program = load_an_argument_first(program);
    let at = self_pid_slots(&program)?;
    fail_clone3_with_enosys(&program)?;
    Ok((program, at))
}

/// Where `program` compares with [`SELF_PID`]: each a `JEQ` with it as
/// the constant, [`SELF_PID_SLOTS`] of them, or the program is not what
/// it was meant to be.
fn self_pid_slots(program: &Program) -> Result<[usize; SELF_PID_SLOTS], SandboxUnsupported> {
    let mut at = [0; SELF_PID_SLOTS];
    let mut found = 0;
    for (i, insn) in program.0.iter().enumerate() {
        // SAFETY: the program was just made, and nothing else refers to
        // it yet.
        let insn = unsafe { &*insn.get() };
        if insn.k == SELF_PID {
            if insn.code != BPF_JEQ_K || found == SELF_PID_SLOTS {
                return Err(SandboxUnsupported::Seccomp(Errno::INVAL));
            }
            at[found] = i;
            found += 1;
        }
    }
    if found != SELF_PID_SLOTS {
        return Err(SandboxUnsupported::Seccomp(Errno::INVAL));
    }
    Ok(at)
}

/// Makes `clone3` fail with `ENOSYS` in `compute_only`'s program, whatever
/// `kill_on_violation` says: that is how the C library learns to fall back
/// to `clone`, whose flags the filter can read (`clone3` passes them in
/// memory, which a filter cannot). seccompiler gives every rule of a
/// filter the same action, so the program is compiled with `clone3`
/// allowed and its action is changed here: in seccompiler's layout a
/// system call without conditions is `JEQ nr; JA 1; JA 2; RET match;
/// RET mismatch`, and the `RET match` becomes `RET ERRNO(ENOSYS)`. One
/// filter rather than a second one for `clone3` alone: each filter the
/// child installs costs it a JIT compilation (see the module docs).
fn fail_clone3_with_enosys(program: &Program) -> Result<(), SandboxUnsupported> {
    const BPF_JA: u16 = 0x05;
    const BPF_RET_K: u16 = 0x06;
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)] // small, positive
    let (clone3, enosys) = (libc::SYS_clone3 as u32, libc::ENOSYS as u32);
    // SAFETY: the program was just made, and nothing else refers to it.
    let insn = |i: usize| program.0.get(i).map(|c| unsafe { *c.get() });
    for i in 0..program.0.len() {
        let Some(jeq) = insn(i) else { break };
        if jeq.code != BPF_JEQ_K || jeq.k != clone3 {
            continue;
        }
        let (Some(ja1), Some(ja2), Some(ret)) = (insn(i + 1), insn(i + 2), insn(i + 3)) else {
            break;
        };
        if (ja1.code, ja1.k, ja2.code, ja2.k, ret.code, ret.k)
            == (BPF_JA, 1, BPF_JA, 2, BPF_RET_K, libc::SECCOMP_RET_ALLOW)
        {
            // SAFETY: as above.
            unsafe { (*program.0[i + 3].get()).k = libc::SECCOMP_RET_ERRNO | enosys };
            return Ok(());
        }
        break;
    }
    Err(SandboxUnsupported::Seccomp(Errno::INVAL))
}

/// Puts `LD seccomp_data.args[0]` before `program`'s first instruction,
/// which does nothing (the next one loads the architecture) but make the
/// kernel's filter cache give up at once.
///
/// Installing a filter, the kernel runs it in emulation for every system
/// call number, to learn which ones it always allows (and can then skip
/// running it for). For a linear program (seccompiler's layout) that costs
/// the number of system calls times the program's length: measured, about
/// two thirds of the time `seccomp()` takes for `compute_only`'s program
/// (some 130 µs of 190 µs on a 2-core VM), paid by every child. The
/// emulation stops at the first load of an argument. The price is that
/// every system call the callable makes runs the filter (compiled to
/// native code, a few tens of nanoseconds), which `compute_only`, by
/// definition, rarely does. The deny-lists keep the cache: their callables
/// may make system calls all day.
fn load_an_argument_first(program: Program) -> Program {
    /// `BPF_LD | BPF_W | BPF_ABS`, at `offsetof(struct seccomp_data, args)`.
    const LOAD_ARG0: libc::sock_filter = libc::sock_filter {
        code: 0x20,
        jt: 0,
        jf: 0,
        k: 16,
    };
    // Jumps are relative, so the program after it is unchanged.
    Program(
        core::iter::once(UnsafeCell::new(LOAD_ARG0))
            .chain(program.0)
            .collect(),
    )
}
