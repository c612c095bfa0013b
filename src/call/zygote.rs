//! A call through a zygote, caller side: [`start`] sends the request and
//! returns the same [`Call`] a forked call has (its route a pipe), with a
//! watch that waits on the pipe and the call's socket. How the worker ended
//! comes back as a reply on that socket ([`reap`]), and a kill goes out on
//! it ([`kill`]): the caller never acts on the worker's pid.

extern crate alloc;

use alloc::vec::Vec;

use rustix::fd::{AsFd, BorrowedFd};
use rustix::io::Errno;
use rustix::process::Pid;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::plan::Route;
use super::state::{ReportAt, Start};
use super::{Call, Options};
use crate::errors::{CallableDidNotExecuteError as NotRun, ErrorText, MemIsolateError};
use crate::sink::Sink;
use crate::sys::{self, ChildWatch, Exit, ResourceUsage, WaitMode, Watch};
use crate::zygote::wire::{INLINE_ARGS_MAX, REPLY_LEN, REQUEST_LEN, Reply, Request};
use crate::zygote::worker;

/// The zygote a call goes through: its control socket and its pid.
#[derive(Clone, Copy)]
pub(crate) struct Via<'z> {
    pub(crate) control: BorrowedFd<'z>,
    pub(crate) zygote: Pid,
}

