//! The one place that talks to the operating system.
//!
//! `fork`, `_exit` and `wait4` come from `libc` (and, for one corner of the
//! spill file, `sigaction`): rustix deliberately leaves
//! `fork` and `_exit` to libc (libc must run its own fork handlers, or the
//! child of a threaded parent could not safely allocate), and rustix has no
//! call that reaps one child *and* returns its resource usage. Everything
//! else goes through rustix. Platform differences live in whole files:
//! `linux.rs` (pidfd, epoll, the spill file) and `kqueue.rs` (macOS and
//! FreeBSD).

use core::time::Duration;

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::Pid;

#[cfg(target_os = "android")]
mod android;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(all(feature = "tokio", any(target_os = "linux", target_os = "android")))]
pub(crate) use linux::WATCH_HOLDS_PIPE;
#[cfg(any(target_os = "linux", target_os = "android"))]
use linux::address_space_size;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use linux::{
    MEMORY_LIMIT_SUPPORTED, Watch, on_parent_death, pread_into, pwrite_all, spill_file,
};

#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
mod kqueue;
#[cfg(all(feature = "tokio", any(target_vendor = "apple", target_os = "freebsd")))]
pub(crate) use kqueue::WATCH_HOLDS_PIPE;
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
use kqueue::address_space_size;
#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
pub(crate) use kqueue::{MEMORY_LIMIT_SUPPORTED, Watch, on_parent_death};

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
#[inline]
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

fn last_errno() -> i32 {
    // rustix's `Errno` has no "last error" accessor on the linux_raw backend,
    // and libc exposes errno's location under a different name on each
    // platform.
    #[cfg(target_os = "linux")]
    // SAFETY: `__errno_location` returns this thread's errno slot.
    let e = unsafe { *libc::__errno_location() };
    #[cfg(target_os = "android")]
    // SAFETY: `__errno` returns this thread's errno slot.
    let e = unsafe { *libc::__errno() };
    #[cfg(target_vendor = "apple")]
    // SAFETY: `__error` returns this thread's errno slot.
    let e = unsafe { *libc::__error() };
    #[cfg(target_os = "freebsd")]
    // SAFETY: `__error` returns this thread's errno slot.
    let e = unsafe { *libc::__error() };
    e
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
/// macOS has no `pipe2`: there the flags are set with `fcntl` straight
/// after (`O_NONBLOCK` on the read end only).
/// Another thread forking between the two calls could leak the descriptors
/// into its child; that child would hold the write end open, which the
/// parent tolerates (it never waits for end-of-file).
pub(crate) fn result_pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    #[cfg(not(target_vendor = "apple"))]
    {
        // Non-blocking from birth, which saves two `fcntl` calls per call.
        // The flag lives on each end's open file; the write end's copy only
        // makes the child's `write_all` wait in `poll` instead of `write`.
        use rustix::pipe::PipeFlags;
        let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        Ok((above_stdio(r)?, above_stdio(w)?))
    }
    #[cfg(target_vendor = "apple")]
    {
        use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
        let (r, w) = rustix::pipe::pipe()?;
        let (r, w) = (above_stdio(r)?, above_stdio(w)?);
        rustix::io::fcntl_setfd(&r, rustix::io::FdFlags::CLOEXEC)?;
        rustix::io::fcntl_setfd(&w, rustix::io::FdFlags::CLOEXEC)?;
        fcntl_setfl(&r, fcntl_getfl(&r)? | OFlags::NONBLOCK)?;
        Ok((r, w))
    }
}

/// `write(fd, buf)` until all of `buf` is written, retrying on `EINTR` and
/// waiting in `poll` while a non-blocking `fd` is full. Allocation-free and
/// async-signal-safe: the child writes its result with it.
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
#[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)] // field types differ by platform (macOS: i32 st_dev)
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> Result<(u64, u64), Errno> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// `read(fd, buf)` into a possibly uninitialized buffer, retrying on
/// `EINTR`. Returns the bytes read (empty at end-of-file), or `None` when
/// no data is ready.
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

