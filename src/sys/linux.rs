//! Linux: the parent watches the child through a pidfd and the pipe through
//! one epoll instance, so a single wait (with a deadline) wakes on either,
//! and the epoll descriptor itself is what async runtimes poll.

use core::mem::MaybeUninit;
use core::time::Duration;

use rustix::event::{Timespec, epoll};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use super::{Ready, tick};

const PIPE_TOKEN: u64 = 1;
const CHILD_TOKEN: u64 = 2;

/// The parent's view of one child: an epoll instance over the pipe and the
/// child's pidfd.
pub(crate) struct Watch {
    pub(super) queue: OwnedFd,
    pidfd: Option<OwnedFd>,
}

impl Watch {
    /// `epoll_create1(EPOLL_CLOEXEC)` and `epoll_ctl(ADD, pipe)`—Made before
    /// `fork`, so that a failure here means the callable never started.
    pub(crate) fn new(pipe: BorrowedFd<'_>) -> Result<Self, Errno> {
        let queue = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &queue,
            pipe,
            epoll::EventData::new_u64(PIPE_TOKEN),
            epoll::EventFlags::IN,
        )?;
        Ok(Self { queue, pidfd: None })
    }

    /// Starts watching the child `pid`, straight after `fork`. Cannot fail:
    /// if the kernel has no pidfd (before 5.3, or a seccomp filter refuses
    /// it) the watch falls back to checking the child every
    /// [`FALLBACK_TICK`](super::FALLBACK_TICK).
    pub(crate) fn watch_child(&mut self, pid: Pid) {
        if let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()) {
            if epoll::add(
                &self.queue,
                &pidfd,
                epoll::EventData::new_u64(CHILD_TOKEN),
                epoll::EventFlags::IN,
            )
            .is_ok()
            {
                self.pidfd = Some(pidfd);
            }
        }
    }

    /// Stops watching the pipe (after the stream ended or was rejected), so
    /// that a grandchild writing to it cannot keep waking the parent.
    pub(crate) fn forget_pipe(&mut self, pipe: BorrowedFd<'_>) {
        // Failure only means it was not registered.
        let _ = epoll::delete(&self.queue, pipe);
    }

    /// Waits until the pipe is readable, the child ends, or `timeout`
    /// passes (an empty [`Ready`]). `EINTR` is reported as an empty
    /// [`Ready`] too: the caller recomputes its deadline and waits again.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> Result<Ready, Errno> {
        let (timeout, ticked) = tick(timeout, self.pidfd.is_some());
        let ts = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); 2];
        let mut ready = Ready::default();
        match epoll::wait(&self.queue, &mut events, ts.as_ref()) {
            Ok((got, _)) => {
                for e in got.iter() {
                    match e.data.u64() {
                        PIPE_TOKEN => ready.pipe = true,
                        // A readable pidfd means the child has exited.
                        CHILD_TOKEN => ready.child = true,
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

    /// `pidfd_send_signal(SIGKILL)`—Kills the child. Through the pidfd when
    /// there is one, so the signal cannot reach a process that reused the
    /// pid; otherwise by pid (the caller has not reaped it, so the pid is
    /// still the child's unless someone else reaped it).
    pub(crate) fn kill(&self, pid: Pid) -> Result<(), Errno> {
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

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`—In the child: die with the parent.
/// `Ok(false)` if the parent is already gone.
///
/// The signal fires when the *thread* that forked exits, not the whole
/// parent process; a child whose forking thread ends first is killed too,
/// which is the safe side. A parent that died before the call leaves the
/// child with a different parent pid, which the second check catches.
pub(crate) fn on_parent_death(parent: Pid) -> Result<bool, Errno> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    Ok(rustix::process::getppid() == Some(parent))
}

/// Memory limits are enforced with `RLIMIT_AS`.
pub(crate) const MEMORY_LIMIT_SUPPORTED: bool = true;

/// The process's current address-space size, from `/proc/self/statm`
/// (first field, in pages). Allocation-free: it runs in the child.
pub(crate) fn address_space_size() -> Result<u64, Errno> {
    use rustix::fs::{Mode, OFlags, open};
    let fd = open(
        c"/proc/self/statm",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
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
