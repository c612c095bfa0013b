//! The shared page: a small value's transport.
//!
//! Each thread that makes blocking calls keeps one page of memory shared
//! with the children it forks (`MAP_SHARED | MAP_ANONYMOUS`, see
//! [`sys::SharedMapping`]). A child encodes its value straight into it
//! ([`Writer`]); if the frames fit, the parent is woken once, by the exit,
//! and copies them out ([`Reader`]), with neither a `write` nor a `read`.
//! The page also carries the thread's call counter (part of each nonce),
//! the transport hint, and, in place of a value, a marker for the spill
//! file or the child's report of a failure of its own
//! ([`crate::report`]).
//!
//! ```text
//! offset 0     head    u32    what the page holds (see Head): bytes of frames that
//!                             follow (0: none), or SPILLED (u32::MAX): the frames are
//!                             in the spill file, whose length follows as a u64, or
//!                             REPORTED (u32::MAX - 1): the child's report of a failure
//!                             of its own follows (see crate::report)
//! offset 4     frames  [u8; 4076]
//! offset 4080  hint    u64    1 if the thread's last result outgrew the page
//! offset 4088  calls   u64    the thread's call counter
//! ```
//!
//! Every access is volatile: other processes map the page and may write it
//! at any time. The parent copies bytes out once each before it checks
//! them, and a child checks bytes it moves out against the checksum taken
//! as it wrote them. This module owns the layout: the parent reads through
//! [`PageView`], the child writes through [`ChildPage`] (its encoder,
//! `crate::encode::PageStore`, and its report, [`crate::report`]), and the
//! head word is written last, after what it announces.

use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::NonNull;

use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::process::Pid;

use super::{Collect, Feed};
use crate::sink::Sink;
use crate::sys::{self, KeptFile, SharedMapping};
use crate::wire::HEADER_LEN;

/// The page's layout (see the module docs).
#[repr(C)]
struct Layout {
    length: u32,
    frames: [u8; FRAMES],
    hint: u64,
    calls: u64,
}

/// Bytes of frames the page holds.
pub(crate) const FRAMES: usize = SharedMapping::LEN - 4 - 16;

const _: () = assert!(core::mem::size_of::<Layout>() == SharedMapping::LEN);

/// Where the frames start.
const FRAMES_AT: usize = core::mem::offset_of!(Layout, frames);

/// The head word that announces frames in the spill file.
const SPILLED: u32 = u32::MAX;

/// The head word that announces the child's report.
const REPORTED: u32 = u32::MAX - 1;

/// Bytes of a report record, after the head word.
pub(crate) const RECORD_LEN: usize = 16;

/// What the page's head word says it holds, with what follows it, as the
/// parent copied it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// Bytes of frames (0: none).
    Frames(u32),
    /// The frames are in the spill file, this many bytes of them.
    Spilled(u64),
    /// The child's report of a failure of its own (see [`crate::report`]).
    Reported([u8; RECORD_LEN]),
}

/// A view of a live shared page: volatile accessors for its named fields.
/// It only ever touches the page through volatile byte and word accesses,
/// never through a Rust reference; the lifetime ties it to the
/// [`SharedPage`] that maps it, and it is not `Send` (the page is a
/// thread's, and its counters are updated without atomics).
#[derive(Clone, Copy)]
pub(crate) struct PageView<'a> {
    ptr: NonNull<Layout>,
    _page: PhantomData<&'a ()>,
}

