//! One isolated call: [`start`] plans it, forks, and hands the child its
//! part ([`crate::child::run`]) and the parent a [`Call`] (the state
//! machine in [`state`]) with the watch its driver waits with; the caller
//! hands both to a driver ([`crate::drive`]).
//!
//! ```text
//! Isolate::run / spawn
//!   └─ call::start ─ plan::plan (route, watch) ─ fork ─┬─ child::run (never returns)
//!                                                      └─ (Call, Watch), which a driver runs
//! ```

use core::time::Duration;

use rustix::process::Pid;

pub(crate) mod plan;
pub(crate) mod state;
pub(crate) mod verdict;
#[cfg(feature = "alloc")]
pub(crate) mod zygote;

pub(crate) use state::Call;
use state::{ReportAt, Start};

use crate::child::{self, ChildPlan, Job};
use crate::errors::{CallableDidNotExecuteError as NotRun, MemIsolateError};
use crate::panic_hook;
use crate::sink::Sink;
use crate::sys::ChildWatch;
use crate::sys::{self, SharedMapping, WaitMode};
use crate::transport::page::{ChildPage, SharedPage};

/// The options a call takes from [`Isolate`](crate::Isolate).
pub(crate) struct Options {
    pub(crate) timeout: Option<Duration>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) kill_descendants: bool,
    /// The sandbox to enter, built once and kept by the `Isolate`, or why
    /// it cannot be (`SandboxUnsupported`).
    pub(crate) sandbox: Result<Option<core::ptr::NonNull<sys::sandbox::Prepared>>, NotRun>,
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
) -> Result<(Call<'a, S>, sys::Watch), MemIsolateError>
where
    J: Job,
    S: Sink,
{
    if options.memory_limit.is_some() && !sys::MEMORY_LIMIT_SUPPORTED {
        return Err(NotRun::MemoryLimitUnsupported.into());
    }
    let sandbox = options.sandbox.clone()?;
    let plan::Plan {
        mut route,
        child: child_route,
        mut watch,
    } = plan::plan(page, &sink, mode, options.timeout.is_some())?;
    // A call without a shared page gets a page of its own, where its child
    // can report a failure of its own (see `crate::report`).
    let report = match page {
        Some(page) => ReportAt::Shared(page.view()),
        None => SharedMapping::new().map_or(ReportAt::None, ReportAt::Own),
    };
    let nonce = nonce(parent, page);
    let child_plan = ChildPlan {
        parent,
        memory_limit: options.memory_limit,
        nonce,
        own_group: options.kill_descendants,
        outlives_thread: !matches!(mode, WaitMode::Direct),
        // SAFETY: both are live shared mappings made before the fork,
        // which the child never unmaps.
        report: match &report {
            ReportAt::Shared(view) => Some(unsafe { ChildPage::new(view.as_ptr()) }),
            ReportAt::Own(own) => Some(unsafe { ChildPage::new(own.as_ptr().as_ptr()) }),
            ReportAt::None => None,
        },
        route: child_route,
        sandbox,
    };
    panic_hook::install();
    let started = sys::now();
    trace!(
        timeout_ms = options
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        memory_limit = options.memory_limit,
        "forking"
    );
    // SAFETY: in the child `fork_and_run` runs only `child::run`, which
    // keeps to async-signal-safe work apart from the user's callable, and
    // never returns.
    let pid = match unsafe { fork_and_run(callable, &child_plan, &mut route, &watch) } {
        Ok(pid) => pid,
        Err(e) => return Err(NotRun::ForkFailed(e).into()),
    };
    // Only the child may hold the write end: were the parent to keep it,
    // every child forked meanwhile (by any thread) would inherit a way to
    // write into this call's stream.
    drop(child_plan.route.write);
    watch.watch_child(pid);
    trace!(pid = pid.as_raw_nonzero().get(), "forked");
    let call = Call::new(Start {
        pid,
        group: options.kill_descendants,
        route,
        report,
        nonce,
        sink,
        timeout: options.timeout,
        started,
    });
    Ok((call, watch))
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
    plan: &ChildPlan<'_>,
    route: &mut plan::Route<'_>,
    watch: &sys::Watch,
) -> Result<Pid, rustix::io::Errno> {
    // SAFETY: the caller's promise; the child branch runs only
    // `child::run`.
    if let Some(pid) = unsafe { sys::fork() }? {
        return Ok(pid);
    }
    // The child gives up the parent's side: the read end goes, and the
    // watch is left behind (never dropped: the child does not return).
    child::run(callable, plan, || {
        route.close_pipe();
        watch.leave_in_child();
    })
}

/// A per-call value that seeds the stream checksum, so that bytes recorded
/// from one call do not verify in another: a call counter (the clock alone
/// may be coarse; the thread's, kept in its shared page, when there is
/// one), the pid, a stack address (distinct between threads) and the
/// monotonic clock.
pub(crate) fn nonce(pid: Pid, page: Option<&SharedPage>) -> u64 {
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
