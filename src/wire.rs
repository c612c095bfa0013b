//! The byte protocol between the child and the parent.
//!
//! The child writes a stream of frames to the pipe; the parent decodes them.
//! Every frame starts with an 8-byte header:
//!
//! ```text
//! offset 0  kind     u8     DATA, PANIC or END
//! offset 1  magic    [u8;3] b"MI\x01" (protocol version 1)
//! offset 4  length   u32 LE bytes of body that follow
//! ```
//!
//! - `DATA`: a piece of the postcard encoding of the callable's value, at
//!   most 128 KiB. The child sends one each time its preallocated staging
//!   buffer fills, so a value of any size streams through a fixed buffer.
//! - `PANIC`: a message, at most [`PANIC_MESSAGE_CAPACITY`] bytes of UTF-8,
//!   sent before an `END` whose outcome is [`Outcome::Panicked`] (the panic
//!   message, required, though it may be empty, as for `panic!("")`) or
//!   [`Outcome::SerializeFailed`] (the serializer's error message, when it
//!   has one).
//! - `END`: always 24 bytes of body and always last:
//!
//! ```text
//! offset 0   outcome   u8     see Outcome
//! offset 1   detail    [u8;7] SetupFailed: the errno, i32 LE; zero otherwise
//! offset 8   length    u64 LE total DATA bytes sent
//! offset 16  checksum  u64 LE checksum of those bytes, seeded by the call's nonce
//! ```
//!
//! Every `END` is checked: for `Value`, `detail` is zero and `length` and
//! `checksum` match the `DATA` received; for the other outcomes `length` is
//! zero and `checksum` covers `detail` and the panic message, from a second
//! seed derived from the nonce; a `SetupFailed` errno must be in 1..=4095.
//!
//! The parent learns that the result is complete from `END` alone, never
//! from end-of-file, so a grandchild holding the pipe open cannot delay it.
//! A failure after partial output (serialization failing half way) is an
//! `END` with that outcome, which discards the partial `DATA`. Anything that
//! does not follow this grammar, a length that disagrees, or a checksum that
//! does not match is [`DecodeError::Corrupt`]: bytes written to the pipe by
//! the callable itself or by a process it started are never taken for a
//! value. The checksum is not cryptographic: it catches interleaved and
//! stray bytes, not a forger who reproduces the protocol (such a forger runs
//! inside the callable and could simply have returned the forged value).

pub(crate) use crate::decode_error::DecodeError;
use crate::errors::PANIC_MESSAGE_CAPACITY;
use crate::sink::Sink;

/// Bytes in every frame header.
pub(crate) const HEADER_LEN: usize = 8;
/// Bytes in the body of an `END` frame.
pub(crate) const END_LEN: usize = 24;
/// Bytes in a whole `END` frame.
pub(crate) const END_FRAME_LEN: usize = HEADER_LEN + END_LEN;
/// The largest `DATA` body the child ever sends (its staging buffer less a
/// header and room for `END`). A longer one is forged, and refusing it
/// keeps the parent from reserving memory for bytes that may never come.
pub(crate) const MAX_DATA_LEN: u32 = 128 * 1024;

const KIND_DATA: u8 = 0xD4;
const KIND_PANIC: u8 = 0x9A;
const KIND_END: u8 = 0xE6;
const KIND_ITEM: u8 = 0x17;
const KIND_DROP: u8 = 0xD7;
/// Bytes in the body of an `ITEM` frame.
pub(crate) const ITEM_LEN: usize = 16;
/// Bytes in a whole `ITEM` frame.
// The encoder side is the stream's `Sender`, which needs `alloc`.
#[cfg_attr(not(feature = "alloc"), allow(dead_code))]
pub(crate) const ITEM_FRAME_LEN: usize = HEADER_LEN + ITEM_LEN;
const MAGIC: [u8; 3] = *b"MI\x01";

