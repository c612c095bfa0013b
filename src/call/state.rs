//! The parent's side of one call, as a state machine that never waits.
//!
//! A [`Call`] knows the child, the route its result takes, the decoder and
//! the deadline. A driver (the blocking one in [`crate::drive`], a spawned
//! handle's `try_join`) asks it what to wait for ([`Wait`]: the pipe, the
//! deadline, whether the child's exit is imminent), waits in its own way,
//! and hands back what it saw ([`Ready`]). The call then reads what is
//! there, reaps, enforces the deadline and the cap, and kills the child
//! when it must, through a [`Process`], which is the real OS in the crate
//! and a script in the unit tests below.

use core::time::Duration;

use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::process::Pid;
use serde::de::DeserializeOwned;

use super::plan::Route;
use super::verdict::{Facts, Stopped, verdict};
use crate::errors::MemIsolateError;
use crate::sink::Sink;
use crate::sys::{Exit, Ready, ResourceUsage, SharedMapping};
use crate::transport::Feed;
use crate::transport::page::PageView;
use crate::wire::Decoder;

/// What a call needs done to its child, apart from waiting: the OS in the
/// crate, a script in tests.
pub(crate) trait Process {
    /// Reaps the child (`block`: wait for it; only asked when its exit is
    /// imminent). With `group`, the child's process group is killed once
    /// the child has exited and before it is reaped.
    fn reap(
        &mut self,
        pid: Pid,
        block: bool,
        group: bool,
    ) -> Result<Option<(Exit, ResourceUsage)>, Errno>;
    /// `SIGKILL` to the child, and to its group with `group`.
    fn kill(&mut self, pid: Pid, group: bool) -> Result<(), Errno>;
    /// Stops watching the pipe, which is about to be closed.
    fn forget_pipe(&mut self, pipe: BorrowedFd<'_>);
    /// Monotonic time.
    fn now(&self) -> Duration;
}

/// What the call waits for next.
#[derive(Debug)]
pub(crate) struct Wait<'c> {
    /// Readable when there is something to read.
    pub(crate) pipe: Option<BorrowedFd<'c>>,
    /// The deadline, on the monotonic clock.
    pub(crate) until: Option<Duration>,
    /// The child was killed: a blocking reap returns promptly.
    pub(crate) reap_now: bool,
    /// The pipe just reached end-of-file: the child is almost certainly
    /// exiting, and becomes reapable within microseconds.
    pub(crate) exit_soon: bool,
    /// A stream's sink holds an item its reader has not taken: the driver
    /// hands it over before it waits for more (see [`Sink::paused`]).
    pub(crate) held: bool,
}

/// Where the child reports a failure of its own (see [`crate::report`]).
pub(crate) enum ReportAt<'a> {
    /// The blocking call's shared page, which outlives the call.
    Shared(PageView<'a>),
    /// A page mapped for this call.
    Own(SharedMapping),
    /// No page could be mapped: a child that could not deliver is
    /// reported by how it ended.
    None,
}

impl ReportAt<'_> {
    /// The report left there for the call with `nonce`, if any.
    fn read(&self, nonce: u64) -> Option<crate::report::Failure> {
        match self {
            Self::Shared(page) => crate::report::read(*page, nonce),
            // SAFETY: a mapping the call owns, alive while it is borrowed.
            Self::Own(own) => crate::report::read(unsafe { PageView::new(own.as_ptr()) }, nonce),
            Self::None => None,
        }
    }
}

/// Whether a call may finish without its child's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// It waits for the child's end (every call but a zygote's blocking
    /// one).
    Never,
    /// It finishes once the stream is complete.
    AtEnd,
    /// It did.
    Done,
}

/// What a call starts from: everything the parent knows of a freshly
/// forked child.
pub(crate) struct Start<'a, S> {
    pub(crate) pid: Pid,
    /// The child leads a process group of its own, killed with it.
    pub(crate) group: bool,
    pub(crate) route: Route<'a>,
    pub(crate) report: ReportAt<'a>,
    pub(crate) nonce: u64,
    pub(crate) sink: S,
    pub(crate) timeout: Option<Duration>,
    /// When the call started (just before the fork), on the monotonic
    /// clock: the deadline counts from here.
    pub(crate) started: Duration,
}

