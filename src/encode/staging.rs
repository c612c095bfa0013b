//! The staging buffer: a [`Store`] in a static that existed before the
//! fork, flushing each full frame to the route's way out ([`Emit`]).

use core::cell::UnsafeCell;

use rustix::io::Errno;

use super::frames::Store;
use crate::transport::Emit;
use crate::wire::{self, Checksum, END_FRAME_LEN, HEADER_LEN, copy_short};

/// Bytes of the child's staging buffer: one `DATA` frame of the largest
/// size the parent accepts, with room for `END` after it.
pub(crate) const STAGING_LEN: usize = wire::MAX_DATA_LEN as usize + HEADER_LEN + END_FRAME_LEN;

/// The child's staging buffer: a static, so the parent never allocates or
/// touches it. It lives in `.bss`; its pages stay unmapped in the parent,
/// and a child touches only the pages its result needs (fresh zero pages,
/// with no copy-on-write copy). Each child has its own copy of it, and the
/// parent side of the crate never uses it: in any one process only the
/// child path after the callable returns (through one [`Staging`]) and,
/// under `cfg(fuzzing)`, the single-threaded fuzz harness access it.
///
/// [`Staging`] addresses it through the static itself rather than through
/// a stored pointer: the optimizer can then see that a byte stored into it
/// never lands in the writer's own fields, and keeps the write position in
/// a register across a value's bytes (several times faster for a
/// `Vec<u8>`, which serde serializes one byte at a time).
///
/// The stream's running checksum lives here too, just before the buffer
/// (so on the page the first frame touches anyway): it would make the
/// writer too large to move without a `memcpy` call (ARCHITECTURE.md,
/// "Page faults after fork").
#[repr(C)]
struct StagingArea {
    checksum: Checksum,
    buf: [u8; STAGING_LEN],
}

struct Shared(UnsafeCell<StagingArea>);

// SAFETY: see above: one writer at a time, in a process of its own.
unsafe impl Sync for Shared {}

static STAGING: Shared = Shared(UnsafeCell::new(StagingArea {
    checksum: Checksum::ZERO,
    buf: [0; STAGING_LEN],
}));

/// The staging buffer's first byte.
#[inline]
fn buf() -> *mut u8 {
    // SAFETY: a place projection of the static; nothing is read.
    unsafe { (&raw mut (*STAGING.0.get()).buf).cast() }
}

/// The stream's checksum, beside the staging buffer.
#[inline]
fn checksum() -> *mut Checksum {
    // SAFETY: as in `buf`.
    unsafe { &raw mut (*STAGING.0.get()).checksum }
}

/// The staging buffer as a [`Store`], sending frames to `out`.
pub(crate) struct Staging<O> {
    out: O,
    len: usize,
}

impl<O: Emit> Staging<O> {
    /// The first `len` bytes of the staging buffer (clamped to fit a
    /// header, a byte and an `END` frame, and to the buffer's size), with
    /// a fresh checksum seeded by `nonce`.
    ///
    /// # Safety
    ///
    /// No other reference to, or user of, the staging buffer may exist
    /// while this store lives (see [`STAGING`]).
    #[inline]
    pub(crate) unsafe fn new(out: O, len: usize, nonce: u64) -> Self {
        // SAFETY: this store is the staging area's only user (see above).
        unsafe { checksum().write(Checksum::new(nonce)) };
        Self {
            out,
            len: len.clamp(HEADER_LEN + 1 + END_FRAME_LEN, STAGING_LEN),
        }
    }

    /// The first `len` bytes of the buffer: frames ready to be sent.
    #[inline]
    pub(crate) fn frames(&self, len: usize) -> &[u8] {
        // SAFETY: this store is the buffer's only user, and every caller
        // passes a length it stored (at most `self.len`).
        unsafe { core::slice::from_raw_parts(buf(), len.min(self.len)) }
    }

    /// Where the earlier frames went.
    #[cfg_attr(not(all(fuzzing, feature = "alloc")), allow(dead_code))]
    pub(crate) fn out(&mut self) -> &mut O {
        &mut self.out
    }
}

// SAFETY (every raw access below): `Staging::new`'s caller made this store
// the buffer's only user, and `FrameWriter` stores only below `len`.
impl<O: Emit> Store for Staging<O> {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn put_byte(&mut self, at: usize, byte: u8) {
        unsafe { buf().add(at).write(byte) };
    }

    /// A few unaligned loads and stores: calling `memcpy` for each short
    /// run cost more than the copy itself.
    #[inline]
    fn put_short(&mut self, at: usize, bytes: &[u8]) {
        unsafe { copy_short(bytes, buf().add(at)) };
    }

    #[inline]
    fn put_long(&mut self, at: usize, bytes: &[u8]) {
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), buf().add(at), bytes.len()) };
    }

    #[inline]
    fn put_framing(&mut self, at: usize, bytes: &[u8]) {
        self.put_long(at, bytes);
    }

    #[inline]
    fn sealed(&mut self, end: usize) {
        // The checksum and the frame do not overlap.
        unsafe { (*checksum()).update(&self.frames(end)[HEADER_LEN..]) };
    }

    #[inline]
    fn send(&mut self, len: usize) -> Result<(), Errno> {
        // SAFETY: as above; `len` was stored.
        let frame = unsafe { core::slice::from_raw_parts(buf(), len) };
        self.out.write_all(frame)
    }

    fn spilling(&mut self) {
        self.out.spilling();
    }

    #[inline]
    fn checksum(&self) -> u64 {
        unsafe { (*checksum()).finish() }
    }
}
