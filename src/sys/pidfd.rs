//! Linux and Android: the parent watches the child through a pidfd, and
//! waits with one `poll` over the pipe and the pidfd, which saves creating,
//! filling and destroying an epoll instance on every call. A spawned
//! handle, whose readiness descriptor (`AsFd`) an event loop may ask for,
//! gathers both in one epoll instance made before the fork, where a
//! failure can still be returned; the `tokio` driver registers the two
//! with the runtime's reactor instead, and makes none.

use core::mem::MaybeUninit;
use core::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, epoll};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Pid, Signal};

#[cfg(target_os = "android")]
use super::android::{PidfdFlags, pidfd_open, pidfd_send_signal};
#[cfg(target_os = "linux")]
use rustix::process::{PidfdFlags, pidfd_open, pidfd_send_signal};

use super::{ChildWatch, Ready, WaitMode, tick};

const PIPE_TOKEN: u64 = 1;
const CHILD_TOKEN: u64 = 2;

/// The parent's view of one child: its pidfd, and, for a spawned handle
/// ([`WaitMode::Queue`]), an epoll instance over the pipe and the pidfd.
pub(crate) struct Watch {
    /// Made by [`Watch::new`] for [`WaitMode::Queue`] only: a call that
    /// blocks waits with `poll`, and one awaited through tokio needs no
    /// queue of its own (two descriptors per child, not three).
    queue: Option<OwnedFd>,
    pidfd: Option<OwnedFd>,
    /// Nothing to wait for but the child, and no deadline: the wait is a
    /// blocking reap (see [`Watch::child_only`]).
    reap_only: bool,
}

/// `epoll_ctl(ADD, fd, EPOLLIN)`—Adds `fd` to `queue` under `token`.
fn enqueue(queue: &OwnedFd, fd: BorrowedFd<'_>, token: u64) -> Result<(), Errno> {
    epoll::add(
        queue,
        fd,
        epoll::EventData::new_u64(token),
        epoll::EventFlags::IN,
    )
}

impl ChildWatch for Watch {
    /// `epoll_create1(EPOLL_CLOEXEC)` and `epoll_ctl(ADD, pipe)` for
    /// [`WaitMode::Queue`], otherwise no call—A spawned handle's
    /// readiness descriptor is made here, before the fork, so that a
    /// failure (`EMFILE`, `ENOMEM`) means the callable never started, and
    /// handing the descriptor out later ([`Watch::ready_fd`]) cannot fail.
    ///
    /// # References
    ///  - [Linux `epoll_create1(2)`](https://man7.org/linux/man-pages/man2/epoll_create1.2.html)
    ///  - [Linux `epoll_ctl(2)`](https://man7.org/linux/man-pages/man2/epoll_ctl.2.html)
    fn new(pipe: BorrowedFd<'_>, mode: WaitMode) -> Result<Self, Errno> {
        let queue = match mode {
            WaitMode::Queue => {
                let queue = super::above_stdio(epoll::create(epoll::CreateFlags::CLOEXEC)?)?;
                enqueue(&queue, pipe, PIPE_TOKEN)?;
                Some(queue)
            }
            WaitMode::Direct | WaitMode::Reactor => None,
        };
        Ok(Self {
            queue,
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
            queue: None,
            pidfd: None,
            reap_only: !deadline,
        })
    }

    /// `close(epfd)` for a spawned handle's watch, otherwise no call—In
    /// the child, straight after `fork`: the pidfd is opened after the
    /// fork, in the parent, so the child inherited at most the epoll
    /// instance, which it closes so that the callable cannot change the
    /// parent's registrations. Never dropped in the child, so that the
    /// child runs no drop code: measured, that code sat on a text page of
    /// its own, which the child faulted in on every call.
    #[inline]
    fn leave_in_child(&self) {
        debug_assert!(self.pidfd.is_none());
        if let Some(queue) = &self.queue {
            use rustix::fd::AsRawFd;
            // SAFETY: the child's copy of the instance; the child never
            // uses or drops this watch again.
            unsafe { rustix::io::close(queue.as_raw_fd()) };
        }
    }

    /// No call—The epoll instance [`Watch::new`] made for a spawned
    /// handle: readable whenever the pipe is (until it is forgotten) or
    /// the child has ended.
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        self.queue.as_ref().map(AsFd::as_fd)
    }

    /// No call—The descriptor that becomes readable when the child ends:
    /// the pidfd, if the kernel gave one. The pipe is not in it (see
    /// [`WATCH_HOLDS_PIPE`]).
    #[cfg(feature = "tokio")]
    fn child_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// No call—Whether a waiter must check the child on a timer
    /// ([`FALLBACK_TICK`](super::watch::FALLBACK_TICK)), having no pidfd to wake it.
    #[cfg(feature = "tokio")]
    fn needs_tick(&self) -> bool {
        self.pidfd.is_none() && !self.reap_only
    }

    /// `pidfd_open(pid, 0)`, and `epoll_ctl(ADD, pidfd)` if the watch has
    /// a queue—Starts watching the child `pid`, straight after `fork`.
    /// Cannot fail: if the kernel has no pidfd (before 5.3, or a seccomp
    /// filter refuses it) or the queue refuses it (`ENOMEM`), the watch
    /// falls back to checking the child every
    /// [`FALLBACK_TICK`](super::watch::FALLBACK_TICK).
    ///
    /// # References
    ///  - [Linux `pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)
    ///  - [Linux `epoll_ctl(2)`](https://man7.org/linux/man-pages/man2/epoll_ctl.2.html)
    fn watch_child(&mut self, pid: Pid) {
        if self.reap_only {
            return;
        }
        let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()).and_then(super::above_stdio) else {
            return;
        };
        if let Some(queue) = &self.queue {
            if enqueue(queue, pidfd.as_fd(), CHILD_TOKEN).is_err() {
                return;
            }
        }
        self.pidfd = Some(pidfd);
    }

    /// `epoll_ctl(DEL, pipe)` (if the watch has a queue; a `poll` simply
    /// stops being given the pipe)—Stops watching the pipe (after
    /// the stream ended or was rejected), so that a grandchild writing to
    /// it cannot keep waking the parent.
    ///
    /// # References
    ///  - [Linux `epoll_ctl(2)`](https://man7.org/linux/man-pages/man2/epoll_ctl.2.html)
    fn forget_pipe(&mut self, pipe: BorrowedFd<'_>) {
        if let Some(queue) = &self.queue {
            // Failure only means it was not registered.
            let _ = epoll::delete(queue, pipe);
        }
    }

    /// `epoll_wait(epfd, timeout)` if the watch has a queue, otherwise
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
        let mut ready = match &self.queue {
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
