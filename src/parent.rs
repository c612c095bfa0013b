//! The parent's side of a call: reading the stream, watching the child,
//! enforcing the deadline and the size cap, reaping, and mapping what
//! happened to a [`MemIsolateError`].
//!
//! The parent only ever blocks in [`Watch::wait`], which wakes when the pipe
//! is readable, when the child itself ends, or at the deadline, or (for a
//! call with neither a pipe nor a deadline) in `wait4` for the child alone.
//! The pipe is non-blocking, so neither a slow child nor a grandchild that
//! inherited the write end can hold the parent past its deadline, and the
//! result counts as complete when its `END` frame arrives, not at
//! end-of-file. Without a pipe the frames are in the shared page or the
//! spill file, read once the child has exited.

use core::mem::MaybeUninit;
use core::time::Duration;

use rustix::fd::{AsFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::Pid;
use serde::de::DeserializeOwned;

use crate::errors::{
    CallableDidNotExecuteError, CallableExecutedError, CallableStatusUnknownError, ErrorText,
    MemIsolateError,
};
use crate::sys::{self, Exit, KeptFile, ResourceUsage, Watch};
use crate::wire::{DecodeError, Decoder, End, Outcome, PayloadSink};

/// Where the value's bytes go, with room to read into directly.
pub(crate) trait Sink: PayloadSink {
    /// Spare room for up to `want` more bytes (fewer near the limit), or
    /// [`DecodeError::TooLarge`] when there is none.
    fn spare(&mut self, want: usize) -> Result<&mut [MaybeUninit<u8>], DecodeError>;
    /// Marks `n` bytes of the spare room as filled; returns them.
    fn commit(&mut self, n: usize) -> &[u8];
    /// The bytes received so far.
    fn bytes(&self) -> &[u8];
    /// The size cap, for [`CallableExecutedError::ResultTooLarge`].
    fn limit(&self) -> usize;
    /// The received bytes as a buffer the value may take over, if this
    /// sink owns one.
    #[cfg(feature = "alloc")]
    fn owned(&mut self) -> Option<&mut alloc::vec::Vec<u8>> {
        None
    }
}

impl Sink for crate::wire::SliceSink<'_> {
    fn spare(&mut self, want: usize) -> Result<&mut [MaybeUninit<u8>], DecodeError> {
        let room = &mut self.buf[self.len..];
        if room.is_empty() {
            return Err(DecodeError::TooLarge);
        }
        let n = want.min(room.len());
        let room = &mut room[..n];
        // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and
        // the only writer (`read`) stores initialized bytes.
        Ok(unsafe { &mut *(core::ptr::from_mut::<[u8]>(room) as *mut [MaybeUninit<u8>]) })
    }

    fn commit(&mut self, n: usize) -> &[u8] {
        let start = self.len;
        self.len += n;
        &self.buf[start..self.len]
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn limit(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(feature = "alloc")]
impl Sink for crate::wire::VecSink {
    fn spare(&mut self, want: usize) -> Result<&mut [MaybeUninit<u8>], DecodeError> {
        let room = self.limit - self.bytes().len();
        if room == 0 {
            return Err(DecodeError::TooLarge);
        }
        let n = want.min(room);
        self.make_room(n);
        Ok(crate::wire::VecSink::spare(self, n))
    }

    fn commit(&mut self, n: usize) -> &[u8] {
        // SAFETY: `read` initialized these `n` bytes of spare room.
        unsafe { crate::wire::VecSink::commit(self, n) }
    }

    fn bytes(&self) -> &[u8] {
        crate::wire::VecSink::bytes(self)
    }

    fn limit(&self) -> usize {
        self.limit
    }

    fn owned(&mut self) -> Option<&mut alloc::vec::Vec<u8>> {
        Some(self.heap())
    }
}

/// Monotonic time since an arbitrary origin.
pub(crate) fn now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Why the parent stopped the child itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    TimedOut,
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    ByCaller,
}

/// How long the parent keeps checking for a child whose pipe just reached
/// end-of-file before it waits again (see
/// [`Receiver::reap_after_end_of_file`]).
const EXIT_SPIN: Duration = Duration::from_micros(100);

/// The most a running child's pipe is read in one pass (see
/// [`Receiver::drain`]): as much as the widest pipe the child asks for.
const DRAIN_PASS: usize = 1 << 20;

/// One running (or finished) child and everything the parent knows of it.
pub(crate) struct Receiver<S: Sink> {
    pid: Pid,
    pipe: Option<OwnedFd>,
    watch: Watch,
    decoder: Decoder,
    sink: S,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    exit: Option<Exit>,
    usage: Option<ResourceUsage>,
    wait_error: Option<Errno>,
    read_error: Option<Errno>,
    stopped: Option<Stopped>,
    /// The shared page the child may have left a small result in; valid
    /// for the receiver's whole life (see [`Receiver::new`]).
    page: Option<core::ptr::NonNull<u8>>,
    /// The child leads a process group of its own, killed with it.
    group: bool,
    /// The spill file that comes with the page, when the child writes its
    /// frames there instead of to a pipe; as long-lived as the page, and
    /// checked to still be the crate's before each use.
    spill: Option<KeptFile>,
    /// Where the child reports a failure of its own (see
    /// [`crate::report`]): the shared page, or `own_report`.
    report: Option<(core::ptr::NonNull<u8>, u64)>,
    /// The page mapped for this call's report, if it had no shared page.
    own_report: Option<sys::ReportPage>,
    /// When the call started, for the `tracing` summary.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    started: Duration,
    /// What carried the stream, once known: for the `tracing` summary.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    via: &'static str,
}

impl<S: Sink> Receiver<S> {
    /// Takes charge of a freshly forked child. `watch` was attached.
    ///
    /// # Safety
    ///
    /// `page`, if given, must point to a live [`sys::SharedPage`] that
    /// outlives the receiver, and `spill` must be that page's spill file.
    /// Without a pipe the child writes to `spill`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn new(
        pid: Pid,
        pipe: Option<OwnedFd>,
        watch: Watch,
        nonce: u64,
        sink: S,
        timeout: Option<Duration>,
        started: Duration,
        page: Option<core::ptr::NonNull<u8>>,
        spill: Option<KeptFile>,
        group: bool,
    ) -> Self {
        Self {
            pid,
            pipe,
            watch,
            decoder: Decoder::new(nonce),
            sink,
            timeout,
            deadline: timeout.map(|t| started.saturating_add(t)),
            exit: None,
            usage: None,
            wait_error: None,
            read_error: None,
            stopped: None,
            page,
            spill,
            group,
            report: None,
            own_report: None,
            started,
            via: "nothing",
        }
    }

    /// Where the child may leave a report of its own failure: `report`,
    /// which is the shared page given to [`Self::new`] or `own`. `nonce`
    /// is the call's.
    pub(crate) fn with_report(
        mut self,
        report: Option<*mut u8>,
        own: Option<sys::ReportPage>,
    ) -> Self {
        self.report = report
            .and_then(core::ptr::NonNull::new)
            .map(|page| (page, self.decoder.nonce()));
        self.own_report = own;
        self
    }

    /// The child's report of a failure of its own, as the caller's error.
    /// Only asked once the child exited without a complete stream.
    fn child_report(&self) -> Option<MemIsolateError> {
        use crate::report::Kind;
        let (page, nonce) = self.report?;
        // SAFETY: the shared page outlives the receiver (see `new`), and
        // `own_report` is owned by it.
        let kind = unsafe { crate::report::read(page, nonce) }?;
        Some(match kind {
            Kind::WriteFailed(e) => CallableExecutedError::ChildPipeWriteFailed(e).into(),
            Kind::SetupFailed(e) => CallableDidNotExecuteError::ChildSetupFailed(e).into(),
            Kind::Unwound => CallableStatusUnknownError::CallableProcessDiedDuringExecution.into(),
        })
    }

    /// True once the child has been reaped (or found reaped elsewhere).
    pub(crate) fn is_finished(&self) -> bool {
        self.exit.is_some() || self.wait_error.is_some()
    }

    /// Makes progress for at most `timeout` (`None`: until finished), then
    /// returns whether the child is finished. A zero timeout makes one
    /// non-blocking pass.
    pub(crate) fn advance(&mut self, timeout: Option<Duration>) -> bool {
        let until = timeout.map(|t| now().saturating_add(t));
        while !self.is_finished() {
            let t = now();
            if self.deadline.is_some_and(|d| t >= d) {
                // A child that has already ended is not killed, even if
                // the parent (held up, or not scheduled) comes to look
                // only now: it is reaped, and what it did stands. Its pipe
                // is still read (bounded by its capacity, see `drain`); a
                // spilled result is not (see `read_spill`).
                self.try_reap(false);
                self.stop(Stopped::TimedOut);
                break;
            }
            let limit = match (until, self.deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let pipe = self.pipe.as_ref().map(AsFd::as_fd);
            match self.watch.wait(pipe, limit.map(|l| l.saturating_sub(t))) {
                Ok(ready) => {
                    if ready.pipe {
                        self.drain(false);
                        if self.pipe.is_none() && !ready.child && !self.is_finished() {
                            self.reap_after_end_of_file(until);
                        }
                    }
                    if ready.child && !self.is_finished() {
                        self.try_reap(ready.exiting);
                    }
                }
                Err(e) => {
                    // The readiness queue itself failed, so no deadline can
                    // be kept: stop the child and report the failure.
                    if self.kill_child().is_ok() {
                        if let Ok(Some((exit, usage))) = sys::reap(self.pid, true, self.group) {
                            self.exit = Some(exit);
                            self.usage = Some(usage);
                        }
                    }
                    self.wait_error = Some(e);
                }
            }
            if until.is_some_and(|u| now() >= u) {
                break;
            }
        }
        self.is_finished()
    }

    /// Reads what the pipe holds now, straight into the sink where the
    /// bytes are the value's.
    ///
    /// While the child runs, the reading stops at the deadline (a child
    /// streaming faster than the parent appends must not keep it here) and
    /// after [`DRAIN_PASS`] bytes, so that the parent gets back to its
    /// readiness wait and notices the child's exit even while something
    /// keeps the pipe full. Once the child has ended (`child_gone`), all it
    /// can have left in the pipe is the pipe's capacity: that much is read,
    /// deadline or not, and then the stream counts as ended, so that a
    /// grandchild still writing to the pipe cannot keep the parent here.
    fn drain(&mut self, child_gone: bool) {
        let Some(pipe) = self.pipe.take() else {
            return;
        };
        let deadline = self.deadline;
        let mut budget = if child_gone {
            sys::pipe_capacity(pipe.as_fd())
        } else {
            DRAIN_PASS
        };
        let ended = self.pump(|buf| {
            if budget == 0 {
                return Ok(if child_gone { Some(0) } else { None });
            }
            if !child_gone && deadline.is_some_and(|d| now() >= d) {
                return Ok(None);
            }
            let n = buf.len().min(budget);
            let got = sys::read_into(pipe.as_fd(), &mut buf[..n])?.map(|b| b.len());
            budget -= got.unwrap_or(0);
            Ok(got)
        });
        self.pipe = Some(pipe);
        if !self.decoder.untouched() {
            self.via = "pipe";
        }
        if ended {
            self.close_pipe();
        }
    }

    /// Feeds the decoder from `read` until the stream is finished or
    /// rejected, or `read` reports end-of-file (`Some(0)`), an error, or
    /// nothing more for now (`None`). Returns `false` only in that last
    /// case. `read` fills the buffer it is given, from the front.
    fn pump(
        &mut self,
        mut read: impl FnMut(&mut [MaybeUninit<u8>]) -> Result<Option<usize>, Errno>,
    ) -> bool {
        // Frame headers and small results only: the value's bytes are read
        // straight into the sink. Small, because every stack page the
        // parent touches after a fork costs a fault.
        let mut scratch = [MaybeUninit::<u8>::uninit(); 512];
        while !self.decoder.is_finished() {
            let data_left = self.decoder.data_remaining();
            let got = if data_left > 0 {
                let spare = match self.sink.spare(data_left) {
                    Ok(s) => s,
                    Err(e) => {
                        self.reject(e);
                        return true;
                    }
                };
                match read(spare) {
                    Ok(Some(0)) => None,
                    Ok(Some(n)) => {
                        let bytes = self.sink.commit(n);
                        self.decoder.data_appended(bytes);
                        Some(n)
                    }
                    Ok(None) => return false,
                    Err(e) => {
                        self.read_error = Some(e);
                        None
                    }
                }
            } else {
                match read(&mut scratch) {
                    Ok(Some(0)) => None,
                    Ok(Some(n)) => {
                        // SAFETY: `read` initialized the first `n` bytes.
                        let got = unsafe {
                            core::slice::from_raw_parts(scratch.as_ptr().cast::<u8>(), n)
                        };
                        if let Err(e) = self.decoder.feed(got, &mut self.sink) {
                            self.reject(e);
                            return true;
                        }
                        Some(n)
                    }
                    Ok(None) => return false,
                    Err(e) => {
                        self.read_error = Some(e);
                        None
                    }
                }
            };
            if got.is_none() {
                // End-of-file or a read error: nothing more will come.
                break;
            }
        }
        true
    }

    /// Reads the `len` bytes of frames the child wrote to the spill file.
    /// Called once the child has exited. The page's `len` is the child's
    /// word, so no more is read than the file held when reading began
    /// (a grandchild may still be extending it), nor past the sink's
    /// limit, nor past the deadline: a call whose deadline passes while
    /// its result is read has timed out.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn read_spill(&mut self, len: u64) {
        let Some(kept) = self.spill else { return };
        // Its number may have been closed and reused since the fork: then
        // the result is out of reach.
        let Some(file) = kept.get() else {
            self.read_error = Some(Errno::BADF);
            return;
        };
        let size = match rustix::fs::fstat(file) {
            Ok(st) => u64::try_from(st.st_size).unwrap_or(0),
            Err(e) => {
                self.read_error = Some(e);
                return;
            }
        };
        let len = len.min(size);
        self.via = "spill file";
        let deadline = self.deadline;
        let mut late = false;
        let mut at = 0u64;
        self.pump(|buf| {
            if deadline.is_some_and(|d| now() >= d) {
                late = true;
                return Ok(Some(0));
            }
            let want = usize::try_from(len - at).map_or(buf.len(), |left| left.min(buf.len()));
            if want == 0 {
                return Ok(Some(0));
            }
            let got = sys::pread_into(file, &mut buf[..want], at)?.len();
            at += got as u64;
            Ok(Some(got))
        });
        if late && !self.decoder.is_finished() {
            self.stopped = Some(Stopped::TimedOut);
        }
    }

    /// Feeds the decoder what the child left in the shared page, if the
    /// pipe carried nothing. Called only once the child has exited. The
    /// bytes are copied out before they are checked, so nothing that still
    /// maps the page can change them between check and use.
    ///
    /// Returns whether the page itself held a whole, accepted result, in
    /// which case the child wrote nothing to the spill file.
    fn read_page(&mut self) -> bool {
        let Some(page) = self.page.take() else {
            return false;
        };
        if !self.decoder.untouched() {
            return false;
        }
        // Volatile reads: the page is shared with processes that may still
        // write it, so each byte is read once, as it is at that moment.
        // SAFETY (both reads): the page is live (see `new`) and every
        // offset read is below SHARED_PAGE_LEN.
        let byte = |at: usize| unsafe { page.as_ptr().add(at).read_volatile() };
        let word = u32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)]);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if word == sys::SPILLED {
            // A call already stopped at its deadline has its answer.
            if self.stopped != Some(Stopped::TimedOut) {
                let len = u64::from_le_bytes(core::array::from_fn(|i| byte(4 + i)));
                self.read_spill(len);
            }
            return false;
        }
        let len = word as usize;
        if len == 0 || len > sys::SHARED_PAGE_FRAMES {
            return false;
        }
        // Each byte is read from the shared page exactly once, into a
        // small private buffer, before the decoder sees it: nothing that
        // still maps the page can change what was checked. The buffer is
        // small because every stack page the parent touches after a fork
        // costs a fault.
        self.via = "shared page";
        let mut chunk = [0u8; 256];
        let mut at = 4;
        while at < 4 + len {
            let n = chunk.len().min(4 + len - at);
            for (i, slot) in chunk[..n].iter_mut().enumerate() {
                *slot = byte(at + i);
            }
            at += n;
            if let Err(e) = self.decoder.feed(&chunk[..n], &mut self.sink) {
                self.reject(e);
                return false;
            }
        }
        self.decoder.is_finished()
    }

    fn close_pipe(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            self.watch.forget_pipe(pipe.as_fd());
        }
    }

    /// The stream broke the protocol or the size cap: accept nothing more,
    /// and stop the child, whose result can no longer be delivered.
    fn reject(&mut self, why: DecodeError) {
        trace!(?why, "rejecting the stream and killing the child");
        self.decoder.reject(why);
        self.close_pipe();
        if !self.is_finished() {
            // Only a child that was really signalled is waited for.
            let killed = self.kill_child().is_ok();
            self.try_reap(killed);
        }
    }

    /// Kills and reaps the child (timeout or the caller's `kill`).
    fn stop(&mut self, why: Stopped) {
        if self.is_finished() {
            return;
        }
        trace!(?why, "killing the child");
        if let Err(e) = self.kill_child() {
            self.wait_error = Some(e);
            return;
        }
        self.stopped = Some(why);
        self.close_pipe();
        self.try_reap(true);
    }

    /// The pipe reached end-of-file: the child closed its end, almost
    /// always because it is exiting, and it becomes reapable microseconds
    /// later. Sleeping in the readiness wait again and being woken for the
    /// exit costs far more than that (about 30 µs per call on a virtual
    /// machine, where waking an idle CPU is slow), so the parent checks
    /// for up to [`EXIT_SPIN`], yielding the CPU between checks so that a
    /// child sharing it can finish. A child that closed its end and keeps
    /// running costs at most that spin once. Neither the call's deadline
    /// nor `until` (the caller's own bound, zero for a non-blocking poll)
    /// is overrun for it.
    fn reap_after_end_of_file(&mut self, until: Option<Duration>) {
        let start = now();
        loop {
            self.try_reap(false);
            if self.is_finished() {
                return;
            }
            let t = now();
            let past = |bound: Option<Duration>| bound.is_some_and(|b| t >= b);
            if t.saturating_sub(start) >= EXIT_SPIN || past(self.deadline) || past(until) {
                return;
            }
            rustix::thread::sched_yield();
        }
    }

    /// `SIGKILL` to the child, and to its process group when it leads one
    /// (the group first: the child, its leader, is not reaped yet, so the
    /// group's id is still its own).
    fn kill_child(&self) -> Result<(), Errno> {
        if self.group {
            sys::kill_group(self.pid);
        }
        self.watch.kill(self.pid)
    }

    fn try_reap(&mut self, block: bool) {
        match sys::reap(self.pid, block, self.group) {
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
            Err(e) => self.wait_error = Some(e),
        }
        // The child is gone: everything it wrote is in the pipe or, for a
        // small result, in the shared page (or, announced there, in the
        // spill file).
        self.drain(true);
        let page = self.page;
        let from_page = self.read_page();
        self.close_pipe();
        if let Some(page) = page {
            // SAFETY: the page is live for the receiver's life (see `new`).
            unsafe { sys::record_outgrew_page(page.as_ptr(), !from_page) };
        }
        // Only a result that came whole from the page leaves nothing in
        // the spill file to free.
        if from_page {
            self.spill = None;
        }
        self.empty_spill();
    }

    /// Empties the spill file, if this call lent one and has not yet:
    /// whatever the child wrote there, a spilled value or the start of one
    /// before it died or was killed, goes back now rather than waiting in
    /// memory for the thread's next spill.
    fn empty_spill(&mut self) {
        // Never a descriptor whose number now names someone else's file.
        if let Some(file) = self.spill.take().as_ref().and_then(KeptFile::get) {
            // Nothing to do if this fails: the next spill overwrites it.
            let _ = rustix::fs::ftruncate(file, 0);
        }
    }

    /// Turns what happened into the caller's answer. Call once finished.
    pub(crate) fn outcome<T: DeserializeOwned>(&mut self) -> Result<T, MemIsolateError> {
        #[cfg(feature = "tracing")]
        let result_bytes = self.sink.bytes().len();
        let result = self.verdict();
        trace!(
            pid = self.pid.as_raw_nonzero().get(),
            result_bytes,
            transport = self.via,
            elapsed_us =
                u64::try_from(now().saturating_sub(self.started).as_micros()).unwrap_or(u64::MAX),
            outcome = match &result {
                Ok(_) => "value",
                Err(e) => e.variant_name(),
            },
            "call finished"
        );
        result
    }

    fn verdict<T: DeserializeOwned>(&mut self) -> Result<T, MemIsolateError> {
        use CallableExecutedError as Executed;
        use CallableStatusUnknownError as Unknown;
        if self.stopped == Some(Stopped::TimedOut) {
            return Err(Unknown::TimedOut(self.timeout.unwrap_or_default()).into());
        }
        match self.decoder.failure() {
            Some(DecodeError::TooLarge) => {
                return Err(Executed::ResultTooLarge {
                    limit: self.sink.limit(),
                }
                .into());
            }
            Some(DecodeError::Corrupt) => return Err(Unknown::ResultStreamCorrupted.into()),
            None => {}
        }
        // ECHILD: something else in the process reaped the child. Its
        // stream may still be complete, in which case the value stands.
        let reaped_elsewhere = self.wait_error == Some(Errno::CHILD);
        if let Some(e) = self.wait_error.filter(|_| !reaped_elsewhere) {
            return Err(Unknown::WaitFailed(e).into());
        }
        if let (Some(end), Some(Exit::Code(0)) | None) = (self.decoder.end(), self.exit) {
            return end_outcome(end, &self.decoder, &mut self.sink);
        }
        if let Some(e) = self.read_error {
            return Err(Unknown::ParentPipeReadFailed(e).into());
        }
        // No exit code is the crate's own: a failure of the child's own
        // is reported in shared memory.
        if let (Some(Exit::Code(_)) | None, Some(report)) = (self.exit, self.child_report()) {
            return Err(report);
        }
        Err(match self.exit {
            Some(Exit::Signal(sig)) => Unknown::ChildProcessKilledBySignal(sig).into(),
            Some(Exit::Code(0)) => Unknown::CallableProcessDiedDuringExecution.into(),
            Some(Exit::Code(code)) => Unknown::UnexpectedChildExitStatus(code).into(),
            None => Unknown::WaitFailed(Errno::CHILD).into(),
        })
    }
}

