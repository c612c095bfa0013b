//! The spill file: a blocking call's transport for a value that outgrows
//! the shared page, with no pipe to make. Compiled everywhere; only Linux
//! and Android make one (a memfd, see `sys::spill_file`), so elsewhere a
//! page never has one and the plan never picks it.
//!
//! Each thread's [`SharedPage`](super::page::SharedPage) comes with a
//! memfd. A child whose value outgrows the page `pwrite`s its frames there
//! from offset 0 ([`SpillEmit`]) and announces their length in the page on
//! its way out; the parent reads them after the exit and empties the file
//! ([`SpillCollect`]). Such a call needs no pipe, and without a deadline
//! no pidfd either: the cheapest way for a call that turns out small.
//!
//! Nobody reads the file while the child writes, so the child stops itself
//! just past the cap, to bound the file; the parent enforces the cap
//! anyway, as for every transport. Writes to a file count against
//! `RLIMIT_FSIZE`, so a process under that limit gets a pipe instead (see
//! [`crate::call::plan`]), and the child raises a soft limit its callable
//! lowered before it writes.

use core::cell::Cell;

use rustix::fd::BorrowedFd;
use rustix::io::Errno;

use super::page::PageView;
use super::{Collect, Emit, Feed};
use crate::sink::Sink;
use crate::sys::{self, KeptFile};

/// The child side: the spill file, checked against the identity the parent
/// took when it made it, and the offset of the next write.
#[derive(Clone, Copy)]
pub(crate) struct SpillEmit<'a> {
    fd: sys::CheckedFd<'a>,
    offset: &'a Cell<u64>,
}

impl<'a> SpillEmit<'a> {
    pub(crate) fn new(fd: BorrowedFd<'a>, id: (u64, u64), offset: &'a Cell<u64>) -> Self {
        Self {
            fd: sys::CheckedFd::known(fd, id),
            offset,
        }
    }

    /// Bytes written so far: what the page announces on the way out.
    pub(crate) fn written(self) -> u64 {
        self.offset.get()
    }
}

impl Emit for SpillEmit<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        let fd = self.fd.get()?;
        if self.offset.get() == 0 {
            sys::lift_file_size_limit();
        }
        sys::pwrite_all(fd, bytes, self.offset.get())?;
        self.offset.set(self.offset.get() + bytes.len() as u64);
        Ok(())
    }
}

/// The parent side: reads what the page announces, once the child has
/// exited, then empties the file.
pub(crate) struct SpillCollect<'a> {
    page: PageView<'a>,
    file: Option<KeptFile>,
}

impl<'a> SpillCollect<'a> {
    pub(crate) fn new(page: PageView<'a>, file: KeptFile) -> Self {
        Self {
            page,
            file: Some(file),
        }
    }

    /// Empties the file, if this call has not yet: whatever the child
    /// wrote there, a value or the start of one before it died or was
    /// killed, goes back now rather than waiting in memory for the
    /// thread's next spill. Never a descriptor whose number now names
    /// someone else's file, and no `ftruncate` for a file left empty (the
    /// usual case: the value fitted in the page).
    pub(crate) fn empty(&mut self) {
        if let Some((file, true)) = self.file.take().as_ref().and_then(KeptFile::get_if_used) {
            sys::truncate(file);
        }
    }
}

impl Collect for SpillCollect<'_> {
    /// After the exit, the length the page announces is the child's word:
    /// no more is read than the file really stored when reading began (a
    /// grandchild may still be extending it, and a sparse file's holes
    /// would cost its writer nothing; see [`sys::file_size`]), nor past the
    /// sink's limit. The deadline does not cut it short: a child found
    /// ended keeps its outcome, and what it stored it wrote within its
    /// time, as a pipe's writer does.
    fn collect<S: Sink>(&mut self, feed: &mut Feed<'_, S>, ended: bool) -> bool {
        if !ended {
            return false;
        }
        let (Some(len), Some(kept)) = (self.page.spilled(), self.file) else {
            return true;
        };
        if !feed.decoder.untouched() {
            return true;
        }
        // Its number may have been closed and reused since the fork: then
        // the result is out of reach.
        let Some(file) = kept.get() else {
            *feed.read_error = Some(Errno::BADF);
            return true;
        };
        let len = match sys::file_size(file) {
            Ok(size) => len.min(size),
            Err(e) => {
                *feed.read_error = Some(e);
                return true;
            }
        };
        let mut at = 0u64;
        feed.pump(|buf| {
            let want = usize::try_from(len - at).map_or(buf.len(), |left| left.min(buf.len()));
            if want == 0 {
                return Ok(Some(0));
            }
            let got = sys::pread_into(file, &mut buf[..want], at)?.len();
            at += got as u64;
            Ok(Some(got))
        });
        true
    }
}
