//! Everything the child does after `fork`, ending in `_exit`.
//!
//! Between the callable's return and `_exit` this code allocates nothing,
//! frees nothing and takes no lock: the value is serialized by postcard
//! into [`FrameWriter`], which stages bytes in a static buffer that existed
//! before the fork (and that the parent never touches) and flushes it to
//! the pipe with raw `write` (or to the spill file with `pwrite`) each time
//! it fills. A value starts in the shared page instead ([`ResultWriter`]),
//! and only one that outgrows it moves to the staging buffer. The
//! value is never dropped (`mem::forget`), and the process ends with `_exit`,
//! which runs no destructors or atexit handlers. In a multi-threaded parent
//! another thread may have held the allocator's lock at the moment of the
//! fork; this path never touches it.
//!
//! A panic is not a return: the panic runtime allocates its payload inside
//! the callable, and when `catch_unwind` takes the panic back it frees the
//! unwinder's exception object. Reporting the message after that point
//! again allocates nothing.

use core::cell::{Cell, UnsafeCell};
use core::marker::PhantomData;

use postcard::ser_flavors::Flavor;
use rustix::io::Errno;
use rustix::process::Pid;
use serde::Serialize;

use crate::errors::PANIC_MESSAGE_CAPACITY;
use crate::report::{self, Kind};
use crate::sys;
use crate::transport::{Emit, Out, page};
use crate::wire::{self, Checksum, END_FRAME_LEN, HEADER_LEN, Outcome, copy_short};

/// Bytes of the child's staging buffer: one `DATA` frame of the largest
/// size the parent accepts, with room for `END` after it.
pub(crate) const STAGING_LEN: usize = wire::MAX_DATA_LEN as usize + HEADER_LEN + END_FRAME_LEN;

/// The child's staging buffer: a static, so the parent never allocates or
/// touches it. It lives in `.bss`; its pages stay unmapped in the parent,
/// and a child touches only the pages its result needs (fresh zero pages,
/// with no copy-on-write copy). Each child has its own copy of it, and the
/// parent side of the crate never uses it: in any one process only the
/// child path after the callable returns (through one [`FrameWriter`]) and,
/// under `cfg(fuzzing)`, the single-threaded fuzz harness access it.
///
/// [`FrameWriter`] addresses it through the static itself rather than
/// through a stored pointer: the optimizer can then see that a byte stored
/// into it never lands in the writer's own fields, and keeps the write
/// position in a register across a value's bytes (several times faster for
/// a `Vec<u8>`, which serde serializes one byte at a time).
///
/// The stream's running checksum lives here too, just before the buffer
/// (so on the page the first frame touches anyway): it would make the
/// writer too large to move without a `memcpy` call, and the child would
/// take a page fault for the C library's code to make it.
#[repr(C)]
struct StagingArea {
    checksum: Checksum,
    buf: [u8; STAGING_LEN],
}

struct Staging(UnsafeCell<StagingArea>);

// SAFETY: see above: one writer at a time, in a process of its own.
unsafe impl Sync for Staging {}

/// The staging buffer's first byte.
#[inline]
fn staging() -> *mut u8 {
    // SAFETY: a place projection of the static; nothing is read.
    unsafe { (&raw mut (*STAGING.0.get()).buf).cast() }
}

/// The stream's checksum, beside the staging buffer.
#[inline]
fn checksum() -> *mut Checksum {
    // SAFETY: as in `staging`.
    unsafe { &raw mut (*STAGING.0.get()).checksum }
}

static STAGING: Staging = Staging(UnsafeCell::new(StagingArea {
    checksum: Checksum::ZERO,
    buf: [0; STAGING_LEN],
}));

/// What the child must do before the callable runs.
pub(crate) struct ChildPlan {
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
    /// The shared page a small result may be left in, if the parent made
    /// one ([`SharedPage`](crate::transport::page::SharedPage), mapped
    /// before the fork).
    pub(crate) page: Option<*mut u8>,
    /// Bytes of value the parent accepts. Only a spilling child stops
    /// itself at this cap: nobody reads the spill file while it writes,
    /// so nothing else would bound it. Through a pipe the parent stops
    /// reading at the cap and kills the child.
    pub(crate) cap: u64,
    /// Where the child reports a failure of its own (see
    /// [`crate::report`]): the shared page, or a page mapped for the call.
    pub(crate) report: Option<*mut u8>,
}

