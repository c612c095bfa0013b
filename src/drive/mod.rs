//! Drivers: what runs a [`Call`](crate::call::Call), which never waits
//! itself, by waiting for it. The blocking driver ([`blocking`]) waits in
//! the platform's [`Watch`]; the `tokio` driver ([`tokio`]) registers the
//! same descriptors with tokio's reactor. Both see the OS through one
//! [`Os`], and both keep one [`ExitSpin`] policy.
//!
//! Imports run one way: the public types (`Isolate`, `IsolatedChild`)
//! call drivers, drivers feed calls, calls use the transports and `sys`.

use core::time::Duration;

use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::process::Pid;

use crate::call::state::{Process, Wait};
use crate::sys::{self, ChildWatch, Exit, ResourceUsage, Watch};

pub(crate) mod blocking;
#[cfg(feature = "tokio")]
pub(crate) mod tokio;

pub(crate) use blocking::Driven;

/// The OS, as a call sees it through a driver's watch: kills go through
/// the pidfd where there is one, so they cannot reach a process that
/// reused the pid. `reactor` is an async driver's registration of the
/// pipe (none for the blocking driver), dropped before the watch forgets
/// the pipe, so that the pipe leaves the reactor before the call closes
/// it.
pub(crate) struct Os<'w, R = ()> {
    pub(crate) watch: &'w mut Watch,
    pub(crate) reactor: Option<&'w mut Option<R>>,
}

impl<'w> Os<'w> {
    /// The blocking driver's view: no reactor.
    pub(crate) fn blocking(watch: &'w mut Watch) -> Self {
        Self {
            watch,
            reactor: None,
        }
    }
}

impl<R> Process for Os<'_, R> {
    fn reap(
        &mut self,
        pid: Pid,
        block: bool,
        group: bool,
    ) -> Result<Option<(Exit, ResourceUsage)>, Errno> {
        sys::reap(pid, block, group)
    }

    fn kill(&mut self, pid: Pid, group: bool) -> Result<(), Errno> {
        if group {
            sys::kill_group(pid);
        }
        self.watch.kill(pid)
    }

    fn forget_pipe(&mut self, pipe: BorrowedFd<'_>) {
        if let Some(reactor) = &mut self.reactor {
            **reactor = None;
        }
        self.watch.forget_pipe(pipe);
    }

    fn now(&self) -> Duration {
        sys::now()
    }
}

/// How long a driver keeps checking for a child whose pipe just reached
/// end-of-file before it waits again. The child closed its end, almost
/// always because it is exiting, and becomes reapable microseconds later;
/// sleeping in the readiness wait (or the reactor) and being woken for the
/// exit costs far more than that (about 30 µs per call on a virtual
/// machine, where waking an idle CPU is slow). A child that closed its end
/// and keeps running costs at most this spin once.
const EXIT_SPIN: Duration = Duration::from_micros(100);

/// One driver pass's exit spin (see [`EXIT_SPIN`]), the same for every
/// driver.
#[derive(Debug, Default)]
pub(crate) struct ExitSpin {
    from: Option<Duration>,
}

impl ExitSpin {
    /// Whether the driver should look at the child again at once rather
    /// than wait: the call expects the exit any moment (`wait.exit_soon`
    /// with no pipe to wait on), the spin has not run for [`EXIT_SPIN`]
    /// yet, and neither the call's deadline nor the driver's own `budget`
    /// (an instant on the monotonic clock) has passed at `now`. If so, it
    /// has yielded the CPU (the child may be sharing it), and the driver
    /// goes on with [`Ready::CHILD`](crate::sys::Ready::CHILD).
    pub(crate) fn again(
        &mut self,
        wait: &Wait<'_>,
        now: Duration,
        budget: Option<Duration>,
    ) -> bool {
        if !wait.exit_soon || wait.pipe.is_some() {
            return false;
        }
        let from = *self.from.get_or_insert(now);
        let before = |limit: Option<Duration>| limit.is_none_or(|l| now < l);
        if now.saturating_sub(from) < EXIT_SPIN && before(budget) && before(wait.until) {
            sys::yield_now();
            return true;
        }
        false
    }
}