/// How many bytes `pipe` can hold: all that a writer that has ended can
/// have left in it. Linux reports it; elsewhere pipes hold at most 64 KiB,
/// and 1 MiB is assumed.
pub(crate) fn pipe_capacity(pipe: BorrowedFd<'_>) -> usize {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Ok(n) = rustix::pipe::fcntl_getpipe_size(pipe) {
        return n;
    }
    let _ = pipe;
    1 << 20
}

/// Whether this process may write files of any size (`RLIMIT_FSIZE`
/// unlimited). Writes to the spill file count against that limit, writes to
/// a pipe do not, so under a limit results take the pipe.
pub(crate) fn file_size_unlimited() -> bool {
    use rustix::process::{Resource, getrlimit};
    getrlimit(Resource::Fsize).current.is_none()
}

/// In the child, before its first write to the spill file: raises the
/// soft `RLIMIT_FSIZE` to the hard one, in case the callable lowered it (the
/// parent chose the spill file because it had no limit). The callable is
/// done by then, so nothing of its own is written under the raised limit.
/// Should the hard limit be finite too (the callable lowered both), a
/// write past it must fail with `EFBIG`, reported as a failed write,
/// rather than kill the child with `SIGXFSZ`: the signal is ignored.
/// Allocation-free and async-signal-safe (`setrlimit`, `sigaction`).
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

/// In the child: caps the address space at its current size plus `extra`
/// bytes (`setrlimit(RLIMIT_AS)`), so the limit means the same in a small
/// process and in one that already maps gigabytes. Allocation-free.
///
/// Asking for more than the hard limit fails with `EINVAL` rather than
/// being quietly lowered.
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
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/mmap.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/mmap.2.html)
pub(crate) struct SharedMapping(core::ptr::NonNull<u8>);

// SAFETY: the mapping is owned, and only ever accessed through volatile
// reads and writes of plain bytes, from any thread.
unsafe impl Send for SharedMapping {}

impl SharedMapping {
    /// Bytes of the mapping: one page on every supported system.
    pub(crate) const LEN: usize = 4096;

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

    /// The first byte.
    pub(crate) fn as_ptr(&self) -> core::ptr::NonNull<u8> {
        self.0
    }
}

impl Drop for SharedMapping {
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
    /// Takes the identity of the file behind `fd` now.
    pub(crate) fn now(fd: BorrowedFd<'a>) -> Self {
        Self {
            fd,
            id: file_id(fd).ok(),
        }
    }

    /// `fd`, which must name the file whose identity is `id`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn known(fd: BorrowedFd<'a>, id: (u64, u64)) -> Self {
        Self { fd, id: Some(id) }
    }

    /// The descriptor, if it still names its file.
    pub(crate) fn get(self) -> Result<BorrowedFd<'a>, Errno> {
        if self.id.is_some() && file_id(self.fd).ok() == self.id {
            Ok(self.fd)
        } else {
            Err(Errno::BADF)
        }
    }
}

/// `fcntl(fd, F_SETPIPE_SZ, size)`—Asks for a wider pipe (Linux), best
/// effort: the system's `pipe-max-size` may refuse it. Elsewhere pipes
/// have a fixed size, and this does nothing.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/fcntl.2.html)
pub(crate) fn widen_pipe(fd: BorrowedFd<'_>, size: usize) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = rustix::pipe::fcntl_setpipe_size(fd, size);
    let _ = (fd, size);
}

/// `ftruncate(fd, 0)`—Empties a file, best effort: a file that could not
/// be emptied is overwritten by its next use.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/ftruncate.html)
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn truncate(fd: BorrowedFd<'_>) {
    let _ = rustix::fs::ftruncate(fd, 0);
}

/// `fstat(fd).st_size`—The size of the file behind `fd`.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    Ok(u64::try_from(rustix::fs::fstat(fd)?.st_size).unwrap_or(0))
}

