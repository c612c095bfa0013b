//! macOS and FreeBSD, besides the watch (`kqueue.rs`): the parent-death
//! signal, pipe sizes, the address-space size, errno, and the spill file,
//! which these systems do not have.

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::Pid;
#[cfg(freebsd)]
use rustix::process::Signal;

/// `procctl(P_PID, 0, PROC_PDEATHSIG_CTL, SIGKILL)`, then `getppid()`—In
/// the child: die with the parent. `Ok(false)` if the parent is already
/// gone.
///
/// `PROC_PDEATHSIG_CTL` delivers `SIGKILL` when the parent *process*
/// exits, never when one of its threads does, so a child that outlives
/// its thread (`outlives_thread`) needs nothing more. A parent that died
/// before the call leaves the child with a different parent pid, which the
/// second check catches.
///
/// # References
///  - [FreeBSD `procctl(2)`](https://man.freebsd.org/cgi/man.cgi?query=procctl&sektion=2)
///  - [POSIX `getppid`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/getppid.html)
#[cfg(freebsd)]
#[inline]
pub(crate) fn on_parent_death(parent: Pid, _outlives_thread: bool) -> Result<bool, Errno> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    Ok(rustix::process::getppid() == Some(parent))
}

/// `getppid()`—In the child: whether the parent is still there.
/// `Ok(false)` if it is already gone.
///
/// FreeBSD has `procctl(PROC_PDEATHSIG_CTL)`, which delivers `SIGKILL` when
/// the parent exits. macOS has no such call: there an orphaned child runs on
/// until it finishes, then fails to write its result to a pipe nobody reads
/// and exits. Have long-running work check `getppid()` if that matters on
/// macOS.
///
/// # References
///  - [POSIX `getppid`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/getppid.html)
// Nothing here can fail; the signature is FreeBSD's and Linux's.
#[cfg(apple)]
#[allow(clippy::unnecessary_wraps)]
#[inline]
pub(crate) fn on_parent_death(parent: Pid, _outlives_thread: bool) -> Result<bool, Errno> {
    Ok(rustix::process::getppid() == Some(parent))
}

/// `errno`, through `__error()`—The calling thread's last error number,
/// read after a libc call that failed.
///
/// # References
///  - [POSIX `errno`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/errno.html)
///  - [FreeBSD `errno(2)`](https://man.freebsd.org/cgi/man.cgi?query=errno&sektion=2)
pub(super) fn last_errno() -> i32 {
    // SAFETY: `__error` returns this thread's errno slot.
    unsafe { *libc::__error() }
}

/// No call—How many bytes a pipe can hold: all that a writer that has
/// ended can have left in it. These systems do not say; their pipes hold
/// at most 64 KiB, and 1 MiB is assumed.
pub(crate) fn pipe_capacity(_pipe: BorrowedFd<'_>) -> usize {
    super::ASSUMED_PIPE_CAPACITY
}

/// No call—Pipes here have a fixed size: there is nothing to widen.
pub(crate) fn widen_pipe(_fd: BorrowedFd<'_>, _size: usize) {}

/// FreeBSD enforces `RLIMIT_AS`; macOS accepts it but does not enforce it.
pub(crate) const MEMORY_LIMIT_SUPPORTED: bool = cfg!(target_os = "freebsd");

/// `sysctl(CTL_KERN, KERN_PROC, KERN_PROC_PID, pid)`—The process's
/// current address-space size: `ki_size` from the `kinfo_proc` it fills, a
/// single syscall into a stack buffer (it runs in the child). rustix has no
/// sysctl, so this is libc's.
///
/// # References
///  - [FreeBSD `sysctl(3)`](https://man.freebsd.org/cgi/man.cgi?query=sysctl&sektion=3)
#[cfg(freebsd)]
pub(crate) fn address_space_size() -> Result<u64, Errno> {
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, pid];
    // SAFETY: `kinfo_proc` is plain data; all-zero is a valid value.
    let mut info: libc::kinfo_proc = unsafe { core::mem::zeroed() };
    let mut len = core::mem::size_of::<libc::kinfo_proc>();
    // SAFETY: the output pointer and its length describe `info`.
    let r = unsafe {
        libc::sysctl(
            mib.as_ptr(),
            4,
            (&raw mut info).cast(),
            &raw mut len,
            core::ptr::null(),
            0,
        )
    };
    if r != 0 {
        return Err(Errno::from_raw_os_error(last_errno()));
    }
    Ok(info.ki_size as u64)
}

/// No call—macOS does not enforce address-space limits; the parent
/// refuses the option before forking, so this is never reached.
#[cfg(not(freebsd))]
pub(crate) fn address_space_size() -> Result<u64, Errno> {
    Err(Errno::NOTSUP)
}

/// No call—These systems have no `memfd_create`: results that outgrow the
/// shared page take the pipe (see `crate::call::plan`).
pub(crate) fn spill_file() -> Result<OwnedFd, Errno> {
    Err(Errno::NOSYS)
}