/// How the child's work ended, as told by the `END` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `DATA` holds the complete encoding of the value.
    Value,
    /// The callable panicked; the message came in a `PANIC` frame.
    Panicked,
    /// Serialization failed; the message came in a `PANIC` frame, if the
    /// serializer's error had one.
    SerializeFailed,
    /// Setting up the child failed before the callable ran; `detail` holds
    /// the errno as an i32 LE.
    SetupFailed,
}

impl Outcome {
    fn to_byte(self) -> u8 {
        match self {
            Self::Value => 1,
            Self::Panicked => 2,
            Self::SerializeFailed => 3,
            Self::SetupFailed => 4,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Value),
            2 => Some(Self::Panicked),
            3 => Some(Self::SerializeFailed),
            4 => Some(Self::SetupFailed),
            _ => None,
        }
    }
}

/// Builds a frame header.
pub(crate) fn header(kind: u8, len: u32) -> [u8; HEADER_LEN] {
    let l = len.to_le_bytes();
    [kind, MAGIC[0], MAGIC[1], MAGIC[2], l[0], l[1], l[2], l[3]]
}

/// Builds a `DATA` frame header for `len` bytes of body.
pub(crate) fn data_header(len: u32) -> [u8; HEADER_LEN] {
    header(KIND_DATA, len)
}

/// Builds a `PANIC` frame header for `len` bytes of message.
pub(crate) fn panic_header(len: u32) -> [u8; HEADER_LEN] {
    header(KIND_PANIC, len)
}

/// Builds a complete `END` frame, header included.
#[inline]
pub(crate) fn end_frame(
    outcome: Outcome,
    detail: [u8; 7],
    length: u64,
    checksum: u64,
) -> [u8; END_FRAME_LEN] {
    let mut f = [0u8; END_FRAME_LEN];
    #[allow(clippy::cast_possible_truncation)] // END_LEN is 24
    f[..HEADER_LEN].copy_from_slice(&header(KIND_END, END_LEN as u32));
    f[8] = outcome.to_byte();
    f[9..16].copy_from_slice(&detail);
    f[16..24].copy_from_slice(&length.to_le_bytes());
    f[24..32].copy_from_slice(&checksum.to_le_bytes());
    f
}

/// Builds a complete `ITEM` frame (streams only), header included.
#[inline]
// The encoder side is the stream's `Sender`, which needs `alloc`.
#[cfg_attr(not(feature = "alloc"), allow(dead_code))]
pub(crate) fn item_frame(length: u64, checksum: u64) -> [u8; ITEM_FRAME_LEN] {
    let mut f = [0u8; ITEM_FRAME_LEN];
    #[allow(clippy::cast_possible_truncation)] // ITEM_LEN is 16
    f[..HEADER_LEN].copy_from_slice(&header(KIND_ITEM, ITEM_LEN as u32));
    f[8..16].copy_from_slice(&length.to_le_bytes());
    f[16..24].copy_from_slice(&checksum.to_le_bytes());
    f
}

/// Builds a `DROP` frame (streams only): it has no body.
// The encoder side is the stream's `Sender`, which needs `alloc`.
#[cfg_attr(not(feature = "alloc"), allow(dead_code))]
pub(crate) fn drop_frame() -> [u8; HEADER_LEN] {
    header(KIND_DROP, 0)
}

/// The seed of the checksum over the `DATA` of a stream's item that
/// follows `index` boundaries (`ITEM` or `DROP`). Never the nonce itself
/// (an odd multiplier times `index + 1` is never zero), which seeds the
/// closing `END`.
#[inline]
pub(crate) fn item_seed(nonce: u64, index: u64) -> u64 {
    nonce ^ index.wrapping_add(1).wrapping_mul(CHECK_MUL)
}

/// A streaming 64-bit checksum over 32-byte blocks, four independent
/// 64-bit lanes wide.
///
/// Fast enough to run over hundreds of megabytes (the four lanes' multiplies
/// overlap, so a block costs about what one word would), independent of
/// how the stream is split, and seeded per call so that a stream recorded
/// from one call does not verify in another.
#[derive(Clone, Debug)]
pub(crate) struct Checksum {
    lanes: [u64; 4],
    tail: [u8; 32],
    tail_len: usize,
    total: u64,
}