/// One running (or finished) child and everything the parent knows of it.
pub(crate) struct Call<'a, S: Sink> {
    pid: Pid,
    /// The child leads a process group of its own, killed with it.
    group: bool,
    route: Route<'a>,
    decoder: Decoder,
    sink: S,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    exit: Option<Exit>,
    usage: Option<ResourceUsage>,
    reap_error: Option<Errno>,
    watch_error: Option<Errno>,
    read_error: Option<Errno>,
    stopped: Option<Stopped>,
    /// `SIGKILL` was sent (by the parent, for any reason).
    killed: bool,
    /// The pipe ended while the child was not yet reaped.
    pipe_ended: bool,
    /// Whether the call may finish without the child's end (see
    /// [`Call::release_at_end`]).
    release: Release,
    report: ReportAt<'a>,
    nonce: u64,
    /// When the call started, for the `tracing` summary.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    started: Duration,
}

// SAFETY: the fields that are not `Send` are the shared page's: the
// view in `report` and the page views in `route`. Only blocking calls
// (`run`, `run_with_buffer`) have them, and their call never leaves the
// calling thread; spawned handles, whose calls can move between threads,
// have no shared page and own their report page. Everything else is owned
// descriptors and plain data.
unsafe impl<S: Sink + Send> Send for Call<'_, S> {}

