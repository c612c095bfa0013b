//! The blocking driver: runs a [`Call`] by waiting in the platform's
//! [`Watch`] (pidfd and `poll` or epoll on Linux, kqueue on macOS and
//! FreeBSD, a blocking `wait4` when there is nothing else to wait for).
//! `run`, `join` and `try_join` are all [`Driven::advance`], with a budget
//! of forever or of nothing.

use core::time::Duration;

#[cfg(feature = "alloc")]
use rustix::fd::BorrowedFd;

use super::{ExitSpin, Os};
use crate::call::Call;
use crate::sink::Sink;
use crate::sys::{self, ChildWatch, Ready, Watch};

/// A call and the watch its driver waits with. Dropping it before the
/// call finished kills and reaps the child.
pub(crate) struct Driven<'a, S: Sink> {
    call: Call<'a, S>,
    watch: Watch,
}

impl<'a, S: Sink> Driven<'a, S> {
    // Always inlined, so that the value is built where it is kept: built
    // apart and moved, it took a second stack area that the parent writes
    // after the fork, one more copy-on-write fault on most calls
    // (ARCHITECTURE.md, "Page faults after fork").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn new(call: Call<'a, S>, watch: Watch) -> Self {
        Self { call, watch }
    }

    /// The call, to ask what it knows (pid, usage, outcome).
    #[cfg(feature = "alloc")]
    pub(crate) fn call(&self) -> &Call<'a, S> {
        &self.call
    }

    /// The call, to take its outcome.
    pub(crate) fn call_mut(&mut self) -> &mut Call<'a, S> {
        &mut self.call
    }

    /// Makes progress for at most `budget` (`None`: until finished), then
    /// returns whether the call is finished. A zero budget makes one
    /// non-blocking pass.
    pub(crate) fn advance(&mut self, budget: Option<Duration>) -> bool {
        let until = budget.map(|b| sys::now().saturating_add(b));
        let mut ready = Ready::default();
        let mut waited = false;
        let mut spin = ExitSpin::default();
        loop {
            let Some(wait) = self.call.on(&mut Os::blocking(&mut self.watch), ready) else {
                return true;
            };
            if wait.reap_now {
                // Killed: its exit is imminent, and a blocking reap brief,
                // so it is reaped now, whatever the budget.
                ready = Ready::EXITING;
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
            if spin.again(&wait, t, until) {
                ready = Ready::CHILD;
                continue;
            }
            let limit = match (until, wait.until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let pipe = wait.pipe;
            ready = match self.watch.wait(pipe, limit.map(|l| l.saturating_sub(t))) {
                Ok(ready) => ready,
                Err(e) => {
                    self.call.wait_failed(&mut Os::blocking(&mut self.watch), e);
                    Ready::default()
                }
            };
            waited = true;
        }
    }

    /// Kills the child (the caller's `kill`) and reaps it.
    #[cfg(feature = "alloc")]
    pub(crate) fn stop(&mut self) {
        self.call.stop(
            &mut Os::blocking(&mut self.watch),
            crate::call::verdict::Stopped::ByCaller,
        );
        self.advance(None);
    }

    /// The readiness descriptor, made with the watch (`Some` for a watch
    /// made with [`sys::WaitMode::Queue`]): readable when [`Self::advance`]
    /// with a zero budget can make progress.
    #[cfg(feature = "alloc")]
    pub(crate) fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        self.watch.ready_fd()
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
        self.call.abandon(&mut Os::blocking(&mut self.watch));
    }
}
