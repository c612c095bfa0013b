//! One isolated call: [`start`] plans it, forks, and hands the child its
//! part ([`crate::child::run`]) and the parent a [`Call`] (the state
//! machine in [`state`]) with the watch its driver waits with.
//!
//! ```text
//! Isolate::run / spawn
//!   └─ call::start ─ plan::plan (route, watch) ─ fork ─┬─ child::run (never returns)
//!                                                      └─ Call + Watch ─ drive::Driven
//! ```

use core::cell::Cell;
use core::time::Duration;

use rustix::fd::AsFd;
use rustix::process::Pid;
use serde::Serialize;

pub(crate) mod plan;
pub(crate) mod state;
pub(crate) mod verdict;

pub(crate) use state::Call;

use crate::child::{self, ChildPlan};
use crate::drive::Driven;
use crate::errors::{CallableDidNotExecuteError as NotRun, MemIsolateError};
use crate::sink::Sink;
use crate::sys::ChildWatch;
use crate::sys::{self, SharedMapping, WaitMode};
use crate::transport::Out;
use crate::transport::page::{PageView, SharedPage};

/// What the child runs: a callable, whose value is the call's result, or
/// a stream's producer ([`crate::stream`]), which also needs the child's
/// way out for the items it sends.
pub(crate) trait Job {
    /// What the child's usual path sends back once the job returns.
    type Value: Serialize;
    /// Runs in the child; `out` and `nonce` are the call's.
    fn run(self, out: Out<'_>, nonce: u64) -> Self::Value;
}

impl<F: FnOnce() -> T, T: Serialize> Job for F {
    type Value = T;
    #[inline]
    fn run(self, _out: Out<'_>, _nonce: u64) -> T {
        self()
    }
}

/// The options a call takes from [`Isolate`](crate::Isolate).
pub(crate) struct Options {
    pub(crate) timeout: Option<Duration>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) kill_descendants: bool,
}

/// Plans the call, forks, and returns the parent's side of it, which
/// collects the result into `sink`. A blocking call lends the child its
/// thread's shared `page`; `parent` is this process's pid.
pub(crate) fn start<'a, J, S>(
    options: &Options,
    callable: J,
    sink: S,
    page: Option<&'a SharedPage>,
    parent: Pid,
    mode: WaitMode,
) -> Result<Driven<'a, S>, MemIsolateError>
where
    J: Job,
    S: Sink,
{
    if options.memory_limit.is_some() && !sys::MEMORY_LIMIT_SUPPORTED {
        return Err(NotRun::MemoryLimitUnsupported.into());
    }
    let plan = plan::plan(page, &sink, mode, options.timeout.is_some())?;
    // A call without a shared page gets a page of its own, where its child
    // can report a failure of its own (see `crate::report`).
    let own_report = match page {
        Some(_) => None,
        None => SharedMapping::new().ok(),
    };
    let shared = plan.child.page.map(PageView::as_ptr);
    let child_plan = ChildPlan {
        parent,
        memory_limit: options.memory_limit,
        nonce: nonce(parent, page),
        own_group: options.kill_descendants,
        outlives_thread: matches!(mode, WaitMode::Queue),
        page: shared,
        cap: plan.child.cap,
        report: shared.or(own_report.as_ref().map(|r| r.as_ptr().as_ptr())),
    };
    child::panic_hook::install();
    let started = sys::now();
    trace!(
        timeout_ms = options
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        memory_limit = options.memory_limit,
        "forking"
    );
    let plan::Plan {
        mut route,
        child: child_route,
        mut watch,
    } = plan;
    // SAFETY: in the child `fork_and_run` runs only `child::run`, which
    // keeps to async-signal-safe work apart from the user's callable, and
    // never returns.
    match unsafe { fork_and_run(callable, &child_plan, &child_route, &mut route, &watch) } {
        Err(e) => Err(NotRun::ForkFailed(e).into()),
        Ok(pid) => {
            // Only the child may hold the write end: were the parent to
            // keep it, every child forked meanwhile (by any thread) would
            // inherit a way to write into this call's stream.
            drop(child_route.write);
            watch.watch_child(pid);
            trace!(pid = pid.as_raw_nonzero().get(), "forked");
            let call = Call::new(
                pid,
                route,
                child_plan.nonce,
                sink,
                options.timeout,
                started,
                options.kill_descendants,
            );
            // SAFETY: the shared page is `page`, which outlives the call
            // (the lifetime `'a` says so).
            let call =
                unsafe { call.with_report(shared.and_then(core::ptr::NonNull::new), own_report) };
            Ok(Driven::new(call, watch))
        }
    }
}

/// Forks. The parent gets the child's pid; the child runs
/// [`child::run`] and never returns.
///
/// A function of its own, kept out of line, so that the child's stack
/// starts just below this small frame rather than below `start`'s large
/// one: every stack page the child writes is a copy-on-write fault, and
/// measured, the child's path crossed into one more page on most calls
/// when it ran from `start` (in every thread of a pool, whose stacks all
/// sit at the same offset in their pages).
///
/// # Safety
///
/// As [`sys::fork`]'s: the caller must be fine with a child that runs
/// only `child::run`.
#[inline(never)]
unsafe fn fork_and_run<J: Job>(
    callable: J,
    plan: &ChildPlan,
    child_route: &plan::ChildRoute<'_>,
    route: &mut plan::Route<'_>,
    watch: &sys::Watch,
) -> Result<Pid, rustix::io::Errno> {
    // SAFETY: the caller's promise; the child branch runs only
    // `child::run`.
    if let Some(pid) = unsafe { sys::fork() }? {
        return Ok(pid);
    }
    // The child's copy of the read end goes; the route itself is
    // never dropped here (the child does not return).
    route.close_pipe();
    watch.leave_in_child();
    let offset = Cell::new(0);
    let out = match (&child_route.write, child_route.spill) {
        (Some(write), _) => Out::pipe(write.as_fd()),
        (None, Some((file, kept))) => Out::spill(file, kept.id(), &offset),
        // One of the two was made by the plan.
        (None, None) => sys::exit_now(0),
    };
    child::run(move || callable.run(out, plan.nonce), plan, out)
}

/// A per-call value that seeds the stream checksum, so that bytes recorded
/// from one call do not verify in another: a call counter (the clock alone
/// may be coarse; the thread's, kept in its shared page, when there is
/// one), the pid, a stack address (distinct between threads) and the
/// monotonic clock.
fn nonce(pid: Pid, page: Option<&SharedPage>) -> u64 {
    use core::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let calls = match page {
        Some(page) => page.next_call(),
        None => CALLS.fetch_add(1, Ordering::Relaxed),
    };
    let here = 0u8;
    let stack = core::ptr::addr_of!(here) as usize as u64;
    let pid = u64::from(pid.as_raw_nonzero().get().unsigned_abs());
    let t = sys::now();
    let mut x = calls
        ^ stack.rotate_left(29)
        ^ (pid << 40)
        ^ t.as_secs().rotate_left(17)
        ^ u64::from(t.subsec_nanos()).rotate_left(7);
    // splitmix64's finalizer spreads the bits.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
