//! [`Sandbox`]: what the callable may do besides computing (feature
//! `sandbox`).

use core::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use crate::errors::SandboxUnsupported;
use crate::sys::SandboxPolicy as Policy;
use crate::sys::sandbox::Prepared;

/// A policy for the callable: what it may do besides computing. Given to
/// [`Isolate::sandbox`](crate::Isolate::sandbox), it applies to the child of
/// each call of that `Isolate`, from just before the callable runs to the
/// child's end, and to the threads and processes the callable starts.
/// The parent is never touched, and a call without a sandbox (on the same
/// thread, straight after) runs free.
///
/// The crate's promise is about memory: nothing the callable does to memory
/// reaches the caller. A sandbox adds the rest for code you do not trust
/// (a C decoder fed an upload, a plugin): once exploited, such code runs
/// with everything the process may do, and the sandbox takes that away.
///
/// ```
/// use std::time::Duration;
/// use mem_isolate::{Isolate, Sandbox};
///
/// let isolate = Isolate::new()
///     .timeout(Duration::from_secs(2))
///     .sandbox(Sandbox::new().deny_network().deny_exec().read_only_filesystem());
/// let upload = b"GIF89a...".to_vec();
/// let decoded: Result<usize, _> = isolate.run(move || upload.len());
/// # if let Err(mem_isolate::MemIsolateError::CallableDidNotExecute(
/// #     mem_isolate::errors::CallableDidNotExecuteError::SandboxUnsupported(why))) = &decoded {
/// #     eprintln!("no sandbox here: {why}");
/// # } else {
/// assert_eq!(decoded?, 9);
/// # }
/// # Ok::<(), mem_isolate::MemIsolateError>(())
/// ```
///
/// # The policies
///
/// | switch | refuses | by | `kill_on_violation` |
/// | --- | --- | --- | --- |
/// | [`new`](Self::new) | gaining privileges (`no_new_privs`: a set-uid program runs without them) | `prctl` | — |
/// | [`deny_network`](Self::deny_network) | `socket` of any family but `AF_UNIX`; `bind` and `connect` on every TCP socket, inherited ones included | seccomp; Landlock (ABI 4) | socket: `SIGSYS`; TCP: `EACCES` |
/// | [`deny_exec`](Self::deny_exec) | `execve`, `execveat` (no program runs: no `Command`, no shell) | seccomp; Landlock (ABI 1) | `SIGSYS` |
/// | [`read_only_filesystem`](Self::read_only_filesystem) | creating, writing, truncating, renaming, linking or removing any file or directory | Landlock (ABI 3) | `EACCES` |
/// | [`compute_only`](Self::compute_only) | every system call but those allocating and computing need | seccomp | `SIGSYS` |
///
/// Each `deny_*` policy also refuses what reaches into another process or
/// past a filter: `ptrace`, `process_vm_readv`/`writev`, `pidfd_getfd`, and
/// `io_uring`; and Landlock keeps the child from tracing, or writing to
/// the memory of, any process outside its sandbox. They can be combined;
/// `compute_only` includes them all.
///
/// A refused call fails inside the callable with `EPERM` (seccomp) or
/// `EACCES` (Landlock), which Rust's standard library reports as
/// [`std::io::ErrorKind::PermissionDenied`]. With
/// [`kill_on_violation`](Self::kill_on_violation), a call seccomp refuses
/// kills the child with `SIGSYS` instead; Landlock cannot kill, so what it
/// refuses still fails with `EACCES`.
///
/// # What stays reachable
///
/// The sandbox takes away new reach, not what the child already holds:
///
/// - **Descriptors inherited from the parent**: a file the parent opened
///   can still be read and written (`write` is how the result leaves); a
///   UDP socket can still send (`sendto`); a connected TCP socket can
///   still send and receive (only `bind` and `connect` are refused); an
///   `AF_UNIX` socket, or a new one to a named socket on disk, still talks
///   to whatever listens there. Close what the callable must not have
///   before the call, or open it with `O_CLOEXEC` and keep it in a process
///   of its own.
/// - **CPU time and memory** without [`Isolate::timeout`](crate::Isolate::timeout)
///   and [`Isolate::memory_limit`](crate::Isolate::memory_limit).
/// - **Signals** to other processes of the same user, under the `deny_*`
///   policies (under `compute_only` only to itself).
/// - **Reading** files, under the `deny_*` policies (`read_only_filesystem`
///   refuses writes, not reads); nothing is opened under `compute_only`.
/// - **The kernel itself**: a sandbox narrows what it is asked, not its
///   bugs.
///
/// # What each kernel enforces
///
/// | policy | needs |
/// | --- | --- |
/// | `new()` alone | Linux 3.5 |
/// | `compute_only` | seccomp filters (Linux 3.17) |
/// | `deny_exec` | seccomp, Landlock ABI 1 (Linux 5.13) |
/// | `read_only_filesystem` | seccomp, Landlock ABI 3 (Linux 6.2) |
/// | `deny_network` | seccomp, Landlock ABI 4 (Linux 6.7) |
///
/// Landlock must also be enabled at boot (`lsm=...,landlock`), which some
/// distributions do not do by default. A kernel without what a policy
/// needs is never a reason to run the callable unprotected: the call fails
/// with [`SandboxUnsupported`](crate::errors::CallableDidNotExecuteError::SandboxUnsupported)
/// and the callable does not run, unless the policy is
/// [`best_effort`](Self::best_effort). So does every sandboxed call on
/// macOS and FreeBSD (the type exists there, so that code using it builds
/// everywhere). FreeBSD's Capsicum (`cap_enter`) would fit `compute_only`
/// closely; it is future work.
///
/// # Cost
///
/// The filters are compiled, and the kernel asked what it supports, once:
/// when the sandbox is given to [`Isolate::sandbox`](crate::Isolate::sandbox).
/// A call then pays a few system calls in the child, and the kernel's own
/// work for a filter (it compiles the program to native code for each
/// child, and frees it when the child is reaped): measured on a 2-core
/// VM, a small call costs 1.5–1.6x the same call without a sandbox under
/// `compute_only` or the deny policies, and about 1.03x with
/// `Sandbox::new()` alone (the README's "Sandbox" section has the
/// figures).
#[derive(Clone)]
#[must_use]
pub struct Sandbox {
    policy: Policy,
    /// Built on first use and shared by the clones made after it.
    prepared: Arc<OnceLock<Result<Prepared, SandboxUnsupported>>>,
}

