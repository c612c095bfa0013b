//! [`Zygote`]: a warm snapshot of the process, forked early, that serves
//! calls, so that a call costs a fork of the small zygote rather than of
//! the (large, multi-threaded) caller.
//!
//! ```text
//! caller thread ── call::zygote::start ── request (control socket, SCM_RIGHTS) ──┐
//!   │  result pipe <──────────────── worker: child::run_prepared ─┐               │
//!   │  call socket <── Started / Ended ── zygote (server.rs) ─────┴─ fork per request
//!   └─ the same Call, driven by the same drivers
//! ```
//!
//! - `server.rs`: the zygote's single-threaded loop.
//! - `worker.rs`: what a worker runs (the crate's child path).
//! - `wire.rs`: the records on the two sockets.
//! - The caller's side is `call::zygote`.

extern crate alloc;

use rustix::fd::{AsFd, OwnedFd};
use rustix::process::Pid;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::errors::{CallableDidNotExecuteError as NotRun, MemIsolateError};
use crate::{Isolate, IsolatedChild, panic_hook, sys};

mod server;
pub(crate) mod wire;
pub(crate) mod worker;

/// A warm snapshot of the process that serves isolated calls: each call
/// forks the zygote, not the caller.
///
/// Start it first thing in `main`, while the process is small,
/// single-threaded and holds no secrets. Later calls, from any thread,
/// cost a fork of that small process however large the caller has grown,
/// never copy a lock another thread of the caller took after `start`, and
/// never see memory the caller allocated after `start`.
///
/// ```
/// use mem_isolate::{Isolate, Zygote};
/// use std::time::Duration;
///
/// fn word_count(text: String) -> usize {
///     text.split_whitespace().count()
/// }
///
/// let zygote = Zygote::start()?; // first thing in main
/// // ... the program grows, starts threads ...
/// assert_eq!(zygote.run(word_count, "one two three".to_string())?, 3);
/// // Options, and non-capturing closures, as for any call:
/// let doubled = Isolate::new()
///     .timeout(Duration::from_secs(5))
///     .run_in(&zygote, |n: u64| n * 2, 21)?;
/// assert_eq!(doubled, 42);
/// # Ok::<(), mem_isolate::MemIsolateError>(())
/// ```
///
/// # What a call is
///
/// A call is a `fn(A) -> T` and its arguments `A`: the worker runs `f` on
/// a copy of the memory as it was at `start`, so a capturing closure
/// could not work (its captures are not there); a non-capturing closure
/// coerces to a `fn`. The arguments are serialized with postcard and
/// decoded in the worker, and the value comes back exactly as from
/// [`Isolate::spawn`]: every option ([`timeout`](Isolate::timeout),
/// [`memory_limit`](Isolate::memory_limit) (counted from the worker's
/// own, small size), [`max_result_size`](Isolate::max_result_size),
/// [`kill_descendants`](Isolate::kill_descendants)), every error, panic
/// message, signal and usage report is the same, but for a sandbox
/// (feature `sandbox`): its filters are built in the caller's memory, which
/// workers do not share, so a sandboxed call through a zygote is refused
/// with `SandboxUnsupported::Zygote`. Arguments that fail to
/// decode in the worker are
/// [`ChildSetupFailed(EBADMSG)`](crate::errors::CallableDidNotExecuteError::ChildSetupFailed);
/// arguments too large for the worker's memory limit are
/// `ChildSetupFailed(ENOMEM)`.
///
/// # Why the function's address is valid in the zygote
///
/// The caller sends the address of `f` (and of the crate's entry point
/// for `A` and `T`). The zygote is a `fork` of this very process, so it
/// maps the same program at the same addresses, and every function that
/// existed at `start` is at the same address in both. What a user must
/// not do is pass a function that did not exist in the process at
/// `start`: code from a library loaded (`dlopen`, a plugin) after `start`
/// is not mapped in the zygote, and calling it crashes the worker (the
/// call fails with a signal; the zygote and the caller are unharmed), or
/// worse, if something else was mapped at that address. The same goes
/// for statics and other state set up after `start`: the worker sees
/// them as they were at `start`.
///
/// # Threads
///
/// `start` may be called while other threads exist, but do it before: the
/// zygote is a copy of the calling thread alone, and a lock another thread
/// held at that instant (the allocator's, stdout's, a user's `Mutex`) is
/// held for ever in the zygote and in every worker. What `start` buys is
/// that locks taken *after* it never reach a worker. The zygote itself is
/// single-threaded and never runs user code, so `Zygote` is
/// `Send + Sync`: any number of threads may call through one zygote at
/// once, with no lock on the caller's side.
///
/// # Descriptors
///
/// The zygote closes every descriptor but 0, 1 and 2 as it starts, so it
/// keeps none of the caller's alive, and a worker inherits only those
/// three (as they were at `start`: a later `dup2` over the caller's stdout
/// does not reach workers) and its result pipe. A call cannot hand a
/// worker a descriptor; open what the callable needs inside it.
///
/// # Lifetime
///
/// - The zygote dies with the caller's *process* (not with the thread that
///   started it) on Linux and FreeBSD, and goes when its control socket
///   closes on every platform.
/// - Dropping the `Zygote` ends the zygote and every call it is serving:
///   their workers are killed and reaped (no orphan, no zombie), and
///   their handles report
///   [`ChildProcessKilledBySignal(SIGKILL)`](crate::errors::CallableStatusUnknownError::ChildProcessKilledBySignal),
///   unless the worker had already finished (its value stands). `drop`
///   waits for that.
/// - A zygote killed from outside makes every later call fail at once with
///   [`ZygoteUnavailable`](crate::errors::CallableDidNotExecuteError::ZygoteUnavailable);
///   a call in flight ends with `WaitFailed(ECONNRESET)`, never a hang.
/// - A zygote that does not answer (stopped, or starved of CPU) holds up
///   a call only until its [`timeout`](Isolate::timeout), which then
///   reports `TimedOut`; dropping a stopped zygote resumes it so that it
///   can end.
/// - The zygote leads a process group of its own, so a Ctrl-C at the
///   terminal reaches the caller, not the zygote.
///
/// # Platforms
///
/// The zygote reaps its workers itself (`SIGCHLD`, `wait4`) and tells
/// each caller how its worker ended in a reply on that call's own socket:
/// the caller never acts on a pid, and the zygote kills a worker only
/// while it has not reaped it, so pid reuse cannot mislead either side, on
/// Linux, macOS and FreeBSD alike. A worker dies with the zygote
/// (`PR_SET_PDEATHSIG` on Linux, `PROC_PDEATHSIG_CTL` on FreeBSD); macOS
/// has no such call, so there a worker outlives a zygote killed from
/// outside until it finishes (a zygote that shuts down normally kills its
/// workers first), and a zygote killed just after it forked a worker may
/// leave that worker running although the call reports
/// `ZygoteUnavailable`. (On Linux and FreeBSD such a worker is killed
/// before the callable starts: it checks its parent after arming the
/// signal.)
///
/// # Trust
///
/// The zygote runs the function whose address a request names, so
/// anything that can write to the control socket can run code in a
/// worker. Only the caller's process holds that socket (and children it
/// forks with a direct [`Isolate::run`] or [`Isolate::spawn`], which run
/// the caller's own code anyway); workers never hold it, nor any call's
/// socket, so a worker cannot forge another call or how a call ended.
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
#[derive(Debug)]
pub struct Zygote {
    control: OwnedFd,
    pid: Pid,
    /// The process that started it: only that one ends it (see `Drop`).
    owner: Pid,
}

