//! How a result travels from the child to the parent: one module per
//! transport, each with a child side (how frames leave, [`Emit`]) and a
//! parent side (how they are collected, [`Collect`]).
//!
//! | transport | child side | parent side | used by |
//! | --- | --- | --- | --- |
//! | [`page`] | encodes a small value straight into the thread's shared page | copies the page out after the exit | blocking calls |
//! | [`pipe`] | `write`s frames as the staging buffer fills | reads while the child runs | spawned handles; blocking calls after a large result, or without a spill file |
//! | [`spill`] (Linux, Android) | `pwrite`s frames into the thread's memfd | reads the file after the exit | blocking calls whose value outgrows the page |
//!
//! Which transports a call gets is decided in one place,
//! [`plan`](crate::call::plan). The rules below hold whichever carried the
//! value, so a user can tell the transports apart only by speed:
//!
//! - **The stream decides.** A value is complete when its `END` frame
//!   arrives and verifies (see [`crate::wire`]), never at end-of-file;
//!   every byte is untrusted and goes through the one decoder.
//! - **The parent enforces the cap.** Every transport reads into the
//!   call's [`Sink`], which refuses bytes past the limit: the parent's
//!   memory is bounded whatever the child does. (The spill file's child
//!   also stops itself past the cap, to bound the file; that is a saving,
//!   not the rule.)
//! - **A child found ended keeps its outcome.** What it left is read after
//!   its exit, deadline or not, bounded by what it can have left: the
//!   pipe's capacity, the page, the file's size when reading began.
//! - **Nothing kept is trusted by number.** The spill file is checked by
//!   identity before every use (see [`crate::sys::KeptFile`]).

use core::mem::MaybeUninit;

use rustix::io::Errno;

use crate::sink::Sink;
use crate::wire::{DecodeError, Decoder};

pub(crate) mod page;
pub(crate) mod pipe;
pub(crate) mod spill;

/// The child side of a transport: where the staging buffer
/// ([`Staging`](crate::encode::Staging))
/// sends its frames.
pub(crate) trait Emit {
    /// Writes all of `bytes`, or fails with the errno that stopped it.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Errno>;

    /// Called once, when the result turns out larger than the staging
    /// buffer.
    fn spilling(&mut self) {}
}

/// The parent side of a transport: moves what the child left into the
/// call's [`Feed`].
pub(crate) trait Collect {
    /// Collects what is there now. `ended`: the child has exited, so
    /// whatever it left is all there will be (read it, bounded by what a
    /// child that has ended can have left). Returns whether this
    /// transport has nothing more to give.
    fn collect<S: Sink>(&mut self, feed: &mut Feed<'_, S>, ended: bool) -> bool;
}

/// Where collected bytes go: the call's decoder and sink, and where a
/// failed read is recorded.
pub(crate) struct Feed<'a, S> {
    pub(crate) decoder: &'a mut Decoder,
    pub(crate) sink: &'a mut S,
    pub(crate) read_error: &'a mut Option<Errno>,
}

/// How a round of [`Feed::pump`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pumped {
    /// The stream is complete or rejected, or the source reached its end
    /// or failed: nothing more will come from it.
    Done,
    /// The source has nothing more for now.
    Later,
}

