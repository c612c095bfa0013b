//! Unix-domain sockets: a zygote's control socket and each of its calls'
//! sockets (see `crate::zygote`). Stream sockets everywhere (macOS has no
//! `SOCK_SEQPACKET` for the Unix domain), carrying records of a fixed size
//! that each side sends in one call.

use core::mem::MaybeUninit;

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::{Errno, IoSlice, IoSliceMut};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use super::above_stdio;

/// The most descriptors one record carries.
pub(crate) const MAX_FDS: usize = 3;

/// `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`—Two connected
/// stream sockets, numbered 3 or above (see [`above_stdio`]) and
/// close-on-exec. A write to one whose peer is gone fails with `EPIPE`
/// rather than raising `SIGPIPE` (see [`send_all`]).
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/socketpair.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/socketpair.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=socketpair&sektion=2)
#[cfg(not(apple))]
pub(crate) fn socket_pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((above_stdio(a)?, above_stdio(b)?))
}

/// `socketpair(AF_UNIX, SOCK_STREAM)`, then `fcntl(F_SETFD, FD_CLOEXEC)`
/// and `setsockopt(SO_NOSIGPIPE)` on both—Two connected stream sockets,
/// numbered 3 or above (see [`above_stdio`]) and close-on-exec. macOS has
/// neither `SOCK_CLOEXEC` nor `MSG_NOSIGNAL`: the flags are set straight
/// after (a fork by another thread in between could leak the pair into
/// its child, which only delays an end-of-file the crate never relies on
/// alone).
///
/// # References
///  - [Apple `socketpair(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/socketpair.2.html)
///  - [Apple `setsockopt(2)`](https://developer.apple.com/library/archive/documentation/System/Conceptual/ManPages_iPhoneOS/man2/setsockopt.2.html)
#[cfg(apple)]
pub(crate) fn socket_pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::empty(),
        None,
    )?;
    let (a, b) = (above_stdio(a)?, above_stdio(b)?);
    for fd in [&a, &b] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        rustix::net::sockopt::set_socket_nosigpipe(fd, true)?;
    }
    Ok((a, b))
}

/// `MSG_NOSIGNAL`, where sends take it (macOS sets `SO_NOSIGPIPE` on the
/// socket instead).
#[cfg(not(apple))]
const NO_SIGNAL: SendFlags = SendFlags::NOSIGNAL;
#[cfg(apple)]
const NO_SIGNAL: SendFlags = SendFlags::empty();

/// `sendmsg(sock, bytes, SCM_RIGHTS(fds), MSG_NOSIGNAL)`—Sends one record
/// and the descriptors it hands over, in one call, retrying on `EINTR`. A
/// record this small goes out whole (a stream socket queues a send that
/// fits its buffer as one piece), so threads sharing the socket never
/// interleave their records; a short send is reported as `EMSGSIZE`.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/sendmsg.html)
///  - [Linux `unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
///  - [FreeBSD `unix(4)`](https://man.freebsd.org/cgi/man.cgi?query=unix&sektion=4)
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Errno> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if fds.len() > MAX_FDS || !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Errno::INVAL);
    }
    let iov = [IoSlice::new(bytes)];
    loop {
        match rustix::net::sendmsg(sock, &iov, &mut control, NO_SIGNAL) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(_) => return Err(Errno::MSGSIZE),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// `recvmsg(sock, buf, MSG_CMSG_CLOEXEC)`—Receives up to `buf.len()`
/// bytes and the descriptors that came with them, into `fds` (each moved
/// to 3 or above, close-on-exec). Returns the bytes received (0 at
/// end-of-file) and how many descriptors, `None` if some were lost (more
/// than `fds` holds, or cut off by the kernel: `MSG_CTRUNC`), in which
/// case all are closed. The bytes are received either way, so that a
/// stream of records stays in step.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/recvmsg.html)
///  - [Linux `unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
///  - [FreeBSD `unix(4)`](https://man.freebsd.org/cgi/man.cgi?query=unix&sektion=4)
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut [Option<OwnedFd>; MAX_FDS],
) -> Result<(usize, Option<usize>), Errno> {
    #[cfg(not(apple))]
    let flags = RecvFlags::CMSG_CLOEXEC;
    #[cfg(apple)]
    let flags = RecvFlags::empty();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let got = loop {
        match rustix::net::recvmsg(sock, &mut iov, &mut control, flags) {
            Ok(got) => break got,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    };
    let mut count = 0;
    let mut lost = got.flags.contains(ReturnFlags::CTRUNC);
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            for fd in received {
                match fds.get_mut(count) {
                    Some(slot) => {
                        *slot = Some(fd);
                        count += 1;
                    }
                    None => lost = true,
                }
            }
        }
    }
    for slot in fds.iter_mut().take(count) {
        if let Some(fd) = slot.take() {
            #[cfg(apple)]
            let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
            match above_stdio(fd) {
                Ok(fd) => *slot = Some(fd),
                Err(_) => lost = true,
            }
        }
    }
    if lost {
        for slot in fds.iter_mut() {
            drop(slot.take());
        }
        return Ok((got.bytes, None));
    }
    Ok((got.bytes, Some(count)))
}

/// `send(sock, bytes, MSG_NOSIGNAL)`—Sends all of `bytes`, retrying on
/// `EINTR` and after a partial send. A peer that is gone is `EPIPE`, never
/// `SIGPIPE`.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/send.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/send.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=send&sektion=2)
pub(crate) fn send_all(sock: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match rustix::net::send(sock, bytes, NO_SIGNAL) {
            Ok(0) => return Err(Errno::PIPE),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `recv(sock, buf, MSG_DONTWAIT?)`—Receives what is there, up to
/// `buf.len()` bytes; with `wait`, waits for something first. `Ok(None)`
/// when nothing is there and `wait` is false; `Ok(Some(0))` at
/// end-of-file. A connection reset by a peer that died is end-of-file too.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/recv.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/recv.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=recv&sektion=2)
pub(crate) fn recv_some(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    wait: bool,
) -> Result<Option<usize>, Errno> {
    let flags = if wait {
        RecvFlags::empty()
    } else {
        RecvFlags::DONTWAIT
    };
    loop {
        match rustix::net::recv(sock, &mut *buf, flags) {
            Ok((n, _)) => return Ok(Some(n)),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(None),
            Err(Errno::CONNRESET) => return Ok(Some(0)),
            Err(e) => return Err(e),
        }
    }
}

/// `poll(fd, POLLIN, timeout)`—Whether `fd` becomes readable (data,
/// end-of-file or an error) within `timeout`; `EINTR` waits again for
/// what is left.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/poll.html)
pub(crate) fn readable_within(
    fd: BorrowedFd<'_>,
    timeout: core::time::Duration,
) -> Result<bool, Errno> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let until = super::now().saturating_add(timeout);
    loop {
        let left = until.saturating_sub(super::now());
        let ts = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}