impl PageView<'_> {
    /// # Safety
    ///
    /// `ptr` must be the first byte of a live shared mapping of
    /// [`SharedMapping::LEN`] bytes, for the view's lifetime.
    pub(crate) unsafe fn new(ptr: NonNull<u8>) -> Self {
        Self {
            ptr: ptr.cast(),
            _page: PhantomData,
        }
    }

    /// The page's first byte, for the child's [`ChildPage`].
    pub(crate) fn as_ptr(self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }

    fn length(self) -> u32 {
        // SAFETY: a field of the live mapping (see `new`).
        unsafe { (&raw const (*self.ptr.as_ptr()).length).read_volatile() }
    }

    /// What the page holds now, copied out once.
    pub(crate) fn head(self) -> Head {
        match self.length() {
            SPILLED => Head::Spilled(u64::from_le_bytes(core::array::from_fn(|i| {
                self.frame_byte(i)
            }))),
            REPORTED => Head::Reported(core::array::from_fn(|i| self.frame_byte(i))),
            len => Head::Frames(len),
        }
    }

    /// Clears the length word, before a fork: a value left by an earlier
    /// call can no longer be read.
    pub(crate) fn clear(self) {
        // SAFETY: a field of the live mapping (see `new`).
        unsafe { (&raw mut (*self.ptr.as_ptr()).length).write_volatile(0) };
    }

    /// Byte `i` of the frames area, as it is at this moment.
    fn frame_byte(self, i: usize) -> u8 {
        assert!(i < FRAMES);
        // SAFETY: inside the frames array of the live mapping.
        unsafe { self.as_ptr().add(FRAMES_AT + i).read_volatile() }
    }

    /// The spill file's length announced after [`SPILLED`], if it is.
    pub(crate) fn spilled(self) -> Option<u64> {
        match self.head() {
            Head::Spilled(len) => Some(len),
            _ => None,
        }
    }

    /// Whether the thread's last result outgrew the page.
    fn hint(self) -> bool {
        // SAFETY: a field of the live mapping (see `new`).
        unsafe { (&raw const (*self.ptr.as_ptr()).hint).read_volatile() != 0 }
    }

    fn set_hint(self, outgrew: bool) {
        // SAFETY: a field of the live mapping (see `new`).
        unsafe { (&raw mut (*self.ptr.as_ptr()).hint).write_volatile(u64::from(outgrew)) };
    }

    /// The call counter, incremented; returns the old value.
    fn next_call(self) -> u64 {
        // SAFETY: a field of the live mapping (see `new`).
        unsafe {
            let at = &raw mut (*self.ptr.as_ptr()).calls;
            let n = at.read_volatile();
            at.write_volatile(n.wrapping_add(1));
            n
        }
    }
}

/// A thread's shared page (see the module docs), with the spill file that
/// comes with it where the system has one.
pub(crate) struct SharedPage {
    mapping: SharedMapping,
    /// The process that made it.
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    owner: Pid,
    /// The spill file, kept by number and checked before every use.
    spill: Cell<Option<KeptFile>>,
}

impl SharedPage {
    /// Thread-local pages need `std`.
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) fn new() -> Result<Self, Errno> {
        Ok(Self {
            mapping: SharedMapping::new()?,
            owner: sys::getpid(),
            spill: Cell::new(super::new_spill_file()),
        })
    }

    /// The process that made the page: in its children the page is shared
    /// with it.
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) fn owner(&self) -> Pid {
        self.owner
    }

    pub(crate) fn view(&self) -> PageView<'_> {
        // SAFETY: the mapping lives as long as `self`.
        unsafe { PageView::new(self.mapping.as_ptr()) }
    }

    /// The spill file that comes with this page, checked to still be the
    /// crate's (see [`KeptFile`]). If its number was closed or now names
    /// another file, the number is forgotten (never closed) and a fresh
    /// spill file made.
    pub(crate) fn spill(&self) -> Option<(BorrowedFd<'_>, KeptFile)> {
        let mut kept = self.spill.get()?;
        if kept.get().is_none() {
            kept = super::new_spill_file()?;
            self.spill.set(Some(kept));
        }
        // SAFETY: checked above (or just made); the page keeps it open for
        // as long as it lives.
        Some((unsafe { kept.borrow() }, kept))
    }

    /// This thread's call counter, incremented: part of each call's nonce.
    /// It lives in the page because the page is shared: `fork` does not
    /// write-protect it, so unlike a counter in the parent's own memory,
    /// updating it after a fork costs no page fault. A child can change it,
    /// which can only make a later nonce repeat an earlier one if the clock
    /// and the stack, mixed in with it, repeat too.
    pub(crate) fn next_call(&self) -> u64 {
        self.view().next_call()
    }

    /// Whether this thread's last blocking call returned more than the
    /// page holds, so that the next one should stream through a pipe (see
    /// [`crate::call::plan`]).
    pub(crate) fn prefers_pipe(&self) -> bool {
        self.view().hint()
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        if let Some(spill) = self.spill.get() {
            spill.close();
        }
    }
}

