//! Everything the child does after `fork`, in order, ending in `_exit`:
//!
//! 1. give up the parent's side of the call (the pipe's read end, the
//!    watch), which the fork copied;
//! 2. set itself up: its own process group, the parent-death signal, the
//!    memory limit ([`Child::set_up`]);
//! 3. run the callable under `catch_unwind`, and encode its value once
//!    ([`crate::encode`]): into the shared page, or frames to the route's
//!    way out ([`Out`]);
//! 4. send what ended it ([`Child::end`]): the value's last frame and
//!    `END`, or a message frame and `END` for a panic or a serializer's
//!    failure; a failure of its own goes to the report
//!    ([`crate::report`]);
//! 5. `_exit` ([`Child::leave`]).
//!
//! From the callable's return to `_exit` this code allocates nothing,
//! frees nothing and takes no lock (ARCHITECTURE.md, "Invariants"); the
//! value is never dropped. A panic is not a return: the panic runtime
//! allocates its payload inside the callable, and when `catch_unwind`
//! takes the panic back it frees the unwinder's exception object.
//! Reporting the message after that point again allocates nothing.

use core::cell::Cell;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::Pid;
use serde::Serialize;

use crate::encode::{Finished, OVER_CAP, ResultWriter, Staging, serialize};
use crate::errors::PANIC_MESSAGE_CAPACITY;
use crate::panic_hook;
use crate::report::{self, Failure};
use crate::sys::{self, KeptFile};
use crate::transport::Out;
use crate::transport::page::{ChildPage, PageView};
use crate::wire::{self, Checksum, END_FRAME_LEN, Outcome};

/// How the child's frames travel, made by the plan before the fork.
pub(crate) struct ChildRoute<'a> {
    /// The pipe's write end, if the route streams.
    pub(crate) write: Option<OwnedFd>,
    /// The spill file and its identity, if the page overflows into it.
    pub(crate) spill: Option<(BorrowedFd<'a>, KeptFile)>,
    /// The shared page, for a small value.
    pub(crate) page: Option<PageView<'a>>,
    /// Where a spilling child stops itself: just past the cap, since
    /// nobody reads the file while it writes. Through a pipe the parent
    /// stops reading at the cap and kills the child.
    pub(crate) cap: u64,
}

/// What the child is given: everything it does before and after the
/// callable.
pub(crate) struct ChildPlan<'a> {
    /// The parent's pid, to notice if it is already gone.
    pub(crate) parent: Pid,
    /// Bytes of address space the callable may add, if limited.
    pub(crate) memory_limit: Option<u64>,
    /// Seeds the stream's checksum.
    pub(crate) nonce: u64,
    /// Lead a process group of its own (see
    /// [`Isolate::kill_descendants`](crate::Isolate::kill_descendants)).
    pub(crate) own_group: bool,
    /// The call hands back a handle that may outlive the thread that made
    /// it, so a thread's exit must not end the child (see
    /// `sys::on_parent_death`).
    pub(crate) outlives_thread: bool,
    /// Where the child reports a failure of its own (see
    /// [`crate::report`]): the shared page, or a page mapped for the call.
    pub(crate) report: Option<ChildPage>,
    /// How its frames travel.
    pub(crate) route: ChildRoute<'a>,
    /// The sandbox to enter right before the callable (see
    /// `sys::sandbox`), built by the parent before the fork and never
    /// freed in the child.
    pub(crate) sandbox: Option<core::ptr::NonNull<sys::sandbox::Prepared>>,
}

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

/// Runs in the child straight after `fork`; never returns. `leave_parent`
/// gives up the parent's side of the call, which the fork copied.
///
/// Marked for inlining, like the small helpers it calls on the way to a
/// small result (ARCHITECTURE.md, "Page faults after fork").
#[inline]
pub(crate) fn run<J: Job>(callable: J, plan: &ChildPlan<'_>, leave_parent: impl FnOnce()) -> ! {
    run_prepared(|| Ok(callable), plan, leave_parent)
}