/// What [`FrameWriter`] records as its write error when the value passed
/// its cap. No `write` or `pwrite` returns `EMSGSIZE` for a pipe or a
/// regular file, so it cannot be mistaken for a real failure.
const OVER_CAP: Errno = Errno::MSGSIZE;

/// Runs in the child straight after `fork`; never returns. The frames go
/// to `out` (see [`Out`]).
///
/// Marked for inlining, like the small helpers it calls on the way to a
/// small result: every page of code a child runs that its caller's code
/// does not share costs it a page fault (`fork` copies no page tables for
/// code).
#[inline]
#[allow(clippy::too_many_lines)] // one straight path, inlined on purpose (see above)
pub(crate) fn run<F, T>(callable: F, plan: &ChildPlan, out: Out<'_>) -> !
where
    F: FnOnce() -> T,
    T: Serialize,
{
    // Should anything below unwind, the child must still never return into
    // the parent's code.
    let _guard = ExitOnUnwind {
        report: plan.report,
        nonce: plan.nonce,
    };
    panic_hook::entered_child();
    // A failure of the child's own: reported in shared memory, never by an
    // exit code a callable could also use.
    let fail = |kind: Kind| -> ! {
        // SAFETY: `plan.report` is a live shared mapping made before the
        // fork (see `ChildPlan`).
        unsafe { report::write(plan.report, plan.nonce, kind) };
        sys::exit_now(0)
    };

    // Every way out after a frame may have been written: a spilled stream
    // is announced in the shared page, where the parent looks first.
    let leave = |code: i32| -> ! {
        if let (Some(page), Some(len)) = (plan.page, out.spilled()) {
            // SAFETY: `page` is a live shared mapping made before the fork.
            unsafe { page::announce_spill(page, len) };
        }
        sys::exit_now(code)
    };

    // Setting up may fail before the callable runs; the stream says so,
    // and the parent reports that the callable never started.
    let setup_failed = |e: Errno| -> ! {
        let mut detail = [0u8; 7];
        detail[..4].copy_from_slice(&e.raw_os_error().to_le_bytes());
        let sum = wire::side_checksum(plan.nonce, detail, &[]);
        let end = wire::end_frame(Outcome::SetupFailed, detail, 0, sum);
        if out.write_all(&end).is_err() {
            fail(Kind::SetupFailed(e));
        }
        leave(0)
    };
    if plan.own_group {
        sys::lead_own_group();
    }
    match sys::on_parent_death(plan.parent, plan.outlives_thread) {
        Ok(true) => {}
        // The parent is gone: nobody is waiting for anything.
        Ok(false) => sys::exit_now(0),
        Err(e) => setup_failed(e),
    }
    if let Some(limit) = plan.memory_limit {
        if let Err(e) = sys::limit_memory(limit) {
            setup_failed(e);
        }
    }

    let write_error = Cell::new(None);
    // The running checksum of a value encoded into the shared page (see
    // `page::Writer`).
    let mut checksum = Checksum::new(plan.nonce);

    let sent = catch(|| {
        // Never dropped, not even if serializing it panics: dropping could
        // free memory.
        let value = core::mem::ManuallyDrop::new(callable());
        // SAFETY: `page` is a live shared mapping made before the fork, and
        // this is the one writer of the staging buffer in this process (see
        // `Staging`), made after the callable returned.
        let writer = unsafe {
            ResultWriter::new(
                plan.page,
                &mut checksum,
                out,
                plan.nonce,
                plan.cap,
                &write_error,
            )
        };
        serialize(&*value, writer)
    });

    let end = match sent {
        // In the page, length word and all.
        Ok(Ok(None)) => leave(0),
        Ok(Ok(Some(mut done))) => {
            // The last DATA frame and END leave in one write, so the parent
            // is woken once for them.
            if let Err(e) = out.write_all(done.with_end()) {
                fail(Kind::WriteFailed(e));
            }
            leave(0);
        }
        // Past the cap: the parent has more than it accepts already, and
        // reports the result as too large.
        Ok(Err(_)) if write_error.get() == Some(OVER_CAP) => leave(0),
        Ok(Err(_)) if write_error.get().is_some() => {
            fail(Kind::WriteFailed(write_error.get().unwrap_or(Errno::IO)))
        }
        Ok(Err(_)) => {
            // The serializer's message (a user's `custom` text) goes in a
            // message frame before END, as a panic's does.
            let text = crate::capture::ser_message();
            let text = text.as_bytes();
            if !text.is_empty() {
                #[allow(clippy::cast_possible_truncation)] // at most ERROR_TEXT_CAPACITY
                let header = wire::panic_header(text.len() as u32);
                if let Err(e) = out.write_all(&header).and_then(|()| out.write_all(text)) {
                    fail(Kind::WriteFailed(e));
                }
            }
            let sum = wire::side_checksum(plan.nonce, [0; 7], text);
            wire::end_frame(Outcome::SerializeFailed, [0; 7], 0, sum)
        }
        Err(message) => {
            let text = truncate(message.as_bytes());
            #[allow(clippy::cast_possible_truncation)] // at most PANIC_MESSAGE_CAPACITY
            let header = wire::panic_header(text.len() as u32);
            if let Err(e) = out.write_all(&header).and_then(|()| out.write_all(text)) {
                fail(Kind::WriteFailed(e));
            }
            let sum = wire::side_checksum(plan.nonce, [0; 7], text);
            wire::end_frame(Outcome::Panicked, [0; 7], 0, sum)
        }
    };
    if let Err(e) = out.write_all(&end) {
        fail(Kind::WriteFailed(e));
    }
    leave(0)
}

/// The child's encoder. A value starts in the shared page ([`page::Writer`]);
/// on the first write that would not fit there, the bytes so far move to
/// the staging buffer and a [`FrameWriter`] carries on from them. The value
/// is encoded once, whatever its size: a `Serialize` impl may be good for
/// one call only.
///
/// The bytes that move are read back from the shared page, which other
/// processes map too; they are checked against the checksum taken as they
/// were written before they count, and a mismatch fails the write.
enum ResultWriter<'a> {
    /// Still in the page, with what a [`FrameWriter`] will need.
    Page {
        page: page::Writer<'a>,
        out: Out<'a>,
        nonce: u64,
        cap: u64,
        write_error: &'a Cell<Option<Errno>>,
    },
    /// In the staging buffer.
    Frames(FrameWriter<'a, Out<'a>>),
    /// Between the two, or after a failed move.
    Moving,
}

