//! The result pipe: making it, and writing to it from the child.

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;

use super::above_stdio;

/// `pipe2(O_CLOEXEC | O_NONBLOCK)`—The result pipe: `(read end, write
/// end)`, both numbered 3 or above (see [`above_stdio`]) and both
/// close-on-exec, so that a program the callable `exec`s does
/// not inherit them. The read end is non-blocking, so the parent only ever
/// blocks in its readiness wait, where deadlines apply.
///
/// # References
///  - [POSIX `pipe`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/pipe.html)
///  - [Linux `pipe2(2)`](https://man7.org/linux/man-pages/man2/pipe2.2.html)
///  - [FreeBSD `pipe2(2)`](https://man.freebsd.org/cgi/man.cgi?query=pipe2&sektion=2)
#[cfg(not(apple))]
pub(crate) fn result_pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    // Non-blocking from birth, which saves two `fcntl` calls per call.
    // The flag lives on each end's open file; the write end's copy only
    // makes the child's `write_all` wait in `poll` instead of `write`.
    use rustix::pipe::PipeFlags;
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// `pipe()`, then `fcntl(F_SETFD, FD_CLOEXEC)` on both ends and
/// `fcntl(F_SETFL, O_NONBLOCK)` on the read end—The result pipe: `(read
/// end, write end)`, both numbered 3 or above (see [`above_stdio`]) and
/// both close-on-exec, so that a program the callable `exec`s does not
/// inherit them. The read end is non-blocking, so the parent only ever
/// blocks in its readiness wait, where deadlines apply.
///
/// macOS has no `pipe2`: there the flags are set with `fcntl` straight
/// after (`O_NONBLOCK` on the read end only).
/// Another thread forking between the two calls could leak the descriptors
/// into its child; that child would hold the write end open, which the
/// parent tolerates (it never waits for end-of-file).
///
/// # References
///  - [POSIX `pipe`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/pipe.html)
///  - [POSIX `fcntl`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/fcntl.html)
///  - [Apple `pipe(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/pipe.2.html)
///  - [Apple `fcntl(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/fcntl.2.html)
#[cfg(apple)]
pub(crate) fn result_pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let (r, w) = rustix::pipe::pipe()?;
    let (r, w) = (above_stdio(r)?, above_stdio(w)?);
    rustix::io::fcntl_setfd(&r, rustix::io::FdFlags::CLOEXEC)?;
    rustix::io::fcntl_setfd(&w, rustix::io::FdFlags::CLOEXEC)?;
    fcntl_setfl(&r, fcntl_getfl(&r)? | OFlags::NONBLOCK)?;
    Ok((r, w))
}

/// `write(fd, buf)`, and `poll(fd, POLLOUT)` while it is full—Writes all
/// of `buf`, retrying on `EINTR` and waiting in `poll` while a non-blocking
/// `fd` is full. Allocation-free and async-signal-safe: the child writes its
/// result with it.
///
/// # References
///  - [POSIX `write`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/write.html)
///  - [POSIX `poll`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/poll.html)
///  - [Linux `write(2)`](https://man7.org/linux/man-pages/man2/write.2.html)
///  - [Linux `poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
///  - [FreeBSD `write(2)`](https://man.freebsd.org/cgi/man.cgi?query=write&sektion=2)
///  - [FreeBSD `poll(2)`](https://man.freebsd.org/cgi/man.cgi?query=poll&sektion=2)
///  - [Apple `write(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/write.2.html)
///  - [Apple `poll(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/poll.2.html)
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), Errno> {
    use rustix::event::{PollFd, PollFlags, poll};
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(0) => return Err(Errno::PIPE),
            Ok(n) => buf = &buf[n..],
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                // Writable again once the reader makes room; a reader that
                // is gone shows as POLLERR, and the next write says EPIPE.
                let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::OUT)];
                match poll(&mut fds, None) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What a pipe is taken to hold where the system does not say (see
/// `pipe_capacity`): Linux says, and macOS and FreeBSD pipes hold at most
/// 64 KiB, so this is more than enough.
pub(super) const ASSUMED_PIPE_CAPACITY: usize = 1 << 20;
