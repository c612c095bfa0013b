//! macOS and FreeBSD: one kqueue watches the pipe (`EVFILT_READ`) and the
//! child itself (`EVFILT_PROC` with `NOTE_EXIT`), so a single `kevent` call
//! with a timeout wakes on either, and the kqueue descriptor is what async
//! runtimes poll (a kqueue is readable while it has pending events).
//!
//! A kqueue is not inherited across `fork`, so the child never holds it.

use core::mem::MaybeUninit;
use core::ptr;
use core::time::Duration;

use rustix::event::kqueue::{Event, EventFilter, EventFlags, ProcessEvents, kevent, kqueue};
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Pid, Signal};

use super::{ChildWatch, Ready, WaitMode, tick};

/// The parent's view of one child ([`ChildWatch`]): a kqueue over the pipe
/// and the process.
pub(crate) struct Watch {
    pub(super) queue: OwnedFd,
    proc_watched: bool,
    /// The child had already exited when the watch was attached.
    exited_early: bool,
}

impl ChildWatch for Watch {
    /// `kqueue()` and `kevent(EV_ADD, EVFILT_READ, pipe)`—Made before
    /// `fork`, so that a failure here means the callable never started.
    /// Both wait modes use the kqueue: there is no cheaper way to wait for a
    /// pipe and a process at once.
    ///
    /// # References
    ///  - [FreeBSD `kqueue(2)`](https://man.freebsd.org/cgi/man.cgi?query=kqueue&sektion=2)
    ///  - [Apple `kqueue(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/kqueue.2.html)
    fn new(pipe: BorrowedFd<'_>, _mode: WaitMode) -> Result<Self, Errno> {
        let queue = super::above_stdio(kqueue()?)?;
        let read = Event::new(
            EventFilter::Read(pipe.as_raw_fd()),
            EventFlags::ADD,
            ptr::null_mut(),
        );
        let mut none: [MaybeUninit<Event>; 0] = [];
        // SAFETY: the pipe descriptor outlives its registration: the owner
        // calls `forget_pipe` or drops this watch before closing it.
        unsafe { kevent(&queue, &[read], &mut none, Some(Duration::ZERO))? };
        Ok(Self {
            queue,
            proc_watched: false,
            exited_early: false,
        })
    }

    /// `kqueue()`—A kqueue for the child alone, for a child that sends no
    /// stream. Unused here (only Linux has the spill file that needs it),
    /// but kept in step with Linux.
    ///
    /// # References
    ///  - [FreeBSD `kqueue(2)`](https://man.freebsd.org/cgi/man.cgi?query=kqueue&sektion=2)
    ///  - [Apple `kqueue(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/kqueue.2.html)
    fn child_only(_deadline: bool) -> Result<Self, Errno> {
        Ok(Self {
            queue: super::above_stdio(kqueue()?)?,
            proc_watched: false,
            exited_early: false,
        })
    }

    /// No call—In the child, straight after `fork`: a kqueue is not
    /// inherited, so the number may already be free (or reused later); it
    /// must not be closed here.
    fn leave_in_child(&self) {}