/// Lends `f` this thread's shared result page (and this process's pid),
/// made on first use and kept for the thread's life (one `mmap` per
/// thread, not per call). Blocking calls on one thread never overlap, so
/// one page serves them all; a call made from inside the parent's own
/// decoding (a `Deserialize` impl that calls back in) starts only after
/// the page was copied out. Without `std` there are no thread-locals, and
/// results always take the pipe.
///
/// A page belongs to the process that made it: in a forked process the
/// thread's page is still its parent's, shared with it and with the
/// parent's later calls. So a call made there (by a callable, or in a
/// process forked some other way, such as a pre-forked worker) uses a
/// second thread-local page, made by that process at its first call and
/// kept. Only a process whose both pages are inherited (a worker's
/// worker) makes a page for each call. Either way the crate's own calls
/// never write to a page or spill file an ancestor uses. (The inherited
/// mappings and descriptors stay open in the child, like everything else
/// it inherits: the child's own result still goes to its parent's page.)
/// The common path only reads the thread-locals: a write would cost a
/// page fault after every fork.
pub(crate) fn with_thread_page<R>(f: impl FnOnce(Option<&SharedPage>, Pid) -> R) -> R {
    let pid = sys::getpid();
    #[cfg(feature = "std")]
    {
        use core::cell::OnceCell;
        std::thread_local! {
            static PAGE: OnceCell<Option<SharedPage>> = const { OnceCell::new() };
            static FORKED: OnceCell<Option<SharedPage>> = const { OnceCell::new() };
        }
        let owned = |p: &Option<SharedPage>| !matches!(p, Some(page) if page.owner() != pid);
        // `try_with`, not `with`: a call made from a thread-local
        // destructor may find the pages already destroyed. It then makes a
        // page of its own, as a worker's worker does.
        let mut f = Some(f);
        let mut answer = None;
        let _ = PAGE.try_with(|page| {
            let page = page.get_or_init(|| SharedPage::new().ok());
            if owned(page) {
                answer = f.take().map(|f| f(page.as_ref(), pid));
                return;
            }
            let _ = FORKED.try_with(|forked| {
                let forked = forked.get_or_init(|| SharedPage::new().ok());
                if owned(forked) {
                    answer = f.take().map(|f| f(forked.as_ref(), pid));
                }
            });
        });
        match (answer, f) {
            (Some(answer), _) => answer,
            (None, Some(f)) => f(SharedPage::new().ok().as_ref(), pid),
            // `answer` is set whenever `f` is taken.
            (None, None) => unreachable!(),
        }
    }
    #[cfg(not(feature = "std"))]
    {
        f(None, pid)
    }
}

/// The parent side: copies the frames a child left in the page, once the
/// child has exited.
pub(crate) struct Reader<'a> {
    page: PageView<'a>,
    /// The page held a whole, accepted value.
    pub(crate) delivered: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(page: PageView<'a>) -> Self {
        Self {
            page,
            delivered: false,
        }
    }

    /// Records for the thread's next call whether this call's result
    /// outgrew the page.
    pub(crate) fn record_hint(&self) {
        self.page.set_hint(!self.delivered);
    }
}