impl<'a> ResultWriter<'a> {
    /// Starts in `page` if there is one (`checksum`, seeded with `nonce`,
    /// then follows it), in the staging buffer otherwise.
    ///
    /// # Safety
    ///
    /// `page`, if given, must be a live shared mapping of
    /// [`SharedMapping::LEN`](sys::SharedMapping::LEN) bytes; no other reference
    /// to, or writer of, the staging buffer may exist while this writer or
    /// its [`Finished`] lives (see [`Staging`]).
    #[inline]
    unsafe fn new(
        page: Option<*mut u8>,
        checksum: &'a mut Checksum,
        out: Out<'a>,
        nonce: u64,
        cap: u64,
        write_error: &'a Cell<Option<Errno>>,
    ) -> Self {
        match page {
            Some(page) => Self::Page {
                // SAFETY: the caller's promise about `page`.
                page: unsafe { page::Writer::new(page, checksum) },
                out,
                nonce,
                cap,
                write_error,
            },
            // SAFETY: the caller's promise about the staging buffer.
            None => Self::Frames(unsafe { frame_writer(out, nonce, cap, write_error) }),
        }
    }

    /// Moves the page's bytes to a new [`FrameWriter`]. Cold: at most once
    /// per value, and only for one larger than the page.
    #[cold]
    #[inline(never)]
    fn leave_page(&mut self) -> postcard::Result<()> {
        let Self::Page {
            page,
            out,
            nonce,
            cap,
            write_error,
        } = core::mem::replace(self, Self::Moving)
        else {
            return Err(postcard::Error::SerializeBufferFull);
        };
        // SAFETY: the caller of `new` made this the staging buffer's one
        // writer, and this is the only FrameWriter it makes.
        let mut frames = unsafe { frame_writer(out, nonce, cap, write_error) };
        let mut check = Checksum::new(nonce);
        let mut chunk = [0u8; 256];
        let mut at = 0;
        while at < page.filled {
            let n = chunk.len().min(page.filled - at);
            for (i, slot) in chunk[..n].iter_mut().enumerate() {
                *slot = page.body(at + i);
            }
            check.update(&chunk[..n]);
            frames.try_extend(&chunk[..n])?;
            at += n;
        }
        if check.finish() != page.checksum.finish() {
            // Something else wrote into the page meanwhile.
            write_error.set(Some(Errno::BADMSG));
            return Err(postcard::Error::SerializeBufferFull);
        }
        *self = Self::Frames(frames);
        Ok(())
    }

