//! Everything the child does after `fork`, ending in `_exit`.
//!
//! Between the callable's return and `_exit` this code allocates nothing,
//! frees nothing and takes no lock: the value is serialized by postcard
//! into [`FrameWriter`], which stages bytes in a buffer allocated before the
//! fork and flushes it to the pipe with raw `write` each time it fills. The
//! value is never dropped (`mem::forget`), and the process ends with `_exit`,
//! which runs no destructors or atexit handlers. In a multi-threaded parent
//! another thread may have held the allocator's lock at the moment of the
//! fork; this path never touches it.
//!
//! A panic is not a return: the panic runtime allocates its payload inside
//! the callable, and when `catch_unwind` takes the panic back it frees the
//! unwinder's exception object. Reporting the message after that point
//! again allocates nothing.

use core::cell::Cell;

use postcard::ser_flavors::Flavor;
use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::process::Pid;
use serde::Serialize;

use crate::errors::{CHILD_EXIT_PIPE_WRITE_FAILED, PANIC_MESSAGE_CAPACITY};
use crate::sys;
use crate::wire::{self, Checksum, HEADER_LEN, Outcome};

/// The exit code of a child that ended by a path that should not exist
/// (unwinding past the crate's own code). Seen by the parent as
/// [`UnexpectedChildExitStatus`](crate::errors::CallableStatusUnknownError::UnexpectedChildExitStatus).
const CHILD_EXIT_UNWOUND: i32 = 0x70;

/// Smallest staging area worth using; a smaller caller buffer is replaced
/// by one on the child's stack.
const MIN_STAGING: usize = 256;

/// What the child must do before the callable runs.
pub(crate) struct ChildPlan {
    /// The parent's pid, to notice if it is already gone.
    pub(crate) parent: Pid,
    /// Bytes of address space the callable may add, if limited.
    pub(crate) memory_limit: Option<u64>,
    /// Seeds the stream's checksum.
    pub(crate) nonce: u64,
}

/// Runs in the child straight after `fork`; never returns.
pub(crate) fn run<F, T>(
    callable: F,
    plan: &ChildPlan,
    pipe: BorrowedFd<'_>,
    staging: &mut [u8],
) -> !
where
    F: FnOnce() -> T,
    T: Serialize,
{
    // Should anything below unwind, the child must still never return into
    // the parent's code.
    let _guard = ExitOnUnwind;

    if !sys::on_parent_death(plan.parent) {
        sys::exit_now(0);
    }
    if let Some(limit) = plan.memory_limit {
        if let Err(e) = sys::limit_memory(limit) {
            // The callable has not run, and says so in the stream.
            let mut detail = [0u8; 7];
            detail[..4].copy_from_slice(&e.raw_os_error().to_le_bytes());
            let end = wire::end_frame(Outcome::SetupFailed, detail, 0, 0);
            let _ = sys::write_all(pipe, &end);
            sys::exit_now(0);
        }
    }

    let mut stack_staging = [0u8; MIN_STAGING];
    let staging: &mut [u8] = if staging.len() >= MIN_STAGING {
        // Chunk lengths travel as u32.
        let cap = staging.len().min(u32::MAX as usize);
        &mut staging[..cap]
    } else {
        &mut stack_staging
    };
    let write_error = Cell::new(None);

    let sent = catch(|| {
        let value = callable();
        let sent = postcard::serialize_with_flavor(
            &value,
            FrameWriter::new(pipe, staging, plan.nonce, &write_error),
        );
        // Dropping the value could free memory: leave it to `_exit`.
        core::mem::forget(value);
        sent
    });

    let end = match sent {
        Ok(Ok((length, checksum, _))) => wire::end_frame(Outcome::Value, [0; 7], length, checksum),
        Ok(Err(_)) if write_error.get().is_some() => sys::exit_now(CHILD_EXIT_PIPE_WRITE_FAILED),
        Ok(Err(e)) => {
            let mut detail = [0u8; 7];
            // Every postcard::Error encodes in one byte; failing that, the
            // parent decodes the zeros as the first variant.
            let _ = postcard::to_slice(&e, &mut detail);
            wire::end_frame(Outcome::SerializeFailed, detail, 0, 0)
        }
        Err(message) => {
            let text = truncate(message.as_bytes());
            #[allow(clippy::cast_possible_truncation)] // at most PANIC_MESSAGE_CAPACITY
            let header = wire::panic_header(text.len() as u32);
            if sys::write_all(pipe, &header).is_err() || sys::write_all(pipe, text).is_err() {
                sys::exit_now(CHILD_EXIT_PIPE_WRITE_FAILED);
            }
            wire::end_frame(Outcome::Panicked, [0; 7], 0, 0)
        }
    };
    if sys::write_all(pipe, &end).is_err() {
        sys::exit_now(CHILD_EXIT_PIPE_WRITE_FAILED);
    }
    sys::exit_now(0)
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

struct ExitOnUnwind;

impl Drop for ExitOnUnwind {
    fn drop(&mut self) {
        sys::exit_now(CHILD_EXIT_UNWOUND);
    }
}

/// Where [`FrameWriter`] sends its frames: the pipe in the child, memory in
/// the fuzz harness.
pub(crate) trait FrameOut {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Errno>;
}

impl FrameOut for BorrowedFd<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        sys::write_all(*self, bytes)
    }
}

