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
//! round-trip through serde so they can be logged or sent elsewhere. Text
//! they carry (a panic message, a serializer's message) is an
//! [`ErrorText`]: bounded, inline, cut on a character boundary.
//!
//! # Display and `source()`
//!
//! Each level's `Display` says only its own part, and
//! [`source()`](core::error::Error::source) leads to the next level down,
//! ending at the [`Errno`] where there is one:
//!
//! | level | `Display` | `source()` |
//! | --- | --- | --- |
//! | `MemIsolateError::CallableDidNotExecute(..)` | "the callable did not execute" | the second level |
//! | `CallableDidNotExecuteError::ForkFailed(..)` | "fork failed" | the `Errno` |
//! | `Errno::AGAIN` | "Resource temporarily unavailable (os error 11)" | none |
//!
//! So an error reporter that prints the chain (anyhow's `{:#}`, for one)
//! shows each part once: "the callable did not execute: fork failed:
//! Resource temporarily unavailable (os error 11)". Details that are not
//! errors themselves (an exit code, a signal number, a panic message, a
//! serializer's message, a limit) are part of the second level's text.
//! Printing only the first level with `{}` shows only its own part: walk
//! `source()`, or match on the second level, for the rest.
//!
//! Without `std`, rustix's `Errno` is not a `core::error::Error`, so there
//! the chain ends at the second level (the `Errno` is still in the
//! variant).
//!
//! ```
//! use std::error::Error;
//!
//! let mut buffer = [0u8; 8];
//! let e = mem_isolate::Isolate::new()
//!     .run_with_buffer(&mut buffer, || -> u8 { std::process::exit(3) })
//!     .unwrap_err();
//! let mut chain = e.to_string();
//! let mut source = e.source();
//! while let Some(cause) = source {
//!     chain = format!("{chain}: {cause}");
//!     source = cause.source();
//! }
//! assert_eq!(
//!     chain,
//!     "the callable's status is unknown: the child exited with status 3 before delivering a result"
//! );
//! ```
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

/// The most bytes of text an error carries: a panic message, or the
/// message of a `Serialize` or `Deserialize` implementation that failed.
///
/// Longer text is cut at the last character boundary that fits. The bound
/// keeps [`MemIsolateError`] small (it lives in every `Result` this crate
/// returns) and lets the text cross the process boundary without
/// allocating in the child.
pub const ERROR_TEXT_CAPACITY: usize = 96;

/// The largest panic message, in bytes, that
/// [`CallableExecutedError::CallablePanicked`] carries: the same bound as
/// every other [`ErrorText`].
pub const PANIC_MESSAGE_CAPACITY: usize = ERROR_TEXT_CAPACITY;

/// A panic message carried by [`CallableExecutedError::CallablePanicked`].
pub type PanicMessage = ErrorText;

/// Text carried by an error: at most [`ERROR_TEXT_CAPACITY`] bytes of
/// UTF-8, cut on a character boundary, stored inline (no allocation, so it
/// exists without `alloc` and can be filled in a forked child).
///
/// It reads as a `str` ([`as_str`](Self::as_str), `Deref`, `Display`),
/// compares with `str`, and serializes as a string; deserializing a longer
/// string cuts it the same way.
///
/// # Example
///
/// ```
/// use mem_isolate::errors::{ERROR_TEXT_CAPACITY, ErrorText};
///
/// let short = ErrorText::new("bad input");
/// assert_eq!(short, "bad input");
/// assert!(short.starts_with("bad")); // any `str` method, through `Deref`
///
/// // Two-byte characters: the cut never splits one.
/// let long = ErrorText::new(&"é".repeat(ERROR_TEXT_CAPACITY));
/// assert_eq!(long.len(), ERROR_TEXT_CAPACITY);
/// assert!(long.is_truncated());
/// ```
#[derive(Clone)]
pub struct ErrorText {
    bytes: [u8; ERROR_TEXT_CAPACITY],
    len: u8,
    truncated: bool,
}

// The length fits its byte.
const _: () = assert!(ERROR_TEXT_CAPACITY <= u8::MAX as usize);

impl ErrorText {
    /// The empty text.
    #[must_use]
    pub const fn empty() -> Self {
        Self {
            bytes: [0; ERROR_TEXT_CAPACITY],
            len: 0,
            truncated: false,
        }
    }

    /// `text`, cut to [`ERROR_TEXT_CAPACITY`] bytes on a character
    /// boundary.
    #[must_use]
    pub fn new(text: &str) -> Self {
        let mut t = Self::empty();
        t.push(text);
        t
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        let bytes = &self.bytes[..usize::from(self.len)];
        // Only whole characters are ever stored (see `push`).
        core::str::from_utf8(bytes).unwrap_or_default()
    }

