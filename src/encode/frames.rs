//! The one framing: a value's encoding leaves as `DATA` frames (a header,
//! then the body), and a finished encoding ends with the `END` frame that
//! carries its length and checksum (see [`crate::wire`]). [`FrameWriter`]
//! is that framing, as a postcard [`Flavor`], over a [`Store`]: the static
//! staging buffer, which flushes each full frame to the route's way out
//! ([`super::staging`]), or the shared page, which holds one frame and
//! cannot flush ([`super::page`]).

use core::cell::Cell;

use postcard::ser_flavors::Flavor;
use rustix::io::Errno;

use crate::wire::{self, END_FRAME_LEN, HEADER_LEN, Outcome};

/// Where a [`FrameWriter`] keeps its frame. The first [`HEADER_LEN`] bytes
/// are kept for the header, so that a frame is sent in one piece, and the
/// last [`END_FRAME_LEN`] for `END`, so that the last frame and `END`
/// leave together.
pub(crate) trait Store {
    /// Bytes the store holds, header and room for `END` included.
    fn len(&self) -> usize;

    /// Stores body byte `byte` at `at`.
    fn put_byte(&mut self, at: usize, byte: u8);

    /// Stores body bytes at `at`; at most 16 of them.
    fn put_short(&mut self, at: usize, bytes: &[u8]);

    /// Stores body bytes at `at`, any number that fits.
    fn put_long(&mut self, at: usize, bytes: &[u8]);

    /// Stores a frame header or an `END` frame at `at`: framing, not body,
    /// so never part of the checksum.
    fn put_framing(&mut self, at: usize, bytes: &[u8]);

    /// The body in `HEADER_LEN..end` is complete: a store that takes its
    /// checksum over whole frames takes it now.
    fn sealed(&mut self, end: usize);

    /// Sends the frame in `0..len`. A store that cannot (the page) fails.
    fn send(&mut self, len: usize) -> Result<(), Errno>;

    /// Called once, when the value turns out larger than the store.
    fn spilling(&mut self) {}

    /// The checksum of every body byte stored so far.
    fn checksum(&self) -> u64;
}

/// What a [`FrameWriter`] records as its write error when the value passed
/// its cap. No `write` or `pwrite` returns `EMSGSIZE` for a pipe or a
/// regular file, so it cannot be mistaken for a real failure.
pub(crate) const OVER_CAP: Errno = Errno::MSGSIZE;

/// A postcard [`Flavor`] that frames the encoding as `DATA` frames in a
/// [`Store`], sending each as the store fills.
pub(crate) struct FrameWriter<'a, S> {
    store: S,
    /// Where a flush happens: the end of the store less room for `END`.
    limit: usize,
    flushed: bool,
    filled: usize,
    sent: u64,
    /// Once more than this many `DATA` bytes are out, the writer stops.
    cap: u64,
    write_error: &'a Cell<Option<Errno>>,
}

impl<'a, S: Store> FrameWriter<'a, S> {
    /// A writer through `store`, recording a failed send in `write_error`.
    #[inline]
    pub(crate) fn new(store: S, write_error: &'a Cell<Option<Errno>>) -> Self {
        Self {
            limit: store.len() - END_FRAME_LEN,
            store,
            flushed: false,
            filled: HEADER_LEN,
            sent: 0,
            cap: u64::MAX,
            write_error,
        }
    }

    /// Stops the encoding, with [`OVER_CAP`] as the write error, once more
    /// than `cap` bytes of value have been sent: enough for the parent to
    /// refuse the result, and no more.
    #[inline]
    pub(crate) fn capped_at(mut self, cap: u64) -> Self {
        self.cap = cap;
        self
    }

    /// Bytes of body the current frame still has room for.
    #[inline]
    pub(crate) fn room(&self) -> usize {
        self.limit - self.filled
    }