    #[inline]
    fn page_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if let Self::Page { page, .. } = self {
            if page.fits(data) {
                return page.try_extend(data);
            }
        }
        self.leave_page()?;
        match self {
            Self::Frames(frames) => frames.try_extend(data),
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }
}

// Small enough that moving it (into postcard's serializer) is a few
// register moves, not a `memcpy` call: the child would take a page fault
// for the C library's code.
const _: () = assert!(core::mem::size_of::<ResultWriter<'static>>() <= 128);

/// A [`FrameWriter`] through the whole staging buffer, stopping at `cap`.
///
/// # Safety
///
/// As for [`FrameWriter::new`].
#[inline]
unsafe fn frame_writer<'a>(
    out: Out<'a>,
    nonce: u64,
    cap: u64,
    write_error: &'a Cell<Option<Errno>>,
) -> FrameWriter<'a, Out<'a>> {
    // SAFETY: the caller's promise.
    unsafe { FrameWriter::new(out, STAGING_LEN, nonce, write_error) }.capped_at(cap)
}

impl<'a> Flavor for ResultWriter<'a> {
    /// `None`: the value is in the shared page, length word and all.
    type Output = Option<Finished<'a, Out<'a>>>;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        match self {
            Self::Frames(frames) => frames.try_push(byte),
            _ => self.page_extend(&[byte]),
        }
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match self {
            Self::Frames(frames) => frames.try_extend(data),
            _ => self.page_extend(data),
        }
    }

    #[inline]
    fn finalize(self) -> postcard::Result<Self::Output> {
        match self {
            Self::Frames(frames) => frames.finalize().map(Some),
            Self::Page { page, .. } => page.finalize().map(|()| None),
            Self::Moving => Err(postcard::Error::SerializeBufferFull),
        }
    }
}

/// Serializes `value` into `writer`: a `Vec<u8>` or `String` as one run of
/// bytes (see [`crate::bytes`]), anything else through its `Serialize`.
///
/// What `postcard::serialize_with_flavor` does, written out so that it is
/// inlined into the child's path rather than left on a page of code of its
/// own (see [`run`]).
#[inline]
pub(crate) fn serialize<T: Serialize, W: Flavor>(
    value: &T,
    writer: W,
) -> postcard::Result<W::Output> {
    let mut serializer = postcard::Serializer { output: writer };
    #[cfg(feature = "alloc")]
    if let Some(bytes) = crate::bytes::as_bytes(value) {
        crate::bytes::Wholesale(bytes).serialize(&mut serializer)?;
        return finish(serializer);
    }
    crate::capture::serialize(value, &mut serializer)?;
    finish(serializer)
}

#[inline]
fn finish<W: Flavor>(serializer: postcard::Serializer<W>) -> postcard::Result<W::Output> {
    serializer
        .output
        .finalize()
        .map_err(|_| postcard::Error::SerializeBufferFull)
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

/// The process-wide panic hook that keeps a panicking callable from
/// blocking in the child.
///
/// Rust runs the panic hook before it unwinds, and the default hook takes a
/// process-wide lock (std's backtrace lock, also held while any thread
/// captures, resolves or prints a backtrace, or prints its own panic). If
/// another thread of the parent held that lock at the moment of the fork,
/// it is held for ever in the child, which has no such thread: a callable
/// that panics there would block inside the hook. So before its first fork
/// the crate wraps whatever hook the process has in one that does nothing
/// in an isolated child and calls the wrapped hook everywhere else. The
/// panic's message still reaches the parent, from the unwind payload, as
/// [`CallablePanicked`](crate::errors::CallableExecutedError::CallablePanicked).
#[cfg(feature = "std")]
pub(crate) mod panic_hook {
    use core::cell::Cell;

    std::thread_local! {
        /// Set in a child forked by the crate, on its one thread, before
        /// its callable runs; inherited by whatever that thread forks.
        ///
        /// A thread-local rather than a static, measured: the child writes
        /// it on a page that `fork` itself already made the child copy (the
        /// thread's TLS block, beside the thread control block that the C
        /// library updates in the child), where a static cost every call
        /// one more page fault. The price: threads that the callable
        /// starts in the child run the wrapped hook.
        static IN_CHILD: Cell<bool> = const { Cell::new(false) };
    }

    /// In the parent, before a fork: wraps the process's panic hook once.
    /// A hook installed later replaces the wrapper (and then runs in
    /// children too). Skipped while this thread panics, where std forbids
    /// changing the hook: a call made from a destructor during unwinding.
    #[inline]
    pub(crate) fn install() {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        if INSTALLED.is_completed() || std::thread::panicking() {
            return;
        }
        INSTALLED.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(std::boxed::Box::new(move |info| {
                if !IN_CHILD.try_with(Cell::get).unwrap_or(false) {
                    previous(info);
                }
            }));
        });
    }

    /// In the child, straight after the fork.
    #[inline]
    pub(crate) fn entered_child() {
        let _ = IN_CHILD.try_with(|c| c.set(true));
    }
}

