//! [`IsolatedChild`]: a spawned call you can join, poll or kill.

use core::marker::PhantomData;
use core::time::Duration;

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use rustix::process::Pid;
use serde::de::DeserializeOwned;

use crate::drive::Driven;
use crate::errors::{CallableExecutedError, MemIsolateError};
use crate::sink::VecSink;
use crate::sys::ResourceUsage;

/// A callable running in a forked child, started by
/// [`Isolate::spawn`](crate::Isolate::spawn).
///
/// - [`join`](Self::join) blocks until the value (or the error) is in.
/// - [`try_join`](Self::try_join) never blocks, for event loops.
/// - With the `tokio` feature, `child.await` (see [`ChildFuture`]).
/// - [`AsFd`] and [`AsRawFd`]: the descriptor is readable whenever
///   `try_join` can make progress, so any other runtime (smol, async-io)
///   can await it without this crate depending on one.
/// - [`kill`](Self::kill) stops the child at once.
/// - Dropping the handle kills and reaps the child: no child outlives its
///   handle and no zombie is left behind. With
///   [`kill_descendants`](crate::Isolate::kill_descendants) (the default),
///   `kill`, drop and the deadline end the processes the callable started
///   too.
///
/// Options set on the [`Isolate`](crate::Isolate) (timeout, result cap)
/// apply while the handle is being joined or polled; the timeout counts
/// from the spawn, and a child found already ended when the handle is
/// joined or polled after its deadline keeps its outcome (see
/// [`Isolate::timeout`](crate::Isolate::timeout)).
///
/// The handle is `Send`, and the child lives as long as the handle, not
/// as long as the thread that spawned it: a pool's worker or a runtime's
/// thread may exit first. It dies with the parent *process* on Linux,
/// Android and FreeBSD (on Linux and Android through a caught
/// `SIGRTMAX`: see [Platforms](crate#platforms)). Readiness through
/// [`AsFd`] needs
/// the child to be watched (a pidfd, Linux 5.3 and later, or kqueue); on
/// older kernels poll `try_join` instead.
///
/// # Example
///
/// ```
/// use mem_isolate::Isolate;
///
/// // Start two children, do something else, then collect both.
/// let squares = Isolate::new().spawn(|| (1..=4u32).map(|i| i * i).collect::<Vec<_>>())?;
/// let greeting = Isolate::new().spawn(|| format!("hello from {}", std::process::id()))?;
/// assert_eq!(squares.join()?, [1, 4, 9, 16]);
/// assert!(greeting.join()?.starts_with("hello from "));
/// # Ok::<(), mem_isolate::MemIsolateError>(())
/// ```
#[cfg_attr(not(feature = "tokio"), doc = "")]
#[cfg_attr(not(feature = "tokio"), doc = "[`ChildFuture`]: crate#async-code")]
#[cfg_attr(feature = "tokio", doc = "")]
#[cfg_attr(feature = "tokio", doc = "[`ChildFuture`]: crate::ChildFuture")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub struct IsolatedChild<T> {
    driven: Driven<'static, VecSink>,
    taken: bool,
    _value: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> IsolatedChild<T> {
    pub(crate) fn new(driven: Driven<'static, VecSink>) -> Self {
        Self {
            driven,
            taken: false,
            _value: PhantomData,
        }
    }

    /// The child's process id.
    ///
    /// It names the child until the child is reaped (by `join`, a finished
    /// `try_join`, `kill` or drop); after that the id may be reused.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::Isolate;
    ///
    /// let child = Isolate::new().spawn(std::process::id)?;
    /// let pid = child.pid();
    /// // The child reports its own process id: the same one.
    /// assert_eq!(child.join()?, pid.as_raw_nonzero().get() as u32);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    #[must_use]
    pub fn pid(&self) -> Pid {
        self.driven.call().pid()
    }

    /// Waits for the child to finish and returns its value.
    ///
    /// # Errors
    ///
    /// See [`MemIsolateError`].
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::Isolate;
    ///
    /// let child = Isolate::new().spawn(|| "done".to_string())?;
    /// assert_eq!(child.join()?, "done");
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    pub fn join(self) -> Result<T, MemIsolateError> {
        self.join_with_usage().0
    }

    /// Like [`join`](Self::join), and also returns what the child consumed
    /// (peak RSS and CPU time, from `wait4`), when it could be reaped.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::Isolate;
    ///
    /// let child = Isolate::new().spawn(|| vec![1u8; 32 << 20].len())?;
    /// let (result, usage) = child.join_with_usage();
    /// assert_eq!(result?, 32 << 20);
    /// let usage = usage.expect("the child was reaped");
    /// assert!(usage.max_rss_bytes >= 32 << 20); // the child touched 32 MiB
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    pub fn join_with_usage(mut self) -> (Result<T, MemIsolateError>, Option<ResourceUsage>) {
        call_span!("mem_isolate::join");
        self.driven.advance(None);
        let result = self.take();
        (result, self.driven.call().usage())
    }

    /// Makes whatever progress is possible without blocking: reads the
    /// result bytes that have arrived, notices the child's exit, enforces
    /// the deadline. Returns `Ok(Some(value))` once the child has finished,
    /// `Ok(None)` while it is still running.
    ///
    /// # Errors
    ///
    /// The call's error once the child has finished (see
    /// [`MemIsolateError`]), and
    /// [`ResultAlreadyTaken`](CallableExecutedError::ResultAlreadyTaken) if
    /// the value was already returned by an earlier call.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use mem_isolate::Isolate;
    ///
    /// let mut child = Isolate::new().spawn(|| {
    ///     std::thread::sleep(Duration::from_millis(20));
    ///     7u8
    /// })?;
    /// let value = loop {
    ///     if let Some(value) = child.try_join()? {
    ///         break value;
    ///     }
    ///     // Not finished yet: do other work (here, just wait a little).
    ///     std::thread::sleep(Duration::from_millis(5));
    /// };
    /// assert_eq!(value, 7);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    pub fn try_join(&mut self) -> Result<Option<T>, MemIsolateError> {
        if self.driven.advance(Some(Duration::ZERO)) {
            self.take().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Kills the child (`SIGKILL`) and reaps it. A child that had already
    /// finished is left as it was, so a later `join` still returns its value;
    /// otherwise `join` reports
    /// [`ChildProcessKilledBySignal`](crate::errors::CallableStatusUnknownError::ChildProcessKilledBySignal).
    ///
    /// # Errors
    ///
    /// [`WaitFailed`](crate::errors::CallableStatusUnknownError::WaitFailed)
    /// if the signal could not be sent or the child not reaped.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::{Isolate, MemIsolateError};
    /// use mem_isolate::errors::CallableStatusUnknownError;
    ///
    /// let mut child = Isolate::new().spawn(|| -> u8 { loop { std::hint::spin_loop() } })?;
    /// child.kill()?;
    /// assert_eq!(
    ///     child.join(),
    ///     Err(MemIsolateError::CallableStatusUnknown(
    ///         CallableStatusUnknownError::ChildProcessKilledBySignal(libc::SIGKILL)
    ///     ))
    /// );
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    pub fn kill(&mut self) -> Result<(), MemIsolateError> {
        // Collect anything already finished first, so that a completed
        // child keeps its value.
        self.driven.advance(Some(Duration::ZERO));
        self.driven.stop();
        self.driven.call().kill_result()
    }

    /// What the child consumed, once it has been reaped: `None` before.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::Isolate;
    ///
    /// let mut child = Isolate::new().spawn(|| 1u8)?;
    /// assert_eq!(child.usage(), None); // not reaped yet
    /// while child.try_join()?.is_none() {
    ///     std::thread::yield_now();
    /// }
    /// assert!(child.usage().is_some());
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    #[must_use]
    pub fn usage(&self) -> Option<ResourceUsage> {
        self.driven.call().usage()
    }

    fn take(&mut self) -> Result<T, MemIsolateError> {
        if self.taken {
            return Err(CallableExecutedError::ResultAlreadyTaken.into());
        }
        let result = self.driven.call_mut().outcome();
        if result.is_ok() {
            self.taken = true;
        }
        result
    }
}

/// The descriptor an event loop waits on: it becomes readable whenever
/// [`try_join`](IsolatedChild::try_join) can make progress.
///
/// # Example
///
// Without `std`, rustix's `AsFd` is its own trait rather than std's.
#[cfg_attr(feature = "std", doc = "```")]
#[cfg_attr(not(feature = "std"), doc = "```ignore")]
/// use std::os::fd::{AsFd, AsRawFd};
/// use mem_isolate::Isolate;
///
/// let mut child = Isolate::new().spawn(|| 40 + 2)?;
/// let value = loop {
///     let mut ready = libc::pollfd {
///         fd: child.as_fd().as_raw_fd(),
///         events: libc::POLLIN,
///         revents: 0,
///     };
///     // SAFETY: one valid pollfd; waits at most a second.
///     unsafe { libc::poll(&mut ready, 1, 1000) };
///     if let Some(value) = child.try_join()? {
///         break value;
///     }
/// };
/// assert_eq!(value, 42);
/// # Ok::<(), mem_isolate::MemIsolateError>(())
/// ```
///
/// On Linux the descriptor is an epoll instance over the pipe and the
/// pidfd, made by [`spawn`](crate::Isolate::spawn) before the fork (a
/// system that refuses it, `EMFILE` or `ENOMEM`, fails the spawn with
/// [`WatchSetupFailed`](crate::errors::CallableDidNotExecuteError::WatchSetupFailed)),
/// so asking for it cannot fail; elsewhere it is the handle's kqueue.
impl<T> AsFd for IsolatedChild<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self.driven.ready_fd() {
            Some(fd) => fd,
            // `Isolate::spawn` makes every handle's watch with
            // `WaitMode::Queue`, whose queue exists from before the fork
            // (see `ChildWatch::ready_fd`).
            None => unreachable!("a spawned handle's watch has its queue"),
        }
    }
}