    /// Bytes of body stored in the current frame.
    #[inline]
    pub(crate) fn staged(&self) -> usize {
        self.filled - HEADER_LEN
    }

    /// The cap and where a failed send is recorded, for a writer that
    /// takes over from this one.
    #[inline]
    pub(crate) fn limits(&self) -> (u64, &'a Cell<Option<Errno>>) {
        (self.cap, self.write_error)
    }

    /// The store, to read back what it holds.
    #[inline]
    pub(crate) fn store(&self) -> &S {
        &self.store
    }

    /// Seals the stored body as a `DATA` frame (header written, checksum
    /// and count updated). Returns the frame's length, 0 if the body is
    /// empty.
    fn seal(&mut self) -> usize {
        let body = self.filled - HEADER_LEN;
        if body == 0 {
            return 0;
        }
        #[allow(clippy::cast_possible_truncation)] // at most MAX_DATA_LEN
        self.store.put_framing(0, &wire::data_header(body as u32));
        self.store.sealed(self.filled);
        self.sent += body as u64;
        self.filled
    }

    /// Sends the full frame. Cold: it runs once per store's worth, while
    /// `try_push` runs once per byte and must stay small enough to inline.
    #[cold]
    #[inline(never)]
    fn flush(&mut self) -> postcard::Result<()> {
        if !self.flushed {
            self.flushed = true;
            self.store.spilling();
        }
        let frame = self.seal();
        if let Err(e) = self.store.send(frame) {
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

    /// `try_extend` for runs longer than 16 bytes or crossing a flush.
    fn extend_long(&mut self, mut data: &[u8]) -> postcard::Result<()> {
        while !data.is_empty() {
            if self.filled == self.limit {
                self.flush()?;
            }
            let take = (self.limit - self.filled).min(data.len());
            self.store.put_long(self.filled, &data[..take]);
            self.filled += take;
            data = &data[take..];
        }
        Ok(())
    }
}

impl<S: Store> Flavor for FrameWriter<'_, S> {
    /// The finished encoding.
    type Output = Finished<S>;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.filled == self.limit {
            self.flush()?;
        }
        self.store.put_byte(self.filled, byte);
        self.filled += 1;
        Ok(())
    }

    /// Short runs (varints, floats, short strings: most of a structured
    /// value) are stored inline; see [`Store::put_short`].
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let n = data.len();
        if n <= 16 && n <= self.limit - self.filled {
            self.store.put_short(self.filled, data);
            self.filled += n;
            return Ok(());
        }
        self.extend_long(data)
    }

    fn finalize(mut self) -> postcard::Result<Self::Output> {
        let pending = self.seal();
        Ok(Finished {
            length: self.sent,
            checksum: self.store.checksum(),
            pending,
            store: self.store,
        })
    }
}

/// A finished encoding: everything sent but the last `DATA` frame, which
/// waits in the store with room for `END` after it.
pub(crate) struct Finished<S> {
    /// Total `DATA` bytes, the unsent frame's included.
    pub(crate) length: u64,
    /// Checksum of all `DATA` bytes.
    pub(crate) checksum: u64,
    pending: usize,
    pub(crate) store: S,
}

impl<S: Store> Finished<S> {
    /// Puts the `END` frame for a value after the unsent frame; returns
    /// the length of both, from the store's first byte.
    #[inline]
    pub(crate) fn end(&mut self) -> usize {
        let end = wire::end_frame(Outcome::Value, [0; 7], self.length, self.checksum);
        self.store.put_framing(self.pending, &end);
        self.pending + END_FRAME_LEN
    }

    /// Puts a stream's `ITEM` frame after the unsent frame; returns the
    /// length of both, from the store's first byte.
    #[cfg(feature = "alloc")]
    #[inline]
    pub(crate) fn item(&mut self) -> usize {
        let item = wire::item_frame(self.length, self.checksum);
        self.store.put_framing(self.pending, &item);
        self.pending + wire::ITEM_FRAME_LEN
    }
}
