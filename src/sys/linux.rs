//! Linux: the parent watches the child through a pidfd, and waits with one
//! `poll` over the pipe and the pidfd, which saves creating, filling and
//! destroying an epoll instance on every call. A spawned handle whose
//! readiness descriptor is asked for (`AsFd`) gathers both in one epoll
//! instance, made then; the `tokio` driver registers the two with the
//! runtime's reactor instead.

use core::mem::MaybeUninit;
use core::time::Duration;

#[cfg(target_os = "android")]
use super::android::{PidfdFlags, pidfd_open, pidfd_send_signal};
use core::sync::atomic::{AtomicI32, Ordering};
use rustix::event::{PollFd, PollFlags, Timespec, epoll};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Pid, Signal};
#[cfg(target_os = "linux")]
use rustix::process::{PidfdFlags, pidfd_open, pidfd_send_signal};

use super::{ChildWatch, Ready, WaitMode, tick};

const PIPE_TOKEN: u64 = 1;
const CHILD_TOKEN: u64 = 2;

/// The parent's view of one child: its pidfd, and, once a spawned
/// handle's readiness descriptor is asked for ([`Watch::queue_or_make`]),
/// an epoll instance over the pipe and the pidfd.
pub(crate) struct Watch {
    queue: LazyQueue,
    pidfd: Option<OwnedFd>,
    /// Nothing to wait for but the child, and no deadline: the wait is a
    /// blocking reap (see [`Watch::child_only`]).
    reap_only: bool,
}

/// An epoll instance made on first use, through `&self` (a handle's
/// `as_fd`), so that a child awaited through an async runtime or joined
/// holds no descriptor beyond its pipe and pidfd. Kept as a raw number in
/// an atomic, so that the watch stays `Sync`; `-1` until made.
struct LazyQueue(AtomicI32);

impl LazyQueue {
    fn get(&self) -> Option<BorrowedFd<'_>> {
        let fd = self.0.load(Ordering::Acquire);
        // SAFETY: a number stored here is an epoll instance this queue owns
        // until it is dropped.
        (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
    }

    fn get_or_make(
        &self,
        make: impl FnOnce() -> Result<OwnedFd, Errno>,
    ) -> Result<BorrowedFd<'_>, Errno> {
        use rustix::fd::{FromRawFd, IntoRawFd};
        if let Some(fd) = self.get() {
            return Ok(fd);
        }
        let new = make()?.into_raw_fd();
        let fd = match self
            .0
            .compare_exchange(-1, new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => new,
            Err(first) => {
                // SAFETY: `new` was just released from its `OwnedFd` and
                // lost the race: nobody else has it.
                drop(unsafe { OwnedFd::from_raw_fd(new) });
                first
            }
        };
        // SAFETY: as in `get`.
        Ok(unsafe { BorrowedFd::borrow_raw(fd) })
    }
}