impl Sandbox {
    /// `prctl(PR_SET_NO_NEW_PRIVS)`: the child and what it runs can never
    /// gain privileges (a set-uid program runs without them). Nothing else
    /// is denied yet; add the policies.
    pub fn new() -> Self {
        Self {
            policy: Policy::default(),
            prepared: Arc::new(OnceLock::new()),
        }
    }

    fn with(self, change: impl FnOnce(&mut Policy)) -> Self {
        let mut policy = self.policy;
        change(&mut policy);
        Self {
            policy,
            prepared: Arc::new(OnceLock::new()),
        }
    }

    /// No network: `socket` of any family but `AF_UNIX` is refused
    /// (seccomp), and so are `bind` and `connect` on any TCP socket,
    /// including one inherited from the parent (Landlock, ABI 4).
    ///
    /// Not covered: sending on a socket the child inherited (a UDP
    /// socket's `sendto`, a connected TCP socket), and `AF_UNIX` sockets,
    /// which reach local services only.
    ///
    /// ```
    /// use mem_isolate::{Isolate, Sandbox};
    ///
    /// let offline = Isolate::new().sandbox(Sandbox::new().deny_network());
    /// let reached = offline.run(|| std::net::TcpStream::connect("127.0.0.1:9").is_ok());
    /// # if !matches!(reached, Err(ref e) if e.callable_did_not_execute()) {
    /// assert_eq!(reached?, false);
    /// # }
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    pub fn deny_network(self) -> Self {
        self.with(|p| p.deny_network = true)
    }

    /// No program runs: `execve` and `execveat` are refused (seccomp), and
    /// so is executing any file (Landlock, ABI 1). `std::process::Command`
    /// fails to spawn.
    pub fn deny_exec(self) -> Self {
        self.with(|p| p.deny_exec = true)
    }

    /// Nothing in the file system is created, written, truncated, renamed,
    /// linked or removed (Landlock, ABI 3). Reading stays allowed, and so
    /// does writing to a descriptor opened before the call.
    pub fn read_only_filesystem(self) -> Self {
        self.with(|p| p.read_only_filesystem = true)
    }

