//! Memory shared with the children: the page a result or a report is left
//! in.

use rustix::io::Errno;

/// `mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)`—A
/// page of memory shared with every child forked while it lives: a
/// thread's [`SharedPage`](crate::transport::page::SharedPage), or the page
/// a call without one lends its child for a report of a failure of its own
/// (see [`crate::report`]). Fresh anonymous memory is zero. Unmapped on
/// drop.
///
/// # References
///  - [POSIX `mmap`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/mmap.html)
///  - [POSIX `munmap`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/munmap.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/mmap.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=mmap&sektion=2)
///  - [Apple](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/mmap.2.html)
pub(crate) struct SharedMapping(core::ptr::NonNull<u8>);

// SAFETY: the mapping is owned, and only ever accessed through volatile
// reads and writes of plain bytes, from any thread.
unsafe impl Send for SharedMapping {}

impl SharedMapping {
    /// Bytes of the mapping: one page on every supported system.
    pub(crate) const LEN: usize = 4096;

    /// `mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED |
    /// MAP_ANONYMOUS)`—Maps the page. Before the fork, so that a failure
    /// means the callable never started.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/mmap.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/mmap.2.html)
    ///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=mmap&sektion=2)
    ///  - [Apple](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/mmap.2.html)
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
        core::ptr::NonNull::new(ptr.cast())
            .map(Self)
            .ok_or(Errno::NOMEM)
    }

    /// No call—The first byte.
    pub(crate) fn as_ptr(&self) -> core::ptr::NonNull<u8> {
        self.0
    }
}

impl Drop for SharedMapping {
    /// `munmap(ptr, LEN)`—Unmaps the page; any child still running keeps
    /// its own mapping of it.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/munmap.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/munmap.2.html)
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.0.as_ptr().cast(), Self::LEN) };
    }
}
