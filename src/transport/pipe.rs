//! The pipe: the streaming transport.
//!
//! The child `write`s a frame each time its staging buffer fills
//! ([`PipeEmit`]); the parent reads whatever is there each time the read
//! end is readable, while the child still runs ([`PipeCollect`]), so on two
//! or more cores the two copies overlap. Spawned handles always take it
//! (several of their children may be alive at once, and none may share a
//! thread's page); blocking calls take it after a result that outgrew the
//! page, and where there is no spill file.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;

use super::{Collect, Emit, Feed, Pumped};
use crate::sink::Sink;
use crate::sys;

/// When a result spills past the staging buffer, the child asks for a pipe
/// this large, so the rest moves in fewer, larger copies.
const WIDE_PIPE: usize = 1 << 20;

/// The most a running child's pipe is read in one pass: as much as the
/// widest pipe the child asks for. The parent then gets back to its wait,
/// and notices the child's exit even while something keeps the pipe full.
const PASS: usize = WIDE_PIPE;

/// The child side: the pipe's write end, with the identity of the file it
/// named before the callable ran (see [`sys::CheckedFd`]).
#[derive(Clone, Copy)]
pub(crate) struct PipeEmit<'a> {
    fd: sys::CheckedFd<'a>,
}

impl<'a> PipeEmit<'a> {
    /// Records the identity of the file behind `fd`, now.
    pub(crate) fn new(fd: BorrowedFd<'a>) -> Self {
        Self {
            fd: sys::CheckedFd::now(fd),
        }
    }
}

impl Emit for PipeEmit<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        sys::write_all(self.fd.get()?, bytes)
    }

    fn spilling(&mut self) {
        if let Ok(fd) = self.fd.get() {
            sys::widen_pipe(fd, WIDE_PIPE);
        }
    }
}

/// The parent side: the pipe's read end, non-blocking.
pub(crate) struct PipeCollect {
    read: Option<OwnedFd>,
}

impl PipeCollect {
    pub(crate) fn new(read: OwnedFd) -> Self {
        Self { read: Some(read) }
    }

    /// The read end, to wait on, until the stream ended or was rejected.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.read.as_ref().map(AsFd::as_fd)
    }

    /// Closes the read end: nothing more is read, and a grandchild writing
    /// to the pipe can no longer wake the parent.
    #[inline]
    pub(crate) fn close(&mut self) -> Option<OwnedFd> {
        self.read.take()
    }
}

impl Collect for PipeCollect {
    /// Reads what the pipe holds now, straight into the sink where the
    /// bytes are the value's.
    ///
    /// While the child runs, the reading stops after [`PASS`] bytes. Once
    /// the child has ended, all it can have left in the pipe is the pipe's
    /// capacity: that much is read, and then the stream counts as ended,
    /// so that a grandchild still writing cannot keep the parent here.
    fn collect<S: Sink>(&mut self, feed: &mut Feed<'_, S>, ended: bool) -> bool {
        let Some(read) = &self.read else {
            return true;
        };
        let fd = read.as_fd();
        let mut budget = if ended { sys::pipe_capacity(fd) } else { PASS };
        let pumped = feed.pump(|buf| {
            if budget == 0 {
                return Ok(if ended { Some(0) } else { None });
            }
            let n = buf.len().min(budget);
            let got = sys::read_into(fd, &mut buf[..n])?.map(|b| b.len());
            budget -= got.unwrap_or(0);
            Ok(got)
        });
        pumped == Pumped::Done
    }
}
