//! What went wrong, told in terms of what happened to your callable.
//!
//! Every failure of the [functions at the crate root](crate#functions) and
//! of [`Isolate`](crate::Isolate) is a [`MemIsolateError`], organised in
//! three levels:
//!
//! 1. **The first level says what happened to your callable**, and therefore
//!    what you may safely do next:
//!    - [`MemIsolateError::CallableDidNotExecute`]: it certainly never started.
//!      Retrying is always safe, even for non-idempotent work.
//!    - [`MemIsolateError::CallableExecuted`]: it ran to completion, but its
//!      result could not be delivered. Retry only idempotent work.
//!    - [`MemIsolateError::CallableStatusUnknown`]: it may not have started,
//!      may have been cut off half way, or may have finished; nobody can tell.
//!      Retry only idempotent work.
//! 2. **The second level names the step of `mem-isolate` that failed**
//!    ([`CallableDidNotExecuteError`], [`CallableExecutedError`],
//!    [`CallableStatusUnknownError`]), for logs and for callers who want
//!    to react to one cause in particular.
//! 3. **The third level is the operating system's word** where there is one:
//!    an [`Errno`], a signal number, an exit code.
//!
//! Most programs need only the first level; `examples/error-handling-basic.rs`
//! shows that style and `examples/error-handling-complete.rs` walks through
//! every variant.
//!
//! These errors describe `mem-isolate` itself. Your callable's own failures
//! belong in its return type (a `Result` or an `Option`), which crosses the
//! process boundary like any other value.
//!
//! All error types are `Clone`, `PartialEq`, `Send`, `Sync` and `'static`,
//! exist without `std` (errors carry [`Errno`], not `std::io::Error`), and
//! round-trip through serde so they can be logged or sent elsewhere.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use mem_isolate::{MemIsolateError, execute_in_isolated_process};
//!
//! match execute_in_isolated_process(|| 6 * 7) {
//!     Ok(answer) => assert_eq!(answer, 42),
//!     Err(MemIsolateError::CallableDidNotExecute(_)) => { /* safe to retry */ }
//!     Err(MemIsolateError::CallableExecuted(_)) => { /* it ran; retry only if idempotent */ }
//!     Err(MemIsolateError::CallableStatusUnknown(_)) => { /* retry only if idempotent */ }
//! }
//! # }
//! ```

use core::time::Duration;

pub use rustix::io::Errno;
use serde::{Deserialize, Serialize};

/// The largest panic message, in bytes, that
/// [`CallableExecutedError::CallablePanicked`] carries.
///
/// Longer messages are cut at the last character boundary that fits. The
/// bound keeps [`MemIsolateError`] small (it lives in every `Result` this
/// crate returns) and lets the message cross the process boundary without
/// allocating in the child.
pub const PANIC_MESSAGE_CAPACITY: usize = 96;

/// A panic message carried by [`CallableExecutedError::CallablePanicked`]:
/// at most [`PANIC_MESSAGE_CAPACITY`] bytes of UTF-8.
pub type PanicMessage = heapless::String<PANIC_MESSAGE_CAPACITY, u8>;