const CHECK_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// Copies `src` (at most 16 bytes) to `dst` with overlapping unaligned
/// word moves: two covering the run from each end, so every length takes
/// at most two loads and two stores.
///
/// # Safety
///
/// `dst` must be valid for `src.len()` bytes of writes and not overlap
/// `src`; `src.len() <= 16`.
#[inline]
pub(crate) unsafe fn copy_short(src: &[u8], dst: *mut u8) {
    let n = src.len();
    let p = src.as_ptr();
    // SAFETY (every access below): each one lies within the first `n`
    // bytes of `src` and of `dst`, by the branch's bounds on `n`.
    unsafe {
        if n >= 8 {
            let head = p.cast::<u64>().read_unaligned();
            let tail = p.add(n - 8).cast::<u64>().read_unaligned();
            dst.cast::<u64>().write_unaligned(head);
            dst.add(n - 8).cast::<u64>().write_unaligned(tail);
        } else if n >= 4 {
            let head = p.cast::<u32>().read_unaligned();
            let tail = p.add(n - 4).cast::<u32>().read_unaligned();
            dst.cast::<u32>().write_unaligned(head);
            dst.add(n - 4).cast::<u32>().write_unaligned(tail);
        } else if n > 0 {
            // One to three bytes: first, middle and last cover them all.
            let (first, middle, last) = (*p, *p.add(n / 2), *p.add(n - 1));
            *dst = first;
            *dst.add(n / 2) = middle;
            *dst.add(n - 1) = last;
        }
    }
}

/// Copies `src` into `dst` (the same length, at most 32 bytes) with
/// [`copy_short`], never calling `memcpy` (ARCHITECTURE.md, "Page faults after fork").
#[inline]
fn copy_small(src: &[u8], dst: &mut [u8]) {
    assert!(src.len() == dst.len() && src.len() <= 32);
    let (head, tail) = src.split_at(src.len().min(16));
    // SAFETY: `dst` has room for `src`, in two runs of at most 16 bytes,
    // and a shared and a mutable slice cannot overlap.
    unsafe {
        copy_short(head, dst.as_mut_ptr());
        copy_short(tail, dst.as_mut_ptr().add(head.len()));
    }
}

impl Checksum {
    /// All zeros: a placeholder, to be replaced by [`Checksum::new`]
    /// before use (it lets a static holding one live in `.bss`).
    pub(crate) const ZERO: Self = Self {
        lanes: [0; 4],
        tail: [0; 32],
        tail_len: 0,
        total: 0,
    };

    #[inline]
    pub(crate) fn new(seed: u64) -> Self {
        let s = seed ^ 0x243F_6A88_85A3_08D3;
        Self {
            lanes: [s, s.rotate_left(16), s.rotate_left(32), s.rotate_left(48)],
            tail: [0; 32],
            tail_len: 0,
            total: 0,
        }
    }

    #[inline]
    fn block(&mut self, b: &[u8; 32]) {
        for (lane, word) in self.lanes.iter_mut().zip(b.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            *lane = (*lane ^ u64::from_le_bytes(w))
                .wrapping_mul(CHECK_MUL)
                .rotate_left(27);
        }
    }

    #[inline]
    pub(crate) fn update(&mut self, mut bytes: &[u8]) {
        self.total = self.total.wrapping_add(bytes.len() as u64);
        if self.tail_len > 0 {
            let take = (32 - self.tail_len).min(bytes.len());
            copy_small(
                &bytes[..take],
                &mut self.tail[self.tail_len..self.tail_len + take],
            );
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < 32 {
                return;
            }
            let tail = self.tail;
            self.block(&tail);
            self.tail_len = 0;
        }
        let mut blocks = bytes.chunks_exact(32);
        for b in &mut blocks {
            let mut a = [0u8; 32];
            a.copy_from_slice(b);
            self.block(&a);
        }
        let rest = blocks.remainder();
        copy_small(rest, &mut self.tail[..rest.len()]);
        self.tail_len = rest.len();
    }

