//! Waiting for a child: the contract every platform's [`Watch`](super::Watch)
//! keeps ([`ChildWatch`]), what a wait reports ([`Ready`]), and the clock.

use core::time::Duration;

use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::process::Pid;

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

impl Ready {
    /// The child may have ended: look (a reap that does not block).
    pub(crate) const CHILD: Self = Self {
        pipe: false,
        child: true,
        exiting: false,
    };

    /// The child is certainly exiting (it was killed, or kqueue said so):
    /// a blocking reap returns promptly.
    pub(crate) const EXITING: Self = Self {
        pipe: false,
        child: true,
        exiting: true,
    };
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
    /// kqueue), made with the watch, that any event loop can poll: for
    /// spawned handles ([`ChildWatch::ready_fd`]), whose children may
    /// outlive the thread that spawned them.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    Queue,
    /// For an async runtime's reactor, which waits on the pipe and
    /// [`ChildWatch::child_fd`] itself: on Linux no queue is made (the
    /// child holds two descriptors, pipe and pidfd); elsewhere the same
    /// as [`WaitMode::Queue`]. Its child may outlive its thread too.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Reactor,
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
    /// drop code (ARCHITECTURE.md, "Page faults after fork").
    fn leave_in_child(&self);

    /// The readiness descriptor of a spawned handle: readable when a
    /// [`ChildWatch::wait`] would not block. Made with the watch, before
    /// the fork, so that handing it out cannot fail: `Some` for every
    /// watch made with [`WaitMode::Queue`] (Linux: an epoll instance over
    /// the pipe and, from [`ChildWatch::watch_child`] on, the pidfd; a
    /// kqueue elsewhere, in every mode).
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    fn ready_fd(&self) -> Option<BorrowedFd<'_>>;

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
