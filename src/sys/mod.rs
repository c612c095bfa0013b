//! The one place that talks to the operating system.
//!
//! `fork`, `_exit` and `wait4` come from `libc` (and, for one corner of the
//! spill file, `sigaction`): rustix deliberately leaves
//! `fork` and `_exit` to libc (libc must run its own fork handlers, or the
//! child of a threaded parent could not safely allocate), and rustix has no
//! call that reaps one child *and* returns its resource usage. Everything
//! else goes through rustix. Platform differences live in whole files:
//! `linux.rs` (pidfd, epoll, the spill file, pipe sizes; Linux and
//! Android), `android.rs` (what rustix lacks there) and `kqueue.rs` (macOS
//! and FreeBSD), each with its `errno`: rustix's `Errno` has no "last
//! error" accessor on the `linux_raw` backend, and libc exposes errno's
//! location under a different name on each platform.

use core::time::Duration;

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::Pid;

#[cfg(target_os = "android")]
mod android;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(target_os = "android")]
use android::last_errno;
#[cfg(all(feature = "tokio", any(target_os = "linux", target_os = "android")))]
pub(crate) use linux::WATCH_HOLDS_PIPE;
#[cfg(any(target_os = "linux", target_os = "android"))]
use linux::address_space_size;
#[cfg(target_os = "linux")]
use linux::last_errno;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use linux::{
    MEMORY_LIMIT_SUPPORTED, Watch, on_parent_death, pipe_capacity, pread_into, pwrite_all,
    spill_file, widen_pipe,
};

#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
mod kqueue;
#[cfg(all(feature = "tokio", any(target_vendor = "apple", target_os = "freebsd")))]
pub(crate) use kqueue::WATCH_HOLDS_PIPE;
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
pub(crate) use kqueue::{
    MEMORY_LIMIT_SUPPORTED, Watch, on_parent_death, pipe_capacity, widen_pipe,
};
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
use kqueue::{address_space_size, last_errno};

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd"
)))]
compile_error!("mem-isolate supports Linux, Android, macOS and FreeBSD");

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
// into one of its own: a page of code a child has not run yet costs it a
// page fault.
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

/// `fcntl(fd, F_DUPFD_CLOEXEC, 3)`—Moves a descriptor the crate just made
/// off 0, 1 and 2, closing the original; a descriptor already at 3 or above
/// is returned as it is, at no cost.
///
/// A program started with its standard descriptors closed (by some service
/// managers, or a daemon that closed them) gets the lowest free numbers for
/// whatever it opens next: without this, the result pipe or the spill file
/// could become a callable's stderr, so that its logging corrupts its own
/// result, or keep descriptor 0 for good. Every descriptor the crate makes
/// goes through here.
///
/// # References
///  - [POSIX `fcntl`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fcntl.html)
///  - [Linux `fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
///  - [FreeBSD `fcntl(2)`](https://man.freebsd.org/cgi/man.cgi?query=fcntl&sektion=2)
///  - [Apple `fcntl(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/fcntl.2.html)
pub(crate) fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, Errno> {
    use rustix::fd::AsRawFd;
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, 3)
}

/// `pipe2(O_CLOEXEC | O_NONBLOCK)`—The result pipe: `(read end, write
/// end)`, both numbered 3 or above (see [`above_stdio`]) and both
/// close-on-exec, so that a program the callable `exec`s does
/// not inherit them. The read end is non-blocking, so the parent only ever
/// blocks in its readiness wait, where deadlines apply.
///
/// # References
///  - [POSIX `pipe`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/pipe.html)
///  - [Linux `pipe2(2)`](https://man7.org/linux/man-pages/man2/pipe2.2.html)
///  - [FreeBSD `pipe2(2)`](https://man.freebsd.org/cgi/man.cgi?query=pipe2&sektion=2)
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn result_pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    // Non-blocking from birth, which saves two `fcntl` calls per call.
    // The flag lives on each end's open file; the write end's copy only
    // makes the child's `write_all` wait in `poll` instead of `write`.
    use rustix::pipe::PipeFlags;
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// `pipe()`, then `fcntl(F_SETFD, FD_CLOEXEC)` on both ends and
/// `fcntl(F_SETFL, O_NONBLOCK)` on the read end—The result pipe: `(read
/// end, write end)`, both numbered 3 or above (see [`above_stdio`]) and
/// both close-on-exec, so that a program the callable `exec`s does not
/// inherit them. The read end is non-blocking, so the parent only ever
/// blocks in its readiness wait, where deadlines apply.
///
/// macOS has no `pipe2`: there the flags are set with `fcntl` straight
/// after (`O_NONBLOCK` on the read end only).
/// Another thread forking between the two calls could leak the descriptors
/// into its child; that child would hold the write end open, which the
/// parent tolerates (it never waits for end-of-file).
///
/// # References
///  - [POSIX `pipe`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/pipe.html)
///  - [POSIX `fcntl`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fcntl.html)
///  - [Apple `pipe(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/pipe.2.html)
///  - [Apple `fcntl(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/fcntl.2.html)
#[cfg(target_vendor = "apple")]
pub(crate) fn result_pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let (r, w) = rustix::pipe::pipe()?;
    let (r, w) = (above_stdio(r)?, above_stdio(w)?);
    rustix::io::fcntl_setfd(&r, rustix::io::FdFlags::CLOEXEC)?;
    rustix::io::fcntl_setfd(&w, rustix::io::FdFlags::CLOEXEC)?;
    fcntl_setfl(&r, fcntl_getfl(&r)? | OFlags::NONBLOCK)?;
    Ok((r, w))
}