    #[inline]
    pub(crate) fn finish(&self) -> u64 {
        let mut last = [0u8; 32];
        copy_small(&self.tail[..self.tail_len], &mut last[..self.tail_len]);
        let mut c = self.clone();
        c.block(&last);
        let mut h = self.total;
        for lane in c.lanes {
            h = (h ^ lane).wrapping_mul(CHECK_MUL).rotate_left(31);
        }
        h ^= h >> 31;
        h = h.wrapping_mul(CHECK_MUL);
        h ^ (h >> 29)
    }
}

/// The checksum an `END` frame other than `Value` carries: over its
/// `detail` and the panic message, seeded like the call's data checksum
/// but from a different starting point, so that such a frame, too, cannot
/// come from anything that does not know the call's nonce.
pub(crate) fn side_checksum(nonce: u64, detail: [u8; 7], message: &[u8]) -> u64 {
    let mut c = Checksum::new(nonce ^ 0x5EED_0FE4_D5A7_C0DE);
    c.update(&detail);
    c.update(message);
    c.finish()
}

/// A decoded `END` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct End {
    pub(crate) outcome: Outcome,
    pub(crate) detail: [u8; 7],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Data(u32),
    Panic(u32),
    EndBody,
    /// The body of a stream's `ITEM` frame.
    ItemBody,
    Done(End),
    Failed(DecodeError),
}

/// The parent's incremental decoder: fed bytes in any chunking, it routes
/// `DATA` to a [`Sink`], keeps the panic message, and checks `END`.
///
/// It never panics and never allocates; the only growth is the sink's, which
/// the sink bounds.
#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    nonce: u64,
    state: State,
    small: [u8; END_LEN],
    small_len: usize,
    received: u64,
    checksum: Checksum,
    /// A `PANIC` frame (a message) arrived; its body may be empty.
    has_message: bool,
    panic_message: heapless::Vec<u8, PANIC_MESSAGE_CAPACITY, u8>,
    /// A stream's decoder: `ITEM` and `DROP` frames are accepted, and
    /// `checksum` covers the `DATA` since the last of them.
    stream: bool,
    /// Boundaries (`ITEM` or `DROP`) seen so far.
    boundaries: u64,
    /// `received` at the last boundary.
    item_start: u64,
}

impl Decoder {
    pub(crate) fn new(nonce: u64) -> Self {
        Self {
            nonce,
            state: State::Header,
            small: [0; END_LEN],
            small_len: 0,
            received: 0,
            checksum: Checksum::new(nonce),
            has_message: false,
            panic_message: heapless::Vec::new(),
            stream: false,
            boundaries: 0,
            item_start: 0,
        }
    }

    /// A decoder for a stream of items (see [Streams](self#streams)): each
    /// verified `ITEM` is handed to the sink ([`Sink::end_item`]), each
    /// `DROP` discards the sink's partial item ([`Sink::drop_item`]).
    pub(crate) fn stream(nonce: u64) -> Self {
        let mut d = Self::new(nonce);
        d.stream = true;
        d.checksum = Checksum::new(item_seed(nonce, 0));
        d
    }

    /// One more boundary: the next item's bytes start here.
    fn boundary(&mut self) {
        self.boundaries += 1;
        self.item_start = self.received;
        self.checksum = Checksum::new(item_seed(self.nonce, self.boundaries));
    }

    /// The verified `END`, once the stream is complete.
    pub(crate) fn end(&self) -> Option<End> {
        match self.state {
            State::Done(end) => Some(end),
            _ => None,
        }
    }

    /// True while not a single byte has been fed.
    pub(crate) fn untouched(&self) -> bool {
        self.state == State::Header
            && self.small_len == 0
            && self.received == 0
            && self.boundaries == 0
    }

