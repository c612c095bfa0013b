//! Android: rustix offers `pidfd_open` and `pidfd_send_signal` on Linux
//! only (on Android it uses its libc backend, which lacks them), so these
//! two are made here with `syscall`, in the shape `linux.rs` uses. A kernel
//! or seccomp policy that refuses them makes `pidfd_open` fail, and the
//! watch then falls back to checking the child on a timer, as on Linux.

use rustix::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Pid, Signal};

/// No call—Stands in for rustix's flags: `linux.rs` only ever passes `empty()`.
#[derive(Clone, Copy)]
pub(super) struct PidfdFlags;

impl PidfdFlags {
    pub(super) const fn empty() -> Self {
        Self
    }
}

/// `syscall(SYS_pidfd_open, pid, 0)`—A descriptor that refers to the
/// process `pid`, readable once it has exited.
///
/// # References
///  - [Linux `pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)
///  - [Linux `syscall(2)`](https://man7.org/linux/man-pages/man2/syscall.2.html)
pub(super) fn pidfd_open(pid: Pid, _flags: PidfdFlags) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_open,
            pid.as_raw_nonzero().get(),
            0 as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(Errno::from_raw_os_error(super::last_errno()));
    }
    let fd = libc::c_int::try_from(r).map_err(|_| Errno::BADF)?;
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0)`—Sends `sig` to
/// the process `pidfd` refers to, which cannot be one that reused its pid.
///
/// # References
///  - [Linux `pidfd_send_signal(2)`](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html)
///  - [Linux `syscall(2)`](https://man7.org/linux/man-pages/man2/syscall.2.html)
pub(super) fn pidfd_send_signal<Fd: AsFd>(pidfd: Fd, sig: Signal) -> Result<(), Errno> {
    // SAFETY: a null siginfo is allowed (the kernel fills in a default);
    // the descriptor is borrowed for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_fd().as_raw_fd(),
            sig.as_raw(),
            core::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if r < 0 {
        Err(Errno::from_raw_os_error(super::last_errno()))
    } else {
        Ok(())
    }
}

/// `errno`, through Bionic's `__errno()`—The calling thread's last error
/// number, read after a libc call that failed.
///
/// # References
///  - [POSIX `errno`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/errno.html)
///  - [Linux `errno(3)`](https://man7.org/linux/man-pages/man3/errno.3.html)
pub(super) fn last_errno() -> i32 {
    // SAFETY: `__errno` returns this thread's errno slot.
    unsafe { *libc::__errno() }
}