    /// Whether text was cut off to fit.
    #[must_use]
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// Appends as much of `text` as fits, cut on a character boundary.
    /// Once something was cut, nothing more is appended.
    pub(crate) fn push(&mut self, text: &str) {
        if self.truncated {
            return;
        }
        let at = usize::from(self.len);
        let room = ERROR_TEXT_CAPACITY - at;
        let mut take = text.len().min(room);
        while !text.is_char_boundary(take) {
            take -= 1;
        }
        // Byte by byte: the child calls this, and must not call `memcpy`
        // (ARCHITECTURE.md, "Page faults after fork").
        for (dst, &b) in self.bytes[at..at + take].iter_mut().zip(text.as_bytes()) {
            *dst = b;
        }
        #[allow(clippy::cast_possible_truncation)] // at most ERROR_TEXT_CAPACITY
        {
            self.len = (at + take) as u8;
        }
        self.truncated = take < text.len();
    }

    /// The text's bytes, for the wire.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Text received as bytes: whole characters up to the first invalid
    /// byte, cut to fit.
    pub(crate) fn from_utf8_lossy_prefix(bytes: &[u8]) -> Self {
        let text = match core::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        };
        Self::new(text)
    }
}

/// Formatting into an `ErrorText` keeps what fits and never fails, so a
/// `Display` value can be captured without allocating.
impl core::fmt::Write for ErrorText {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push(s);
        Ok(())
    }
}

