//! Where the parent puts the value's bytes: one trait, [`Sink`], and its
//! two implementations, a caller's slice ([`SliceSink`], the
//! allocation-free API) and a growable buffer ([`VecSink`]).
//!
//! A sink is bounded by construction: it refuses bytes past its limit (the
//! caller's buffer, or [`Isolate::max_result_size`](crate::Isolate::max_result_size)),
//! so the parent's memory stays bounded whatever the child sends.

use core::mem::MaybeUninit;

use crate::decode_error::DecodeError;

/// Where the value's bytes go. The decoder appends what it copies
/// ([`Sink::append`]); a transport that reads from a descriptor reads
/// straight into the sink's spare room instead ([`Sink::spare`], then
/// [`Sink::commit`]), so a large value is copied once.
pub(crate) trait Sink {
    /// Appends `bytes`, or refuses with [`DecodeError::TooLarge`] if they
    /// would exceed the limit (keeping nothing of them).
    fn append(&mut self, bytes: &[u8]) -> Result<(), DecodeError>;

    /// Spare room for up to `want` more bytes (fewer near the limit), or
    /// [`DecodeError::TooLarge`] when there is none.
    fn spare(&mut self, want: usize) -> Result<&mut [MaybeUninit<u8>], DecodeError>;

    /// Marks `n` bytes of the room from [`Sink::spare`] as filled; returns
    /// them.
    ///
    /// # Safety
    ///
    /// Those `n` bytes must have been initialized.
    unsafe fn commit(&mut self, n: usize) -> &[u8];

    /// The bytes received so far.
    fn bytes(&self) -> &[u8];

    /// The limit, for [`ResultTooLarge`](crate::errors::CallableExecutedError::ResultTooLarge).
    fn limit(&self) -> usize;

    /// The received bytes as a buffer the value may take over, if this
    /// sink owns one.
    #[cfg(feature = "alloc")]
    fn owned(&mut self) -> Option<&mut alloc::vec::Vec<u8>> {
        None
    }

    // A stream's sink (see `crate::stream`) holds many items; the hooks
    // below are its own, and a call's sinks keep their defaults.

    /// The call is a stream: its decoder takes items (see
    /// [`Decoder::stream`](crate::wire::Decoder::stream)).
    const STREAM: bool = false;

    /// The bytes since the last item boundary are one whole item (a
    /// verified `ITEM` frame). Only a stream's sink accepts one.
    fn end_item(&mut self) -> Result<(), DecodeError> {
        Err(DecodeError::Corrupt)
    }

    /// The bytes since the last item boundary are abandoned (a `DROP`
    /// frame).
    fn drop_item(&mut self) {}

    /// The sink holds an item its reader has not taken yet: reading stops
    /// there, so the parent's memory stays bounded and the child feels
    /// backpressure.
    fn paused(&self) -> bool {
        false
    }

    /// The child has exited: whatever it left is read now, held or not.
    fn child_ended(&mut self) {}
}

/// A sink over a caller's slice: the allocation-free API's receive buffer.
pub(crate) struct SliceSink<'a> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) len: usize,
}

impl<'a> SliceSink<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }
}