/// The answer a complete, verified stream gives.
fn end_outcome<T: DeserializeOwned, S: Sink>(
    end: End,
    decoder: &Decoder,
    sink: &mut S,
) -> Result<T, MemIsolateError> {
    match end.outcome {
        Outcome::Value => value(sink),
        // The child cut the message on a character boundary; anything
        // else is kept up to its first invalid byte.
        Outcome::Panicked => Err(CallableExecutedError::CallablePanicked(
            ErrorText::from_utf8_lossy_prefix(decoder.panic_message()),
        )
        .into()),
        Outcome::SerializeFailed => Err(CallableExecutedError::SerializationFailed(
            ErrorText::from_utf8_lossy_prefix(decoder.panic_message()),
        )
        .into()),
        Outcome::SetupFailed => {
            let mut raw = [0u8; 4];
            raw.copy_from_slice(&end.detail[..4]);
            let errno = Errno::from_raw_os_error(i32::from_le_bytes(raw));
            Err(CallableDidNotExecuteError::ChildSetupFailed(errno).into())
        }
    }
}

/// What only spawned handles use.
#[cfg(feature = "alloc")]
impl<S: Sink> Receiver<S> {
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// The readiness descriptor: readable when a call to
    /// [`Self::advance`] with a zero timeout can make progress.
    pub(crate) fn ready_fd(&self) -> Option<rustix::fd::BorrowedFd<'_>> {
        self.watch.queue()
    }

    pub(crate) fn usage(&self) -> Option<ResourceUsage> {
        self.usage
    }

    pub(crate) fn kill(&mut self) -> Result<(), MemIsolateError> {
        self.stop(Stopped::ByCaller);
        match self.wait_error {
            Some(e) if e != Errno::CHILD => Err(CallableStatusUnknownError::WaitFailed(e).into()),
            _ => Ok(()),
        }
    }
}

