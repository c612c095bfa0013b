//! Linux and Android, besides the watch (`pidfd.rs`): the parent-death
//! signal, the spill file (a memfd), pipe sizes, the address-space size
//! from `/proc`, and errno.

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Pid, Signal};

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`, or for a child that may outlive
/// its thread `sigaction(SIGRTMAX)` and `prctl(PR_SET_PDEATHSIG,
/// SIGRTMAX)`; then `getppid()`—In the child: die with the parent
/// *process*. `Ok(false)` if the parent is already gone.
///
/// The kernel sends the parent-death signal whenever the child is
/// reparented, and a thread that exits reparents the children it forked
/// (to another thread of the same process, so `getppid()` does not
/// change). A blocking call's thread waits in the call until its child is
/// gone, so it cannot exit first: its child gets `SIGKILL`. A spawned
/// handle (`outlives_thread`) may outlive the thread that made it (a
/// pool's worker, a runtime's retired thread), so its child gets
/// `SIGRTMAX` (see [`arm_caught_parent_death`]), caught by
/// [`parent_death_handler`], which ends the child
/// only once its parent process is really gone (`getppid()` no longer
/// [`ORIGINAL_PARENT`]). The handler is the child's disposition of `SIGRTMAX`
/// while the callable runs; a program the callable `exec`s gets the
/// default back (terminate), so it dies with the spawning thread.
///
/// A parent that died before the signal was armed leaves the child with
/// a different parent pid, which the check at the end catches.
///
/// # References
///  - [Linux `PR_SET_PDEATHSIG`](https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html)
///  - [Linux `sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
///  - [POSIX `getppid`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/getppid.html)
#[inline]
pub(crate) fn on_parent_death(parent: Pid, outlives_thread: bool) -> Result<bool, Errno> {
    if outlives_thread {
        arm_caught_parent_death(parent)?;
    } else {
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    }
    Ok(rustix::process::getppid() == Some(parent))
}

/// `sigaction` and `prctl(PR_SET_PDEATHSIG)`—In the child: installs
/// [`parent_death_handler`] for the highest real-time signal that takes
/// it, arms that signal as the parent-death signal and unblocks it (the
/// child inherits the forking thread's signal mask, and a program that
/// blocks every signal on its threads would otherwise leave the signal
/// pending and the orphan running). `SIGRTMAX` unless
/// either call refuses it with `EINVAL` (qemu-user keeps the top real-time
/// signals for itself), then the next one down, to `SIGRTMIN()`. Should
/// none be taken, `SIGKILL`: the child then dies with its thread, the
/// safe side.
#[inline]
fn arm_caught_parent_death(parent: Pid) -> Result<(), Errno> {
    ORIGINAL_PARENT.store(
        parent.as_raw_nonzero().get(),
        core::sync::atomic::Ordering::Relaxed,
    );
    let lowest = libc::SIGRTMIN();
    let mut raw = libc::SIGRTMAX();
    // SAFETY: an all-zero `sigaction` is a valid value (no flags, empty
    // mask) before its handler is set.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = parent_death_handler as extern "C" fn(libc::c_int) as usize;
    action.sa_flags = libc::SA_RESTART;
    loop {
        // SAFETY: the handler is async-signal-safe (see there); `action`
        // is a valid `sigaction`, and the old one is not asked for.
        let r = if unsafe { libc::sigaction(raw, &raw const action, core::ptr::null_mut()) } == 0 {
            // SAFETY: a valid signal number, and one libc leaves to the
            // program (it reserves only numbers below `SIGRTMIN()`); a
            // real-time signal is not one of rustix's named signals.
            let signal = unsafe { Signal::from_raw_unchecked(raw) };
            rustix::process::set_parent_process_death_signal(Some(signal))
                .and_then(|()| unblock(raw))
        } else {
            Err(Errno::from_raw_os_error(super::last_errno()))
        };
        match r {
            Err(Errno::INVAL) if raw > lowest => raw -= 1,
            Err(Errno::INVAL) => {
                return rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
            }
            r => return r,
        }
    }
}

/// `sigprocmask(SIG_UNBLOCK, {signal})`—In the child: lets the caught
/// parent-death signal in, whatever mask it inherited.
///
/// # References
///  - [POSIX `sigprocmask`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/sigprocmask.html)
#[inline]
fn unblock(signal: libc::c_int) -> Result<(), Errno> {
    // SAFETY: an all-zero `sigset_t` is a valid value, and `sigemptyset`
    // and `sigaddset` only write the set they are given; `sigprocmask`
    // reads it and is not asked for the old mask.
    let r = unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &raw const set, core::ptr::null_mut())
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(super::last_errno()))
    }
}