/// `write(fd, buf)`, and `poll(fd, POLLOUT)` while it is full—Writes all
/// of `buf`, retrying on `EINTR` and waiting in `poll` while a non-blocking
/// `fd` is full. Allocation-free and async-signal-safe: the child writes its
/// result with it.
///
/// # References
///  - [POSIX `write`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/write.html)
///  - [POSIX `poll`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/poll.html)
///  - [Linux `write(2)`](https://man7.org/linux/man-pages/man2/write.2.html)
///  - [Linux `poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
///  - [FreeBSD `write(2)`](https://man.freebsd.org/cgi/man.cgi?query=write&sektion=2)
///  - [FreeBSD `poll(2)`](https://man.freebsd.org/cgi/man.cgi?query=poll&sektion=2)
///  - [Apple `write(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/write.2.html)
///  - [Apple `poll(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/poll.2.html)
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), Errno> {
    use rustix::event::{PollFd, PollFlags, poll};
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(0) => return Err(Errno::PIPE),
            Ok(n) => buf = &buf[n..],
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                // Writable again once the reader makes room; a reader that
                // is gone shows as POLLERR, and the next write says EPIPE.
                let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::OUT)];
                match poll(&mut fds, None) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `fstat(fd)`—The `(device, inode)` pair naming the file behind `fd`.
/// Allocation-free: the child uses it to notice that its result
/// descriptor number was closed and reused for some other file.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=fstat&sektion=2)
#[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)] // field types differ by platform (macOS: i32 st_dev)
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> Result<(u64, u64), Errno> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// `read(fd, buf)`—Reads into a possibly uninitialized buffer, retrying on
/// `EINTR`. Returns the bytes read (empty at end-of-file), or `None` when
/// no data is ready.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/read.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/read.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=read&sektion=2)
///  - [Apple](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/read.2.html)
pub(crate) fn read_into<'b>(
    fd: BorrowedFd<'_>,
    buf: &'b mut [core::mem::MaybeUninit<u8>],
) -> Result<Option<&'b mut [u8]>, Errno> {
    let len = loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok((filled, _)) => break filled.len(),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e),
        }
    };
    // SAFETY: `read` initialized the first `len` bytes.
    Ok(Some(unsafe {
        core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), len)
    }))
}

/// What a pipe is taken to hold where the system does not say (see
/// `pipe_capacity`): Linux says, and macOS and FreeBSD pipes hold at most
/// 64 KiB, so this is more than enough.
const ASSUMED_PIPE_CAPACITY: usize = 1 << 20;

/// `getrlimit(RLIMIT_FSIZE)`—Whether this process may write files of any
/// size (`RLIMIT_FSIZE` unlimited). Writes to the spill file count against
/// that limit, writes to a pipe do not, so under a limit results take the
/// pipe.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/getrlimit.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=getrlimit&sektion=2)
pub(crate) fn file_size_unlimited() -> bool {
    use rustix::process::{Resource, getrlimit};
    getrlimit(Resource::Fsize).current.is_none()
}

