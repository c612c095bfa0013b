//! Processes: `fork`, `_exit`, the child's process group, reaping, and
//! what a reaped child consumed.

use core::time::Duration;

use rustix::io::Errno;
use rustix::process::Pid;

use super::last_errno;

/// `fork()`—Duplicates the calling process. `Ok(None)` in the child,
/// `Ok(Some(child))` in the parent.
///
/// # Safety
///
/// In the child of a multi-threaded parent only async-signal-safe work is
/// sound until `_exit`; the caller must keep to that (the crate's own child
/// path does; the user's callable is the user's business).
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fork.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/fork.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=fork&sektion=2)
// Inlined, so that the child returns into its caller's page of code, not
// into one of its own (ARCHITECTURE.md, "Page faults after fork").
#[allow(clippy::inline_always)]
#[inline(always)]
pub(crate) unsafe fn fork() -> Result<Option<Pid>, Errno> {
    // SAFETY: the caller upholds the post-fork contract above.
    let pid = unsafe { libc::fork() };
    match pid {
        0 => Ok(None),
        // A positive pid_t is a valid Pid.
        p if p > 0 => Ok(Pid::from_raw(p)),
        _ => Err(Errno::from_raw_os_error(last_errno())),
    }
}

/// `_exit(code)`—Ends the process at once: no atexit handlers, no stdio
/// flush, no destructors. The only way the child leaves.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/_exit.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/_exit.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=_exit&sektion=2)
#[inline]
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// `getpid()`—This process's id.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/getpid.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/getpid.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=getpid&sektion=2)
pub(crate) fn getpid() -> Pid {
    rustix::process::getpid()
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It called `exit` (or `_exit`) with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// What the child consumed, as reported by `wait4`.
///
/// The figures cover the child and any of its own children that it waited
/// for. More fields may be added, so the struct is `#[non_exhaustive]`:
/// read its fields, and start from [`Default`] where you need one of your
/// own.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "alloc")] {
/// use mem_isolate::{Isolate, ResourceUsage};
///
/// let (result, usage) = Isolate::new()
///     .spawn(|| vec![0u8; 8 << 20].iter().map(|&b| u64::from(b)).sum::<u64>())?
///     .join_with_usage();
/// assert_eq!(result?, 0);
/// let usage: ResourceUsage = usage.expect("the child was reaped");
/// assert!(usage.max_rss_bytes > 0);
/// println!("user {:?}, system {:?}", usage.user_time, usage.system_time);
/// # }
/// # Ok::<(), mem_isolate::MemIsolateError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceUsage {
    /// The child's peak resident set size, in bytes.
    pub max_rss_bytes: u64,
    /// CPU time spent in user mode.
    pub user_time: Duration,
    /// CPU time spent in the kernel on the child's behalf.
    pub system_time: Duration,
}

/// `setpgid(0, 0)`—In the child, straight after `fork`: makes it the
/// leader of a process group of its own, whose id is its pid. The parent
/// need not make the same call to close a race: the child does this before
/// anything else, so no descendant of it can exist in any other group, and
/// a group kill that comes first finds no group (`ESRCH`) while the child
/// itself is killed through its pidfd. Failure (which a freshly forked
/// child cannot meet) would leave it in its parent's group, where
/// [`kill_group`] cannot reach it.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/setpgid.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/setpgid.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=setpgid&sektion=2)
#[inline]
pub(crate) fn lead_own_group() {
    let _ = rustix::process::setpgid(None, None);
}

/// `kill(-leader, SIGKILL)`—Kills every process left in the group that the
/// child `leader` leads (see [`lead_own_group`]): the child's descendants,
/// unless they moved to another group or session. Call it only while the
/// leader is unreaped, so that its pid, the group's id, cannot have been
/// reused. Failure only means there is nothing left to kill (`ESRCH`) or a
/// member changed credentials out of reach (`EPERM`).
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/kill.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/kill.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=kill&sektion=2)
pub(crate) fn kill_group(leader: Pid) {
    // A leader that is already gone (reaped by something else in the
    // process, or automatically, under `SIGCHLD` ignored) no longer holds
    // its pid: the number may name a stranger's group by now.
    if unreaped(leader) {
        kill_unreaped_group(leader);
    }
}

/// `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`—Whether `pid` is still
/// this process's unreaped child (running, or exited and waiting to be
/// reaped). Observes only: nothing is reaped.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/waitid.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/waitid.2.html)
fn unreaped(pid: Pid) -> bool {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let look = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    loop {
        match waitid(WaitId::Pid(pid), look) {
            Err(Errno::INTR) => {}
            r => return r.is_ok(),
        }
    }
}

