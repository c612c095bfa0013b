//! The shared page as a [`Store`]: a small value is framed straight into
//! the page's frames area, with neither a `write` nor a `read` (see
//! [`crate::transport::page`], which owns the page's layout and its head
//! word).
//!
//! Every store is volatile: other processes map the page. The checksum is
//! taken from the bytes as they are stored, never read back from the page,
//! so whatever else maps the page cannot get its own bytes vouched for. It
//! is borrowed, not held, to keep the writer small enough to move without
//! a `memcpy` call (ARCHITECTURE.md, "Page faults after fork").

use rustix::io::Errno;

use super::frames::Store;
use crate::transport::page::ChildPage;
use crate::wire::Checksum;

/// The page's frames area as a [`Store`]: one frame, never sent.
pub(crate) struct PageStore<'c> {
    area: ChildPage,
    checksum: &'c mut Checksum,
}

impl<'c> PageStore<'c> {
    /// `checksum` must be fresh, seeded with the call's nonce.
    #[inline]
    pub(crate) fn new(area: ChildPage, checksum: &'c mut Checksum) -> Self {
        Self { area, checksum }
    }

    /// Body byte `i` as it is in the page now.
    #[inline]
    pub(crate) fn body(&self, i: usize) -> u8 {
        self.area.body(i)
    }

    /// The running checksum of the body stored so far.
    #[inline]
    pub(crate) fn running_checksum(&self) -> u64 {
        self.checksum.finish()
    }

    /// Announces `len` bytes of frames in the page's head word: the value
    /// is there for the parent.
    #[inline]
    pub(crate) fn publish(&self, len: usize) {
        self.area.publish(len);
    }
}

impl Store for PageStore<'_> {
    #[inline]
    fn len(&self) -> usize {
        ChildPage::FRAMES
    }

    #[inline]
    fn put_byte(&mut self, at: usize, byte: u8) {
        self.put_long(at, &[byte]);
    }

    #[inline]
    fn put_short(&mut self, at: usize, bytes: &[u8]) {
        self.put_long(at, bytes);
    }

    #[inline]
    fn put_long(&mut self, at: usize, bytes: &[u8]) {
        self.area.store(at, bytes);
        self.checksum.update(bytes);
    }

    #[inline]
    fn put_framing(&mut self, at: usize, bytes: &[u8]) {
        self.area.store(at, bytes);
    }

    #[inline]
    fn sealed(&mut self, _end: usize) {}

    /// The page holds one frame: a value that outgrows it moves to the
    /// staging buffer before this could be reached (see
    /// [`ResultWriter`](super::result::ResultWriter)).
    fn send(&mut self, _len: usize) -> Result<(), Errno> {
        Err(Errno::NOBUFS)
    }

    #[inline]
    fn checksum(&self) -> u64 {
        self.checksum.finish()
    }
}