/// `setrlimit(RLIMIT_FSIZE)` and `sigaction(SIGXFSZ, SIG_IGN)`—In the
/// child, before its first write to the spill file: raises the
/// soft `RLIMIT_FSIZE` to the hard one, in case the callable lowered it (the
/// parent chose the spill file because it had no limit). The callable is
/// done by then, so nothing of its own is written under the raised limit.
/// Should the hard limit be finite too (the callable lowered both), a
/// write past it must fail with `EFBIG`, reported as a failed write,
/// rather than kill the child with `SIGXFSZ`: the signal is ignored.
/// Allocation-free and async-signal-safe (`setrlimit`, `sigaction`).
///
/// # References
///  - [POSIX `setrlimit`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/getrlimit.html)
///  - [POSIX `sigaction`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/sigaction.html)
///  - [Linux `setrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
///  - [Linux `sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn lift_file_size_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Fsize);
    if now.current.is_some() && now.current != now.maximum {
        let _ = setrlimit(
            Resource::Fsize,
            Rlimit {
                current: now.maximum,
                maximum: now.maximum,
            },
        );
    }
    if now.maximum.is_some() {
        // rustix has no `sigaction` outside its unstable runtime module.
        // SAFETY: `sigaction` with a zeroed action (empty mask, no flags)
        // set to SIG_IGN, and no old action requested.
        unsafe {
            let mut ignore: libc::sigaction = core::mem::zeroed();
            ignore.sa_sigaction = libc::SIG_IGN;
            libc::sigaction(libc::SIGXFSZ, &raw const ignore, core::ptr::null_mut());
        }
    }
}

/// `getrlimit(RLIMIT_AS)` and `setrlimit(RLIMIT_AS)`, after the platform's
/// `address_space_size`—In the child: caps the address space at its
/// current size plus `extra` bytes, so the limit means the same in a small
/// process and in one that already maps gigabytes. Allocation-free.
///
/// Asking for more than the hard limit fails with `EINVAL` rather than
/// being quietly lowered.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/getrlimit.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=getrlimit&sektion=2)
pub(crate) fn limit_memory(extra: u64) -> Result<(), Errno> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let soft = address_space_size()?.saturating_add(extra);
    let old = getrlimit(Resource::As);
    if old.maximum.is_some_and(|hard| soft > hard) {
        return Err(Errno::INVAL);
    }
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(soft),
            maximum: old.maximum,
        },
    )
}

/// `mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)`—A
/// page of memory shared with every child forked while it lives: a
/// thread's [`SharedPage`](crate::transport::page::SharedPage), or the page
/// a call without one lends its child for a report of a failure of its own
/// (see [`crate::report`]). Fresh anonymous memory is zero. Unmapped on
/// drop.
///
/// # References
///  - [POSIX `mmap`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/mmap.html)
///  - [POSIX `munmap`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/munmap.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/mmap.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=mmap&sektion=2)
///  - [Apple](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/mmap.2.html)
pub(crate) struct SharedMapping(core::ptr::NonNull<u8>);

// SAFETY: the mapping is owned, and only ever accessed through volatile
// reads and writes of plain bytes, from any thread.
unsafe impl Send for SharedMapping {}

impl SharedMapping {
    /// Bytes of the mapping: one page on every supported system.
    pub(crate) const LEN: usize = 4096;

    /// `mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED |
    /// MAP_ANONYMOUS)`—Maps the page. Before the fork, so that a failure
    /// means the callable never started.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/mmap.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/mmap.2.html)
    ///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=mmap&sektion=2)
    ///  - [Apple](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/mmap.2.html)
    pub(crate) fn new() -> Result<Self, Errno> {
        use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous};
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing aliases nothing.
        let ptr = unsafe {
            mmap_anonymous(
                core::ptr::null_mut(),
                Self::LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
            )?
        };
        core::ptr::NonNull::new(ptr.cast())
            .map(Self)
            .ok_or(Errno::NOMEM)
    }

    /// No call—The first byte.
    pub(crate) fn as_ptr(&self) -> core::ptr::NonNull<u8> {
        self.0
    }
}

impl Drop for SharedMapping {
    /// `munmap(ptr, LEN)`—Unmaps the page; any child still running keeps
    /// its own mapping of it.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/munmap.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/munmap.2.html)
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.0.as_ptr().cast(), Self::LEN) };
    }
}