/// The error type of every fallible call in this crate.
///
/// The variant tells you what happened to your callable; see the
/// [module documentation](self) for what to do in each case.
///
/// # Example
///
/// ```
/// use mem_isolate::{Isolate, MemIsolateError};
///
/// let mut buffer = [0u8; 16];
/// // A callable that aborts half way: it certainly started.
/// let e = Isolate::new()
///     .run_with_buffer(&mut buffer, || -> u32 { std::process::abort() })
///     .unwrap_err();
/// assert!(matches!(e, MemIsolateError::CallableStatusUnknown(_)));
/// // Errors cross process boundaries and logs: they are serializable.
/// let bytes = postcard::to_allocvec(&e).unwrap();
/// assert_eq!(postcard::from_bytes::<MemIsolateError>(&bytes).unwrap(), e);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MemIsolateError {
    /// Something failed before the callable could start. Because it never
    /// ran, retrying is safe even if it is not idempotent.
    #[error("the callable did not execute: {0}")]
    CallableDidNotExecute(#[source] CallableDidNotExecuteError),

    /// The callable ran to completion (or panicked), but its result could not
    /// be delivered. Retry only if the callable is idempotent.
    #[error("the callable executed, but its result was not delivered: {0}")]
    CallableExecuted(#[source] CallableExecutedError),

    /// Something failed and it cannot be known whether the callable ran, or
    /// how far. Retry only if the callable is idempotent.
    #[error("the callable's status is unknown: {0}")]
    CallableStatusUnknown(#[source] CallableStatusUnknownError),
}

impl MemIsolateError {
    /// True when the callable certainly never started, so retrying it is
    /// always safe.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::Isolate;
    ///
    /// let mut buffer = [0u8; 16];
    /// let e = Isolate::new()
    ///     .run_with_buffer(&mut buffer, || -> u32 { std::process::exit(3) })
    ///     .unwrap_err();
    /// // `exit` ended the callable half way: it did start, so retry it only
    /// // if it is idempotent.
    /// assert!(!e.callable_did_not_execute());
    /// ```
    #[must_use]
    pub fn callable_did_not_execute(&self) -> bool {
        matches!(self, Self::CallableDidNotExecute(_))
    }
}

/// Why the callable never started. Retrying is always safe.
///
/// # Example
///
/// ```
/// use mem_isolate::{Isolate, MemIsolateError};
/// use mem_isolate::errors::CallableDidNotExecuteError;
///
/// let mut outer = [0u8; 64];
/// // In a child of its own, so this process keeps its limits: lower the
/// // hard address-space limit to 1 TiB, then ask for a memory limit that
/// // cannot fit under it.
/// let refused = Isolate::new().run_with_buffer(&mut outer, || {
///     let hard = libc::rlimit { rlim_cur: 1 << 40, rlim_max: 1 << 40 };
///     // SAFETY: lowers this child's own limit.
///     assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &hard) }, 0);
///     let mut inner = [0u8; 8];
///     Isolate::new().memory_limit(1 << 41).run_with_buffer(&mut inner, || 1u8)
/// })?;
/// let e = refused.unwrap_err();
/// assert!(e.callable_did_not_execute());
/// assert!(matches!(
///     e,
///     MemIsolateError::CallableDidNotExecute(
///         CallableDidNotExecuteError::ChildSetupFailed(_) // Linux, FreeBSD
///             | CallableDidNotExecuteError::MemoryLimitUnsupported // macOS
///     )
/// ));
/// # Ok::<(), MemIsolateError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CallableDidNotExecuteError {
    /// Creating the pipe that carries the result failed, typically because
    /// the process ran out of file descriptors (`EMFILE`).
    #[error("creating the result pipe failed: {0}")]
    PipeCreationFailed(#[serde(with = "errno_serde")] Errno),

    /// `fork` failed, typically because of a process limit (`EAGAIN`) or
    /// memory pressure (`ENOMEM`).
    #[error("fork failed: {0}")]
    ForkFailed(#[serde(with = "errno_serde")] Errno),

    /// Setting up the parent's watch on the child failed before the
    /// callable was allowed to start (for example no descriptor was left
    /// for the readiness queue: a spawned handle's epoll instance, or the
    /// kqueue on macOS and FreeBSD).
    #[error("setting up the watch on the child failed: {0}")]
    WatchSetupFailed(#[serde(with = "errno_serde")] Errno),

    /// [`Isolate::memory_limit`](crate::Isolate::memory_limit) was set on a
    /// platform that cannot enforce it (macOS accepts `RLIMIT_AS` and
    /// `RLIMIT_DATA` but does not enforce them), so the child was never
    /// started rather than run unbounded.
    #[error("memory limits cannot be enforced on this platform")]
    MemoryLimitUnsupported,

    /// The child could not apply an option before starting the callable,
    /// for example a memory limit above the process's hard `RLIMIT_AS`
    /// (`EINVAL`). The child exited without running the callable.
    #[error("preparing the child failed: {0}")]
    ChildSetupFailed(#[serde(with = "errno_serde")] Errno),
}

/// The callable ran, but its result could not be delivered. Retry only if
/// the callable is idempotent.
///
/// # Example
///
/// ```
/// use mem_isolate::{Isolate, MemIsolateError};
/// use mem_isolate::errors::CallableExecutedError;
///
/// // The buffer bounds the result: 32 bytes of result do not fit in 8.
/// let mut buffer = [0u8; 8];
/// let e = Isolate::new()
///     .run_with_buffer(&mut buffer, || [1u8; 32])
///     .unwrap_err();
/// assert_eq!(
///     e,
///     MemIsolateError::CallableExecuted(CallableExecutedError::ResultTooLarge { limit: 8 })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CallableExecutedError {
    /// The callable's value could not be serialized in the child, for example
    /// because its `Serialize` implementation returned an error. Bytes the
    /// child had already sent are discarded.
    #[error("serializing the result in the child failed: {0}")]
    SerializationFailed(postcard::Error),

    /// The bytes the child sent were intact but did not decode as the
    /// expected type (for example a `Deserialize` implementation that rejects
    /// what the matching `Serialize` wrote).
    #[error("deserializing the result in the parent failed: {0}")]
    DeserializationFailed(postcard::Error),

    /// The child could not write its result to the pipe (or, for a blocking
    /// call on Linux, to the spill file that stands in for it), for example
    /// because the callable closed the descriptor the result travels on (or
    /// closed it and opened another file under the same number: the child
    /// checks, and writes nothing into that file), or because another
    /// process changed the bytes the child had already put in the shared
    /// page. The child reports this by exiting with
    /// [`CHILD_EXIT_PIPE_WRITE_FAILED`].
    #[error("the child could not write its result to the pipe")]
    ChildPipeWriteFailed,

    /// The callable panicked. The message is the panic payload when it was a
    /// string, cut to [`PANIC_MESSAGE_CAPACITY`] bytes. Only builds with the
    /// `std` feature catch panics; elsewhere a panic ends the child like any
    /// other crash.
    #[error("the callable panicked: {0}")]
    CallablePanicked(PanicMessage),

    /// The result was larger than the parent agreed to accept: the limit set
    /// with [`Isolate::max_result_size`](crate::Isolate::max_result_size), or
    /// the length of the buffer given to the allocation-free API. The parent
    /// stopped reading at the limit and killed the child.
    #[error("the result exceeded the limit of {limit} bytes")]
    ResultTooLarge {
        /// The limit, in bytes of serialized result.
        limit: usize,
    },

    #[cfg_attr(
        feature = "alloc",
        doc = "[`IsolatedChild::try_join`](crate::IsolatedChild::try_join) already handed out this child's value."
    )]
    #[cfg_attr(
        not(feature = "alloc"),
        doc = "`IsolatedChild::try_join` (with the `alloc` feature) already handed out this child's value."
    )]
    #[error("the result was already taken from this handle")]
    ResultAlreadyTaken,
}