    /// The strictest policy: the callable may allocate, compute, start
    /// threads and write to descriptors it inherited (where its result
    /// goes), and every other system call is refused. No file is opened,
    /// no socket made, no process started or program run, no signal sent
    /// to another process, no process traced, no limit or filter changed.
    /// It implies the three `deny_*` policies and needs no Landlock.
    ///
    /// The allowed calls: memory (`brk`, `mmap`, `munmap`, `mremap`,
    /// `mprotect`, `madvise`); threads (`clone` with `CLONE_THREAD` only,
    /// `futex`, `set_robust_list`, `rseq`, `sched_yield`,
    /// `sched_getaffinity`, `gettid`, `getpid`, `getppid`, and `prctl` that
    /// names a thread; `clone3` fails with `ENOSYS`, so that the C library
    /// falls back to `clone`); signals (`rt_sigaction`, `rt_sigprocmask`,
    /// `rt_sigreturn`, `sigaltstack`, `restart_syscall`, and `kill`,
    /// `tkill`, `tgkill` of the child itself, which `abort` needs); clocks
    /// and sleeping; `getrandom`; reading its own resource limits; and
    /// `write`, `writev`, `pwrite64`, `poll`, `ppoll`, `fstat`, `close`,
    /// `exit`, `exit_group`. `read` is not among them.
    ///
    /// `tkill` of a thread other than the child's first one is refused (a
    /// filter cannot tell this process's threads from another's), so under
    /// musl, whose `abort` uses it, an `abort` in a thread the callable
    /// started ends the child with `SIGSEGV` rather than `SIGABRT`. With
    /// `RUST_BACKTRACE` set, the standard library's out-of-memory handler
    /// opens the executable to print a backtrace: refused, or, with
    /// [`kill_on_violation`](Self::kill_on_violation), the child dies with
    /// `SIGSYS` rather than `SIGABRT`.
    ///
    /// ```
    /// use mem_isolate::{Isolate, Sandbox};
    ///
    /// let pure = Isolate::new().sandbox(Sandbox::new().compute_only());
    /// let result = pure.run(|| {
    ///     let opened = std::fs::File::open("/etc/hostname").is_ok();
    ///     let sum: u64 = (1..=100).collect::<Vec<u64>>().iter().sum();
    ///     (opened, sum)
    /// });
    /// # if !matches!(result, Err(ref e) if e.callable_did_not_execute()) {
    /// assert_eq!(result?, (false, 5050));
    /// # }
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    pub fn compute_only(self) -> Self {
        self.with(|p| p.compute_only = true)
    }

    /// A call the filter refuses kills the child with `SIGSYS`, rather than
    /// failing with `EPERM`: exploited code gets no second try. The call
    /// then returns
    /// [`ChildProcessKilledBySignal(SIGSYS)`](crate::errors::CallableStatusUnknownError::ChildProcessKilledBySignal).
    /// That variant, rather than one of its own, because the parent only
    /// sees the signal: a `SIGSYS` may also come from `kill` or from a
    /// filter the process already had, and the error says what is known.
    ///
    /// What Landlock refuses (writes under `read_only_filesystem`, TCP
    /// `bind` and `connect` under `deny_network`) still fails with
    /// `EACCES`: Landlock has no such action.
    ///
    /// ```
    /// use mem_isolate::{Isolate, MemIsolateError, Sandbox};
    /// use mem_isolate::errors::CallableStatusUnknownError;
    ///
    /// let strict = Isolate::new().sandbox(Sandbox::new().compute_only().kill_on_violation());
    /// let e = strict.run(|| std::fs::File::open("/etc/hostname").is_ok()).unwrap_err();
    /// # if !e.callable_did_not_execute() {
    /// assert_eq!(
    ///     e,
    ///     MemIsolateError::CallableStatusUnknown(
    ///         CallableStatusUnknownError::ChildProcessKilledBySignal(libc::SIGSYS)
    ///     )
    /// );
    /// # }
    /// ```
    pub fn kill_on_violation(self) -> Self {
        self.with(|p| p.kill_on_violation = true)
    }

    /// Enforce what this kernel can, and run the callable even where that
    /// is less than the policy asks (an older Landlock ABI, no Landlock, no
    /// seccomp filters), rather than refuse the call. The table under
    /// [What each kernel enforces](Self#what-each-kernel-enforces) says
    /// what is then missing. Off Linux the call is still refused: there is
    /// nothing to enforce at all.
    pub fn best_effort(self) -> Self {
        self.with(|p| p.best_effort = true)
    }

    /// Builds the filters and the ruleset, if no clone of this sandbox has
    /// yet, and returns them for a call to enter; `None` for nothing to
    /// enter.
    pub(crate) fn for_call(&self) -> Result<Option<NonNull<Prepared>>, SandboxUnsupported> {
        match self
            .prepared
            .get_or_init(|| crate::sys::sandbox::prepare(self.policy))
        {
            Ok(prepared) => Ok(Some(NonNull::from(prepared))),
            Err(e) => Err(e.clone()),
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

/// Shows the policy (not what was built from it).
#[allow(clippy::missing_fields_in_debug)]
impl core::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sandbox")
            .field("deny_network", &self.policy.deny_network)
            .field("deny_exec", &self.policy.deny_exec)
            .field("read_only_filesystem", &self.policy.read_only_filesystem)
            .field("compute_only", &self.policy.compute_only)
            .field("kill_on_violation", &self.policy.kill_on_violation)
            .field("best_effort", &self.policy.best_effort)
            .finish()
    }
}

/// Two sandboxes are equal when their policies are.
impl PartialEq for Sandbox {
    fn eq(&self, other: &Self) -> bool {
        self.policy == other.policy
    }
}

impl Eq for Sandbox {}
