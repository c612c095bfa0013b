//! Descriptors: keeping them off 0-2, telling which file a number names,
//! reading and writing them, and the descriptor the crate keeps between
//! calls ([`KeptFile`]).

use core::mem::MaybeUninit;

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;

/// `fcntl(fd, F_DUPFD_CLOEXEC, 3)`—Moves a descriptor the crate just made
/// off 0, 1 and 2, closing the original; a descriptor already at 3 or above
/// is returned as it is, at no cost.
///
/// A program started with its standard descriptors closed (by some service
/// managers, or a daemon that closed them) gets the lowest free numbers for
/// whatever it opens next: without this, the result pipe or the spill file
/// could become a callable's stderr, so that its logging corrupts its own
/// result, or keep descriptor 0 for good. Every descriptor the crate makes
/// goes through here.
///
/// # References
///  - [POSIX `fcntl`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fcntl.html)
///  - [Linux `fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
///  - [FreeBSD `fcntl(2)`](https://man.freebsd.org/cgi/man.cgi?query=fcntl&sektion=2)
///  - [Apple `fcntl(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/fcntl.2.html)
pub(crate) fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, Errno> {
    use rustix::fd::AsRawFd;
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, 3)
}

/// `fstat(fd)`—The `(device, inode)` pair naming the file behind `fd`.
/// Allocation-free: the child uses it to notice that its result
/// descriptor number was closed and reused for some other file.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=fstat&sektion=2)
#[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)] // field types differ by platform (macOS: i32 st_dev)
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> Result<(u64, u64), Errno> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// `read(fd, buf)`—Reads into a possibly uninitialized buffer, retrying on
/// `EINTR`. Returns the bytes read (empty at end-of-file), or `None` when
/// no data is ready.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/read.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/read.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=read&sektion=2)
///  - [Apple](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/read.2.html)
pub(crate) fn read_into<'b>(
    fd: BorrowedFd<'_>,
    buf: &'b mut [core::mem::MaybeUninit<u8>],
) -> Result<Option<&'b mut [u8]>, Errno> {
    let len = loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok((filled, _)) => break filled.len(),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e),
        }
    };
    // SAFETY: `read` initialized the first `len` bytes.
    Ok(Some(unsafe {
        core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), len)
    }))
}

/// A descriptor the child checks before each write: the identity (see
/// [`file_id`]) of the file it must name. A callable may close the
/// descriptor and open something else that gets the same number; the
/// check makes the write fail with `EBADF` rather than land in a
/// stranger's file. Allocation-free.
#[derive(Clone, Copy)]
pub(crate) struct CheckedFd<'a> {
    fd: BorrowedFd<'a>,
    id: Option<(u64, u64)>,
}

impl<'a> CheckedFd<'a> {
    /// `fstat(fd)`—Takes the identity of the file behind `fd` now; a
    /// failure leaves no identity, so that every [`CheckedFd::get`] fails.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
    ///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=fstat&sektion=2)
    pub(crate) fn now(fd: BorrowedFd<'a>) -> Self {
        Self {
            fd,
            id: file_id(fd).ok(),
        }
    }

    /// No call—`fd`, which must name the file whose identity is `id`
    /// (taken before, by [`file_id`]).
    pub(crate) fn known(fd: BorrowedFd<'a>, id: (u64, u64)) -> Self {
        Self { fd, id: Some(id) }
    }

    /// `fstat(fd)`—The descriptor, if it still names its file; `EBADF`
    /// otherwise.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
    ///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=fstat&sektion=2)
    pub(crate) fn get(self) -> Result<BorrowedFd<'a>, Errno> {
        if self.id.is_some() && file_id(self.fd).ok() == self.id {
            Ok(self.fd)
        } else {
            Err(Errno::BADF)
        }
    }
}

/// `ftruncate(fd, 0)`—Empties a file, best effort: a file that could not
/// be emptied is overwritten by its next use.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/ftruncate.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/ftruncate.2.html)
pub(crate) fn truncate(fd: BorrowedFd<'_>) {
    let _ = rustix::fs::ftruncate(fd, 0);
}

/// `fstat(fd)`—The bytes the file behind `fd` really holds: its size, but
/// no more than the storage allocated to it (`st_blocks`, in 512-byte
/// units). A sparse file's holes read as zeros without costing anyone
/// anything, so a writer could make a file of any size for free; what it
/// really wrote, it paid for.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let st = rustix::fs::fstat(fd)?;
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let stored = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
    Ok(size.min(stored))
}