/// Something failed and it cannot be known whether the callable ran, or how
/// far. Retry only if the callable is idempotent.
///
/// # Example
///
/// ```
/// use mem_isolate::{Isolate, MemIsolateError};
/// use mem_isolate::errors::CallableStatusUnknownError;
///
/// let mut buffer = [0u8; 8];
/// let e = Isolate::new()
///     .run_with_buffer(&mut buffer, || -> u8 { std::process::exit(3) })
///     .unwrap_err();
/// assert_eq!(
///     e,
///     MemIsolateError::CallableStatusUnknown(
///         CallableStatusUnknownError::UnexpectedChildExitStatus(3)
///     )
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CallableStatusUnknownError {
    /// Waiting for, or stopping, the child failed. `ECHILD` here means
    /// something else in the process reaped the child first (a `SIGCHLD`
    /// handler that calls `wait`, or `SIGCHLD` set to `SIG_IGN`) before it
    /// had delivered a complete result, so its exit status is lost. (A
    /// child reaped elsewhere *after* delivering its result still returns
    /// the value.)
    #[error("waiting for the child failed: {0}")]
    WaitFailed(#[serde(with = "errno_serde")] Errno),

    /// Reading the child's result from the pipe failed.
    #[error("reading the result from the pipe failed: {0}")]
    ParentPipeReadFailed(#[serde(with = "errno_serde")] Errno),

    /// The child exited with status 0 before delivering a complete result:
    /// something inside the callable ended the process (`exit(0)`,
    /// `std::process::exit(0)`), so the callable never returned.
    #[error("the child exited during execution, before delivering a result")]
    CallableProcessDiedDuringExecution,

    /// The child exited with this non-zero code before delivering a
    /// complete result: the code of an `exit` inside the callable. (One
    /// code is `mem-isolate`'s own: 0x70, from a child whose reporting
    /// path unwound, which should never happen.)
    #[error("the child exited with status {0} before delivering a result")]
    UnexpectedChildExitStatus(i32),

    /// The child was killed by this signal, for example `SIGSEGV` from a
    /// crash, `SIGABRT` from an abort or a panic under `panic = "abort"`, or
    /// `SIGKILL` from the out-of-memory killer or
    #[cfg_attr(
        feature = "alloc",
        doc = "[`IsolatedChild::kill`](crate::IsolatedChild::kill)."
    )]
    #[cfg_attr(not(feature = "alloc"), doc = "`IsolatedChild::kill`.")]
    #[error("the child was killed by signal {0}")]
    ChildProcessKilledBySignal(i32),

    /// The deadline set with [`Isolate::timeout`](crate::Isolate::timeout)
    /// passed while the parent waited for a running child (it was killed
    /// and reaped), or before the parent read a result the child left in
    /// the spill file.
    #[error("the call timed out after {0:?}")]
    TimedOut(Duration),

    /// The bytes on the pipe did not follow the protocol, or failed its
    /// checksum: something other than `mem-isolate`'s own child code wrote
    /// to the pipe (the callable, or a process it started). No value is
    /// accepted from such a stream.
    #[error("the result stream was corrupted")]
    ResultStreamCorrupted,
}