// SAFETY: the only fields that are not `Send` are the shared page
// pointers. `page`, and `report` when it points to the shared page, are
// set only by blocking calls (`run`, `run_with_buffer`) whose receiver
// never leaves the calling thread; spawned handles, the receivers that can
// move between threads, never carry one, and their `report` points into
// `own_report`, a mapping the receiver owns. Everything else is owned
// descriptors and plain data.
unsafe impl<S: Sink + Send> Send for Receiver<S> {}

impl<S: Sink> Drop for Receiver<S> {
    /// A receiver dropped before its child finished kills and reaps it:
    /// no child outlives its handle and no zombie is left.
    ///
    /// Should the kill itself have failed (only possible if the child
    /// changed credentials out of reach), it is reaped only if it already
    /// ended: waiting for a child that cannot be stopped would hang.
    fn drop(&mut self) {
        let reaped = self.exit.is_some() || self.wait_error == Some(Errno::CHILD);
        if !reaped {
            let stopped = self.kill_child().is_ok();
            let _ = sys::reap(self.pid, stopped, self.group);
        }
        // Paths that end without reaping (a failed wait or kill) leave
        // the spill file to here.
        self.empty_spill();
    }
}

/// The parent's verdict on a whole stream fed in `pieces`, for a child that
/// then exited with status 0: `None` if the stream is incomplete. Used by
/// the fuzz targets, which drive the decoder without processes.
#[cfg(all(fuzzing, feature = "alloc"))]
pub(crate) fn judge_stream<T: DeserializeOwned>(
    nonce: u64,
    pieces: &[&[u8]],
    limit: usize,
) -> Option<Result<T, MemIsolateError>> {
    let mut decoder = Decoder::new(nonce);
    let mut sink = crate::wire::VecSink::new(limit);
    for piece in pieces {
        match decoder.feed(piece, &mut sink) {
            Ok(_) => {}
            Err(DecodeError::TooLarge) => {
                return Some(Err(CallableExecutedError::ResultTooLarge { limit }.into()));
            }
            Err(DecodeError::Corrupt) => {
                return Some(Err(CallableStatusUnknownError::ResultStreamCorrupted.into()));
            }
        }
        if decoder.is_finished() {
            break;
        }
    }
    decoder
        .end()
        .map(|end| end_outcome(end, &decoder, &mut sink))
}

