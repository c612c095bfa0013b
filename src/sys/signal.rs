//! `SIGCHLD` for a zygote's loop: a handler that writes a byte to a pipe
//! (the self-pipe trick), so that the zygote's one `poll` wakes when a
//! worker ends, on every platform alike.

use core::sync::atomic::{AtomicI32, Ordering};

use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;

/// The write end of the zygote's wake pipe, for the handler; -1 before.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// `sigaction(SIGCHLD, handler, SA_RESTART | SA_NOCLDSTOP)` and
/// `sigprocmask(SIG_UNBLOCK, {SIGCHLD})`, after `pipe()` with both ends
/// non-blocking—In a zygote: from now on a child's end writes a byte to
/// the returned pipe's write end, and its read end (returned first)
/// becomes readable. Whatever disposition the process had (`SIG_IGN`
/// would reap children behind the zygote's back) is replaced, and a mask
/// inherited from the starting thread cannot hold the signal back.
///
/// # References
///  - [POSIX `sigaction`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/sigaction.html)
///  - [POSIX `sigprocmask`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/sigprocmask.html)
pub(crate) fn wake_on_child_exit() -> Result<(OwnedFd, OwnedFd), Errno> {
    let (read, write) = super::result_pipe()?;
    let flags = rustix::fs::fcntl_getfl(&write)?;
    rustix::fs::fcntl_setfl(&write, flags | rustix::fs::OFlags::NONBLOCK)?;
    WAKE.store(write.as_raw_fd(), Ordering::Relaxed);
    set_child_disposition(child_exited as extern "C" fn(libc::c_int) as usize)?;
    // SAFETY: an all-zero `sigset_t` is a valid value; the calls only
    // write the set they are given, and the old mask is not asked for.
    let r = unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_UNBLOCK, &raw const set, core::ptr::null_mut())
    };
    if r != 0 {
        return Err(Errno::from_raw_os_error(super::last_errno()));
    }
    Ok((read, write))
}

/// `sigaction(sig, SIG_DFL)` for every signal that has a handler—In a
/// freshly forked zygote, before it sets its own: the caller's handlers
/// (a signal library's, an async runtime's) write to descriptors the
/// zygote has closed, whose numbers its call sockets reuse, so one of them
/// run in the zygote (or a worker) could write into a stranger's call.
/// Ignored signals stay ignored. Signal numbers the system does not have
/// are refused with `EINVAL`, and skipped.
///
/// # References
///  - [POSIX `sigaction`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/sigaction.html)
pub(crate) fn default_signal_handlers() {
    for signal in 1..=64 {
        // SAFETY: an all-zero `sigaction` is a valid value to read into,
        // and the call only reads the current action into it.
        let (read, old) = unsafe {
            let mut old: libc::sigaction = core::mem::zeroed();
            (
                libc::sigaction(signal, core::ptr::null(), &raw mut old),
                old,
            )
        };
        if read != 0 || old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN {
            continue;
        }
        // SAFETY: as above; the default action has no handler to run.
        let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
        action.sa_sigaction = libc::SIG_DFL;
        // SAFETY: a valid action for a signal that had a handler.
        unsafe { libc::sigaction(signal, &raw const action, core::ptr::null_mut()) };
    }
}

/// `sigaction(SIGCHLD, SIG_DFL)`—In a worker, before anything else: the
/// zygote's handler would write into a descriptor number the worker has
/// closed (and the callable may reuse).
///
/// # References
///  - [POSIX `sigaction`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/sigaction.html)
pub(crate) fn default_child_signal() {
    let _ = set_child_disposition(libc::SIG_DFL);
}

/// `read(wake, ..)` until empty—Empties the wake pipe's read end.
///
/// # References
///  - [POSIX `read`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/read.html)
pub(crate) fn drain(wake: BorrowedFd<'_>) {
    let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 64];
    while let Ok(Some(got)) = super::read_into(wake, &mut buf) {
        if got.is_empty() {
            break;
        }
    }
}

fn set_child_disposition(handler: usize) -> Result<(), Errno> {
    // SAFETY: an all-zero `sigaction` is a valid value (no flags, empty
    // mask) before its handler is set.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = handler;
    action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
    // SAFETY: the handler (when not SIG_DFL) is async-signal-safe; the
    // old action is not asked for.
    if unsafe { libc::sigaction(libc::SIGCHLD, &raw const action, core::ptr::null_mut()) } == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(super::last_errno()))
    }
}

/// The zygote's `SIGCHLD` handler: one byte to the wake pipe (a full pipe
/// already wakes the loop). Async-signal-safe: one `write`, which succeeds
/// and so leaves `errno` as the interrupted code had it (the loop drains
/// the pipe on every wake, so it is never full).
extern "C" fn child_exited(_: libc::c_int) {
    let fd = WAKE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: the wake pipe's write end, which the zygote never closes.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = rustix::io::write(fd, &[1]);
    }
}