    /// The failure that stopped decoding, if any.
    pub(crate) fn failure(&self) -> Option<DecodeError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// True once the stream is complete or rejected: nothing more is read.
    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.state, State::Done(_) | State::Failed(_))
    }

    /// Bytes of `DATA` body still expected in the current frame (0 when the
    /// decoder is not inside a `DATA` frame). The parent uses it to read the
    /// value's bytes straight into their final buffer.
    pub(crate) fn data_remaining(&self) -> usize {
        match self.state {
            State::Data(n) => n as usize,
            _ => 0,
        }
    }

    /// Records `bytes` that the caller already appended to the sink itself,
    /// which must be at most [`Self::data_remaining`].
    pub(crate) fn data_appended(&mut self, bytes: &[u8]) {
        if let State::Data(n) = self.state {
            let taken = bytes.len().min(n as usize);
            self.checksum.update(&bytes[..taken]);
            self.received += taken as u64;
            #[allow(clippy::cast_possible_truncation)] // taken <= n: u32
            let left = n - taken as u32;
            self.state = if left == 0 {
                State::Header
            } else {
                State::Data(left)
            };
        }
    }

    /// The panic message, if the stream carried one.
    pub(crate) fn panic_message(&self) -> &[u8] {
        &self.panic_message
    }

    fn fail(&mut self, e: DecodeError) -> Result<usize, DecodeError> {
        self.reject(e);
        Err(e)
    }

    /// Marks the stream as rejected for `e`, when the parent found the
    /// fault itself (a sink that refused room for the next bytes).
    pub(crate) fn reject(&mut self, e: DecodeError) {
        if !matches!(self.state, State::Done(_)) {
            self.state = State::Failed(e);
        }
    }

    /// Feeds the next bytes of the stream. Returns how many were consumed:
    /// all of them unless the stream ended (bytes after `END` are ignored).
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        sink: &mut impl Sink,
    ) -> Result<usize, DecodeError> {
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            match self.state {
                State::Done(_) => return Ok(pos),
                State::Failed(e) => return Err(e),
                State::Header => {
                    let take = (HEADER_LEN - self.small_len).min(rest.len());
                    self.small[self.small_len..self.small_len + take]
                        .copy_from_slice(&rest[..take]);
                    self.small_len += take;
                    pos += take;
                    if self.small_len == HEADER_LEN {
                        self.small_len = 0;
                        if let Err(e) = self.start_frame(sink) {
                            return self.fail(e);
                        }
                    }
                }
                State::Data(n) => {
                    let take = (n as usize).min(rest.len());
                    if let Err(e) = sink.append(&rest[..take]) {
                        return self.fail(e);
                    }
                    self.data_appended(&rest[..take]);
                    pos += take;
                }
                State::Panic(n) => {
                    let take = (n as usize).min(rest.len());
                    if self.panic_message.extend_from_slice(&rest[..take]).is_err() {
                        return self.fail(DecodeError::Corrupt);
                    }
                    #[allow(clippy::cast_possible_truncation)] // take <= n: u32
                    let left = n - take as u32;
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Panic(left)
                    };
                    pos += take;
                }
                State::EndBody => {
                    let take = (END_LEN - self.small_len).min(rest.len());
                    self.small[self.small_len..self.small_len + take]
                        .copy_from_slice(&rest[..take]);
                    self.small_len += take;
                    pos += take;
                    if self.small_len == END_LEN {
                        match self.finish_end() {
                            Ok(end) => self.state = State::Done(end),
                            Err(e) => return self.fail(e),
                        }
                    }
                }
                State::ItemBody => {
                    let take = (ITEM_LEN - self.small_len).min(rest.len());
                    self.small[self.small_len..self.small_len + take]
                        .copy_from_slice(&rest[..take]);
                    self.small_len += take;
                    pos += take;
                    if self.small_len == ITEM_LEN {
                        self.small_len = 0;
                        if let Err(e) = self.finish_item(sink) {
                            return self.fail(e);
                        }
                    }
                }
            }
        }
        Ok(pos)
    }

    fn start_frame(&mut self, sink: &mut impl Sink) -> Result<(), DecodeError> {
        let h = &self.small[..HEADER_LEN];
        if h[1..4] != MAGIC {
            return Err(DecodeError::Corrupt);
        }
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        self.state = match h[0] {
            // Empty DATA frames are never sent; refusing them bounds the
            // work a stream of headers alone can cause.
            KIND_DATA if len > 0 && len <= MAX_DATA_LEN => State::Data(len),
            // At most one PANIC frame; its message may be empty
            // (`panic!("")`), and then no body follows.
            KIND_PANIC if !self.has_message && len as usize <= PANIC_MESSAGE_CAPACITY => {
                self.has_message = true;
                if len == 0 {
                    State::Header
                } else {
                    State::Panic(len)
                }
            }
            KIND_END if len as usize == END_LEN => State::EndBody,
            // Item boundaries: only in a stream, and never after a message
            // (which only ever precedes `END`).
            KIND_ITEM if self.stream && !self.has_message && len as usize == ITEM_LEN => {
                State::ItemBody
            }
            KIND_DROP if self.stream && !self.has_message && len == 0 => {
                sink.drop_item();
                self.boundary();
                State::Header
            }
            _ => return Err(DecodeError::Corrupt),
        };
        Ok(())
    }

    /// Checks an `ITEM` body against the `DATA` since the last boundary and
    /// hands the item to the sink.
    fn finish_item(&mut self, sink: &mut impl Sink) -> Result<(), DecodeError> {
        let b = &self.small;
        let length = u64::from_le_bytes(b[..8].try_into().map_err(|_| DecodeError::Corrupt)?);
        let checksum = u64::from_le_bytes(b[8..16].try_into().map_err(|_| DecodeError::Corrupt)?);
        if length != self.received - self.item_start || checksum != self.checksum.finish() {
            return Err(DecodeError::Corrupt);
        }
        sink.end_item()?;
        self.boundary();
        self.state = State::Header;
        Ok(())
    }

    fn finish_end(&mut self) -> Result<End, DecodeError> {
        let b = &self.small;
        let outcome = Outcome::from_byte(b[0]).ok_or(DecodeError::Corrupt)?;
        let mut detail = [0u8; 7];
        detail.copy_from_slice(&b[1..8]);
        let length = u64::from_le_bytes(b[8..16].try_into().map_err(|_| DecodeError::Corrupt)?);
        let checksum = u64::from_le_bytes(b[16..24].try_into().map_err(|_| DecodeError::Corrupt)?);
        let side = side_checksum(self.nonce, detail, &self.panic_message);
        let consistent = match outcome {
            // A stream's producer returned: nothing may be pending, and the
            // child's usual path sealed its `()` (no bytes) with the nonce.
            Outcome::Value if self.stream => {
                detail == [0; 7]
                    && !self.has_message
                    && length == 0
                    && self.received == self.item_start
                    && checksum == Checksum::new(self.nonce).finish()
            }
            Outcome::Value => {
                detail == [0; 7]
                    && !self.has_message
                    && length == self.received
                    && checksum == self.checksum.finish()
            }
            Outcome::Panicked => {
                detail == [0; 7] && length == 0 && self.has_message && checksum == side
            }
            Outcome::SerializeFailed => detail == [0; 7] && length == 0 && checksum == side,
            Outcome::SetupFailed => {
                let errno = i32::from_le_bytes([detail[0], detail[1], detail[2], detail[3]]);
                self.received == 0
                    && self.boundaries == 0
                    && !self.has_message
                    && length == 0
                    && detail[4..] == [0; 3]
                    && crate::errno::errno_from_raw(errno).is_some()
                    && checksum == side
            }
        };
        if consistent {
            Ok(End { outcome, detail })
        } else {
            Err(DecodeError::Corrupt)
        }
    }
}

