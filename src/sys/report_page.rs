//! A page of shared memory for one call's child to report a failure of
//! its own in (see [`crate::report`]).

use core::ptr::NonNull;

use rustix::io::Errno;

/// A page mapped for one call that has no shared result page, only so
/// that its child can report a failure of its own (see
/// [`crate::report`]). Fresh anonymous memory is zero: no report. The parent
/// never touches it unless the child exited without a complete stream,
/// so on the common path it costs an `mmap` and a `munmap`.
pub(crate) struct ReportPage(NonNull<u8>);

// SAFETY: the mapping is owned; the receiver that holds it may move to
// another thread, and only ever reads it there (with volatile reads).
unsafe impl Send for ReportPage {}

impl ReportPage {
    const LEN: usize = 4096;

    /// `mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED |
    /// MAP_ANONYMOUS)`—A fresh page that a child forked after it shares.
    pub(crate) fn new() -> Result<Self, Errno> {
        use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous};
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing aliases nothing.
        let ptr = unsafe {
            mmap_anonymous(
                core::ptr::null_mut(),
                Self::LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
            )?
        };
        NonNull::new(ptr.cast()).map(Self).ok_or(Errno::NOMEM)
    }

    pub(crate) fn as_ptr(&self) -> NonNull<u8> {
        self.0
    }
}

impl Drop for ReportPage {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.0.as_ptr().cast(), Self::LEN) };
    }
}