impl Sink for SliceSink<'_> {
    fn append(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(DecodeError::TooLarge)?;
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(DecodeError::TooLarge)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn spare(&mut self, want: usize) -> Result<&mut [MaybeUninit<u8>], DecodeError> {
        let room = &mut self.buf[self.len..];
        if room.is_empty() {
            return Err(DecodeError::TooLarge);
        }
        let n = want.min(room.len());
        Ok(as_uninit(&mut room[..n]))
    }

    unsafe fn commit(&mut self, n: usize) -> &[u8] {
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

/// Initialized bytes as room to read into.
fn as_uninit(bytes: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and
    // every writer through the result stores initialized bytes.
    unsafe { &mut *(core::ptr::from_mut::<[u8]>(bytes) as *mut [MaybeUninit<u8>]) }
}

/// A growable sink, bounded by `limit`. The first [`VecSink::INLINE`] bytes
/// are kept inline, so a small result costs the parent no `malloc` and no
/// `free`: each would write to heap pages that the fork left
/// write-protected, and a page fault costs more than the whole decode
/// (ARCHITECTURE.md, "Page faults after fork").
#[cfg(feature = "alloc")]
pub(crate) struct VecSink {
    bytes: alloc::vec::Vec<u8>,
    inline: [u8; VecSink::INLINE],
    /// Bytes held inline; once the bytes move to `bytes`, none are.
    inline_len: usize,
    on_heap: bool,
    limit: usize,
}

#[cfg(feature = "alloc")]
impl VecSink {
    /// Bytes a sink holds before it allocates.
    pub(crate) const INLINE: usize = 64;

    pub(crate) fn new(limit: usize) -> Self {
        Self {
            bytes: alloc::vec::Vec::new(),
            inline: [0; Self::INLINE],
            inline_len: 0,
            on_heap: false,
            limit,
        }
    }

    /// Room for `extra` more bytes, inline if they fit there, otherwise on
    /// the heap (the inline bytes moved there first).
    fn make_room(&mut self, extra: usize) {
        if self.on_heap {
            self.bytes.reserve(extra);
        } else if extra > Self::INLINE - self.inline_len {
            self.move_to_heap(extra);
        }
    }

    fn move_to_heap(&mut self, extra: usize) {
        if !self.on_heap {
            self.bytes.reserve(self.inline_len + extra);
            self.bytes
                .extend_from_slice(&self.inline[..self.inline_len]);
            self.inline_len = 0;
            self.on_heap = true;
        }
    }

    /// The bytes as a heap buffer that the value may take over.
    pub(crate) fn heap(&mut self) -> &mut alloc::vec::Vec<u8> {
        self.move_to_heap(0);
        &mut self.bytes
    }
}

#[cfg(feature = "alloc")]
impl Sink for VecSink {
    fn append(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if bytes.len() > self.limit - self.bytes().len() {
            return Err(DecodeError::TooLarge);
        }
        self.make_room(bytes.len());
        if self.on_heap {
            self.bytes.extend_from_slice(bytes);
        } else {
            self.inline[self.inline_len..self.inline_len + bytes.len()].copy_from_slice(bytes);
            self.inline_len += bytes.len();
        }
        Ok(())
    }

    fn spare(&mut self, want: usize) -> Result<&mut [MaybeUninit<u8>], DecodeError> {
        let room = self.limit - self.bytes().len();
        if room == 0 {
            return Err(DecodeError::TooLarge);
        }
        let n = want.min(room);
        self.make_room(n);
        if self.on_heap {
            Ok(&mut self.bytes.spare_capacity_mut()[..n])
        } else {
            Ok(as_uninit(
                &mut self.inline[self.inline_len..self.inline_len + n],
            ))
        }
    }

    unsafe fn commit(&mut self, n: usize) -> &[u8] {
        if self.on_heap {
            let start = self.bytes.len();
            // SAFETY: the caller initialized these `n` bytes of spare
            // capacity.
            unsafe { self.bytes.set_len(start + n) };
            &self.bytes[start..]
        } else {
            let start = self.inline_len;
            self.inline_len += n;
            &self.inline[start..self.inline_len]
        }
    }

    fn bytes(&self) -> &[u8] {
        if self.on_heap {
            &self.bytes
        } else {
            &self.inline[..self.inline_len]
        }
    }

    fn limit(&self) -> usize {
        self.limit
    }

    fn owned(&mut self) -> Option<&mut alloc::vec::Vec<u8>> {
        Some(self.heap())
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn a_vec_sink_keeps_every_byte_across_the_move_to_the_heap() {
        let all: std::vec::Vec<u8> = (0..200u8).collect();
        for split in [
            0,
            1,
            VecSink::INLINE - 1,
            VecSink::INLINE,
            VecSink::INLINE + 1,
            150,
        ] {
            let mut sink = VecSink::new(200);
            sink.append(&all[..split]).unwrap();
            assert_eq!(sink.bytes(), &all[..split]);
            sink.append(&all[split..]).unwrap();
            assert_eq!(sink.bytes(), &all[..], "split at {split}");
            assert_eq!(sink.append(&[1]), Err(DecodeError::TooLarge));
            assert_eq!(sink.heap().as_slice(), &all[..]);
            assert_eq!(sink.bytes(), &all[..]);
        }
        // Small enough to stay inline: no allocation behind it.
        let mut sink = VecSink::new(usize::MAX);
        sink.append(&all[..VecSink::INLINE]).unwrap();
        assert_eq!(sink.bytes(), &all[..VecSink::INLINE]);
        assert_eq!(sink.bytes.capacity(), 0);
        assert_eq!(sink.heap().as_slice(), &all[..VecSink::INLINE]);
    }

    #[test]
    fn reading_into_spare_room_is_bounded_like_appending() {
        let mut buf = [0u8; 5];
        let mut slice = SliceSink::new(&mut buf);
        let room = slice.spare(8).unwrap();
        assert_eq!(room.len(), 5);
        for (i, b) in room.iter_mut().enumerate().take(3) {
            b.write(u8::try_from(i).unwrap());
        }
        // SAFETY: three bytes were written just above.
        assert_eq!(unsafe { slice.commit(3) }, &[0, 1, 2]);
        assert_eq!(slice.spare(8).unwrap().len(), 2);
        assert_eq!(slice.append(&[7, 7, 7]), Err(DecodeError::TooLarge));

        let mut vec = VecSink::new(100);
        vec.append(&[1; 60]).unwrap();
        // Past the inline room: the bytes move to the heap first.
        let room = vec.spare(70).unwrap();
        assert_eq!(room.len(), 40);
        for b in room.iter_mut() {
            b.write(2);
        }
        // SAFETY: all 40 bytes were written just above.
        assert_eq!(unsafe { vec.commit(40) }.len(), 40);
        assert_eq!(vec.bytes().len(), 100);
        assert_eq!(vec.spare(1).err(), Some(DecodeError::TooLarge));
    }
}