/// Without `std` there is no panic hook to wrap: a panic goes to the
/// program's panic handler.
#[cfg(not(feature = "std"))]
pub(crate) mod panic_hook {
    #[inline]
    pub(crate) fn install() {}
    #[inline]
    pub(crate) fn entered_child() {}
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
    report: Option<*mut u8>,
    nonce: u64,
}

impl Drop for ExitOnUnwind {
    fn drop(&mut self) {
        // SAFETY: as for `fail` in `run`.
        unsafe { report::write(self.report, self.nonce, Kind::Unwound) };
        sys::exit_now(0);
    }
}

/// A postcard [`Flavor`] that frames the encoding as `DATA` frames and
/// streams them to the pipe through a fixed staging buffer.
///
/// The first [`HEADER_LEN`] bytes of the buffer are kept for the frame
/// header, so each flush is a single `write` of header and body together.
pub(crate) struct FrameWriter<'a, O: Emit> {
    out: O,
    /// Where a flush happens: the end of the buffer less room for `END`,
    /// so the last frame and `END` can leave together.
    limit: usize,
    spilled: bool,
    filled: usize,
    sent: u64,
    /// Once more than this many `DATA` bytes are out, the writer stops.
    cap: u64,
    write_error: &'a Cell<Option<Errno>>,
}

impl<'a, O: Emit> FrameWriter<'a, O> {
    /// A writer staging through the first `len` bytes of the staging
    /// buffer (clamped to fit a header, a byte and an `END` frame, and to
    /// the buffer's size).
    ///
    /// # Safety
    ///
    /// No other reference to, or writer of, the staging buffer may exist
    /// while this writer or its [`Finished`] lives (see [`Staging`]).
    pub(crate) unsafe fn new(
        out: O,
        len: usize,
        nonce: u64,
        write_error: &'a Cell<Option<Errno>>,
    ) -> Self {
        let len = len.clamp(HEADER_LEN + 1 + END_FRAME_LEN, STAGING_LEN);
        // SAFETY: this writer is the staging area's only user (see above).
        unsafe { checksum().write(Checksum::new(nonce)) };
        Self {
            out,
            limit: len - END_FRAME_LEN,
            spilled: false,
            filled: HEADER_LEN,
            sent: 0,
            cap: u64::MAX,
            write_error,
        }
    }

    /// Stops the encoding, with [`OVER_CAP`] as the write error, once more
    /// than `cap` bytes of value have been written out: enough for the
    /// parent to refuse the result, and no more.
    pub(crate) fn capped_at(mut self, cap: u64) -> Self {
        self.cap = cap;
        self
    }

    /// Seals the staged bytes as a `DATA` frame (header written, checksum
    /// and count updated). Returns the frame's length, 0 if nothing was
    /// staged.
    fn seal(&mut self) -> usize {
        let body = self.filled - HEADER_LEN;
        if body == 0 {
            return 0;
        }
        #[allow(clippy::cast_possible_truncation)] // at most MAX_DATA_LEN
        let header = wire::data_header(body as u32);
        // SAFETY: this writer is the staging buffer's only user, and
        // `filled <= limit < STAGING_LEN`.
        let frame = unsafe {
            core::ptr::copy_nonoverlapping(header.as_ptr(), staging(), HEADER_LEN);
            core::slice::from_raw_parts(staging(), self.filled)
        };
        // SAFETY: as above; the checksum and the frame do not overlap.
        unsafe { (*checksum()).update(&frame[HEADER_LEN..]) };
        self.sent += body as u64;
        self.filled
    }