impl core::ops::Deref for ErrorText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ErrorText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl core::fmt::Display for ErrorText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::fmt::Debug for ErrorText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for ErrorText {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl Default for ErrorText {
    fn default() -> Self {
        Self::empty()
    }
}

// Text compares as its `str`; whether it was cut is not part of it (and
// does not survive serialization).
impl PartialEq for ErrorText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ErrorText {}

impl PartialOrd for ErrorText {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ErrorText {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl core::hash::Hash for ErrorText {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for ErrorText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<ErrorText> for str {
    fn eq(&self, other: &ErrorText) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<ErrorText> for &str {
    fn eq(&self, other: &ErrorText) -> bool {
        *self == other.as_str()
    }
}

impl Serialize for ErrorText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = ErrorText;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ErrorText, E> {
                Ok(ErrorText::new(v))
            }
        }
        d.deserialize_str(Text)
    }
}

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
    #[error("the callable did not execute")]
    CallableDidNotExecute(#[source] CallableDidNotExecuteError),

    /// The callable ran to completion (or panicked), but its result could not
    /// be delivered. Retry only if the callable is idempotent.
    #[error("the callable executed, but its result was not delivered")]
    CallableExecuted(#[source] CallableExecutedError),

    /// Something failed and it cannot be known whether the callable ran, or
    /// how far. Retry only if the callable is idempotent.
    #[error("the callable's status is unknown")]
    CallableStatusUnknown(#[source] CallableStatusUnknownError),
}

impl MemIsolateError {
    /// The second level's variant name, for `tracing` fields.
    #[cfg(feature = "tracing")]
    pub(crate) fn variant_name(&self) -> &'static str {
        use CallableDidNotExecuteError as NotRun;
        use CallableExecutedError as Ran;
        use CallableStatusUnknownError as Unknown;
        match self {
            Self::CallableDidNotExecute(e) => match e {
                NotRun::PipeCreationFailed(_) => "PipeCreationFailed",
                NotRun::ForkFailed(_) => "ForkFailed",
                NotRun::WatchSetupFailed(_) => "WatchSetupFailed",
                NotRun::MemoryLimitUnsupported => "MemoryLimitUnsupported",
                NotRun::ChildSetupFailed(_) => "ChildSetupFailed",
                NotRun::SandboxUnsupported(_) => "SandboxUnsupported",
            },
            Self::CallableExecuted(e) => match e {
                Ran::SerializationFailed(_) => "SerializationFailed",
                Ran::DeserializationFailed(_) => "DeserializationFailed",
                Ran::ChildPipeWriteFailed(_) => "ChildPipeWriteFailed",
                Ran::CallablePanicked(_) => "CallablePanicked",
                Ran::ResultTooLarge { .. } => "ResultTooLarge",
                Ran::ResultAlreadyTaken => "ResultAlreadyTaken",
            },
            Self::CallableStatusUnknown(e) => match e {
                Unknown::WaitFailed(_) => "WaitFailed",
                Unknown::ParentPipeReadFailed(_) => "ParentPipeReadFailed",
                Unknown::CallableProcessDiedDuringExecution => "CallableProcessDiedDuringExecution",
                Unknown::UnexpectedChildExitStatus(_) => "UnexpectedChildExitStatus",
                Unknown::ChildProcessKilledBySignal(_) => "ChildProcessKilledBySignal",
                Unknown::TimedOut(_) => "TimedOut",
                Unknown::ResultStreamCorrupted => "ResultStreamCorrupted",
            },
        }
    }

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
    #[error("creating the result pipe failed")]
    PipeCreationFailed(
        #[cfg_attr(feature = "std", source)]
        #[serde(with = "errno_serde")]
        Errno,
    ),

    /// `fork` failed, typically because of a process limit (`EAGAIN`) or
    /// memory pressure (`ENOMEM`).
    #[error("fork failed")]
    ForkFailed(
        #[cfg_attr(feature = "std", source)]
        #[serde(with = "errno_serde")]
        Errno,
    ),

    /// Setting up the parent's watch on the child failed before the
    /// callable was allowed to start: no descriptor was left for a spawned
    /// handle's readiness queue (epoll on Linux, kqueue on macOS and
    /// FreeBSD, made before the fork so that `as_fd` cannot fail later).
    #[error("setting up the watch on the child failed")]
    WatchSetupFailed(
        #[cfg_attr(feature = "std", source)]
        #[serde(with = "errno_serde")]
        Errno,
    ),

    /// [`Isolate::memory_limit`](crate::Isolate::memory_limit) was set on a
    /// platform that cannot enforce it (macOS accepts `RLIMIT_AS` and
    /// `RLIMIT_DATA` but does not enforce them), so the child was never
    /// started rather than run unbounded.
    #[error("memory limits cannot be enforced on this platform")]
    MemoryLimitUnsupported,

    /// The child could not apply an option before starting the callable,
    /// for example a memory limit above the process's hard `RLIMIT_AS`
    /// (`EINVAL`). The child exited without running the callable.
    #[error("preparing the child failed")]
    ChildSetupFailed(
        #[cfg_attr(feature = "std", source)]
        #[serde(with = "errno_serde")]
        Errno,
    ),

    /// The call asked for a sandbox (`Isolate::sandbox`, feature
    /// `sandbox`) that this system cannot enforce, so the child was never
    /// started rather than run with less protection than asked for. The
    /// [`SandboxUnsupported`] says what is missing; `Sandbox::best_effort`
    /// runs with what there is instead.
    #[error("the sandbox cannot be enforced here: {0}")]
    SandboxUnsupported(SandboxUnsupported),
}

/// What a system lacks to enforce a sandbox: carried by
/// [`CallableDidNotExecuteError::SandboxUnsupported`].
///
/// The sandbox is built from two Linux mechanisms: a seccomp filter
/// (system calls refused by number and argument) and a Landlock ruleset
/// (files and TCP ports refused by the kernel's security module). Which
/// one a policy needs, and from which kernel, is in the `Sandbox` type's
/// documentation (feature `sandbox`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxUnsupported {
    /// Sandboxes are built on Linux's seccomp and Landlock; this platform
    /// (macOS, FreeBSD) has neither, or its architecture is not one the
    /// filters are compiled for (`x86_64`, `aarch64`, `riscv64`).
    #[error("sandboxes need Linux or Android on x86_64, aarch64 or riscv64")]
    Platform,

    /// The kernel refused to say whether it can install a seccomp filter
    /// (`seccomp(SECCOMP_GET_ACTION_AVAIL)`): `ENOSYS` or `EINVAL` without
    /// seccomp filters (a kernel built without them, or qemu-user, which
    /// does not emulate them), `EOPNOTSUPP` for an action it lacks.
    #[error("seccomp filters are unavailable")]
    Seccomp(
        #[cfg_attr(feature = "std", source)]
        #[serde(with = "errno_serde")]
        Errno,
    ),

    /// The policy needs Landlock's ABI `needed`, and the kernel offers
    /// `available` (0: no Landlock, either not built in or not enabled at
    /// boot).
    #[error("the policy needs Landlock ABI {needed}, and this kernel offers {available}")]
    Landlock {
        /// The Landlock ABI the policy needs.
        needed: u8,
        /// The Landlock ABI the kernel offers; 0 when it has none.
        available: u8,
    },
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
    ///
    /// The text is the serializer's error message: for an error made with
    /// `serde::ser::Error::custom(msg)`, the `msg` given (formatted in the
    /// child without allocating, cut to [`ERROR_TEXT_CAPACITY`] bytes).
    #[error("serializing the result in the child failed: {0}")]
    SerializationFailed(ErrorText),

    /// The bytes the child sent were intact but did not decode as the
    /// expected type (for example a `Deserialize` implementation that rejects
    /// what the matching `Serialize` wrote).
    ///
    /// The text is the deserializer's error message: for an error made with
    /// `serde::de::Error::custom(msg)` (or `invalid_value` and the like),
    /// that message, cut to [`ERROR_TEXT_CAPACITY`] bytes; otherwise the
    /// format's own description of what was wrong with the bytes.
    #[error("deserializing the result in the parent failed: {0}")]
    DeserializationFailed(ErrorText),

    /// The child could not write its result to the pipe (or, for a blocking
    /// call on Linux, to the spill file that stands in for it), for example
    /// because the callable closed the descriptor the result travels on
    /// (`EBADF`; also when it closed it and opened another file under the
    /// same number: the child checks, and writes nothing into that file),
    /// because a file-size limit stopped the spill file (`EFBIG`), or
    /// because another process changed the bytes the child had already put
    /// in the shared page (`EBADMSG`).
    ///
    /// The child reports this in memory it shares with the parent, checked
    /// against the call's nonce, not by an exit code: every exit code a
    /// callable may use is reported as its own
    /// ([`CallableStatusUnknownError::UnexpectedChildExitStatus`]).
    #[error("the child could not write its result")]
    ChildPipeWriteFailed(
        #[cfg_attr(feature = "std", source)]
        #[serde(with = "errno_serde")]
        Errno,
    ),

    /// The callable panicked. The message is the panic payload when it was a
    /// string, cut to [`ERROR_TEXT_CAPACITY`] bytes. Only builds with the
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
    #[error("waiting for the child failed")]
    WaitFailed(
        #[cfg_attr(feature = "std", source)]
        #[serde(with = "errno_serde")]
        Errno,
    ),

    /// Reading the child's result from the pipe failed.
    #[error("reading the result failed")]
    ParentPipeReadFailed(
        #[cfg_attr(feature = "std", source)]
        #[serde(with = "errno_serde")]
        Errno,
    ),

    /// The child exited with status 0 before delivering a complete result:
    /// something inside the callable ended the process (`exit(0)`,
    /// `std::process::exit(0)`), so the callable never returned. Also, in
    /// two cases that should not happen, the crate's own: its code in the
    /// child unwound (it reports that in shared memory), or a spawned call
    /// could not map the page its child reports failures in and the child
    /// then failed to write its result.
    #[error("the child exited during execution, before delivering a result")]
    CallableProcessDiedDuringExecution,

    /// The child exited with this non-zero code before delivering a
    /// complete result: the code of an `exit` inside the callable. No code
    /// is reserved: `mem-isolate`'s own child reports its failures in
    /// memory shared with the parent, so every code here is the callable's.
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
        crate::errno::errno_from_raw(raw)
            .ok_or_else(|| serde::de::Error::custom("errno out of range"))
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    extern crate std;

    use super::*;
    use core::fmt::Write as _;

    #[test]
    fn text_is_cut_on_a_character_boundary_for_every_width() {
        for ch in ['a', 'é', '€', '🦀'] {
            for extra in 0..5 {
                let long: std::string::String =
                    core::iter::repeat_n(ch, ERROR_TEXT_CAPACITY + extra).collect();
                let t = ErrorText::new(&long);
                let fit = ERROR_TEXT_CAPACITY / ch.len_utf8() * ch.len_utf8();
                assert_eq!(t.len(), fit, "{ch:?}");
                assert!(t.chars().all(|c| c == ch));
                assert_eq!(t.is_truncated(), long.len() > ERROR_TEXT_CAPACITY);
            }
        }
        let short = ErrorText::new("fits");
        assert_eq!(short, "fits");
        assert!(!short.is_truncated());
    }

    #[test]
    fn formatting_keeps_what_fits_and_nothing_after_a_cut() {
        let mut t = ErrorText::empty();
        let filler = "x".repeat(ERROR_TEXT_CAPACITY - 1);
        // "é" does not fit in the last byte; the "!" after it would, but
        // must not follow a cut.
        let (wide, narrow) = ('é', '!');
        write!(t, "{filler}{wide}{narrow}").unwrap();
        assert_eq!(t.as_str(), filler);
        assert!(t.is_truncated());
    }

    #[test]
    fn text_round_trips_through_serde_and_longer_input_is_cut() {
        let t = ErrorText::new("a message");
        let bytes = postcard::to_allocvec(&t).unwrap();
        assert_eq!(bytes, postcard::to_allocvec("a message").unwrap());
        assert_eq!(postcard::from_bytes::<ErrorText>(&bytes), Ok(t));
        let long = "ü".repeat(ERROR_TEXT_CAPACITY);
        let bytes = postcard::to_allocvec(&long).unwrap();
        let cut = postcard::from_bytes::<ErrorText>(&bytes).unwrap();
        assert_eq!(cut.len(), ERROR_TEXT_CAPACITY);
        // Whether it was cut is not part of the value.
        assert_eq!(cut, ErrorText::new(cut.as_str()));
    }

    #[test]
    fn invalid_bytes_from_the_wire_keep_their_valid_prefix() {
        assert_eq!(ErrorText::from_utf8_lossy_prefix(b"ok\xFFrest"), "ok");
        assert_eq!(ErrorText::from_utf8_lossy_prefix(b"\xC3"), "");
    }
}