/// [`run`], with the job made by `prepare` once the child is set up (its
/// group, its parent-death signal, its memory limit): a zygote's worker
/// decodes its arguments there. A failure of `prepare` is a setup
/// failure: the callable never started.
#[inline]
pub(crate) fn run_prepared<P, J>(prepare: P, plan: &ChildPlan<'_>, leave_parent: impl FnOnce()) -> !
where
    P: FnOnce() -> Result<J, Errno>,
    J: Job,
{
    leave_parent();
    let offset = Cell::new(0);
    let out = match (&plan.route.write, plan.route.spill) {
        (Some(write), _) => Out::pipe(write.as_fd()),
        (None, Some((file, kept))) => Out::spill(file, kept.id(), &offset),
        // One of the two was made by the plan.
        (None, None) => sys::exit_now(0),
    };
    let child = Child {
        nonce: plan.nonce,
        out,
        // SAFETY: the shared page is a live mapping made before the fork,
        // and the child never unmaps it.
        page: plan
            .route
            .page
            .map(|view| unsafe { ChildPage::new(view.as_ptr()) }),
        report: plan.report,
    };
    // Should anything below unwind, the child must still never return into
    // the parent's code.
    let _guard = ExitOnUnwind {
        report: child.report,
        nonce: child.nonce,
    };
    panic_hook::entered_child();
    child.set_up(plan);
    let callable = match prepare() {
        Ok(callable) => callable,
        Err(e) => child.setup_failed(e),
    };

    let write_error = Cell::new(None);
    // The running checksum of a value encoded into the shared page.
    let mut checksum = Checksum::new(plan.nonce);
    let sent = catch(|| {
        // Never dropped, not even if serializing it panics: dropping could
        // free memory.
        let value = core::mem::ManuallyDrop::new(callable.run(out, plan.nonce));
        // SAFETY: this is the one user of the staging buffer in this
        // process, made after the callable returned.
        let writer = unsafe {
            ResultWriter::new(
                child.page,
                &mut checksum,
                out,
                plan.nonce,
                plan.route.cap,
                &write_error,
            )
        };
        serialize(&*value, writer)
    });
    let end = child.end(sent, write_error.get());
    child.send(&end);
    child.leave()
}

/// The child's side of the call, once set up.
struct Child<'a> {
    nonce: u64,
    out: Out<'a>,
    page: Option<ChildPage>,
    report: Option<ChildPage>,
}