/// The exit code with which the child reports that writing its result to the
/// pipe failed (see [`CallableExecutedError::ChildPipeWriteFailed`]).
///
/// A callable that itself calls `exit` with this code after `mem-isolate`
/// started writing is indistinguishable from that failure; any other exit
/// before a complete result is reported as
/// [`CallableStatusUnknownError::UnexpectedChildExitStatus`].
pub const CHILD_EXIT_PIPE_WRITE_FAILED: i32 = 0x6d;

impl From<CallableDidNotExecuteError> for MemIsolateError {
    fn from(e: CallableDidNotExecuteError) -> Self {
        Self::CallableDidNotExecute(e)
    }
}

impl From<CallableExecutedError> for MemIsolateError {
    fn from(e: CallableExecutedError) -> Self {
        Self::CallableExecuted(e)
    }
}

impl From<CallableStatusUnknownError> for MemIsolateError {
    fn from(e: CallableStatusUnknownError) -> Self {
        Self::CallableStatusUnknown(e)
    }
}

/// Serde support for [`Errno`], which rustix does not make serializable: the
/// raw OS error number travels instead.
mod errno_serde {
    use super::Errno;
    use serde::{Deserialize, Deserializer, Serializer};

    // serde's `with` calls this with a reference.
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub(super) fn serialize<S: Serializer>(errno: &Errno, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(errno.raw_os_error())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Errno, D::Error> {
        let raw = i32::deserialize(d)?;
        // rustix panics on values outside the errno range; refuse them.
        if (1..=crate::wire::MAX_ERRNO).contains(&raw) {
            Ok(Errno::from_raw_os_error(raw))
        } else {
            Err(serde::de::Error::custom("errno out of range"))
        }
    }
}