/// `getpid()`—This process's id.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/getpid.html)
pub(crate) fn getpid() -> Pid {
    rustix::process::getpid()
}

/// `clock_gettime(CLOCK_MONOTONIC)`—Time since an arbitrary origin, for
/// deadlines.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/clock_gettime.html)
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
    /// Takes over `fd`, noting the identity of its file.
    pub(crate) fn new(fd: OwnedFd) -> Result<Self, Errno> {
        use rustix::fd::{AsFd, IntoRawFd};
        let id = file_id(fd.as_fd())?;
        Ok(Self {
            fd: fd.into_raw_fd(),
            id,
        })
    }

    /// The descriptor, if its number still names the file it was made for.
    pub(crate) fn get(&self) -> Option<BorrowedFd<'_>> {
        // SAFETY: only borrowed long enough to ask what it names; if the
        // number was closed, `fstat` fails with EBADF.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        (file_id(fd).ok() == Some(self.id)).then_some(fd)
    }

    /// The identity of the file it was made for.
    pub(crate) fn id(&self) -> (u64, u64) {
        self.id
    }

    /// The descriptor, unchecked, for `'a`.
    ///
    /// # Safety
    ///
    /// Only after [`KeptFile::get`] found it the crate's, and `'a` must
    /// not outlive whatever keeps it open.
    pub(crate) unsafe fn borrow<'a>(&self) -> BorrowedFd<'a> {
        // SAFETY: the caller's promise.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    /// Closes it if it is still the crate's; otherwise leaves the number
    /// to whoever holds it now.
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

/// `setpgid(pid, pid)`—Makes the child `pid` (`None`: the calling
/// process) the leader of a process group of its own, whose id is its pid.
/// Both the child (straight after `fork`) and the parent call it, so the
/// group exists before either goes on, whichever runs first. Failure
/// leaves the child in its parent's group, where [`kill_group`] cannot
/// reach it: `EACCES` once the child has called `exec`, `ESRCH` once it is
/// gone.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/setpgid.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/setpgid.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=setpgid&sektion=2)
#[inline]
pub(crate) fn lead_own_group(pid: Option<Pid>) {
    let _ = rustix::process::setpgid(pid, pid);
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
pub(crate) fn kill_group(leader: Pid) {
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

/// `wait4(pid, WNOHANG?)`—Reaps the child, retrying on `EINTR`. With
/// `group` (the child leads its own process group), the group is killed
/// once the child has exited and before it is reaped: descendants end
/// with it.
/// `Ok(None)` when `block` is false and the child is still running.
///
/// Only an exit or a death by signal counts: a stop (a traced child's
/// stops are reported even without `WUNTRACED`) or a continue is consumed
/// and the wait goes on, so a stopped child is waited for like a running
/// one, and ended like one by the deadline, `kill` or drop.
pub(crate) fn reap(
    pid: Pid,
    block: bool,
    group: bool,
) -> Result<Option<(Exit, ResourceUsage)>, Errno> {
    if group {
        if !has_exited(pid, block)? {
            return Ok(None);
        }
        kill_group(pid);
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
    // ru_maxrss is in kilobytes on Linux and FreeBSD, in bytes on macOS.
    let rss = u64::try_from(u.ru_maxrss).unwrap_or(0);
    #[cfg(target_vendor = "apple")]
    let max_rss_bytes = rss;
    #[cfg(not(target_vendor = "apple"))]
    let max_rss_bytes = rss.saturating_mul(1024);
    ResourceUsage {
        max_rss_bytes,
        user_time: tv(u.ru_utime),
        system_time: tv(u.ru_stime),
    }
}

/// What a readiness wait saw.
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

/// The timeout for one readiness wait, and whether the caller must check
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
    /// kqueue) that an async runtime can poll: for spawned handles.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    Queue,
    /// However is cheapest for a caller that only ever blocks: on Linux a
    /// `poll` over the pipe and the pidfd, with no queue to create;
    /// elsewhere the same as [`WaitMode::Queue`].
    Direct,
}