/// A descriptor the child checks before each write: the identity (see
/// [`file_id`]) of the file it must name. A callable may close the
/// descriptor and open something else that gets the same number; the
/// check makes the write fail with `EBADF` rather than land in a
/// stranger's file. Allocation-free.
#[derive(Clone, Copy)]
pub(crate) struct CheckedFd<'a> {
    fd: BorrowedFd<'a>,
    id: Option<(u64, u64)>,
}

impl<'a> CheckedFd<'a> {
    /// `fstat(fd)`—Takes the identity of the file behind `fd` now; a
    /// failure leaves no identity, so that every [`CheckedFd::get`] fails.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
    ///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=fstat&sektion=2)
    pub(crate) fn now(fd: BorrowedFd<'a>) -> Self {
        Self {
            fd,
            id: file_id(fd).ok(),
        }
    }

    /// No call—`fd`, which must name the file whose identity is `id`
    /// (taken before, by [`file_id`]).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn known(fd: BorrowedFd<'a>, id: (u64, u64)) -> Self {
        Self { fd, id: Some(id) }
    }

    /// `fstat(fd)`—The descriptor, if it still names its file; `EBADF`
    /// otherwise.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
    ///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=fstat&sektion=2)
    pub(crate) fn get(self) -> Result<BorrowedFd<'a>, Errno> {
        if self.id.is_some() && file_id(self.fd).ok() == self.id {
            Ok(self.fd)
        } else {
            Err(Errno::BADF)
        }
    }
}

/// `ftruncate(fd, 0)`—Empties a file, best effort: a file that could not
/// be emptied is overwritten by its next use.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/ftruncate.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/ftruncate.2.html)
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn truncate(fd: BorrowedFd<'_>) {
    let _ = rustix::fs::ftruncate(fd, 0);
}

/// `fstat(fd)`—The bytes the file behind `fd` really holds: its size, but
/// no more than the storage allocated to it (`st_blocks`, in 512-byte
/// units). A sparse file's holes read as zeros without costing anyone
/// anything, so a writer could make a file of any size for free; what it
/// really wrote, it paid for.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let st = rustix::fs::fstat(fd)?;
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let stored = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
    Ok(size.min(stored))
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

/// `clock_gettime(CLOCK_MONOTONIC)`—Time since an arbitrary origin, for
/// deadlines.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/clock_gettime.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/clock_gettime.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=clock_gettime&sektion=2)
pub(crate) fn now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// `sched_yield()`—Lets a child sharing this CPU run.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/sched_yield.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/sched_yield.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=sched_yield&sektion=2)
pub(crate) fn yield_now() {
    rustix::thread::sched_yield();
}

/// A descriptor the crate keeps between calls, by number, with the identity
/// (device and inode, see [`file_id`]) of the file it named when the crate
/// made it.
///
/// The program around the crate may close every descriptor it does not
/// own (`close_range(3, ~0)`, or a loop over `/proc/self/fd`) and then open
/// files of its own, which take the freed numbers. So the number alone
/// proves nothing: before every use, [`KeptFile::get`] checks that it still
/// names the same file. When it does not, the crate never writes,
/// truncates or closes it again; it forgets the number and makes a fresh
/// descriptor instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeptFile {
    fd: rustix::fd::RawFd,
    id: (u64, u64),
}

// Only Linux keeps a descriptor (the spill file); elsewhere the type exists
// so that the parent's code is the same, but nothing is ever kept.
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
impl KeptFile {
    /// `fstat(fd)`—Takes over `fd`, noting the identity of its file.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
    ///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=fstat&sektion=2)
    pub(crate) fn new(fd: OwnedFd) -> Result<Self, Errno> {
        use rustix::fd::{AsFd, IntoRawFd};
        let id = file_id(fd.as_fd())?;
        Ok(Self {
            fd: fd.into_raw_fd(),
            id,
        })
    }

