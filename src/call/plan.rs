//! The one place that decides how a call's result travels ([`plan`]), and
//! the parent's side of that decision ([`Route`]).
//!
//! - A spawned handle (no shared page) streams through a pipe.
//! - A blocking call lends the child its thread's shared page. A value
//!   that outgrows the page goes to the page's spill file (where the
//!   system has one: Linux and Android), and the call needs no pipe at
//!   all, unless
//!   - the process may not write files of any size (`RLIMIT_FSIZE`: a pipe
//!     knows no such limit),
//!   - or the thread's last result outgrew the page (large results move
//!     faster down a pipe, where the parent reads while the child writes);
//!     should that pipe fail, the spill file carries the result instead.
//! - Without a spill file (none could be made, or the system has none)
//!   the page's overflow goes down a pipe.
//!
//! Whatever the route, the rules of [`crate::transport`] hold: only the
//! speed differs.

use rustix::fd::{AsFd, BorrowedFd};

use crate::child::ChildRoute;
use crate::errors::CallableDidNotExecuteError as NotRun;
use crate::sink::Sink;
use crate::sys::ChildWatch;
#[cfg(all(test, feature = "alloc"))]
use crate::sys::KeptFile;
use crate::sys::{self, WaitMode, Watch};
#[cfg(all(test, feature = "alloc"))]
use crate::transport::page::PageView;
use crate::transport::page::{self, SharedPage};
use crate::transport::pipe::PipeCollect;
use crate::transport::spill::SpillCollect;
use crate::transport::{Collect, Feed};

/// A call's transports, parent side, in the order they are read after the
/// child's exit: the pipe (also read while the child runs), then the page,
/// then the spill file the page announces.
pub(crate) struct Route<'a> {
    pipe: Option<PipeCollect>,
    page: Option<page::Reader<'a>>,
    spill: Option<SpillCollect<'a>>,
    /// Which transport carried the stream, for the `tracing` summary.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    carried: &'static str,
}

#[cfg(all(test, feature = "alloc"))]
impl<'a> Route<'a> {
    /// A route over the given transports, for the state machine's tests.
    pub(crate) fn of(
        pipe: Option<PipeCollect>,
        page: Option<PageView<'a>>,
        spill: Option<KeptFile>,
    ) -> Self {
        Self {
            pipe,
            page: page.map(page::Reader::new),
            spill: page
                .zip(spill)
                .map(|(view, kept)| SpillCollect::new(view, kept)),
            carried: "nothing",
        }
    }
}

impl Route<'static> {
    /// A route through the pipe whose read end is `read`, and nothing
    /// else: a zygote's call (its worker shares no page with the caller).
    #[cfg(feature = "alloc")]
    pub(crate) fn pipe_only(read: rustix::fd::OwnedFd) -> Self {
        Self {
            pipe: Some(PipeCollect::new(read)),
            page: None,
            spill: None,
            carried: "nothing",
        }
    }
}

impl Route<'_> {
    /// The descriptor to wait on while the child runs.
    pub(crate) fn pipe_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pipe.as_ref().and_then(PipeCollect::fd)
    }

    #[inline]
    pub(crate) fn close_pipe(&mut self) {
        if let Some(pipe) = &mut self.pipe {
            drop(pipe.close());
        }
    }

    /// Collects from each transport in order (see [`Collect`]); returns
    /// whether the pipe has nothing more to give.
    pub(crate) fn collect<S: Sink>(&mut self, feed: &mut Feed<'_, S>, ended: bool) -> bool {
        let mut pipe_done = false;
        if let Some(pipe) = &mut self.pipe {
            let touched = !feed.decoder.untouched();
            pipe_done = pipe.collect(feed, ended);
            if !touched && !feed.decoder.untouched() {
                self.carried = "pipe";
            }
        }
        if let Some(page) = &mut self.page {
            page.collect(feed, ended);
            if page.delivered {
                self.carried = "shared page";
            }
        }
        if let Some(spill) = &mut self.spill {
            let touched = !feed.decoder.untouched();
            spill.collect(feed, ended);
            if !touched && !feed.decoder.untouched() {
                self.carried = "spill file";
            }
        }
        pipe_done
    }

    /// The call is over: the thread's next call learns whether this result
    /// outgrew the page, and the spill file is emptied, unless the page
    /// delivered the whole value: then the child finished without
    /// spilling, and the file is as empty as the last call left it (an
    /// `fstat` saved on every small call). Idempotent.
    pub(crate) fn finish(&mut self) {
        let delivered = self.page.take().is_some_and(|page| {
            page.record_hint();
            page.delivered
        });
        if delivered {
            self.spill = None;
        }
        if let Some(spill) = &mut self.spill {
            spill.empty();
        }
    }

    /// Which transport carried the stream.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn carried(&self) -> &'static str {
        self.carried
    }
}

/// A call's plan: its route, what its child gets, and the watch its driver
/// waits with (made before the fork, so that a failure means the callable
/// never started).
pub(crate) struct Plan<'a> {
    pub(crate) route: Route<'a>,
    pub(crate) child: ChildRoute<'a>,
    pub(crate) watch: Watch,
}

/// Decides the route for a call that may lend `page` (blocking calls) and
/// that accepts `limit` bytes, and makes its transports.
pub(crate) fn plan<'a, S: Sink>(
    page: Option<&'a SharedPage>,
    sink: &S,
    mode: WaitMode,
    deadline: bool,
) -> Result<Plan<'a>, NotRun> {
    let spill = page
        .and_then(SharedPage::spill)
        .filter(|_| sys::file_size_unlimited());
    let pipe = if spill.is_none() || page.is_some_and(SharedPage::prefers_pipe) {
        match sys::result_pipe() {
            Ok(pipe) => Some(pipe),
            Err(_) if spill.is_some() => None,
            Err(e) => return Err(NotRun::PipeCreationFailed(e)),
        }
    } else {
        None
    };
    let spill = spill.filter(|_| pipe.is_none());
    let (read, write) = match pipe {
        Some((read, write)) => (Some(read), Some(write)),
        None => (None, None),
    };
    let watch = match &read {
        Some(read) => Watch::new(read.as_fd(), mode),
        None => Watch::child_only(deadline),
    }
    .map_err(NotRun::WatchSetupFailed)?;
    let view = page.map(SharedPage::view);
    if let Some(view) = view {
        view.clear();
    }
    Ok(Plan {
        route: Route {
            pipe: read.map(PipeCollect::new),
            page: view.map(page::Reader::new),
            spill: match (view, spill) {
                (Some(view), Some((_, kept))) => Some(SpillCollect::new(view, kept)),
                _ => None,
            },
            carried: "nothing",
        },
        child: ChildRoute {
            write,
            spill,
            page: view,
            cap: match spill {
                Some(_) => sink.limit() as u64,
                None => u64::MAX,
            },
        },
        watch,
    })
}