/// A descriptor the crate keeps between calls, by number, with the identity
/// (device and inode, see [`file_id`]) of the file it named when the crate
/// made it.
///
/// The program around the crate may close every descriptor it does not
/// own (`close_range(3, ~0)`, or a loop over `/proc/self/fd`) and then open
/// files of its own, which take the freed numbers. So the number alone
/// proves nothing: before every use, [`KeptFile::get`] checks that it still
/// names the same file. When it does not, the crate never writes,
/// truncates or closes it again; it forgets the number and makes a fresh
/// descriptor instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeptFile {
    fd: rustix::fd::RawFd,
    id: (u64, u64),
}

impl KeptFile {
    /// `fstat(fd)`—Takes over `fd`, noting the identity of its file.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
    ///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=fstat&sektion=2)
    pub(crate) fn new(fd: OwnedFd) -> Result<Self, Errno> {
        use rustix::fd::{AsFd, IntoRawFd};
        let id = file_id(fd.as_fd())?;
        Ok(Self {
            fd: fd.into_raw_fd(),
            id,
        })
    }

    /// `fstat(fd)`—The descriptor, if its number still names the file it
    /// was made for.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
    ///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=fstat&sektion=2)
    pub(crate) fn get(&self) -> Option<BorrowedFd<'_>> {
        // SAFETY: only borrowed long enough to ask what it names; if the
        // number was closed, `fstat` fails with EBADF.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        (file_id(fd).ok() == Some(self.id)).then_some(fd)
    }

    /// `fstat(fd)`—As [`KeptFile::get`], and whether the file holds
    /// anything (a size or storage), from the same call: an empty file
    /// needs no `ftruncate`.
    ///
    /// # References
    ///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [Linux](https://man7.org/linux/man-pages/man2/fstat.2.html)
    #[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)] // as in `file_id`
    pub(crate) fn get_if_used(&self) -> Option<(BorrowedFd<'_>, bool)> {
        // SAFETY: as in `get`.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let st = rustix::fs::fstat(fd).ok()?;
        ((st.st_dev as u64, st.st_ino as u64) == self.id)
            .then_some((fd, st.st_size != 0 || st.st_blocks != 0))
    }

    /// No call—The identity of the file it was made for.
    pub(crate) fn id(&self) -> (u64, u64) {
        self.id
    }

    /// No call—The descriptor, unchecked, for `'a`.
    ///
    /// # Safety
    ///
    /// Only after [`KeptFile::get`] found it the crate's, and `'a` must
    /// not outlive whatever keeps it open.
    pub(crate) unsafe fn borrow<'a>(&self) -> BorrowedFd<'a> {
        // SAFETY: the caller's promise.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    /// `fstat(fd)`, then `close(fd)`—Closes it if it is still the crate's;
    /// otherwise leaves the number to whoever holds it now.
    ///
    /// # References
    ///  - [POSIX `fstat`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html)
    ///  - [POSIX `close`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/close.html)
    ///  - [Linux `close(2)`](https://man7.org/linux/man-pages/man2/close.2.html)
    pub(crate) fn close(self) {
        if let Some(fd) = self.get() {
            use rustix::fd::AsRawFd;
            // SAFETY: the number names the file the crate made and still
            // owns (checked just now), and nothing uses it after this.
            drop(unsafe { <OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(fd.as_raw_fd()) });
        }
    }
}

/// `pwrite(fd, buf, offset)`—Writes all of `buf` at `offset`, retrying on
/// `EINTR`. Allocation-free and async-signal-safe: the child writes its
/// result into the spill file with it.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/pwrite.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/pwrite.2.html)
pub(crate) fn pwrite_all(fd: BorrowedFd<'_>, mut buf: &[u8], mut offset: u64) -> Result<(), Errno> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, offset) {
            Ok(0) => return Err(Errno::NOSPC),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `pread(fd, buf, offset)`—Reads into a possibly uninitialized buffer,
/// retrying on `EINTR`. Returns the bytes read, empty at end-of-file.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/read.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/pread.2.html)
pub(crate) fn pread_into<'b>(
    fd: BorrowedFd<'_>,
    buf: &'b mut [MaybeUninit<u8>],
    offset: u64,
) -> Result<&'b mut [u8], Errno> {
    loop {
        match rustix::io::pread(fd, &mut *buf, offset) {
            Ok((filled, _)) => {
                let len = filled.len();
                // SAFETY: `pread` initialized the first `len` bytes.
                return Ok(unsafe {
                    core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), len)
                });
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}