impl<S: Sink> Feed<'_, S> {
    /// Feeds bytes already in memory (a copy of the shared page).
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        if let Err(e) = self.decoder.feed(bytes, self.sink) {
            self.decoder.reject(e);
        }
    }

    /// Feeds the decoder from `read` until the stream is finished or
    /// rejected, or `read` reports end-of-file (`Some(0)`), an error, or
    /// nothing more for now (`None`). `read` fills the buffer it is
    /// given, from the front. The value's bytes are read straight into the
    /// sink; only frame headers and small results pass through a scratch
    /// buffer.
    pub(crate) fn pump(
        &mut self,
        read: impl FnMut(&mut [MaybeUninit<u8>]) -> Result<Option<usize>, Errno>,
    ) -> Pumped {
        if S::STREAM {
            // A stream's many small items come in far fewer reads through
            // a larger buffer; its stack pages are faulted in once per
            // stream, not once per item.
            self.pump_through(&mut [MaybeUninit::<u8>::uninit(); 16 << 10], read)
        } else {
            // Small: every stack page the parent writes after a fork is a
            // fault (ARCHITECTURE.md, "Page faults after fork").
            self.pump_through(&mut [MaybeUninit::<u8>::uninit(); 512], read)
        }
    }

    /// [`Self::pump`], with frame headers and small values read through
    /// `scratch`.
    #[inline]
    fn pump_through(
        &mut self,
        scratch: &mut [MaybeUninit<u8>],
        mut read: impl FnMut(&mut [MaybeUninit<u8>]) -> Result<Option<usize>, Errno>,
    ) -> Pumped {
        while !self.decoder.is_finished() {
            if self.sink.paused() {
                return Pumped::Later;
            }
            let data_left = self.decoder.data_remaining();
            let got = if data_left > 0 {
                let spare = match self.sink.spare(data_left) {
                    Ok(s) => s,
                    Err(e) => {
                        self.decoder.reject(e);
                        return Pumped::Done;
                    }
                };
                match read(spare) {
                    Ok(Some(0)) => None,
                    Ok(Some(n)) => {
                        // SAFETY: `read` initialized the first `n` bytes.
                        let bytes = unsafe { self.sink.commit(n) };
                        self.decoder.data_appended(bytes);
                        Some(n)
                    }
                    Ok(None) => return Pumped::Later,
                    Err(e) => {
                        *self.read_error = Some(e);
                        None
                    }
                }
            } else {
                match read(scratch) {
                    Ok(Some(0)) => None,
                    Ok(Some(n)) => {
                        // SAFETY: `read` initialized the first `n` bytes.
                        let got = unsafe {
                            core::slice::from_raw_parts(scratch.as_ptr().cast::<u8>(), n)
                        };
                        if let Err(e) = self.decoder.feed(got, self.sink) {
                            self.decoder.reject(e);
                            return Pumped::Done;
                        }
                        Some(n)
                    }
                    Ok(None) => return Pumped::Later,
                    Err(e) => {
                        *self.read_error = Some(e);
                        None
                    }
                }
            };
            if got.is_none() {
                // End-of-file or a read error: nothing more will come.
                break;
            }
        }
        Pumped::Done
    }

    /// Whether the stream is complete or rejected.
    pub(crate) fn finished(&self) -> bool {
        self.decoder.is_finished()
    }

    /// Whether the stream was rejected (corrupt, or past the cap).
    #[allow(dead_code)]
    pub(crate) fn rejected(&self) -> Option<DecodeError> {
        self.decoder.failure()
    }
}

/// The child's way out for its frames: the route's streaming transport,
/// the pipe, or the page's overflow, the spill file. Either one checks,
/// before every write, that its descriptor still names the file the
/// parent made (a callable may close it and open something else under the
/// same number).
#[derive(Clone, Copy)]
pub(crate) enum Out<'a> {
    Pipe(pipe::PipeEmit<'a>),
    Spill(spill::SpillEmit<'a>),
}

impl<'a> Out<'a> {
    /// Down the pipe whose write end is `fd`.
    #[inline]
    pub(crate) fn pipe(fd: rustix::fd::BorrowedFd<'a>) -> Self {
        Self::Pipe(pipe::PipeEmit::new(fd))
    }

    /// Into the spill file `fd`, whose identity is `id`, from `offset` on.
    #[inline]
    pub(crate) fn spill(
        fd: rustix::fd::BorrowedFd<'a>,
        id: (u64, u64),
        offset: &'a core::cell::Cell<u64>,
    ) -> Self {
        Self::Spill(spill::SpillEmit::new(fd, id, offset))
    }

    /// Bytes of frames written to the spill file, which the page must
    /// announce on the child's way out; `None` for the pipe.
    #[inline]
    pub(crate) fn spilled(self) -> Option<u64> {
        match self {
            Self::Pipe(_) => None,
            Self::Spill(spill) => Some(spill.written()).filter(|&n| n > 0),
        }
    }
}

impl Out<'_> {
    /// Writes all of `bytes`. By value: both transports keep what changes
    /// (the spill file's offset) in a `Cell`, so a copy writes as well as
    /// the original.
    #[inline]
    pub(crate) fn write_all(self, bytes: &[u8]) -> Result<(), Errno> {
        match self {
            Self::Pipe(mut pipe) => pipe.write_all(bytes),
            Self::Spill(mut spill) => spill.write_all(bytes),
        }
    }
}

impl Emit for Out<'_> {
    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        Out::write_all(*self, bytes)
    }

    fn spilling(&mut self) {
        match self {
            Self::Pipe(pipe) => pipe.spilling(),
            Self::Spill(spill) => spill.spilling(),
        }
    }
}

#[cfg(all(fuzzing, feature = "alloc"))]
impl Emit for alloc::vec::Vec<u8> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// A spill file to keep with a new shared page, or `None` if none can be
/// made (no memfd on this kernel, a seccomp filter, no descriptor left) or
/// the platform has none: results that outgrow the page then take a pipe.
pub(crate) fn new_spill_file() -> Option<crate::sys::KeptFile> {
    crate::sys::spill_file()
        .and_then(crate::sys::KeptFile::new)
        .ok()
}