#[cfg(test)]
mod tests {
    // The unit tests use std's Vec even when the crate is built without it.
    extern crate std;

    use super::*;

    #[test]
    fn short_copies_move_exactly_their_bytes() {
        for n in 0..=16usize {
            #[allow(clippy::cast_possible_truncation)] // below 17
            let src: [u8; 16] = core::array::from_fn(|i| 0xA0 + i as u8);
            let mut dst = [0x55u8; 24];
            // SAFETY: 24 bytes of room for at most 16, no overlap.
            unsafe { copy_short(&src[..n], dst.as_mut_ptr().add(4)) };
            assert_eq!(&dst[4..4 + n], &src[..n], "length {n}");
            assert!(dst[..4].iter().all(|&b| b == 0x55), "wrote before, {n}");
            assert!(dst[4 + n..].iter().all(|&b| b == 0x55), "wrote past, {n}");
        }
    }

    /// A sink without a limit, for the decoder's tests.
    struct Unbounded(std::vec::Vec<u8>);
    impl Sink for Unbounded {
        fn append(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
        fn spare(&mut self, want: usize) -> Result<&mut [core::mem::MaybeUninit<u8>], DecodeError> {
            self.0.reserve(want);
            Ok(&mut self.0.spare_capacity_mut()[..want])
        }
        unsafe fn commit(&mut self, n: usize) -> &[u8] {
            let start = self.0.len();
            // SAFETY: the caller initialized these bytes.
            unsafe { self.0.set_len(start + n) };
            &self.0[start..]
        }
        fn bytes(&self) -> &[u8] {
            &self.0
        }
        fn limit(&self) -> usize {
            usize::MAX
        }
    }

