//! Resource limits: the memory limit the child sets itself, and the file
//! size limit that decides between the spill file and the pipe.

use rustix::io::Errno;

use super::address_space_size;

/// `getrlimit(RLIMIT_FSIZE)`—Whether this process may write files of any
/// size (`RLIMIT_FSIZE` unlimited). Writes to the spill file count against
/// that limit, writes to a pipe do not, so under a limit results take the
/// pipe.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/getrlimit.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=getrlimit&sektion=2)
pub(crate) fn file_size_unlimited() -> bool {
    use rustix::process::{Resource, getrlimit};
    getrlimit(Resource::Fsize).current.is_none()
}

/// `setrlimit(RLIMIT_FSIZE)` and `sigaction(SIGXFSZ, SIG_IGN)`—In the
/// child, before its first write to the spill file: raises the
/// soft `RLIMIT_FSIZE` to the hard one, in case the callable lowered it (the
/// parent chose the spill file because it had no limit). The callable is
/// done by then, so nothing of its own is written under the raised limit.
/// Should the hard limit be finite too (the callable lowered both), a
/// write past it must fail with `EFBIG`, reported as a failed write,
/// rather than kill the child with `SIGXFSZ`: the signal is ignored.
/// Allocation-free and async-signal-safe (`setrlimit`, `sigaction`).
///
/// # References
///  - [POSIX `setrlimit`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/getrlimit.html)
///  - [POSIX `sigaction`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/sigaction.html)
///  - [Linux `setrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
///  - [Linux `sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
pub(crate) fn lift_file_size_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Fsize);
    if now.current.is_some() && now.current != now.maximum {
        let _ = setrlimit(
            Resource::Fsize,
            Rlimit {
                current: now.maximum,
                maximum: now.maximum,
            },
        );
    }
    if now.maximum.is_some() {
        // rustix has no `sigaction` outside its unstable runtime module.
        // SAFETY: `sigaction` with a zeroed action (empty mask, no flags)
        // set to SIG_IGN, and no old action requested.
        unsafe {
            let mut ignore: libc::sigaction = core::mem::zeroed();
            ignore.sa_sigaction = libc::SIG_IGN;
            libc::sigaction(libc::SIGXFSZ, &raw const ignore, core::ptr::null_mut());
        }
    }
}

/// `getrlimit(RLIMIT_AS)` and `setrlimit(RLIMIT_AS)`, after the platform's
/// `address_space_size`—In the child: caps the address space at its
/// current size plus `extra` bytes, so the limit means the same in a small
/// process and in one that already maps gigabytes. Allocation-free.
///
/// Asking for more than the hard limit fails with `EINVAL` rather than
/// being quietly lowered.
///
/// # References
///  - [POSIX](https://pubs.opengroup.org/onlinepubs/9799919799/functions/getrlimit.html)
///  - [Linux](https://man7.org/linux/man-pages/man2/getrlimit.2.html)
///  - [FreeBSD](https://man.freebsd.org/cgi/man.cgi?query=getrlimit&sektion=2)
pub(crate) fn limit_memory(extra: u64) -> Result<(), Errno> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let soft = address_space_size()?.saturating_add(extra);
    let old = getrlimit(Resource::As);
    if old.maximum.is_some_and(|hard| soft > hard) {
        return Err(Errno::INVAL);
    }
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(soft),
            maximum: old.maximum,
        },
    )
}