impl Zygote {
    /// Forks the zygote now, and waits until it is ready to serve.
    ///
    /// # Errors
    ///
    /// [`CallableDidNotExecute`](MemIsolateError::CallableDidNotExecute):
    /// [`PipeCreationFailed`](NotRun::PipeCreationFailed) (no socket
    /// pair), [`ForkFailed`](NotRun::ForkFailed), or
    /// [`ZygoteUnavailable`](NotRun::ZygoteUnavailable) if the zygote
    /// could not set itself up.
    pub fn start() -> Result<Self, MemIsolateError> {
        let (control, theirs) = sys::socket_pair().map_err(NotRun::PipeCreationFailed)?;
        let parent = sys::getpid();
        panic_hook::install();
        // SAFETY: the child runs only `server::serve`, which never returns.
        match unsafe { sys::fork() } {
            Ok(Some(pid)) => {
                drop(theirs);
                let zygote = Self {
                    control,
                    pid,
                    owner: parent,
                };
                let mut ready = [0u8; 1];
                match sys::recv_some(zygote.control.as_fd(), &mut ready, true) {
                    Ok(Some(1)) if ready[0] == server::READY => Ok(zygote),
                    Ok(_) => Err(NotRun::ZygoteUnavailable(rustix::io::Errno::CONNRESET).into()),
                    Err(e) => Err(NotRun::ZygoteUnavailable(e).into()),
                }
            }
            Ok(None) => {
                drop(control);
                server::serve(theirs, parent)
            }
            Err(e) => Err(NotRun::ForkFailed(e).into()),
        }
    }