    /// `fstat(fd)`—The descriptor, if its number still names the file it
    /// was made for.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
    ///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=fstat&sektion=2)
    pub(crate) fn get(&self) -> Option<BorrowedFd<'_>> {
        // SAFETY: only borrowed long enough to ask what it names; if the
        // number was closed, `fstat` fails with EBADF.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        (file_id(fd).ok() == Some(self.id)).then_some(fd)
    }

    /// `fstat(fd)`—As [`KeptFile::get`], and whether the file holds
    /// anything (a size or storage), from the same call: an empty file
    /// needs no `ftruncate`.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)] // as in `file_id`
    pub(crate) fn get_if_used(&self) -> Option<(BorrowedFd<'_>, bool)> {
        // SAFETY: as in `get`.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let st = rustix::fs::fstat(fd).ok()?;
        ((st.st_dev as u64, st.st_ino as u64) == self.id)
            .then_some((fd, st.st_size != 0 || st.st_blocks != 0))
    }

    /// No call—The identity of the file it was made for.
    pub(crate) fn id(&self) -> (u64, u64) {
        self.id
    }

    /// No call—The descriptor, unchecked, for `'a`.
    ///
    /// # Safety
    ///
    /// Only after [`KeptFile::get`] found it the crate's, and `'a` must
    /// not outlive whatever keeps it open.
    pub(crate) unsafe fn borrow<'a>(&self) -> BorrowedFd<'a> {
        // SAFETY: the caller's promise.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    /// `fstat(fd)`, then `close(fd)`—Closes it if it is still the crate's;
    /// otherwise leaves the number to whoever holds it now.
    ///
    /// # References
    ///  - [POSIX `fstat`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [POSIX `close`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/close.html)
    ///  - [Linux `close(2)`](https://man7.org/linux/man-pages/man2/close.2.html)
    pub(crate) fn close(self) {
        if let Some(fd) = self.get() {
            use rustix::fd::AsRawFd;
            // SAFETY: the number names the file the crate made and still
            // owns (checked just now), and nothing uses it after this.
            drop(unsafe { <OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(fd.as_raw_fd()) });
        }
    }
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
#[cfg(not(target_vendor = "apple"))]
const MAXRSS_UNIT: u64 = 1024;
/// Bytes per unit of `ru_maxrss`: it is in bytes on macOS.
#[cfg(target_vendor = "apple")]
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

/// What a readiness wait ([`ChildWatch::wait`]) saw: hints for the
/// caller, never a verdict. Every flag may be set when there turns out to
/// be nothing to do (a read finds no data, a non-blocking reap finds the
/// child running), and the caller must take that in its stride. What a
/// wait must not do is leave a flag unset when the pipe had data or the
/// child had ended before it returned; only an unwatched child's end may
/// show a tick late (see [`ChildWatch`]). All unset: the timeout passed,
/// or a signal interrupted the wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    /// The pipe has data or reached end-of-file.
    pub(crate) pipe: bool,
    /// The child may have ended: try reaping it without blocking.
    pub(crate) child: bool,
    /// The child is certainly exiting (kqueue's `NOTE_EXIT` may come just
    /// before it can be reaped): a blocking reap returns promptly.
    pub(crate) exiting: bool,
}

/// When the platform cannot watch the child itself (pidfd unavailable on an
/// old kernel, say), the parent waits on the pipe in slices of this length
/// and checks the child between them.
pub(crate) const FALLBACK_TICK: Duration = Duration::from_millis(5);

/// The longest single readiness wait. Longer waits are split (the caller
/// recomputes its deadline), so that a timeout of weeks never needs
/// `epoll_pwait2` (Linux 5.11) or overflows a platform's time type.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// No call—The timeout for one readiness wait, and whether the caller must check
/// the child afterwards whatever the wait reports: always when the child
/// is not watched, in which case the wait is also capped at the fallback
/// tick.
pub(crate) fn tick(timeout: Option<Duration>, watched: bool) -> (Option<Duration>, bool) {
    if watched {
        return (timeout.map(|t| t.min(LONGEST_WAIT)), false);
    }
    (
        Some(timeout.map_or(FALLBACK_TICK, |t| t.min(FALLBACK_TICK))),
        true,
    )
}

/// How the parent waits for one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitMode {
    /// Through a readiness queue with a descriptor of its own (epoll,
    /// kqueue) that an async runtime can poll: for spawned handles, whose
    /// children may outlive the thread that spawned them.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    Queue,
    /// However is cheapest for a caller that only ever blocks: on Linux a
    /// `poll` over the pipe and the pidfd, with no queue to create;
    /// elsewhere the same as [`WaitMode::Queue`].
    Direct,
}