impl Collect for Reader<'_> {
    /// Only after the exit, and only if nothing else carried frames: the
    /// bytes are copied out before the decoder sees them, a small buffer at
    /// a time (every stack page the parent touches after a fork costs a
    /// fault), so nothing that still maps the page can change what was
    /// checked.
    fn collect<S: Sink>(&mut self, feed: &mut Feed<'_, S>, ended: bool) -> bool {
        if !ended {
            return false;
        }
        if !feed.decoder.untouched() {
            return true;
        }
        let Head::Frames(len) = self.page.head() else {
            return true;
        };
        let len = len as usize;
        if len == 0 || len > FRAMES {
            return true;
        }
        let mut chunk = [0u8; 256];
        let mut at = 0;
        while at < len && !feed.finished() {
            let n = chunk.len().min(len - at);
            for (i, slot) in chunk[..n].iter_mut().enumerate() {
                *slot = self.page.frame_byte(at + i);
            }
            at += n;
            feed.bytes(&chunk[..n]);
        }
        self.delivered = feed.decoder.end().is_some();
        true
    }
}

/// The child's view of a live shared page: volatile stores into the frames
/// area, then the head word that announces them, last. `Copy`, and a raw
/// pointer inside: the child holds it for the rest of its life, which ends
/// in `_exit` while the mapping still stands.
#[derive(Clone, Copy)]
pub(crate) struct ChildPage {
    page: *mut u8,
}

/// Where the `DATA` body starts in the frames area.
const BODY_AT: usize = HEADER_LEN;

impl ChildPage {
    /// Bytes of the frames area.
    pub(crate) const FRAMES: usize = FRAMES;

    /// # Safety
    ///
    /// `page` must be the first byte of a live shared mapping of
    /// [`SharedMapping::LEN`] bytes, for as long as the view is used.
    #[inline]
    pub(crate) unsafe fn new(page: *mut u8) -> Self {
        Self { page }
    }

