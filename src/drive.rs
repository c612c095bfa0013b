//! The blocking driver: runs a [`Call`] by waiting in the platform's
//! [`Watch`] (pidfd and `poll` or epoll on Linux, kqueue on macOS and
//! FreeBSD, a blocking `wait4` when there is nothing else to wait for).
//! `run`, `join` and `try_join` are all [`Driven::advance`], with a budget
//! of forever or of nothing.

use core::time::Duration;

use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::process::Pid;

use crate::call::Call;
use crate::call::state::Process;
use crate::sink::Sink;
use crate::sys::ChildWatch;
use crate::sys::{self, Exit, Ready, ResourceUsage, Watch};

/// How long the driver keeps checking for a child whose pipe just reached
/// end-of-file before it waits again. The child closed its end, almost
/// always because it is exiting, and becomes reapable microseconds later;
/// sleeping in the readiness wait and being woken for the exit costs far
/// more than that (about 30 µs per call on a virtual machine, where waking
/// an idle CPU is slow). A child that closed its end and keeps running
/// costs at most this spin once.
const EXIT_SPIN: Duration = Duration::from_micros(100);

/// The OS, as a call sees it through a driver's watch: kills go through
/// the pidfd where there is one, so they cannot reach a process that
/// reused the pid. `reactor` is an async driver's registration of the
/// pipe (none for the blocking driver), dropped before the watch forgets
/// the pipe, so that the pipe leaves the reactor before the call closes
/// it.
pub(crate) struct Os<'w, R = ()> {
    pub(crate) watch: &'w mut Watch,
    pub(crate) reactor: &'w mut Option<R>,
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
        *self.reactor = None;
        self.watch.forget_pipe(pipe);
    }

    fn now(&self) -> Duration {
        sys::now()
    }
}

/// A call and the watch its driver waits with. Dropping it before the
/// call finished kills and reaps the child.
pub(crate) struct Driven<'a, S: Sink> {
    pub(crate) call: Call<'a, S>,
    watch: Watch,
}

impl<'a, S: Sink> Driven<'a, S> {
    pub(crate) fn new(call: Call<'a, S>, watch: Watch) -> Self {
        Self { call, watch }
    }

    /// Makes progress for at most `budget` (`None`: until finished), then
    /// returns whether the call is finished. A zero budget makes one
    /// non-blocking pass.
    pub(crate) fn advance(&mut self, budget: Option<Duration>) -> bool {
        let until = budget.map(|b| sys::now().saturating_add(b));
        let mut ready = Ready::default();
        let mut waited = false;
        let mut spin_from = None;
        loop {
            let mut os = Os {
                watch: &mut self.watch,
                reactor: &mut None::<()>,
            };
            let Some(wait) = self.call.on(&mut os, ready) else {
                return true;
            };
            if wait.reap_now {
                // Killed: its exit is imminent, and a blocking reap brief,
                // so it is reaped now, whatever the budget.
                ready = Ready {
                    pipe: false,
                    child: true,
                    exiting: true,
                };
                continue;
            }
            if wait.held {
                // A stream's item is in: its reader takes it first.
                return false;
            }
            let t = sys::now();
            if waited && until.is_some_and(|u| t >= u) {
                return false;
            }
            if wait.exit_soon && wait.pipe.is_none() {
                let from = *spin_from.get_or_insert(t);
                let bounded = |b: Option<Duration>| b.is_none_or(|b| t < b);
                if t.saturating_sub(from) < EXIT_SPIN && bounded(until) && bounded(wait.until) {
                    sys::yield_now();
                    ready = Ready {
                        pipe: false,
                        child: true,
                        exiting: false,
                    };
                    continue;
                }
            }
            let limit = match (until, wait.until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let pipe = wait.pipe;
            ready = match self.watch.wait(pipe, limit.map(|l| l.saturating_sub(t))) {
                Ok(ready) => ready,
                Err(e) => {
                    let mut os = Os {
                        watch: &mut self.watch,
                        reactor: &mut None::<()>,
                    };
                    self.call.wait_failed(&mut os, e);
                    Ready::default()
                }
            };
            waited = true;
        }
    }

    /// Kills the child (the caller's `kill`) and reaps it.
    #[cfg(feature = "alloc")]
    pub(crate) fn stop(&mut self) {
        let mut os = Os {
            watch: &mut self.watch,
            reactor: &mut None::<()>,
        };
        self.call
            .stop(&mut os, crate::call::verdict::Stopped::ByCaller);
        self.advance(None);
    }

    /// The readiness descriptor, made on first use (an epoll instance on
    /// Linux): readable when [`Self::advance`] with a zero budget can make
    /// progress.
    #[cfg(feature = "alloc")]
    pub(crate) fn ready_fd(&self) -> Result<BorrowedFd<'_>, Errno> {
        self.watch.queue_or_make(self.call.pipe_fd())
    }

    /// The call and its watch, for a driver of another kind (the `tokio`
    /// one) that waits in its own way.
    #[cfg(feature = "tokio")]
    pub(crate) fn parts(&mut self) -> (&mut Call<'a, S>, &mut Watch) {
        (&mut self.call, &mut self.watch)
    }
}

impl<S: Sink> Drop for Driven<'_, S> {
    fn drop(&mut self) {
        let mut os = Os {
            watch: &mut self.watch,
            reactor: &mut None::<()>,
        };
        self.call.abandon(&mut os);
    }
}