    fn stream(nonce: u64, payload: &[u8], chunk: usize) -> std::vec::Vec<u8> {
        let mut out = std::vec::Vec::new();
        let mut sum = Checksum::new(nonce);
        for piece in payload.chunks(chunk) {
            out.extend_from_slice(&data_header(piece.len().try_into().unwrap()));
            out.extend_from_slice(piece);
            sum.update(piece);
        }
        out.extend_from_slice(&end_frame(
            Outcome::Value,
            [0; 7],
            payload.len() as u64,
            sum.finish(),
        ));
        out
    }

    fn decode_in_pieces(
        nonce: u64,
        bytes: &[u8],
        piece: usize,
    ) -> (Result<(), DecodeError>, std::vec::Vec<u8>) {
        let mut d = Decoder::new(nonce);
        let mut sink = Unbounded(std::vec::Vec::new());
        for p in bytes.chunks(piece) {
            if let Err(e) = d.feed(p, &mut sink) {
                return (Err(e), sink.0);
            }
        }
        let r = if d.end().is_some() {
            Ok(())
        } else {
            Err(DecodeError::Corrupt)
        };
        (r, sink.0)
    }

    #[test]
    fn any_chunking_of_a_valid_stream_decodes_to_the_same_bytes() {
        let payload: std::vec::Vec<u8> = (0..1000u32)
            .map(|i| (i * 7 % 251).try_into().unwrap())
            .collect();
        let s = stream(42, &payload, 97);
        for piece in [1, 3, 8, 13, 64, 1000, s.len()] {
            let (r, got) = decode_in_pieces(42, &s, piece);
            assert_eq!(r, Ok(()), "piece size {piece}");
            assert_eq!(got, payload);
        }
    }

    #[test]
    fn checksum_does_not_depend_on_split() {
        let data: std::vec::Vec<u8> = (0..=255u8).cycle().take(777).collect();
        let mut whole = Checksum::new(9);
        whole.update(&data);
        let mut split = Checksum::new(9);
        for p in data.chunks(5) {
            split.update(p);
        }
        assert_eq!(whole.finish(), split.finish());
        let mut other_seed = Checksum::new(10);
        other_seed.update(&data);
        assert_ne!(whole.finish(), other_seed.finish());
    }