    /// Sends the staged frame. Cold: it runs once per staging buffer, while
    /// `try_push` runs once per byte and must stay small enough to inline.
    #[cold]
    #[inline(never)]
    fn flush(&mut self) -> postcard::Result<()> {
        if !self.spilled {
            self.spilled = true;
            self.out.spilling();
        }
        let frame = self.seal();
        // SAFETY: as in `seal`.
        let bytes = unsafe { core::slice::from_raw_parts(staging(), frame) };
        if let Err(e) = self.out.write_all(bytes) {
            self.write_error.set(Some(e));
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.filled = HEADER_LEN;
        if self.sent > self.cap {
            self.write_error.set(Some(OVER_CAP));
            return Err(postcard::Error::SerializeBufferFull);
        }
        Ok(())
    }
}

/// A finished encoding: everything sent but the last `DATA` frame, which
/// waits in the staging buffer with room for `END` after it.
pub(crate) struct Finished<'a, O> {
    /// Total `DATA` bytes, the unsent frame's included.
    pub(crate) length: u64,
    /// Checksum of all `DATA` bytes.
    pub(crate) checksum: u64,
    /// Where the earlier frames went.
    #[cfg_attr(not(all(fuzzing, feature = "alloc")), allow(dead_code))]
    pub(crate) out: O,
    pending: usize,
    _writer: PhantomData<&'a ()>,
}

impl<O> Finished<'_, O> {
    /// The unsent frame followed by the `END` frame for a value, ready to
    /// be written in one go.
    pub(crate) fn with_end(&mut self) -> &[u8] {
        let end = wire::end_frame(Outcome::Value, [0; 7], self.length, self.checksum);
        // SAFETY: the writer's exclusive use of the staging buffer passed
        // to `self`; `pending + END_FRAME_LEN <= STAGING_LEN` (the writer
        // kept that room free).
        unsafe {
            core::ptr::copy_nonoverlapping(
                end.as_ptr(),
                staging().add(self.pending),
                END_FRAME_LEN,
            );
            core::slice::from_raw_parts(staging(), self.pending + END_FRAME_LEN)
        }
    }

    /// The unsent frame followed by a stream's `ITEM` frame, ready to be
    /// written in one go.
    #[cfg(feature = "alloc")]
    #[inline]
    pub(crate) fn with_item(&mut self) -> &[u8] {
        let item = wire::item_frame(self.length, self.checksum);
        // SAFETY: as in `with_end`; an `ITEM` frame is shorter than `END`.
        unsafe {
            core::ptr::copy_nonoverlapping(
                item.as_ptr(),
                staging().add(self.pending),
                wire::ITEM_FRAME_LEN,
            );
            core::slice::from_raw_parts(staging(), self.pending + wire::ITEM_FRAME_LEN)
        }
    }
}

impl<'a, O: Emit> Flavor for FrameWriter<'a, O> {
    /// The finished encoding.
    type Output = Finished<'a, O>;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.filled == self.limit {
            self.flush()?;
        }
        // SAFETY: here `filled < limit < STAGING_LEN` (`flush` resets
        // `filled` to HEADER_LEN, which is below `limit`), and this writer
        // is the buffer's only user.
        unsafe { staging().add(self.filled).write(byte) };
        self.filled += 1;
        Ok(())
    }

    /// Short runs (varints, floats, short strings: most of a structured
    /// value) are copied inline with a few unaligned loads and stores;
    /// calling `memcpy` for each cost more than the copy itself.
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let n = data.len();
        if n <= 16 && n <= self.limit - self.filled {
            // SAFETY: `filled + n <= limit < STAGING_LEN`; only user.
            unsafe { copy_short(data, staging().add(self.filled)) };
            self.filled += n;
            return Ok(());
        }
        self.extend_long(data)
    }

    fn finalize(mut self) -> postcard::Result<Self::Output> {
        let pending = self.seal();
        Ok(Finished {
            length: self.sent,
            // SAFETY: as in `seal`.
            checksum: unsafe { (*checksum()).finish() },
            out: self.out,
            pending,
            _writer: PhantomData,
        })
    }
}

impl<O: Emit> FrameWriter<'_, O> {
    /// `try_extend` for runs longer than 16 bytes or crossing a flush.
    fn extend_long(&mut self, mut data: &[u8]) -> postcard::Result<()> {
        while !data.is_empty() {
            if self.filled == self.limit {
                self.flush()?;
            }
            let take = (self.limit - self.filled).min(data.len());
            // SAFETY: `filled + take <= limit < STAGING_LEN`; only user.
            unsafe {
                core::ptr::copy_nonoverlapping(data.as_ptr(), staging().add(self.filled), take);
            };
            self.filled += take;
            data = &data[take..];
        }
        Ok(())
    }
}
