//! A worker: the zygote's child for one call. It runs the crate's own
//! child path ([`child::run_prepared`]) over the call's result pipe, so
//! that its value, panic, serializer failure, signal, memory limit and cap
//! behave exactly as a spawned call's do. The arguments are decoded once
//! the worker is set up (its group, its parent-death signal, its memory
//! limit): a failure there is a setup failure, and the callable never runs.

extern crate alloc;

use alloc::vec::Vec;

use rustix::fd::{AsFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::Pid;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::child::{self, ChildPlan, ChildRoute};
use crate::sys;

/// The worker's arguments, as the zygote received them.
pub(crate) enum Args<'z> {
    /// In the worker's copy of the zygote's buffer.
    Inline(&'z [u8]),
    /// Still to be read from the call's args socket: this many bytes.
    Socket(OwnedFd, u64),
}

/// Everything a worker is given, apart from the code it runs.
pub(crate) struct Job<'z> {
    /// The caller's `fn(A) -> T`, as an address.
    pub(crate) f: u64,
    pub(crate) zygote: Pid,
    pub(crate) nonce: u64,
    pub(crate) own_group: bool,
    pub(crate) memory_limit: Option<u64>,
    /// The result pipe's write end.
    pub(crate) write: OwnedFd,
    pub(crate) args: Args<'z>,
}

/// A worker's entry point: [`entry`] for one `A` and `T`, as an address
/// the caller sends and the worker calls.
pub(crate) type Entry = for<'z> fn(Job<'z>) -> !;

/// The address of [`entry`] for `A` and `T`.
pub(crate) fn entry_address<A, T>() -> u64
where
    A: DeserializeOwned,
    T: Serialize,
{
    let entry: Entry = entry::<A, T>;
    entry as usize as u64
}

/// Runs in the worker: decodes the arguments, runs `f` on them, sends its
/// value, `_exit`s.
///
/// Reached through an address the caller sent: the zygote is a fork of
/// the caller's program image, made before the caller could load more
/// code, so every function the caller names has the same address there
/// (see the crate's `Zygote` docs for what this asks of users).
fn entry<A, T>(job: Job<'_>) -> !
where
    A: DeserializeOwned,
    T: Serialize,
{
    let Job {
        f,
        zygote,
        nonce,
        own_group,
        memory_limit,
        write,
        args,
    } = job;
    // SAFETY: the caller sent the address of a `fn(A) -> T` of this same
    // program image, with this `entry::<A, T>` (the pair is monomorphized
    // together in `call::zygote::start`); a function pointer and a `usize`
    // have the same size.
    #[allow(clippy::cast_possible_truncation)] // an address of this process
    let f = unsafe { core::mem::transmute::<usize, fn(A) -> T>(f as usize) };
    let plan = ChildPlan {
        parent: zygote,
        memory_limit,
        nonce,
        own_group,
        // The zygote is single-threaded: its one thread is the process.
        outlives_thread: false,
        // The caller's report page is not mapped here; a worker that
        // cannot deliver is reported by how it ended.
        report: None,
        // Refused before the request (`call::zygote::start`).
        sandbox: None,
        route: ChildRoute {
            write: Some(write),
            spill: None,
            page: None,
            cap: u64::MAX,
        },
    };
    child::run_prepared(
        move || {
            let args: A = decode(args)?;
            Ok(move || f(args))
        },
        &plan,
        || {},
    )
}

/// The arguments, decoded. Their bytes came from the caller through the
/// zygote: decoding never panics (postcard's), and must use every byte.
fn decode<A: DeserializeOwned>(args: Args<'_>) -> Result<A, Errno> {
    let bytes;
    let slice = match args {
        Args::Inline(slice) => slice,
        Args::Socket(socket, len) => {
            bytes = read_all(&socket, len)?;
            &bytes[..]
        }
    };
    match postcard::take_from_bytes::<A>(slice) {
        Ok((args, [])) => Ok(args),
        _ => Err(Errno::BADMSG),
    }
}

/// Reads exactly `len` bytes from the args socket: within the worker's
/// memory limit (`ENOMEM` past it), and `EBADMSG` if the caller's end
/// closes first.
fn read_all(socket: &OwnedFd, len: u64) -> Result<Vec<u8>, Errno> {
    let len = usize::try_from(len).map_err(|_| Errno::NOMEM)?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).map_err(|_| Errno::NOMEM)?;
    bytes.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        match sys::recv_some(socket.as_fd(), &mut bytes[filled..], true)? {
            Some(0) | None => return Err(Errno::BADMSG),
            Some(n) => filled += n,
        }
    }
    Ok(bytes)
}