impl<'a, S: Sink> Call<'a, S> {
    /// Takes charge of a freshly forked child.
    // Always inlined, so that the value is built where it is kept: built
    // apart and moved, it took a second stack area that the parent writes
    // after the fork, one more copy-on-write fault on most calls
    // (ARCHITECTURE.md, "Page faults after fork").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn new(start: Start<'a, S>) -> Self {
        let Start {
            pid,
            group,
            route,
            report,
            nonce,
            sink,
            timeout,
            started,
        } = start;
        Self {
            pid,
            group,
            route,
            decoder: if S::STREAM {
                Decoder::stream(nonce)
            } else {
                Decoder::new(nonce)
            },
            sink,
            timeout,
            deadline: timeout.map(|t| started.saturating_add(t)),
            exit: None,
            usage: None,
            reap_error: None,
            watch_error: None,
            read_error: None,
            stopped: None,
            killed: false,
            pipe_ended: false,
            release: Release::Never,
            report,
            nonce,
            started,
        }
    }

    #[cfg(feature = "alloc")]
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    #[cfg(feature = "alloc")]
    pub(crate) fn usage(&self) -> Option<ResourceUsage> {
        self.usage
    }

    /// The pipe's read end, while the call still reads it (for the
    /// `tokio` driver, which registers it).
    #[cfg(feature = "tokio")]
    pub(crate) fn pipe_fd(&self) -> Option<BorrowedFd<'_>> {
        self.route.pipe_fd()
    }

    /// The sink, which a stream takes its items from.
    #[cfg(feature = "alloc")]
    pub(crate) fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// True once the child has been reaped (or found reaped elsewhere),
    /// or released (see [`Call::release_at_end`]).
    pub(crate) fn is_finished(&self) -> bool {
        self.exit.is_some() || self.reap_error.is_some() || self.release == Release::Done
    }

    /// Makes the call finish as soon as its stream is complete, without
    /// waiting for the child's end, which then never counts: for a
    /// zygote's blocking call. Its worker is the zygote's child, not this
    /// process's, so nothing is left to reap here; the zygote reaps it
    /// (killing it and its group, as a direct call's parent would, once
    /// the call's socket closes). Saves the caller the wait for the
    /// zygote's `Ended` reply, two wake-ups.
    #[cfg(feature = "alloc")]
    pub(crate) fn release_at_end(&mut self) {
        self.release = Release::AtEnd;
    }

    /// Takes what the driver saw and makes what progress it can without
    /// waiting: reads what the pipe holds, reaps a child that ended,
    /// rejects a stream that broke the protocol or the cap, enforces the
    /// deadline. Returns what to wait for next, or `None` once finished.
    pub(crate) fn on(&mut self, os: &mut impl Process, ready: Ready) -> Option<Wait<'_>> {
        if self.is_finished() {
            return None;
        }
        if ready.pipe {
            self.collect(os, false);
        }
        if self.release == Release::AtEnd && !self.is_finished() && self.decoder.end().is_some() {
            self.release = Release::Done;
            self.close_pipe(os);
            self.route.finish();
        }
        if ready.child && !self.is_finished() {
            self.try_reap(os, ready.exiting);
        }
        if self.is_finished() {
            return None;
        }
        // A child that has already ended is not killed, even if the
        // parent (held up, or not scheduled) comes to look only now: it is
        // reaped, and what it did stands.
        if !self.killed && self.deadline.is_some_and(|d| os.now() >= d) {
            self.try_reap(os, false);
            self.stop(os, Stopped::TimedOut);
            if self.is_finished() {
                return None;
            }
        }
        Some(Wait {
            pipe: self.route.pipe_fd(),
            until: if self.killed { None } else { self.deadline },
            reap_now: self.killed,
            exit_soon: self.pipe_ended,
            held: self.sink.paused(),
        })
    }

    /// The driver's readiness wait itself failed, so no deadline can be
    /// kept: the child is killed, and the call reports the failure.
    pub(crate) fn wait_failed(&mut self, os: &mut impl Process, e: Errno) {
        self.watch_error = Some(e);
        self.kill_child(os);
    }

    /// Kills the child, unless it is already finished: the deadline, or
    /// the caller (`why`). Its exit is then imminent ([`Wait::reap_now`]).
    pub(crate) fn stop(&mut self, os: &mut impl Process, why: Stopped) {
        if self.is_finished() || self.killed {
            return;
        }
        trace!(
            pid = self.pid.as_raw_nonzero().get(),
            reason = match why {
                Stopped::TimedOut => "deadline",
                Stopped::ByCaller => "kill",
            },
            "killing the child"
        );
        self.stopped = Some(why);
        self.kill_child(os);
    }

    /// The one way the parent ends a child: `SIGKILL` to it (and its
    /// group), and the pipe closed, since nothing more will be accepted.
    fn kill_child(&mut self, os: &mut impl Process) {
        if self.killed {
            return;
        }
        self.close_pipe(os);
        match os.kill(self.pid, self.group) {
            Ok(()) => self.killed = true,
            // Only possible if the child changed credentials out of
            // reach: it cannot be stopped, so it is not waited for.
            Err(e) => self.reap_error = Some(e),
        }
    }

    /// Moves what the route holds into the decoder; rejects the stream
    /// (and kills the child) when it breaks the protocol or the cap.
    fn collect(&mut self, os: &mut impl Process, ended: bool) {
        if ended {
            self.sink.child_ended();
        }
        let mut feed = Feed {
            decoder: &mut self.decoder,
            sink: &mut self.sink,
            read_error: &mut self.read_error,
        };
        let pipe_done = self.route.collect(&mut feed, ended);
        if self.decoder.failure().is_some() {
            trace!(
                pid = self.pid.as_raw_nonzero().get(),
                "rejecting the stream and killing the child"
            );
            if !self.is_finished() {
                self.kill_child(os);
            }
        }
        if pipe_done {
            if !ended {
                self.pipe_ended = true;
            }
            self.close_pipe(os);
        }
    }

    fn close_pipe(&mut self, os: &mut impl Process) {
        if let Some(pipe) = self.route.pipe_fd() {
            os.forget_pipe(pipe);
        }
        self.route.close_pipe();
    }

    fn try_reap(&mut self, os: &mut impl Process, block: bool) {
        match os.reap(self.pid, block, self.group) {
            Ok(Some((exit, usage))) => {
                trace!(
                    pid = self.pid.as_raw_nonzero().get(),
                    exit_code = match exit {
                        Exit::Code(c) => Some(c),
                        Exit::Signal(_) => None,
                    },
                    signal = match exit {
                        Exit::Signal(s) => Some(s),
                        Exit::Code(_) => None,
                    },
                    "reaped the child"
                );
                self.exit = Some(exit);
                self.usage = Some(usage);
            }
            Ok(None) => return,
            Err(e) => self.reap_error = Some(e),
        }
        // The child is gone: everything it left is in the route. A child
        // the parent stopped has its answer already.
        if self.stopped.is_none() {
            self.collect(os, true);
        }
        self.close_pipe(os);
        self.route.finish();
    }

    /// Ends the call early (a dropped handle, a driver that gives up):
    /// kills and reaps the child, so that none outlives its call and no
    /// zombie is left. Should the kill itself have failed, the child is
    /// reaped only if it already ended: waiting for a child that cannot be
    /// stopped would hang.
    pub(crate) fn abandon(&mut self, os: &mut impl Process) {
        let reaped = self.exit.is_some()
            || self.reap_error == Some(Errno::CHILD)
            || self.release == Release::Done;
        if !reaped {
            self.kill_child(os);
            let _ = os.reap(self.pid, self.killed, self.group);
        }
        self.route.finish();
    }

    /// What the caller's `kill` reports: a failure to signal or reap the
    /// child (not its having been reaped elsewhere).
    #[cfg(feature = "alloc")]
    pub(crate) fn kill_result(&self) -> Result<(), MemIsolateError> {
        match self.reap_error {
            Some(e) if e != Errno::CHILD => {
                Err(crate::errors::CallableStatusUnknownError::WaitFailed(e).into())
            }
            _ => Ok(()),
        }
    }

    /// Turns what happened into the caller's answer. Call once finished.
    pub(crate) fn outcome<T: DeserializeOwned>(&mut self) -> Result<T, MemIsolateError> {
        #[cfg(feature = "tracing")]
        let result_bytes = self.sink.bytes().len();
        let report = self.report.read(self.nonce);
        let result = verdict(Facts {
            decoder: &self.decoder,
            sink: &mut self.sink,
            exit: self.exit,
            stopped: self.stopped,
            timeout: self.timeout,
            reap_error: self.reap_error,
            watch_error: self.watch_error,
            read_error: self.read_error,
            report,
        });
        trace!(
            pid = self.pid.as_raw_nonzero().get(),
            result_bytes,
            transport = self.route.carried(),
            elapsed_us = u64::try_from(crate::sys::now().saturating_sub(self.started).as_micros())
                .unwrap_or(u64::MAX),
            outcome = match &result {
                Ok(_) => "value",
                Err(e) => e.variant_name(),
            },
            "call finished"
        );
        result
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    //! The state machine under scripted events, without forking: the pipe
    //! is real (forged bytes are written into it), the child is a script.
    extern crate std;

    use std::vec;
    use std::vec::Vec;

    use rustix::fd::{AsFd, OwnedFd};

    use super::*;
    use crate::call::plan::Route;
    use crate::errors::{CallableExecutedError, CallableStatusUnknownError};
    use crate::sink::VecSink;
    use crate::transport::pipe::PipeCollect;
    use crate::wire::{self, Checksum, Outcome};

    /// A child that exists only as a script: when it exits, and what the
    /// parent did to it.
    struct Script {
        now: Duration,
        /// The exit `reap` reports once `now` reaches the time.
        exits_at: Option<(Duration, Exit)>,
        killed: bool,
        reaped: bool,
        blocking_reaps: usize,
    }

    impl Script {
        fn new() -> Self {
            Self {
                now: Duration::from_secs(100),
                exits_at: None,
                killed: false,
                reaped: false,
                blocking_reaps: 0,
            }
        }
    }

    impl Process for Script {
        fn reap(
            &mut self,
            _pid: Pid,
            block: bool,
            _group: bool,
        ) -> Result<Option<(Exit, ResourceUsage)>, Errno> {
            assert!(!self.reaped, "reaped twice");
            if block {
                self.blocking_reaps += 1;
            }
            let exit = match self.exits_at {
                _ if self.killed => Some(Exit::Signal(9)),
                Some((at, exit)) if self.now >= at => Some(exit),
                _ => None,
            };
            assert!(exit.is_some() || !block, "a blocking reap would hang");
            self.reaped = exit.is_some();
            Ok(exit.map(|e| (e, ResourceUsage::default())))
        }

        fn kill(&mut self, _pid: Pid, _group: bool) -> Result<(), Errno> {
            // After the reap the pid may be anyone's: never signal it.
            assert!(!self.reaped, "killed after the reap");
            self.killed = true;
            Ok(())
        }

        fn forget_pipe(&mut self, _pipe: BorrowedFd<'_>) {}

        fn now(&self) -> Duration {
            self.now
        }
    }

    const NONCE: u64 = 0x5EED;

    /// The frames a child sends for `value`.
    fn frames_for(value: &impl serde::Serialize) -> Vec<u8> {
        let payload = postcard::to_allocvec(value).unwrap();
        let mut out = Vec::new();
        let mut sum = Checksum::new(NONCE);
        for piece in payload.chunks(100) {
            out.extend_from_slice(&wire::data_header(u32::try_from(piece.len()).unwrap()));
            out.extend_from_slice(piece);
            sum.update(piece);
        }
        out.extend_from_slice(&wire::end_frame(
            Outcome::Value,
            [0; 7],
            payload.len() as u64,
            sum.finish(),
        ));
        out
    }

    /// A call over a real pipe (the test holds the write end), with a
    /// deadline of `timeout` from the script's start.
    fn new_call(
        timeout: Option<Duration>,
        limit: usize,
    ) -> (Call<'static, VecSink>, OwnedFd, Script) {
        let (read, write) = crate::sys::result_pipe().unwrap();
        let script = Script::new();
        let route = Route::of(Some(PipeCollect::new(read)), None, None);
        let pid = Pid::from_raw(1).unwrap();
        let call = Call::new(Start {
            pid,
            group: true,
            route,
            report: ReportAt::None,
            nonce: NONCE,
            sink: VecSink::new(limit),
            timeout,
            started: script.now,
        });
        (call, write, script)
    }

    fn send(write: &OwnedFd, bytes: &[u8]) {
        crate::sys::write_all(write.as_fd(), bytes).unwrap();
    }

    const PIPE: Ready = Ready {
        pipe: true,
        child: false,
        exiting: false,
    };
    const CHILD: Ready = Ready {
        pipe: false,
        child: true,
        exiting: false,
    };
    /// What the blocking driver hands back once it has killed the child.
    const KILLED: Ready = Ready {
        pipe: false,
        child: true,
        exiting: true,
    };

    #[test]
    fn a_released_call_finishes_with_its_stream_and_never_waits_for_the_child() {
        let (mut call, write, mut script) = new_call(None, 1024);
        call.release_at_end();
        send(&write, &frames_for(&7u32));
        // The child never ends in this script: a reap would find it running.
        assert!(
            call.on(&mut script, PIPE).is_none(),
            "finished with the stream"
        );
        assert_eq!(call.outcome::<u32>(), Ok(7));
        call.abandon(&mut script);
        assert!(!script.killed && !script.reaped && script.blocking_reaps == 0);
    }

    #[test]
    fn a_released_call_still_waits_while_the_stream_is_incomplete() {
        let (mut call, write, mut script) = new_call(None, 1024);
        call.release_at_end();
        let frames = frames_for(&7u32);
        send(&write, &frames[..frames.len() - 1]);
        assert!(call.on(&mut script, PIPE).is_some());
        script.exits_at = Some((script.now, Exit::Code(0)));
        assert!(call.on(&mut script, CHILD).is_none());
        assert!(call.outcome::<u32>().is_err());
    }

    #[test]
    fn a_value_then_the_exit() {
        let (mut call, write, mut os) = new_call(None, usize::MAX);
        let frames = frames_for(&vec![7u32; 300]);
        let wait = call.on(&mut os, Ready::default()).unwrap();
        assert!(wait.pipe.is_some() && wait.until.is_none() && !wait.reap_now);
        // Half the stream, then the rest: not done until the child ends.
        let half = frames.len() / 2;
        send(&write, &frames[..half]);
        assert!(call.on(&mut os, PIPE).is_some());
        send(&write, &frames[half..]);
        let wait = call.on(&mut os, PIPE).unwrap();
        assert!(wait.pipe.is_none(), "the stream is complete: stop reading");
        os.exits_at = Some((os.now, Exit::Code(0)));
        assert!(call.on(&mut os, CHILD).is_none());
        assert_eq!(call.outcome::<Vec<u32>>(), Ok(vec![7u32; 300]));
        assert!(!os.killed);
    }

    #[test]
    fn a_child_that_ends_before_its_stream_is_read_keeps_its_value() {
        let (mut call, write, mut os) = new_call(None, usize::MAX);
        send(&write, &frames_for(&"all of it"));
        drop(write);
        // The exit is seen first: the pipe is read after the reap.
        os.exits_at = Some((os.now, Exit::Code(0)));
        assert!(call.on(&mut os, CHILD).is_none());
        assert_eq!(
            call.outcome::<std::string::String>().as_deref(),
            Ok("all of it")
        );
    }

    #[test]
    fn a_child_that_dies_during_its_stream_is_reported_by_its_death() {
        let (mut call, write, mut os) = new_call(None, usize::MAX);
        let frames = frames_for(&vec![1u8; 2000]);
        send(&write, &frames[..1000]);
        assert!(call.on(&mut os, PIPE).is_some());
        drop(write);
        os.exits_at = Some((os.now, Exit::Signal(11)));
        assert!(call.on(&mut os, CHILD).is_none());
        assert_eq!(
            call.outcome::<Vec<u8>>(),
            Err(CallableStatusUnknownError::ChildProcessKilledBySignal(11).into())
        );
    }

    #[test]
    fn end_of_file_first_marks_the_exit_as_soon() {
        let (mut call, write, mut os) = new_call(None, usize::MAX);
        send(&write, &frames_for(&5u8));
        drop(write);
        let wait = call.on(&mut os, PIPE).unwrap();
        assert!(wait.exit_soon && wait.pipe.is_none());
        os.exits_at = Some((os.now, Exit::Code(0)));
        assert!(call.on(&mut os, CHILD).is_none());
        assert_eq!(call.outcome::<u8>(), Ok(5));
    }

    #[test]
    fn the_deadline_kills_a_running_child_and_spares_an_ended_one() {
        // Running at the deadline: killed, reaped once killed, TimedOut.
        let (mut call, _write, mut os) = new_call(Some(Duration::from_millis(10)), usize::MAX);
        assert_eq!(
            call.on(&mut os, Ready::default()).unwrap().until,
            Some(os.now + Duration::from_millis(10))
        );
        os.now += Duration::from_millis(10);
        let wait = call.on(&mut os, Ready::default()).unwrap();
        assert!(wait.reap_now && wait.until.is_none() && os.killed);
        assert!(call.on(&mut os, KILLED).is_none());
        assert_eq!(
            call.outcome::<u8>(),
            Err(CallableStatusUnknownError::TimedOut(Duration::from_millis(10)).into())
        );

        // Ended before the parent looked, past its deadline: its value
        // stands, nothing is killed.
        let (mut call, write, mut os) = new_call(Some(Duration::from_millis(10)), usize::MAX);
        send(&write, &frames_for(&9u16));
        os.exits_at = Some((os.now + Duration::from_millis(2), Exit::Code(0)));
        os.now += Duration::from_millis(50);
        assert!(call.on(&mut os, Ready::default()).is_none());
        assert!(!os.killed);
        assert_eq!(call.outcome::<u16>(), Ok(9));
    }

    #[test]
    fn forged_bytes_are_rejected_and_the_child_killed() {
        let (mut call, write, mut os) = new_call(None, usize::MAX);
        send(&write, b"\xD4MX\x01\x04\0\0\0junk");
        send(&write, &frames_for(&1u8)[..8]);
        let mut forged = frames_for(&1u8);
        // A well-formed stream whose checksum is for another nonce.
        let n = forged.len();
        forged[n - 1] ^= 1;
        let (mut call2, write2, mut os2) = new_call(None, usize::MAX);
        send(&write2, &forged);
        for (call, os) in [(&mut call, &mut os), (&mut call2, &mut os2)] {
            let wait = call.on(os, PIPE).unwrap();
            assert!(wait.reap_now && os.killed);
            assert!(call.on(os, KILLED).is_none());
            assert_eq!(
                call.outcome::<u8>(),
                Err(CallableStatusUnknownError::ResultStreamCorrupted.into())
            );
        }
    }

    #[test]
    fn the_cap_is_the_parents_whatever_the_child_sends() {
        let (mut call, write, mut os) = new_call(None, 100);
        send(&write, &frames_for(&vec![3u8; 1000])[..600]);
        let wait = call.on(&mut os, PIPE).unwrap();
        assert!(wait.reap_now && os.killed, "killed at the cap");
        assert!(call.on(&mut os, CHILD).is_none());
        assert_eq!(
            call.outcome::<Vec<u8>>(),
            Err(CallableExecutedError::ResultTooLarge { limit: 100 }.into())
        );
    }

    #[test]
    fn abandoning_a_running_call_kills_and_reaps_it() {
        let (mut call, _write, mut os) = new_call(None, usize::MAX);
        assert!(call.on(&mut os, Ready::default()).is_some());
        call.abandon(&mut os);
        assert!(os.killed && os.reaped && os.blocking_reaps == 1);
    }

    /// How a scripted child's frames travel in the table below: the same
    /// scenarios must end the same way whichever carries them.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Via {
        Pipe,
        Page,
        Spill,
    }

    /// One scripted call over one transport: the parent's route, and the
    /// child's ends of it (the pipe's write end, the page, the spill file).
    struct Rig {
        via: Via,
        call: Call<'static, VecSink>,
        os: Script,
        write: Option<OwnedFd>,
        page: Option<crate::transport::page::ChildPage>,
        spill: Option<crate::sys::KeptFile>,
        stored: usize,
    }

    impl Rig {
        /// `None` when the system has no spill file (only Linux and
        /// Android make one).
        fn new(via: Via, timeout: Option<Duration>, limit: usize) -> Option<Self> {
            use crate::transport::page::{ChildPage, PageView};
            // The page outlives the test's calls: one leaked mapping each.
            let mapping: &'static crate::sys::SharedMapping = std::boxed::Box::leak(
                std::boxed::Box::new(crate::sys::SharedMapping::new().unwrap()),
            );
            // SAFETY: a live mapping for the rest of the process.
            let (view, child) = unsafe {
                (
                    PageView::new(mapping.as_ptr()),
                    ChildPage::new(mapping.as_ptr().as_ptr()),
                )
            };
            let (pipe, write) = match via {
                Via::Pipe => {
                    let (read, write) = crate::sys::result_pipe().unwrap();
                    (Some(PipeCollect::new(read)), Some(write))
                }
                _ => (None, None),
            };
            let spill = match via {
                Via::Spill => {
                    Some(crate::sys::KeptFile::new(crate::sys::spill_file().ok()?).unwrap())
                }
                _ => None,
            };
            let page = (via != Via::Pipe).then_some(view);
            let os = Script::new();
            let call = Call::new(Start {
                pid: Pid::from_raw(1).unwrap(),
                group: true,
                route: Route::of(pipe, page, spill),
                report: ReportAt::Shared(view),
                nonce: NONCE,
                sink: VecSink::new(limit),
                timeout,
                started: os.now,
            });
            Some(Self {
                via,
                call,
                os,
                write,
                page: (via != Via::Pipe).then_some(child),
                spill,
                stored: 0,
            })
        }

        /// The child sends `bytes`: down the pipe now, into the page or
        /// the spill file for the parent to find after the exit (announced
        /// by `publish`).
        fn send(&mut self, bytes: &[u8]) {
            match self.via {
                Via::Pipe => send(self.write.as_ref().unwrap(), bytes),
                Via::Page => {
                    self.page.unwrap().store(self.stored, bytes);
                    self.stored += bytes.len();
                }
                Via::Spill => {
                    let kept = self.spill.unwrap();
                    crate::sys::pwrite_all(kept.get().unwrap(), bytes, self.stored as u64).unwrap();
                    self.stored += bytes.len();
                }
            }
        }

        /// The child's way out: the head word announces what it stored
        /// (nothing for the pipe, which needs no announcing).
        fn publish(&mut self) {
            match self.via {
                Via::Pipe => {}
                Via::Page => self.page.unwrap().publish(self.stored),
                Via::Spill => self.page.unwrap().announce_spill(self.stored as u64),
            }
        }

        /// The child ends with `exit`, `after` from now; the pipe's write
        /// end closes with it.
        fn exits(&mut self, after: Duration, exit: Exit) {
            self.write = None;
            self.os.exits_at = Some((self.os.now + after, exit));
        }

        /// Runs the call to its end as a driver would: the pipe when it
        /// streams, the child, and the kill's reap. `None` if it waits on.
        fn run<T: DeserializeOwned>(&mut self) -> Option<Result<T, MemIsolateError>> {
            let mut ready = Ready::default();
            for _ in 0..8 {
                let Some(wait) = self.call.on(&mut self.os, ready) else {
                    return Some(self.call.outcome());
                };
                ready = if wait.reap_now {
                    KILLED
                } else if wait.pipe.is_some() {
                    Ready {
                        pipe: true,
                        child: true,
                        exiting: false,
                    }
                } else {
                    CHILD
                };
            }
            None
        }
    }

    type Scenario = fn(&mut Rig) -> Option<Result<Vec<u8>, MemIsolateError>>;

    /// Scenarios, each with the outcome every transport must give.
    /// A scenario: its name, the call's timeout and cap, what the child
    /// and the clock do, and the outcome every transport must give.
    type Case = (
        &'static str,
        Option<Duration>,
        usize,
        Scenario,
        Result<Vec<u8>, MemIsolateError>,
    );

    /// How the child ends, before, during and after its result.
    fn endings() -> Vec<Case> {
        use CallableStatusUnknownError as Unk;
        let value = vec![4u8; 700];
        vec![
            (
                "the child ends after its whole result",
                None,
                usize::MAX,
                |r| {
                    r.send(&frames_for(&vec![4u8; 700]));
                    r.publish();
                    r.exits(Duration::ZERO, Exit::Code(0));
                    r.run()
                },
                Ok(value.clone()),
            ),
            (
                "the child ends before any result",
                None,
                usize::MAX,
                |r| {
                    r.exits(Duration::ZERO, Exit::Code(0));
                    r.run()
                },
                Err(Unk::CallableProcessDiedDuringExecution.into()),
            ),
            (
                "the child dies during its result",
                None,
                usize::MAX,
                |r| {
                    r.send(&frames_for(&vec![4u8; 700])[..300]);
                    r.exits(Duration::ZERO, Exit::Signal(11));
                    r.run()
                },
                Err(Unk::ChildProcessKilledBySignal(11).into()),
            ),
        ]
    }

    /// Forged, misattributed and truncated streams.
    fn bad_bytes() -> Vec<Case> {
        use CallableStatusUnknownError as Unk;
        vec![
            (
                "forged bytes",
                None,
                usize::MAX,
                |r| {
                    r.send(b"\xD4MX\x01\x04\0\0\0junk");
                    r.publish();
                    r.exits(Duration::ZERO, Exit::Code(0));
                    r.run()
                },
                Err(Unk::ResultStreamCorrupted.into()),
            ),
            (
                "a checksum from another call",
                None,
                usize::MAX,
                |r| {
                    let mut forged = frames_for(&vec![4u8; 700]);
                    let n = forged.len();
                    forged[n - 1] ^= 1;
                    r.send(&forged);
                    r.publish();
                    r.exits(Duration::ZERO, Exit::Code(0));
                    r.run()
                },
                Err(Unk::ResultStreamCorrupted.into()),
            ),
            (
                "truncated: end-of-file without END",
                None,
                usize::MAX,
                |r| {
                    let frames = frames_for(&vec![4u8; 700]);
                    r.send(&frames[..frames.len() - wire::END_FRAME_LEN]);
                    r.publish();
                    r.exits(Duration::ZERO, Exit::Code(0));
                    r.run()
                },
                Err(Unk::CallableProcessDiedDuringExecution.into()),
            ),
        ]
    }

    /// The deadline, before and after the exit, a stopped child, and the
    /// cap.
    fn deadlines() -> Vec<Case> {
        use CallableExecutedError as Exe;
        use CallableStatusUnknownError as Unk;
        let value = vec![4u8; 700];
        let ms = Duration::from_millis;
        vec![
            (
                "the deadline passes with the child running",
                Some(ms(10)),
                usize::MAX,
                |r| {
                    r.os.now += Duration::from_millis(10);
                    r.run()
                },
                Err(Unk::TimedOut(ms(10)).into()),
            ),
            (
                "a stopped child is killed at the deadline",
                Some(ms(10)),
                usize::MAX,
                |r| {
                    // Stopped: reaping finds nothing, for ever.
                    assert!(r.call.on(&mut r.os, CHILD).is_some());
                    r.os.now += Duration::from_millis(60);
                    r.run()
                },
                Err(Unk::TimedOut(ms(10)).into()),
            ),
            (
                "the child ended before the deadline, looked at after it",
                Some(ms(10)),
                usize::MAX,
                |r| {
                    r.send(&frames_for(&vec![4u8; 700]));
                    r.publish();
                    r.exits(Duration::from_millis(2), Exit::Code(0));
                    r.os.now += Duration::from_millis(50);
                    let out = r.run();
                    assert!(!r.os.killed, "an ended child is not killed");
                    out
                },
                Ok(value.clone()),
            ),
            (
                "the cap is exceeded",
                None,
                100,
                |r| {
                    r.send(&frames_for(&vec![4u8; 700]));
                    r.publish();
                    r.exits(Duration::ZERO, Exit::Code(0));
                    r.run()
                },
                Err(Exe::ResultTooLarge { limit: 100 }.into()),
            ),
        ]
    }

    fn scenarios() -> Vec<Case> {
        let mut all = endings();
        all.extend(bad_bytes());
        all.extend(deadlines());
        all
    }

    #[test]
    fn every_scenario_ends_the_same_way_whatever_the_transport() {
        for (name, timeout, limit, scenario, expected) in scenarios() {
            for via in [Via::Pipe, Via::Page, Via::Spill] {
                let Some(mut rig) = Rig::new(via, timeout, limit) else {
                    std::eprintln!("{name}: no spill file on this system, {via:?} skipped");
                    continue;
                };
                let got = scenario(&mut rig);
                assert_eq!(got.as_ref(), Some(&expected), "{name}, via {via:?}");
                assert!(rig.os.reaped, "{name}, via {via:?}: the child is reaped");
            }
        }
    }

    #[test]
    fn a_head_word_that_lies_is_not_believed() {
        // The page claims more frames than it holds: nothing is read.
        let mut rig = Rig::new(Via::Page, None, usize::MAX).unwrap();
        rig.send(&frames_for(&1u8));
        rig.page
            .unwrap()
            .publish(crate::transport::page::ChildPage::FRAMES + 1);
        rig.exits(Duration::ZERO, Exit::Code(0));
        assert_eq!(
            rig.run::<u8>(),
            Some(Err(
                CallableStatusUnknownError::CallableProcessDiedDuringExecution.into()
            ))
        );
        // The spill marker claims a terabyte: no more is read than the
        // file holds, which here is a whole value.
        if let Some(mut rig) = Rig::new(Via::Spill, None, usize::MAX) {
            rig.send(&frames_for(&2u8));
            rig.page.unwrap().announce_spill(1 << 40);
            rig.exits(Duration::ZERO, Exit::Code(0));
            assert_eq!(rig.run::<u8>(), Some(Ok(2)));
        }
    }
}