    #[test]
    fn a_flipped_payload_byte_or_wrong_nonce_is_rejected() {
        let payload = [5u8; 300];
        let mut s = stream(1, &payload, 300);
        assert_eq!(decode_in_pieces(2, &s, 7).0, Err(DecodeError::Corrupt));
        s[HEADER_LEN + 100] ^= 1;
        assert_eq!(decode_in_pieces(1, &s, 7).0, Err(DecodeError::Corrupt));
    }

    #[test]
    fn garbage_and_truncation_are_rejected() {
        let s = stream(1, b"hello", 5);
        for cut in 0..s.len() {
            let (r, _) = decode_in_pieces(1, &s[..cut], 3);
            assert!(r.is_err(), "truncated at {cut}");
        }
        let (r, _) = decode_in_pieces(1, b"not a frame at all", 4);
        assert_eq!(r, Err(DecodeError::Corrupt));
    }

    fn end_only(outcome: Outcome, detail: [u8; 7], checksum: u64) -> Result<(), DecodeError> {
        decode_in_pieces(7, &end_frame(outcome, detail, 0, checksum), 5).0
    }

    #[test]
    fn non_value_ends_must_carry_the_calls_side_checksum() {
        let errno = 22i32.to_le_bytes();
        let detail = [errno[0], errno[1], errno[2], errno[3], 0, 0, 0];
        let good = side_checksum(7, detail, &[]);
        assert_eq!(end_only(Outcome::SetupFailed, detail, good), Ok(()));
        // Forged: no checksum, another call's checksum.
        assert_eq!(
            end_only(Outcome::SetupFailed, detail, 0),
            Err(DecodeError::Corrupt)
        );
        let other = side_checksum(8, detail, &[]);
        assert_eq!(
            end_only(Outcome::SetupFailed, detail, other),
            Err(DecodeError::Corrupt)
        );
        assert_eq!(
            end_only(Outcome::SerializeFailed, [0; 7], 0),
            Err(DecodeError::Corrupt)
        );
    }

    #[test]
    fn an_errno_out_of_range_is_corrupt_not_a_panic() {
        // rustix panics on such values; the decoder must never pass one on.
        for raw in [0i32, -1, 4096, 0x8016, i32::MAX] {
            let e = raw.to_le_bytes();
            let detail = [e[0], e[1], e[2], e[3], 0, 0, 0];
            let sum = side_checksum(7, detail, &[]);
            assert_eq!(
                end_only(Outcome::SetupFailed, detail, sum),
                Err(DecodeError::Corrupt)
            );
        }
    }

    #[test]
    fn a_value_end_with_stray_detail_bytes_is_corrupt() {
        let mut s = stream(4, b"abc", 3);
        let end_at = s.len() - END_LEN;
        s[end_at + 3] ^= 0x40; // inside `detail`
        assert_eq!(decode_in_pieces(4, &s, 2).0, Err(DecodeError::Corrupt));
    }

    #[test]
    fn a_data_frame_longer_than_the_child_ever_sends_is_corrupt() {
        let mut d = Decoder::new(1);
        let mut sink = Unbounded(std::vec::Vec::new());
        assert_eq!(
            d.feed(&data_header(MAX_DATA_LEN + 1), &mut sink),
            Err(DecodeError::Corrupt)
        );
        let mut d = Decoder::new(1);
        assert_eq!(
            d.feed(&data_header(MAX_DATA_LEN), &mut sink),
            Ok(HEADER_LEN)
        );
    }

    #[test]
    fn slice_sink_refuses_past_its_end() {
        let mut buf = [0u8; 4];
        let mut sink = crate::sink::SliceSink {
            buf: &mut buf,
            len: 0,
        };
        let mut d = Decoder::new(3);
        let s = stream(3, b"too long", 8);
        assert_eq!(d.feed(&s, &mut sink), Err(DecodeError::TooLarge));
        assert_eq!(d.failure(), Some(DecodeError::TooLarge));
    }
}