/// The value a complete stream carried. A `Vec<u8>` or `String` payload
/// that is exactly a length and its bytes becomes the value in place (see
/// [`crate::bytes`]); everything else is decoded by postcard.
fn value<T: DeserializeOwned, S: Sink>(sink: &mut S) -> Result<T, MemIsolateError> {
    #[cfg(feature = "alloc")]
    if let Some(kind) = crate::bytes::kind::<T>() {
        if let Some(owned) = sink.owned() {
            if let Some(start) = crate::bytes::wholesale_start(owned, kind) {
                let owned = core::mem::take(owned);
                // SAFETY: `kind` is `T`'s, and `start` was found for it.
                return Ok(unsafe { crate::bytes::into_value(owned, start, kind) });
            }
        }
    }
    decode(sink.bytes())
}

/// Decodes the value, insisting that it uses every byte: a checksummed
/// stream with bytes left over means `Serialize` and `Deserialize` disagree.
/// It decodes through [`crate::capture`], so that a `Deserialize` impl's
/// own error message is kept.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MemIsolateError> {
    use CallableExecutedError::DeserializationFailed;
    let mut deserializer = postcard::Deserializer::from_bytes(bytes);
    match crate::capture::deserialize::<T, _>(&mut deserializer) {
        Ok(value) => {
            let left = deserializer.finalize().map_or(0, <[u8]>::len);
            if left == 0 {
                return Ok(value);
            }
            // Dropping the value here is the parent's own memory: fine.
            drop(value);
            let what = postcard::Error::DeserializeBadEncoding;
            let mut text = ErrorText::empty();
            let _ = core::fmt::Write::write_fmt(
                &mut text,
                format_args!("{what} ({left} bytes left over)"),
            );
            Err(DeserializationFailed(text).into())
        }
        Err(text) => Err(DeserializationFailed(text).into()),
    }
}