#[cfg(all(fuzzing, feature = "alloc"))]
impl FrameOut for alloc::vec::Vec<u8> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// A postcard [`Flavor`] that frames the encoding as `DATA` frames and
/// streams them to the pipe through a fixed staging buffer.
///
/// The first [`HEADER_LEN`] bytes of the buffer are kept for the frame
/// header, so each flush is a single `write` of header and body together.
pub(crate) struct FrameWriter<'a, O: FrameOut> {
    out: O,
    buf: &'a mut [u8],
    filled: usize,
    sent: u64,
    checksum: Checksum,
    write_error: &'a Cell<Option<Errno>>,
}

impl<'a, O: FrameOut> FrameWriter<'a, O> {
    /// `buf` must be longer than [`HEADER_LEN`].
    pub(crate) fn new(
        out: O,
        buf: &'a mut [u8],
        nonce: u64,
        write_error: &'a Cell<Option<Errno>>,
    ) -> Self {
        Self {
            out,
            buf,
            filled: HEADER_LEN,
            sent: 0,
            checksum: Checksum::new(nonce),
            write_error,
        }
    }

    fn flush(&mut self) -> postcard::Result<()> {
        let body = self.filled - HEADER_LEN;
        if body == 0 {
            return Ok(());
        }
        #[allow(clippy::cast_possible_truncation)] // the buffer is capped at u32::MAX
        self.buf[..HEADER_LEN].copy_from_slice(&wire::data_header(body as u32));
        self.checksum.update(&self.buf[HEADER_LEN..self.filled]);
        if let Err(e) = self.out.write_all(&self.buf[..self.filled]) {
            self.write_error.set(Some(e));
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.sent += body as u64;
        self.filled = HEADER_LEN;
        Ok(())
    }
}

impl<O: FrameOut> Flavor for FrameWriter<'_, O> {
    /// Total `DATA` bytes sent, their checksum, and the destination.
    type Output = (u64, u64, O);

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.filled == self.buf.len() {
            self.flush()?;
        }
        self.buf[self.filled] = byte;
        self.filled += 1;
        Ok(())
    }

    fn try_extend(&mut self, mut data: &[u8]) -> postcard::Result<()> {
        while !data.is_empty() {
            if self.filled == self.buf.len() {
                self.flush()?;
            }
            let take = (self.buf.len() - self.filled).min(data.len());
            self.buf[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
        }
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<Self::Output> {
        self.flush()?;
        Ok((self.sent, self.checksum.finish(), self.out))
    }
}