/// The same descriptor as [`AsFd`], for APIs that take [`AsRawFd`], such as
/// tokio's `AsyncFd` and async-io's `Async`.
///
/// Without the `tokio` feature, any runtime awaits a child through it: wait
/// until it is readable, call [`try_join`](IsolatedChild::try_join), and
/// wait again while that returns `Ok(None)`. With smol or async-io:
///
/// ```ignore
/// let mut child = async_io::Async::new(Isolate::new().spawn(|| 6 * 7)?)?;
/// let value = loop {
///     // SAFETY: `try_join` neither closes nor replaces the descriptor.
///     if let Some(value) = unsafe { child.get_mut() }.try_join()? {
///         break value;
///     }
///     child.readable().await?;
/// };
/// ```
///
/// A deadline set with [`Isolate::timeout`](crate::Isolate::timeout) is
/// kept only when `try_join` runs, so such a loop should also wake by the
/// deadline (for example with a runtime timer raced against `readable`).
impl<T> AsRawFd for IsolatedChild<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// `child.await`: the child's result, as [`join`](IsolatedChild::join)
/// returns it, waited for through tokio's reactor (see [`ChildFuture`]).
/// Dropping the future kills and reaps the child, as dropping the handle
/// does.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mem_isolate::Isolate;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let child = Isolate::new().spawn(|| vec![1u8; 3])?;
/// assert_eq!(child.await?, [1, 1, 1]);
///
/// // Given up on: the child is killed and reaped.
/// let slow = Isolate::new().spawn(|| std::thread::sleep(Duration::from_secs(60)))?;
/// assert!(tokio::time::timeout(Duration::from_millis(20), slow).await.is_err());
/// # Ok::<(), mem_isolate::MemIsolateError>(())
/// # }).unwrap();
/// ```
///
/// [`ChildFuture`]: crate::ChildFuture
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
impl<T: DeserializeOwned> core::future::IntoFuture for IsolatedChild<T> {
    type Output = Result<T, MemIsolateError>;
    type IntoFuture = crate::drive::tokio::ChildFuture<T>;

    fn into_future(self) -> Self::IntoFuture {
        let Self { driven, taken, .. } = self;
        crate::drive::tokio::ChildFuture::new(driven, taken)
    }
}

impl<T> core::fmt::Debug for IsolatedChild<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IsolatedChild")
            .field("pid", &self.driven.call().pid())
            .finish_non_exhaustive()
    }
}