impl Drop for LazyQueue {
    fn drop(&mut self) {
        use rustix::fd::FromRawFd;
        let fd = *self.0.get_mut();
        if fd >= 0 {
            // SAFETY: the queue owns the instance it made.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

impl ChildWatch for Watch {
    /// No call—Makes nothing and cannot fail, whatever the mode: a spawned
    /// handle's epoll instance is made only when its readiness descriptor
    /// is first asked for ([`Watch::queue_or_make`]).
    fn new(_pipe: BorrowedFd<'_>, _mode: WaitMode) -> Result<Self, Errno> {
        Ok(Self {
            queue: LazyQueue(AtomicI32::new(-1)),
            pidfd: None,
            reap_only: false,
        })
    }

    /// No call—A watch for a child that sends no stream (its result comes back
    /// through the shared page and the spill file, which it can always
    /// write without the parent's help). With a deadline the parent waits
    /// on the pidfd alone; without one there is nothing to wait for but
    /// the exit itself, so [`Watch::wait`] reports the child at once and
    /// the caller blocks in `wait4`, which no grandchild can prolong.
    fn child_only(deadline: bool) -> Result<Self, Errno> {
        Ok(Self {
            queue: LazyQueue(AtomicI32::new(-1)),
            pidfd: None,
            reap_only: !deadline,
        })
    }

    /// No call—In the child, straight after `fork`: there is nothing to
    /// close, since a watch holds no descriptor before the fork (the pidfd
    /// is opened after it, in the parent; the epoll instance when `as_fd`
    /// first asks). Never dropped in the child, so that the child runs no
    /// drop code: measured, that code sat on a text page of its own, which
    /// the child faulted in on every call.
    #[inline]
    fn leave_in_child(&self) {
        debug_assert!(self.pidfd.is_none() && self.queue.get().is_none());
    }

    /// `epoll_create1(EPOLL_CLOEXEC)` and `epoll_ctl(ADD)` of the pipe
    /// (`pipe`, while the call still reads it) and the pidfd—The readiness
    /// descriptor of a spawned handle, made on first use and kept: readable
    /// whenever the pipe is or the child has ended.
    ///
    /// # References
    ///  - [Linux `epoll_create1(2)`](https://man7.org/linux/man-pages/man2/epoll_create1.2.html)
    ///  - [Linux `epoll_ctl(2)`](https://man7.org/linux/man-pages/man2/epoll_ctl.2.html)
    fn queue_or_make(&self, pipe: Option<BorrowedFd<'_>>) -> Result<BorrowedFd<'_>, Errno> {
        self.queue.get_or_make(|| {
            let queue = super::above_stdio(epoll::create(epoll::CreateFlags::CLOEXEC)?)?;
            let members = [
                (pipe, PIPE_TOKEN),
                (self.pidfd.as_ref().map(AsFd::as_fd), CHILD_TOKEN),
            ];
            for (fd, token) in members {
                if let Some(fd) = fd {
                    epoll::add(
                        &queue,
                        fd,
                        epoll::EventData::new_u64(token),
                        epoll::EventFlags::IN,
                    )?;
                }
            }
            Ok(queue)
        })
    }

    /// No call—The descriptor that becomes readable when the child ends:
    /// the pidfd, if the kernel gave one. The pipe is not in it (see
    /// [`WATCH_HOLDS_PIPE`]).
    #[cfg(feature = "tokio")]
    fn child_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// No call—Whether a waiter must check the child on a timer
    /// ([`FALLBACK_TICK`](super::FALLBACK_TICK)), having no pidfd to wake it.
    #[cfg(feature = "tokio")]
    fn needs_tick(&self) -> bool {
        self.pidfd.is_none() && !self.reap_only
    }

    /// `pidfd_open(pid, 0)`—Starts watching the child `pid`, straight
    /// after `fork`. Cannot fail: if the kernel has no pidfd (before 5.3, or
    /// a seccomp filter refuses it) the watch falls back to checking the
    /// child every [`FALLBACK_TICK`](super::FALLBACK_TICK).
    ///
    /// # References
    ///  - [Linux `pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)
    fn watch_child(&mut self, pid: Pid) {
        if self.reap_only {
            return;
        }
        let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()).and_then(super::above_stdio) else {
            return;
        };
        self.pidfd = Some(pidfd);
    }

    /// `epoll_ctl(DEL, pipe)` (once the epoll instance exists; a `poll`
    /// simply stops being given the pipe)—Stops watching the pipe (after
    /// the stream ended or was rejected), so that a grandchild writing to
    /// it cannot keep waking the parent.
    ///
    /// # References
    ///  - [Linux `epoll_ctl(2)`](https://man7.org/linux/man-pages/man2/epoll_ctl.2.html)
    fn forget_pipe(&mut self, pipe: BorrowedFd<'_>) {
        if let Some(queue) = self.queue.get() {
            // Failure only means it was not registered.
            let _ = epoll::delete(queue, pipe);
        }
    }

    /// `epoll_wait(epfd, timeout)` once the epoll instance exists, otherwise
    /// `poll([pipe, pidfd], timeout)`—Waits until the pipe (`pipe`, while
    /// the caller still reads it) is readable, the child ends, or `timeout`
    /// passes (an empty [`Ready`]).
    /// `EINTR` is reported as an empty [`Ready`] too: the caller recomputes
    /// its deadline and waits again.
    ///
    /// # References
    ///  - [Linux `epoll_wait(2)`](https://man7.org/linux/man-pages/man2/epoll_wait.2.html)
    ///  - [Linux `poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
    fn wait(
        &mut self,
        pipe: Option<BorrowedFd<'_>>,
        timeout: Option<Duration>,
    ) -> Result<Ready, Errno> {
        if self.reap_only {
            return Ok(Ready {
                pipe: false,
                child: true,
                exiting: true,
            });
        }
        let (timeout, ticked) = tick(timeout, self.pidfd.is_some());
        let ts = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        let mut ready = match self.queue.get() {
            Some(queue) => {
                let mut events = [MaybeUninit::<epoll::Event>::uninit(); 2];
                let mut ready = Ready::default();
                match epoll::wait(queue, &mut events, ts.as_ref()) {
                    Ok((got, _)) => {
                        for e in got.iter() {
                            match e.data.u64() {
                                PIPE_TOKEN => ready.pipe = true,
                                // A readable pidfd means the child has exited.
                                CHILD_TOKEN => ready.child = true,
                                _ => {}
                            }
                        }
                    }
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(e),
                }
                ready
            }
            None => poll_both(pipe, self.pidfd.as_ref(), ts.as_ref())?,
        };
        if ticked {
            ready.child = true;
        }
        Ok(ready)
    }

    /// `pidfd_send_signal(pidfd, SIGKILL)`, or `kill(pid, SIGKILL)`—Kills
    /// the child. Through the pidfd when there is one, so the signal cannot
    /// reach a process that reused the pid; otherwise by pid (the caller has
    /// not reaped it, so the pid is still the child's unless someone else
    /// reaped it).
    ///
    /// # References
    ///  - [Linux `pidfd_send_signal(2)`](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html)
    ///  - [Linux `kill(2)`](https://man7.org/linux/man-pages/man2/kill.2.html)
    fn kill(&self, pid: Pid) -> Result<(), Errno> {
        let r = match &self.pidfd {
            Some(fd) => pidfd_send_signal(fd, Signal::KILL),
            None => rustix::process::kill_process(pid, Signal::KILL),
        };
        match r {
            // Already gone (and perhaps reaped elsewhere): nothing to stop.
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// `poll([pipe, pidfd], timeout)`—One `poll` over the pipe and the pidfd,
/// whichever are given. Any event on the pipe (data, hang-up, error) is
/// worth a read; any on the pidfd means the child has exited (or is gone).
///
/// # References
///  - [Linux `poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
fn poll_both(
    pipe: Option<BorrowedFd<'_>>,
    pidfd: Option<&OwnedFd>,
    timeout: Option<&Timespec>,
) -> Result<Ready, Errno> {
    let mut fds: heapless::Vec<PollFd<'_>, 2> = heapless::Vec::new();
    if let Some(pipe) = pipe {
        let _ = fds.push(PollFd::from_borrowed_fd(pipe, PollFlags::IN));
    }
    if let Some(pidfd) = pidfd {
        let _ = fds.push(PollFd::new(pidfd, PollFlags::IN));
    }
    let mut ready = Ready::default();
    match rustix::event::poll(&mut fds, timeout) {
        Ok(_) => {
            let mut it = fds.iter();
            if pipe.is_some() {
                ready.pipe = it.next().is_some_and(|p| !p.revents().is_empty());
            }
            if pidfd.is_some() {
                ready.child = it.next().is_some_and(|p| !p.revents().is_empty());
            }
        }
        Err(Errno::INTR) => {}
        Err(e) => return Err(e),
    }
    Ok(ready)
}

/// Whether [`Watch::child_fd`] also becomes readable for the pipe: no,
/// the pidfd is the child's alone.
#[cfg(feature = "tokio")]
pub(crate) const WATCH_HOLDS_PIPE: bool = false;

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

/// `pwrite(fd, buf, offset)`—Writes all of `buf` at `offset`, retrying on
/// `EINTR`. Allocation-free and async-signal-safe: the child writes its
/// result into the spill file with it.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/pwrite.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/pwrite.2.html)
pub(crate) fn pwrite_all(fd: BorrowedFd<'_>, mut buf: &[u8], mut offset: u64) -> Result<(), Errno> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, offset) {
            Ok(0) => return Err(Errno::NOSPC),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `pread(fd, buf, offset)`—Reads into a possibly uninitialized buffer,
/// retrying on `EINTR`. Returns the bytes read, empty at end-of-file.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/read.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/pread.2.html)
pub(crate) fn pread_into<'b>(
    fd: BorrowedFd<'_>,
    buf: &'b mut [MaybeUninit<u8>],
    offset: u64,
) -> Result<&'b mut [u8], Errno> {
    loop {
        match rustix::io::pread(fd, &mut *buf, offset) {
            Ok((filled, _)) => {
                let len = filled.len();
                // SAFETY: `pread` initialized the first `len` bytes.
                return Ok(unsafe {
                    core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), len)
                });
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
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
