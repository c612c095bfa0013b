//! How the child reports a failure of its own, in memory it shares with
//! the parent, so that no exit code is reserved.
//!
//! When the child cannot deliver its result (its write to the pipe or the
//! spill file failed), the stream cannot say so. Rather than exit with a
//! code of its own, which a callable's `exit` with the same code would
//! imitate, the child leaves a record in a page shared with the parent and
//! exits with status 0:
//!
//! ```text
//! head      u32     REPORTED (the page's head word, see crate::transport::page)
//! then, in the page's frames area:
//! offset 0  kind      u8      see Failure
//! offset 1  zero      [u8;3]
//! offset 4  errno     i32 LE  (0 for Failure::Unwound)
//! offset 8  checksum  u64 LE  over kind and errno, seeded by the call's nonce
//! ```
//!
//! The head word goes in last. The page is the blocking call's shared page
//! (where the marker takes the place of the result's length word, which
//! the parent clears before each fork), or, for calls that have none
//! (spawned handles, builds without `std`), a page mapped for the call
//! ([`sys::SharedMapping`](crate::sys::SharedMapping)). The parent reads it only
//! when the child exited with no complete stream, and believes it only if
//! the checksum matches this call's nonce: a callable that scribbles on
//! the page cannot pass for the crate's own report by accident. A child
//! whose record is missing (no page could be mapped) and that exited with
//! 0 is reported as
//! [`CallableProcessDiedDuringExecution`](crate::errors::CallableStatusUnknownError::CallableProcessDiedDuringExecution).

use rustix::io::Errno;

use crate::transport::page::{ChildPage, Head, PageView, RECORD_LEN};
use crate::wire;

/// What the child reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Writing the result (or the stream's last frame) failed with this
    /// errno.
    WriteFailed(Errno),
    /// Setting up the child failed with this errno, and so did telling
    /// the parent through the stream; the callable never ran.
    SetupFailed(Errno),
    /// The crate's own code in the child unwound (which should never
    /// happen); how far the callable got is unknown.
    Unwound,
}

impl Failure {
    fn encode(self) -> (u8, i32) {
        match self {
            Self::WriteFailed(e) => (1, e.raw_os_error()),
            Self::SetupFailed(e) => (2, e.raw_os_error()),
            Self::Unwound => (3, 0),
        }
    }

    fn decode(kind: u8, errno: i32) -> Option<Self> {
        let valid = || crate::errno::errno_from_raw(errno);
        match kind {
            1 => valid().map(Self::WriteFailed),
            2 => valid().map(Self::SetupFailed),
            3 if errno == 0 => Some(Self::Unwound),
            _ => None,
        }
    }
}

/// The checksum of a report, over what it says, from a seed of its own.
fn checksum(nonce: u64, kind: u8, errno: i32) -> u64 {
    let e = errno.to_le_bytes();
    wire::side_checksum(
        nonce ^ 0x7E90_27ED_F00D_5EED,
        [kind, e[0], e[1], e[2], e[3], 0, 0],
        b"report",
    )
}

/// In the child: leaves `kind` in `page`, if there is one.
/// Allocation-free: volatile stores only.
#[inline]
pub(crate) fn write(page: Option<ChildPage>, nonce: u64, kind: Failure) {
    let Some(page) = page else { return };
    let (k, errno) = kind.encode();
    let mut record = [0u8; RECORD_LEN];
    record[0] = k;
    record[4..8].copy_from_slice(&errno.to_le_bytes());
    record[8..16].copy_from_slice(&checksum(nonce, k, errno).to_le_bytes());
    page.report(&record);
}

/// In the parent, once the child has exited: the report it left in
/// `page` for the call with `nonce`, if there is a valid one.
pub(crate) fn read(page: PageView<'_>, nonce: u64) -> Option<Failure> {
    // Copied out once, into private memory, before anything is checked.
    let Head::Reported(record) = page.head() else {
        return None;
    };
    if record[1..4] != [0; 3] {
        return None;
    }
    let (kind, errno) = (
        record[0],
        i32::from_le_bytes([record[4], record[5], record[6], record[7]]),
    );
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&record[8..16]);
    if u64::from_le_bytes(sum) != checksum(nonce, kind, errno) {
        return None;
    }
    Failure::decode(kind, errno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::SharedMapping;

    #[test]
    fn a_report_is_read_back_only_with_its_own_nonce() {
        let mapping = SharedMapping::new().unwrap();
        // SAFETY: a live mapping of a page, for the whole test.
        let (view, child) = unsafe {
            (
                PageView::new(mapping.as_ptr()),
                ChildPage::new(mapping.as_ptr().as_ptr()),
            )
        };
        assert_eq!(read(view, 5), None, "a fresh page holds none");
        write(Some(child), 5, Failure::WriteFailed(Errno::BADF));
        assert_eq!(read(view, 5), Some(Failure::WriteFailed(Errno::BADF)));
        assert_eq!(read(view, 6), None);
        write(Some(child), 6, Failure::Unwound);
        assert_eq!(read(view, 6), Some(Failure::Unwound));
        // A changed byte spoils it.
        child.store(4, &[9]);
        assert_eq!(read(view, 6), None);
    }
}
