//! [`ItemQueue`]: the stream's sink, holding the encodings of whole items
//! until the iterator takes them, and the one item on its way in.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::mem::MaybeUninit;

use crate::sink::Sink;
use crate::wire::DecodeError;

/// Where a stream's bytes go: complete items, oldest first, then the
/// partial item still arriving. Each item is bounded by `limit`
/// ([`Isolate::max_result_size`](crate::Isolate::max_result_size)).
///
/// Reading pauses as soon as one whole item is held ([`Sink::paused`]),
/// so the queue holds what one read brought in (a frame or a few hundred
/// bytes of small items) and at most one item in full; once the child has
/// exited, the rest of what it left (at most a pipe's capacity) is read
/// in one go.
pub(crate) struct ItemQueue {
    /// The items' bytes: `[head, ends...)` whole items, then
    /// `[item_start, len)` the partial one.
    buf: Vec<u8>,
    /// Where each held whole item ends, in order.
    ends: VecDeque<usize>,
    /// Where the next item to take starts.
    head: usize,
    /// Where the partial item starts.
    item_start: usize,
    limit: usize,
    /// The child has exited: read everything it left.
    draining: bool,
}

impl ItemQueue {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            ends: VecDeque::new(),
            head: 0,
            item_start: 0,
            limit,
            draining: false,
        }
    }

    /// The oldest whole item's bytes, taken off the queue.
    pub(crate) fn pop(&mut self) -> Option<&[u8]> {
        let end = self.ends.pop_front()?;
        let start = core::mem::replace(&mut self.head, end);
        Some(&self.buf[start..end])
    }

    /// Before more bytes come in: once every whole item has been taken,
    /// the partial one (at most what one read brought past an item's end)
    /// moves to the front, so the buffer never grows past about one item.
    fn compact(&mut self) {
        if self.head > 0 && self.ends.is_empty() {
            self.buf.copy_within(self.head.., 0);
            self.buf.truncate(self.buf.len() - self.head);
            self.item_start -= self.head;
            self.head = 0;
        }
    }

    /// Room the partial item may still take.
    fn room(&self) -> usize {
        self.limit - (self.buf.len() - self.item_start)
    }
}

impl Sink for ItemQueue {
    const STREAM: bool = true;

    fn append(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if bytes.len() > self.room() {
            return Err(DecodeError::TooLarge);
        }
        self.compact();
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn spare(&mut self, want: usize) -> Result<&mut [MaybeUninit<u8>], DecodeError> {
        let room = self.room();
        if room == 0 {
            return Err(DecodeError::TooLarge);
        }
        self.compact();
        let n = want.min(room);
        self.buf.reserve(n);
        Ok(&mut self.buf.spare_capacity_mut()[..n])
    }

    unsafe fn commit(&mut self, n: usize) -> &[u8] {
        let start = self.buf.len();
        // SAFETY: the caller initialized these `n` bytes of spare capacity.
        unsafe { self.buf.set_len(start + n) };
        &self.buf[start..]
    }

    /// The partial item: empty once the stream ended cleanly, which is
    /// what the call's verdict decodes the producer's `()` from.
    fn bytes(&self) -> &[u8] {
        &self.buf[self.item_start..]
    }

    fn limit(&self) -> usize {
        self.limit
    }

    fn end_item(&mut self) -> Result<(), DecodeError> {
        self.ends.push_back(self.buf.len());
        self.item_start = self.buf.len();
        Ok(())
    }

    fn drop_item(&mut self) {
        self.buf.truncate(self.item_start);
    }

    fn paused(&self) -> bool {
        !self.draining && !self.ends.is_empty()
    }

    fn child_ended(&mut self) {
        self.draining = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_whole_in_order_and_the_partial_one_moves_to_the_front() {
        let mut q = ItemQueue::new(8);
        q.append(b"ab").unwrap();
        q.end_item().unwrap();
        assert!(q.paused());
        q.append(b"cde").unwrap();
        q.end_item().unwrap();
        q.append(b"f").unwrap(); // partial
        assert_eq!(q.pop(), Some(&b"ab"[..]));
        assert_eq!(q.pop(), Some(&b"cde"[..]));
        assert_eq!(q.pop(), None);
        assert!(!q.paused());
        q.append(b"g").unwrap();
        assert_eq!(q.buf, b"fg", "compacted before growing");
        q.drop_item();
        assert_eq!(q.bytes(), b"");
        q.append(b"12345678").unwrap();
        assert_eq!(q.append(b"9"), Err(DecodeError::TooLarge));
        q.end_item().unwrap();
        q.child_ended();
        assert!(!q.paused(), "a child that exited is read to the end");
    }
}