/// The parent's watch over one child, from before `fork` to the reap:
/// what the blocking driver ([`crate::drive`]) waits in, and what a spawned
/// handle lends an async runtime to poll. One implementation per platform,
/// [`Watch`]: a pidfd with `poll` or epoll on Linux and Android
/// (`linux.rs`), a kqueue on macOS and FreeBSD (`kqueue.rs`).
///
/// A watch's life: made in the parent before `fork` ([`new`] for a call
/// with a pipe, [`child_only`] for one without), so that a failure means
/// the callable never started; straight after `fork`, left behind in the
/// child ([`leave_in_child`]) and pointed at the child in the parent
/// ([`watch_child`]); then waited in ([`wait`]) until the child is reaped,
/// told when the stream is done ([`forget_pipe`]), and used to end the
/// child at a deadline or on the caller's request ([`kill`]). Dropping it
/// releases whatever it made.
///
/// Only making a watch, waiting in it and killing through it may fail.
/// Everything done after `fork` cannot: a platform that cannot watch the
/// child itself (no pidfd, a refused registration) falls back to
/// reporting the child as possibly ended after at most [`FALLBACK_TICK`]
/// of every wait (see [`tick`]), so the child's end is never missed, only
/// noticed later.
///
/// [`new`]: ChildWatch::new
/// [`child_only`]: ChildWatch::child_only
/// [`leave_in_child`]: ChildWatch::leave_in_child
/// [`watch_child`]: ChildWatch::watch_child
/// [`wait`]: ChildWatch::wait
/// [`forget_pipe`]: ChildWatch::forget_pipe
/// [`kill`]: ChildWatch::kill
pub(crate) trait ChildWatch: Sized {
    /// A watch over the result pipe's read end `pipe`, waited in as `mode`
    /// says. Made before `fork`; may fail, and a failure means the callable
    /// never started.
    fn new(pipe: BorrowedFd<'_>, mode: WaitMode) -> Result<Self, Errno>;

    /// A watch for a child that sends no stream (its result comes back in
    /// shared memory and the spill file), with a `deadline` or without.
    /// Made before `fork`; may fail, like [`ChildWatch::new`].
    fn child_only(deadline: bool) -> Result<Self, Errno>;

    /// In the child, straight after `fork`: gives up the child's copy of
    /// the watch, so that neither the callable nor anything it forks can
    /// touch the parent's. Cannot fail, allocates nothing, and must not
    /// close a descriptor the child did not inherit. By reference: the
    /// child never returns, so its copy is never dropped, and runs no
    /// drop code (each page of code the child runs is a page fault).
    fn leave_in_child(&self);

    /// The readiness descriptor of a spawned handle: readable when a
    /// [`ChildWatch::wait`] would not block. Made on first use where the
    /// platform allows (Linux: an epoll instance over `pipe`, given while
    /// the call still reads it, and the pidfd), then kept. May fail, for
    /// the calls that make it.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    fn queue_or_make(&self, pipe: Option<BorrowedFd<'_>>) -> Result<BorrowedFd<'_>, Errno>;

    /// The descriptor that becomes readable when the child ends, for an
    /// async runtime's reactor: the pidfd on Linux (`None` without one),
    /// the kqueue elsewhere, which the pipe wakes too (see
    /// `WATCH_HOLDS_PIPE`).
    #[cfg(feature = "tokio")]
    fn child_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Whether a waiter must check the child on a timer ([`FALLBACK_TICK`]),
    /// nothing being able to wake it when the child ends.
    #[cfg(feature = "tokio")]
    fn needs_tick(&self) -> bool;

    /// In the parent, straight after `fork`: starts watching the child
    /// `pid`. Cannot fail: a platform that refuses falls back to the tick.
    fn watch_child(&mut self, pid: Pid);

    /// Stops watching `pipe`, once the stream is complete or rejected, so
    /// that a grandchild still writing to it cannot keep waking the parent.
    /// Cannot fail.
    fn forget_pipe(&mut self, pipe: BorrowedFd<'_>);

    /// Waits until `pipe` (given while the caller still reads it) is worth
    /// reading, the child may have ended, or `timeout` passes (`None`:
    /// no limit), and says which in a [`Ready`]. `EINTR` is an empty
    /// [`Ready`], never an error: the caller recomputes its deadline and
    /// waits again. May fail, for the wait's own errors.
    fn wait(
        &mut self,
        pipe: Option<BorrowedFd<'_>>,
        timeout: Option<Duration>,
    ) -> Result<Ready, Errno>;

    /// Sends the unreaped child `pid` `SIGKILL`, as surely as the platform
    /// allows only to the child. A child already gone (`ESRCH`) is success;
    /// any other refusal is the error.
    fn kill(&self, pid: Pid) -> Result<(), Errno>;
}