    /// No call—The kqueue descriptor (already made with the watch).
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        use rustix::fd::AsFd;
        Some(self.queue.as_fd())
    }

    /// No call—The descriptor that becomes readable when the child ends:
    /// the kqueue, which the pipe's readiness also wakes (see
    /// [`WATCH_HOLDS_PIPE`]).
    #[cfg(feature = "tokio")]
    fn child_fd(&self) -> Option<BorrowedFd<'_>> {
        use rustix::fd::AsFd;
        Some(self.queue.as_fd())
    }

    /// No call—Whether a waiter must check the child on a timer
    /// ([`FALLBACK_TICK`](super::watch::FALLBACK_TICK)), the process filter not
    /// (or no longer) being registered.
    #[cfg(feature = "tokio")]
    fn needs_tick(&self) -> bool {
        !self.proc_watched
    }

    /// `kevent(EV_ADD | EV_ONESHOT, EVFILT_PROC, pid, NOTE_EXIT)`—Starts
    /// watching the child `pid`, straight after `fork`. Cannot fail.
    ///
    /// Registering `EVFILT_PROC` for a child that has already exited may
    /// fire at once, fail with `ESRCH`, or (XNU) succeed without ever
    /// firing, depending on the system and the moment. `ESRCH` is recorded
    /// so that the first wait reports the child straight away; the silent
    /// case is covered by [`Watch::forget_pipe`], since such a child's pipe
    /// reaches end-of-file. Any other refusal falls back to checking the
    /// child every [`FALLBACK_TICK`](super::watch::FALLBACK_TICK).
    ///
    /// # References
    ///  - [FreeBSD `kevent(2)`](https://man.freebsd.org/cgi/man.cgi?query=kevent&sektion=2)
    ///  - [Apple `kevent(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/kevent.2.html)
    fn watch_child(&mut self, pid: Pid) {
        let exit = Event::new(
            EventFilter::Proc {
                pid,
                flags: ProcessEvents::EXIT,
            },
            EventFlags::ADD | EventFlags::ONESHOT,
            ptr::null_mut(),
        );
        let mut none: [MaybeUninit<Event>; 0] = [];
        // SAFETY: a process filter holds no descriptor.
        match unsafe { kevent(&self.queue, &[exit], &mut none, Some(Duration::ZERO)) } {
            Ok(_) => self.proc_watched = true,
            Err(Errno::SRCH) => self.exited_early = true,
            Err(_) => {}
        }
    }

    /// `kevent(EV_DELETE, EVFILT_READ, pipe)`—Stops watching the pipe
    /// (after the stream ended or was rejected).
    ///
    /// From here on waits are also capped at the fallback tick: XNU may
    /// accept an `EVFILT_PROC` registration made just after the child
    /// exited and then never post its `NOTE_EXIT`, and with the pipe gone
    /// nothing else would wake the parent.
    ///
    /// # References
    ///  - [FreeBSD `kevent(2)`](https://man.freebsd.org/cgi/man.cgi?query=kevent&sektion=2)
    ///  - [Apple `kevent(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/kevent.2.html)
    fn forget_pipe(&mut self, pipe: BorrowedFd<'_>) {
        self.proc_watched = false;
        let del = Event::new(
            EventFilter::Read(pipe.as_raw_fd()),
            EventFlags::DELETE,
            ptr::null_mut(),
        );
        let mut none: [MaybeUninit<Event>; 0] = [];
        // SAFETY: deleting a registration; failure only means there was none.
        let _ = unsafe { kevent(&self.queue, &[del], &mut none, Some(Duration::ZERO)) };
    }

    /// `kevent(kq, timeout)`—Waits until the pipe is readable, the child
    /// ends, or `timeout` passes (an empty [`Ready`]). `EINTR` is reported
    /// as an empty [`Ready`]: the caller recomputes its deadline and waits
    /// again.
    ///
    /// # References
    ///  - [FreeBSD `kevent(2)`](https://man.freebsd.org/cgi/man.cgi?query=kevent&sektion=2)
    ///  - [Apple `kevent(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/kevent.2.html)
    fn wait(
        &mut self,
        _pipe: Option<BorrowedFd<'_>>,
        timeout: Option<Duration>,
    ) -> Result<Ready, Errno> {
        if self.exited_early {
            self.exited_early = false;
            return Ok(Ready {
                pipe: true,
                child: true,
                exiting: true,
            });
        }
        let (timeout, ticked) = tick(timeout, self.proc_watched);
        let mut events = [MaybeUninit::<Event>::uninit(); 2];
        let mut ready = Ready::default();
        // SAFETY: no changes are submitted; events are only read back.
        match unsafe { kevent(&self.queue, &[], &mut events, timeout) } {
            Ok((got, _)) => {
                for e in got.iter() {
                    match e.filter() {
                        EventFilter::Read(_) => ready.pipe = true,
                        EventFilter::Proc { .. } => {
                            // NOTE_EXIT may be posted just before the child
                            // becomes reapable: a blocking reap is brief.
                            ready.child = true;
                            ready.exiting = true;
                            self.proc_watched = false;
                        }
                        _ => {}
                    }
                }
                if ticked {
                    ready.child = true;
                }
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
        Ok(ready)
    }

    /// `kill(pid, SIGKILL)`—Kills the child. The caller has not reaped it,
    /// so the pid still names the child (these systems have no pidfd to
    /// make that airtight when something else reaps it first).
    ///
    /// # References
    ///  - [POSIX `kill`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/kill.html)
    ///  - [FreeBSD `kill(2)`](https://man.freebsd.org/cgi/man.cgi?query=kill&sektion=2)
    fn kill(&self, pid: Pid) -> Result<(), Errno> {
        match rustix::process::kill_process(pid, Signal::KILL) {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Whether [`Watch::child_fd`] also becomes readable for the pipe: yes,
/// the kqueue watches both.
#[cfg(feature = "tokio")]
pub(crate) const WATCH_HOLDS_PIPE: bool = true;