/// `kill(-leader, SIGKILL)` for a leader known to be unreaped (see
/// [`kill_group`]), without checking again.
fn kill_unreaped_group(leader: Pid) {
    let _ = rustix::process::kill_process_group(leader, rustix::process::Signal::KILL);
}

/// `waitid(P_PID, pid, WEXITED | WNOWAIT | WNOHANG?)`—Whether the child has
/// exited (or was killed), leaving it unreaped, so that its group can be
/// killed while its pid still stands for the group. `Ok(false)` only when
/// `block` is false and it has not. A traced child's stop, which `waitid`
/// reports too, is consumed, and the wait goes on.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/waitid.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/waitid.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=waitid&sektion=2)
fn has_exited(pid: Pid, block: bool) -> Result<bool, Errno> {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let mut options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
    if !block {
        options |= WaitIdOptions::NOHANG;
    }
    loop {
        match waitid(WaitId::Pid(pid), options) {
            Ok(None) => return Ok(false),
            Ok(Some(st)) if st.exited() || st.killed() || st.dumped() => return Ok(true),
            Ok(Some(_)) => {
                // A stop: consume it (WSTOPPED without WEXITED can never
                // consume the exit), then look again.
                let stops =
                    WaitIdOptions::STOPPED | WaitIdOptions::CONTINUED | WaitIdOptions::NOHANG;
                let _ = waitid(WaitId::Pid(pid), stops);
                if !block {
                    return Ok(false);
                }
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// `wait4(pid, WNOHANG?)`, with `group` first `waitid` and
/// `kill(-pid, SIGKILL)`—Reaps the child, retrying on `EINTR`. With
/// `group` (the child leads its own process group), the group is killed
/// once the child has exited and before it is reaped (see
/// [`kill_group`]): descendants end with it.
/// `Ok(None)` when `block` is false and the child is still running.
///
/// Only an exit or a death by signal counts: a stop (a traced child's
/// stops are reported even without `WUNTRACED`) or a continue is consumed
/// and the wait goes on, so a stopped child is waited for like a running
/// one, and ended like one by the deadline, `kill` or drop.
///
/// `wait4` is not in POSIX (it is `waitpid` with resource usage); Linux,
/// FreeBSD and macOS all have it.
///
/// # References
///  - [POSIX `waitpid`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/waitpid.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/wait4.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=wait4&sektion=2)
pub(crate) fn reap(
    pid: Pid,
    block: bool,
    group: bool,
) -> Result<Option<(Exit, ResourceUsage)>, Errno> {
    if group {
        if !has_exited(pid, block)? {
            return Ok(None);
        }
        kill_unreaped_group(pid);
    }
    let options = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `rusage` is plain data; all-zero is a valid value.
        let mut usage: libc::rusage = unsafe { core::mem::zeroed() };
        // SAFETY: both out-pointers are valid for writes.
        let r = unsafe {
            libc::wait4(
                pid.as_raw_nonzero().get(),
                &raw mut status,
                options,
                &raw mut usage,
            )
        };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            let e = Errno::from_raw_os_error(last_errno());
            if e == Errno::INTR {
                continue;
            }
            return Err(e);
        }
        let exit = if libc::WIFEXITED(status) {
            Exit::Code(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            // Stopped (reported without WUNTRACED only for a traced child:
            // a callable that called `ptrace(PTRACE_TRACEME)` made this
            // process its tracer) or continued: it has not finished. Wait
            // on, or look again without blocking.
            continue;
        };
        return Ok(Some((exit, usage_from(&usage))));
    }
}

/// Bytes per unit of `ru_maxrss`: it is in kilobytes on Linux and FreeBSD.
#[cfg(not(apple))]
const MAXRSS_UNIT: u64 = 1024;
/// Bytes per unit of `ru_maxrss`: it is in bytes on macOS.
#[cfg(apple)]
const MAXRSS_UNIT: u64 = 1;

/// No call—The part of `wait4`'s `struct rusage` that
/// [`ResourceUsage`] reports, in its units.
///
/// # References
///  - [POSIX `<sys/resource.h>`](https://pubs.opengroup.org/onlinepubs/9799919799/basedefs/sys_resource.h.html)
///  - [Linux `getrusage(2)`](https://man7.org/linux/man-pages/man2/getrusage.2.html)
fn usage_from(u: &libc::rusage) -> ResourceUsage {
    let tv = |t: libc::timeval| {
        Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_usec)
                .unwrap_or(0)
                .saturating_mul(1000)
                .min(999_999_999),
        )
    };
    ResourceUsage {
        max_rss_bytes: u64::try_from(u.ru_maxrss)
            .unwrap_or(0)
            .saturating_mul(MAXRSS_UNIT),
        user_time: tv(u.ru_utime),
        system_time: tv(u.ru_stime),
    }
}