/// Sends the call of `f` on `args` to the zygote and waits for it to fork
/// the worker; returns the parent's side of the call, which collects the
/// result into `sink` and waits as `mode` says (a blocking call's
/// `Direct`: a `poll` over the pipe and the call's socket, no queue to
/// make and fill). Every failure here is `CallableDidNotExecute`: no
/// worker ran `f`.
pub(crate) fn start<A, T, S>(
    via: Via<'_>,
    options: &Options,
    f: fn(A) -> T,
    args: &A,
    sink: S,
    mode: WaitMode,
) -> Result<(Call<'static, S>, Watch), MemIsolateError>
where
    A: Serialize + DeserializeOwned,
    T: Serialize + DeserializeOwned,
    S: Sink,
{
    if options.memory_limit.is_some() && !sys::MEMORY_LIMIT_SUPPORTED {
        return Err(NotRun::MemoryLimitUnsupported.into());
    }
    // The filters live in this process's memory, not the worker's.
    if options.sandbox.clone()?.is_some() {
        return Err(NotRun::SandboxUnsupported(crate::errors::SandboxUnsupported::Zygote).into());
    }
    let args = encode_args(args)?;
    let (read, write) = sys::result_pipe().map_err(NotRun::PipeCreationFailed)?;
    let (mine, theirs) = sys::socket_pair().map_err(NotRun::PipeCreationFailed)?;
    let inline = args.len() <= INLINE_ARGS_MAX;
    let args_socket = if inline {
        None
    } else {
        Some(sys::socket_pair().map_err(NotRun::PipeCreationFailed)?)
    };
    let mut watch = Watch::new(read.as_fd(), mode).map_err(NotRun::WatchSetupFailed)?;
    let nonce = super::nonce(via.zygote, None);
    let request = Request {
        entry: worker::entry_address::<A, T>(),
        f: f as usize as u64,
        nonce,
        own_group: options.kill_descendants,
        memory_limit: options.memory_limit,
        args_len: args.len() as u64,
        inline,
    };
    let started = sys::now();
    let worker_end = args_socket.as_ref().map(|(_, theirs)| theirs.as_fd());
    send(
        via,
        &request,
        &args,
        [write.as_fd(), theirs.as_fd()],
        worker_end,
    )?;
    // Only the worker may hold the write end (see `call::start`), and only
    // the zygote its end of the call socket.
    drop(write);
    drop(theirs);
    let pid = await_started(mine.as_fd(), options.timeout, started)?;
    if let Some((mine, worker_end)) = args_socket {
        drop(worker_end);
        // A worker that dies first (a memory limit too small for its
        // arguments) closes its end: `EPIPE` here, and its end is what the
        // call reports.
        let _ = sys::send_all(mine.as_fd(), &args);
    }
    watch.watch_through(mine);
    let call = Call::new(Start {
        pid,
        group: options.kill_descendants,
        route: Route::pipe_only(read),
        report: ReportAt::None,
        nonce,
        sink,
        timeout: options.timeout,
        started,
    });
    Ok((call, watch))
}

/// Waits for the zygote's answer to the request: the worker's pid, or
/// why there is none. The deadline counts from the call's start: a zygote
/// that does not answer in time (stopped, or starved) times the call out;
/// should it fork the worker later, it finds the call's socket closed and
/// kills it.
fn await_started(
    socket: BorrowedFd<'_>,
    timeout: Option<core::time::Duration>,
    started: core::time::Duration,
) -> Result<Pid, MemIsolateError> {
    if let Some(timeout) = timeout {
        let left = timeout.saturating_sub(sys::now().saturating_sub(started));
        if !sys::readable_within(socket, left).map_err(NotRun::ZygoteUnavailable)? {
            return Err(crate::errors::CallableStatusUnknownError::TimedOut(timeout).into());
        }
    }
    match read_reply(socket) {
        Ok(Reply::Started(pid)) => Ok(pid),
        Ok(Reply::Refused(e)) => Err(NotRun::ForkFailed(e).into()),
        Ok(Reply::Ended(..)) => Err(NotRun::ZygoteUnavailable(Errno::PROTO).into()),
        Err(e) => Err(NotRun::ZygoteUnavailable(e).into()),
    }
}

/// Sends `request` (with `args` inline, if it says so) and the
/// descriptors the worker and the zygote take over, in one record.
fn send(
    via: Via<'_>,
    request: &Request,
    args: &[u8],
    [write, theirs]: [BorrowedFd<'_>; 2],
    args_socket: Option<BorrowedFd<'_>>,
) -> Result<(), NotRun> {
    let mut record = [0u8; REQUEST_LEN + INLINE_ARGS_MAX];
    record[..REQUEST_LEN].copy_from_slice(&request.encode());
    let mut len = REQUEST_LEN;
    if request.inline {
        record[len..len + args.len()].copy_from_slice(args);
        len += args.len();
    }
    let mut fds = heapless::Vec::<BorrowedFd<'_>, 3>::new();
    let _ = fds.push(write);
    let _ = fds.push(theirs);
    if let Some(fd) = args_socket {
        let _ = fds.push(fd);
    }
    sys::send_with_fds(via.control, &record[..len], &fds).map_err(NotRun::ZygoteUnavailable)
}

/// The arguments, serialized with postcard; a failure keeps the
/// serializer's message (see [`crate::capture`]).
fn encode_args<A: Serialize>(args: &A) -> Result<Vec<u8>, MemIsolateError> {
    use postcard::ser_flavors::{AllocVec, Flavor};
    let mut serializer = postcard::Serializer {
        output: AllocVec::new(),
    };
    let failed = |_| -> MemIsolateError {
        let text: ErrorText = crate::capture::ser_message();
        NotRun::ArgumentsNotSerialized(text).into()
    };
    crate::capture::serialize(args, &mut serializer).map_err(failed)?;
    serializer.output.finalize().map_err(failed)
}

/// Reads one reply from the call's socket, waiting for it. End-of-file
/// (the zygote is gone) is `ECONNRESET`; bytes no zygote sends are
/// `EPROTO`.
fn read_reply(socket: BorrowedFd<'_>) -> Result<Reply, Errno> {
    match read_record(socket, true)? {
        Some(bytes) => Reply::decode(&bytes).ok_or(Errno::PROTO),
        None => Err(Errno::AGAIN),
    }
}

/// One record, or `None` when `wait` is false and none is there yet.
fn read_record(socket: BorrowedFd<'_>, wait: bool) -> Result<Option<[u8; REPLY_LEN]>, Errno> {
    let mut bytes = [0u8; REPLY_LEN];
    let mut filled = match sys::recv_some(socket, &mut bytes, wait)? {
        None => return Ok(None),
        Some(0) => return Err(Errno::CONNRESET),
        Some(n) => n,
    };
    // The zygote sends a record in one call: the rest is on its way.
    while filled < REPLY_LEN {
        match sys::recv_some(socket, &mut bytes[filled..], true)? {
            Some(0) | None => return Err(Errno::CONNRESET),
            Some(n) => filled += n,
        }
    }
    Ok(Some(bytes))
}

/// How the worker ended, from the zygote's reply on the call's `socket`
/// (`block`: wait for it). The zygote gone before replying is
/// `ECONNRESET`.
pub(crate) fn reap(
    socket: BorrowedFd<'_>,
    block: bool,
) -> Result<Option<(Exit, ResourceUsage)>, Errno> {
    match read_record(socket, block)? {
        None => Ok(None),
        Some(bytes) => match Reply::decode(&bytes) {
            Some(Reply::Ended(exit, usage)) => Ok(Some((exit, usage))),
            _ => Err(Errno::PROTO),
        },
    }
}

/// Asks the zygote to kill the worker (and its group, if it leads one).
/// A zygote already gone has nothing left to kill: success.
pub(crate) fn kill(socket: BorrowedFd<'_>) -> Result<(), Errno> {
    match sys::send_all(socket, b"K") {
        Ok(()) | Err(Errno::PIPE | Errno::CONNRESET) => Ok(()),
        Err(e) => Err(e),
    }
}