    /// The zygote's process id.
    #[must_use]
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Runs `f(args)` in a worker forked from the zygote, with default
    /// options, and returns its value: [`Isolate::run_in`] with
    /// [`Isolate::new`].
    ///
    /// # Errors
    ///
    /// See [`MemIsolateError`], and [`Zygote`] for what is particular to
    /// calls through a zygote.
    pub fn run<A, T>(&self, f: fn(A) -> T, args: A) -> Result<T, MemIsolateError>
    where
        A: Serialize + DeserializeOwned,
        T: Serialize + DeserializeOwned,
    {
        Isolate::new().run_in(self, f, args)
    }

    /// Starts `f(args)` in a worker forked from the zygote, with default
    /// options, and returns a handle to it: [`Isolate::spawn_in`] with
    /// [`Isolate::new`].
    ///
    /// # Errors
    ///
    /// Only [`MemIsolateError::CallableDidNotExecute`].
    pub fn spawn<A, T>(&self, f: fn(A) -> T, args: A) -> Result<IsolatedChild<T>, MemIsolateError>
    where
        A: Serialize + DeserializeOwned,
        T: Serialize + DeserializeOwned,
    {
        Isolate::new().spawn_in(self, f, args)
    }

    pub(crate) fn via(&self) -> crate::call::zygote::Via<'_> {
        crate::call::zygote::Via {
            control: self.control.as_fd(),
            zygote: self.pid,
        }
    }
}

/// What a call needs of a zygote, owned: a duplicate of the control
/// socket, for a future that must not borrow the [`Zygote`].
#[cfg(feature = "tokio")]
pub(crate) struct Handle {
    control: OwnedFd,
    pid: Pid,
}

#[cfg(feature = "tokio")]
impl Handle {
    pub(crate) fn via(&self) -> crate::call::zygote::Via<'_> {
        crate::call::zygote::Via {
            control: self.control.as_fd(),
            zygote: self.pid,
        }
    }
}

#[cfg(feature = "tokio")]
impl Zygote {
    /// An owned handle on the zygote (its control socket duplicated, at 3
    /// or above): `PipeCreationFailed` if no descriptor is left.
    pub(crate) fn handle(&self) -> Result<Handle, MemIsolateError> {
        let control = rustix::io::fcntl_dupfd_cloexec(&self.control, 3)
            .map_err(NotRun::PipeCreationFailed)?;
        Ok(Handle {
            control,
            pid: self.pid,
        })
    }
}

impl Drop for Zygote {
    /// Ends the zygote: shuts the control socket down (whoever else holds
    /// a copy of it: a child forked by a direct call), so that the zygote
    /// kills and reaps every worker and leaves, then reaps the zygote.
    ///
    /// Only in the process that started it: a copy of the `Zygote` in a
    /// forked copy of that process (which may use it) only closes its own
    /// descriptor when dropped, leaving the zygote to its owner.
    fn drop(&mut self) {
        if sys::getpid() != self.owner {
            return;
        }
        let _ = rustix::net::shutdown(&self.control, rustix::net::Shutdown::Both);
        // A zygote someone stopped would never see the end, and the reap
        // below would wait for ever. It is this process's unreaped child,
        // so its pid is still its own.
        let _ = rustix::process::kill_process(self.pid, rustix::process::Signal::CONT);
        let _ = sys::reap(self.pid, true, false);
    }
}