    /// Stores `bytes` at `at` in the frames area, one volatile store each:
    /// a loop the compiler could turn into a `memcpy` call would cost the
    /// child a page fault (ARCHITECTURE.md, "Page faults after fork").
    #[inline]
    pub(crate) fn store(self, at: usize, bytes: &[u8]) {
        debug_assert!(at + bytes.len() <= FRAMES);
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: every caller keeps `at + bytes.len()` within the
            // frames area of the live mapping (see `new`).
            unsafe { self.page.add(FRAMES_AT + at + i).write_volatile(b) };
        }
    }

    /// Body byte `i` of the frame stored in the area, as it is now.
    #[inline]
    pub(crate) fn body(self, i: usize) -> u8 {
        assert!(BODY_AT + i < FRAMES);
        // SAFETY: inside the frames area of the live mapping.
        unsafe { self.page.add(FRAMES_AT + BODY_AT + i).read_volatile() }
    }

    #[inline]
    fn set_head(self, word: u32) {
        let bytes = word.to_le_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: the head word of the live mapping.
            unsafe { self.page.add(i).write_volatile(b) };
        }
    }

    /// Announces `len` bytes of frames stored in the area.
    #[inline]
    pub(crate) fn publish(self, len: usize) {
        #[allow(clippy::cast_possible_truncation)] // below one page
        self.set_head(len as u32);
    }

    /// Announces frames written to the spill file, `len` bytes of them.
    #[inline]
    pub(crate) fn announce_spill(self, len: u64) {
        self.store(0, &len.to_le_bytes());
        self.set_head(SPILLED);
    }

    /// Leaves the child's report `record` (see [`crate::report`]).
    #[inline]
    pub(crate) fn report(self, record: &[u8; RECORD_LEN]) {
        self.store(0, record);
        self.set_head(REPORTED);
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    extern crate std;

    use super::*;
    use crate::sink::VecSink;
    use crate::wire::{Checksum, Decoder};

    /// The most body bytes that leave room for the header and `END`.
    const BODY_MAX: usize = FRAMES - HEADER_LEN - crate::wire::END_FRAME_LEN;

    /// Runs the child's page encoder over `value` in a page-sized buffer;
    /// returns whether it fit, and the buffer.
    fn to_page<T: serde::Serialize>(value: &T, nonce: u64) -> (bool, std::vec::Vec<u64>) {
        use crate::encode::{FrameWriter, PageStore, serialize};
        // u64s, for the layout's alignment.
        let mut page = std::vec![0u64; SharedMapping::LEN / 8];
        let mut checksum = Checksum::new(nonce);
        let error = Cell::new(None);
        // SAFETY: a buffer of SharedMapping::LEN bytes, alive for the call.
        let area = unsafe { ChildPage::new(page.as_mut_ptr().cast()) };
        let writer = FrameWriter::new(PageStore::new(area, &mut checksum), &error);
        let fit = match serialize(value, writer) {
            Ok(mut done) => {
                let len = done.end();
                done.store.publish(len);
                true
            }
            Err(_) => false,
        };
        (fit, page)
    }

    /// What the parent's `Reader` makes of the page: the decoded payload,
    /// if the frames are complete and verify.
    fn parent_reads(page: &mut [u64], nonce: u64) -> Option<std::vec::Vec<u8>> {
        // SAFETY: a buffer of SharedMapping::LEN bytes, alive for the call.
        let view = unsafe { PageView::new(NonNull::new(page.as_mut_ptr().cast()).unwrap()) };
        let mut decoder = Decoder::new(nonce);
        let mut sink = VecSink::new(usize::MAX);
        let mut read_error = None;
        let mut feed = Feed {
            decoder: &mut decoder,
            sink: &mut sink,
            read_error: &mut read_error,
        };
        let mut reader = Reader::new(view);
        assert!(reader.collect(&mut feed, true));
        reader.delivered.then(|| sink.bytes().to_vec())
    }

    #[test]
    fn a_small_value_in_the_page_is_what_postcard_writes_and_verifies() {
        let nonce = 0x1234_5678_9ABC_DEF0;
        let longest = BODY_MAX - 2; // a two-byte length prefix
        let cases: [std::vec::Vec<u8>; 5] = [
            postcard::to_allocvec(&()).unwrap(),
            postcard::to_allocvec(&7u64).unwrap(),
            postcard::to_allocvec(&(1u8, "two", 3.0f64)).unwrap(),
            postcard::to_allocvec(&std::vec![9u8; 300]).unwrap(),
            postcard::to_allocvec(&std::vec![5u8; longest]).unwrap(),
        ];
        let (_, p0) = to_page(&(), nonce);
        let (_, p1) = to_page(&7u64, nonce);
        let (_, p2) = to_page(&(1u8, "two", 3.0f64), nonce);
        let (_, p3) = to_page(&std::vec![9u8; 300], nonce);
        let (fit, p4) = to_page(&std::vec![5u8; longest], nonce);
        assert!(fit, "the largest value that fits");
        for (mut page, expected) in [p0, p1, p2, p3, p4].into_iter().zip(&cases) {
            assert_eq!(parent_reads(&mut page, nonce).as_ref(), Some(expected));
            // Another call's nonce does not verify it.
            assert_eq!(parent_reads(&mut page, nonce ^ 1), None);
        }
    }

    #[test]
    fn a_value_one_byte_too_large_leaves_the_length_word_alone() {
        let (fit, page) = to_page(&std::vec![5u8; BODY_MAX - 1], 3);
        assert!(!fit);
        assert_eq!(page[0] & 0xFFFF_FFFF, 0);
    }

    #[test]
    fn the_named_fields_sit_where_the_protocol_says() {
        let mut page = std::vec![0u64; SharedMapping::LEN / 8];
        // SAFETY: a buffer of SharedMapping::LEN bytes, alive for the test.
        let view = unsafe { PageView::new(NonNull::new(page.as_mut_ptr().cast()).unwrap()) };
        view.set_hint(true);
        assert_eq!(view.next_call(), 0);
        assert_eq!(view.next_call(), 1);
        // SAFETY: as above.
        unsafe { ChildPage::new(view.as_ptr()) }.announce_spill(0xABCD);
        assert_eq!(view.spilled(), Some(0xABCD));
        assert!(view.hint());
        assert_eq!(page[SharedMapping::LEN / 8 - 2], 1, "hint at 4080");
        assert_eq!(page[SharedMapping::LEN / 8 - 1], 2, "calls at 4088");
        assert_eq!(page[0] & 0xFFFF_FFFF, u64::from(SPILLED));
        view.clear();
        assert_eq!(view.spilled(), None);
    }
}