impl Child<'_> {
    /// Its own process group, the parent-death signal, the memory limit,
    /// the sandbox.
    /// A failure is sent as the stream's end, and the parent reports that
    /// the callable never started.
    #[inline]
    fn set_up(&self, plan: &ChildPlan<'_>) {
        if plan.own_group {
            sys::lead_own_group();
        }
        match sys::on_parent_death(plan.parent, plan.outlives_thread) {
            Ok(true) => {}
            // The parent is gone: nobody is waiting for anything.
            Ok(false) => sys::exit_now(0),
            Err(e) => self.setup_failed(e),
        }
        if let Some(limit) = plan.memory_limit {
            if let Err(e) = sys::limit_memory(limit) {
                self.setup_failed(e);
            }
        }
        if let Some(sandbox) = plan.sandbox {
            // SAFETY: the parent's sandbox, alive at the fork (see
            // `ChildPlan`); this child has one thread.
            if let Err(e) = unsafe { sys::sandbox::enter(sandbox) } {
                self.setup_failed(e);
            }
        }
    }

    #[cold]
    fn setup_failed(&self, e: Errno) -> ! {
        let mut detail = [0u8; 7];
        detail[..4].copy_from_slice(&e.raw_os_error().to_le_bytes());
        let sum = wire::side_checksum(self.nonce, detail, &[]);
        let end = wire::end_frame(Outcome::SetupFailed, detail, 0, sum);
        if self.out.write_all(&end).is_err() {
            self.fail(Failure::SetupFailed(e));
        }
        self.leave()
    }

    /// What ends the stream, after the callable: for a value, its last
    /// frame and `END` are sent here in one write (so the parent is woken
    /// once for them) and the child leaves; otherwise the `END` frame to
    /// send, after a message frame if there is a message.
    #[inline]
    fn end(
        &self,
        sent: Result<postcard::Result<Option<Finished<Staging<Out<'_>>>>>, PanicText<'_>>,
        write_error: Option<Errno>,
    ) -> [u8; END_FRAME_LEN] {
        match sent {
            // In the page, head word and all.
            Ok(Ok(None)) => self.leave(),
            Ok(Ok(Some(mut done))) => {
                let len = done.end();
                if let Err(e) = self.out.write_all(done.store.frames(len)) {
                    self.fail(Failure::WriteFailed(e));
                }
                self.leave()
            }
            // Past the cap: the parent has more than it accepts already,
            // and reports the result as too large.
            Ok(Err(_)) if write_error == Some(OVER_CAP) => self.leave(),
            Ok(Err(_)) if write_error.is_some() => {
                self.fail(Failure::WriteFailed(write_error.unwrap_or(Errno::IO)))
            }
            // The serializer's message (a user's `custom` text).
            Ok(Err(_)) => self.message_end(
                Outcome::SerializeFailed,
                crate::capture::ser_message().as_bytes(),
            ),
            Err(message) => self.message_end(Outcome::Panicked, truncate(message.as_bytes())),
        }
    }

    /// Sends `text` (if any) in a message frame, and returns the `END`
    /// frame for `outcome` that vouches for it.
    #[cold]
    fn message_end(&self, outcome: Outcome, text: &[u8]) -> [u8; END_FRAME_LEN] {
        // A panic's message must be there, even empty; a serializer's
        // may be absent.
        if outcome == Outcome::Panicked || !text.is_empty() {
            #[allow(clippy::cast_possible_truncation)] // at most PANIC_MESSAGE_CAPACITY
            let header = wire::panic_header(text.len() as u32);
            let sent = self.out.write_all(&header);
            if let Err(e) = sent.and_then(|()| self.out.write_all(text)) {
                self.fail(Failure::WriteFailed(e));
            }
        }
        let sum = wire::side_checksum(self.nonce, [0; 7], text);
        wire::end_frame(outcome, [0; 7], 0, sum)
    }

    #[inline]
    fn send(&self, end: &[u8]) {
        if let Err(e) = self.out.write_all(end) {
            self.fail(Failure::WriteFailed(e));
        }
    }

    /// A failure of the child's own: reported in shared memory, never by an
    /// exit code a callable could also use.
    #[cold]
    fn fail(&self, kind: Failure) -> ! {
        report::write(self.report, self.nonce, kind);
        sys::exit_now(0)
    }

    /// Every way out after a frame may have been written: a spilled stream
    /// is announced in the shared page, where the parent looks first.
    #[inline]
    fn leave(&self) -> ! {
        if let (Some(page), Some(len)) = (self.page, self.out.spilled()) {
            page.announce_spill(len);
        }
        sys::exit_now(0)
    }
}

/// Cuts a panic message to [`PANIC_MESSAGE_CAPACITY`] bytes on a character
/// boundary. The message is UTF-8 (it came from a `str`).
fn truncate(text: &[u8]) -> &[u8] {
    let mut end = text.len().min(PANIC_MESSAGE_CAPACITY);
    // Back off continuation bytes (0b10xx_xxxx) to a character start.
    while end < text.len() && end > 0 && text[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    if end == 0 && !text.is_empty() {
        return b"(panic message not shown)";
    }
    &text[..end]
}

/// A panic message borrowed from a caught panic's payload.
struct PanicText<'a>(&'a str);

impl PanicText<'_> {
    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Runs `f`, catching a panic when `std` is there to catch it. The panic
/// payload is leaked, never dropped, for the same reason as the value.
#[cfg(feature = "std")]
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, PanicText<'static>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Ok(r),
        Err(payload) => {
            let payload: &'static (dyn core::any::Any + Send) = std::boxed::Box::leak(payload);
            let text = if let Some(s) = payload.downcast_ref::<&'static str>() {
                s
            } else if let Some(s) = payload.downcast_ref::<std::string::String>() {
                s.as_str()
            } else {
                "(panic payload is not a string)"
            };
            Err(PanicText(text))
        }
    }
}

/// Without `std` a panic goes to the program's panic handler, which ends
/// the child (and the parent reports how).
#[cfg(not(feature = "std"))]
#[allow(clippy::unnecessary_wraps)]
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, PanicText<'static>> {
    Ok(f())
}

/// Ends the child, should the crate's own code in it unwind (which it
/// should never do), with a report saying so.
struct ExitOnUnwind {
    report: Option<ChildPage>,
    nonce: u64,
}

impl Drop for ExitOnUnwind {
    fn drop(&mut self) {
        report::write(self.report, self.nonce, Failure::Unwound);
        sys::exit_now(0);
    }
}