/// The pid of the process that forked this child: set by the child itself
/// as it arms the caught parent-death signal (see
/// [`arm_caught_parent_death`]), so that a spawned child that spawns in
/// turn does not change what its own handler compares with. A store in
/// the child is a copy-on-write fault, paid by spawned children only.
static ORIGINAL_PARENT: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(0);

/// The child's parent-death handler: a thread of the parent exited (the
/// child now belongs to another thread of the same process, and lives on)
/// or the parent process did (the child is `SIGKILL`ed). Async-signal-safe:
/// `getppid`, `getpid` and `kill` only.
extern "C" fn parent_death_handler(_: libc::c_int) {
    use core::sync::atomic::Ordering;
    let parent = ORIGINAL_PARENT.load(Ordering::Relaxed);
    let now = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    if now != parent {
        let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::KILL);
    }
}

/// `memfd_create("mem-isolate-spill", MFD_CLOEXEC)`—The spill file: where
/// a child whose result outgrows the shared page writes it, at offsets
/// from 0, with `pwrite`. Made once per thread and kept, emptied after
/// each call that used it.
///
/// # References
///  - [Linux `memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
pub(crate) fn spill_file() -> Result<OwnedFd, Errno> {
    use rustix::fs::{MemfdFlags, memfd_create};
    super::above_stdio(memfd_create(c"mem-isolate-spill", MemfdFlags::CLOEXEC)?)
}

/// `errno`, through glibc's or musl's `__errno_location()`—The calling
/// thread's last error number, read after a libc call that failed.
///
/// # References
///  - [POSIX `errno`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/errno.html)
///  - [Linux `errno(3)`](https://man7.org/linux/man-pages/man3/errno.3.html)
#[cfg(target_os = "linux")]
pub(super) fn last_errno() -> i32 {
    // SAFETY: `__errno_location` returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// `fcntl(fd, F_GETPIPE_SZ)`—How many bytes `pipe` can hold: all that a
/// writer that has ended can have left in it. Should the kernel not say,
/// 1 MiB is assumed, as elsewhere.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/fcntl.2.html)
pub(crate) fn pipe_capacity(pipe: BorrowedFd<'_>) -> usize {
    rustix::pipe::fcntl_getpipe_size(pipe).unwrap_or(super::ASSUMED_PIPE_CAPACITY)
}

/// `fcntl(fd, F_SETPIPE_SZ, size)`—Asks for a wider pipe, best effort: the
/// system's `pipe-max-size` may refuse it.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/fcntl.2.html)
pub(crate) fn widen_pipe(fd: BorrowedFd<'_>, size: usize) {
    let _ = rustix::pipe::fcntl_setpipe_size(fd, size);
}

/// Memory limits are enforced with `RLIMIT_AS`.
pub(crate) const MEMORY_LIMIT_SUPPORTED: bool = true;

/// `open("/proc/self/statm")`, `read`, `close`—The process's current
/// address-space size, from `/proc/self/statm` (first field, in pages).
/// Allocation-free: it runs in the child.
///
/// # References
///  - [Linux `proc_pid_statm(5)`](https://man7.org/linux/man-pages/man5/proc_pid_statm.5.html)
pub(crate) fn address_space_size() -> Result<u64, Errno> {
    use rustix::fs::{Mode, OFlags, open};
    let fd = super::above_stdio(open(
        c"/proc/self/statm",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)?;
    let mut buf = [0u8; 32];
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    let mut pages: u64 = 0;
    let mut digits = 0;
    for &b in &buf[..len] {
        if !b.is_ascii_digit() {
            break;
        }
        pages = pages
            .checked_mul(10)
            .and_then(|p| p.checked_add(u64::from(b - b'0')))
            .ok_or(Errno::RANGE)?;
        digits += 1;
    }
    if digits == 0 {
        return Err(Errno::INVAL);
    }
    Ok(pages.saturating_mul(rustix::param::page_size() as u64))
}
