//! # mem-isolate: run a function in a forked child, keep the parent clean
//!
//! [`execute_in_isolated_process`] runs your function in a `fork()`ed child
//! process, waits for its result, and returns it. The function sees an exact
//! copy of the caller's memory as it was just before the call, and nothing
//! it does to memory (leaks, heap fragmentation, mutations of statics and
//! captured state) reaches the caller. A crash inside it is reported as an
//! error instead of taking the caller down.
//!
//! ```
//! use mem_isolate::execute_in_isolated_process;
//!
//! // Leak a megabyte... in the child only.
//! let length = execute_in_isolated_process(|| {
//!     let leaked: &'static mut Vec<u8> = Box::leak(Box::new(vec![7u8; 1 << 20]));
//!     leaked.len()
//! })?;
//! assert_eq!(length, 1 << 20);
//! # Ok::<(), mem_isolate::MemIsolateError>(())
//! ```
//!
//! The value crosses the process boundary serialized with
//! [postcard](https://docs.rs/postcard), so `T` must implement serde's
//! [`Serialize`] and [`DeserializeOwned`].
//!
//! ## Beyond the one-liner
//!
//! [`Isolate`] adds options and a non-blocking form:
//! [`timeout`](Isolate::timeout), [`memory_limit`](Isolate::memory_limit),
//! [`max_result_size`](Isolate::max_result_size), then
//! [`run`](Isolate::run) or [`spawn`](Isolate::spawn), which returns an
//! [`IsolatedChild`] you can join, poll (it implements `AsFd`) or kill.
//!
//! ## Errors
//!
//! Every failure is a [`MemIsolateError`] whose first level tells you what
//! happened to your callable: it did not execute (always safe to retry), it
//! executed (its result was lost), or its status is unknown. See
//! [`errors`].
//!
//! ## How it works, and why nothing allocates after the fork
//!
//! Before forking, the parent makes a close-on-exec pipe, a readiness queue
//! (epoll over the pipe and a pidfd on Linux, kqueue elsewhere) and a
//! staging buffer. The child runs the callable, then serializes the value
//! through a postcard `Flavor` that fills the staging buffer and flushes it
//! to the pipe as framed chunks with raw `write`, ends the stream with a
//! checksummed `END` frame, and leaves with `_exit` without dropping the
//! value. So between the callable's return and `_exit` the child allocates
//! nothing, frees nothing and takes no lock, for results of any size; that
//! matters because the child of a multi-threaded parent may have inherited
//! a locked allocator. The parent knows the result is complete from the
//! `END` frame, not from end-of-file, and watches the child process itself,
//! so a grandchild holding the pipe open cannot make it wait. The protocol
//! is described in the README.
//!
//! ## Limitations
//!
//! Said once, here:
//!
//! - Unix only: Linux, Android, macOS and FreeBSD.
//! - It is isolation of memory effects, not a sandbox: the child keeps the
//!   parent's privileges, open descriptors and shared mappings, and can
//!   change anything outside its own memory (files, sockets, other
//!   processes).
//! - Only the thread that calls is copied into the child. Locks held by
//!   other threads at the moment of the fork stay locked in the child, so a
//!   callable that allocates in a multi-threaded program relies on the
//!   allocator's fork handlers (glibc's and musl's have them).
//! - Each call costs a `fork`, which grows with the parent's page tables.
//! - The callable's value must be serde-serializable, and panics are
//!   captured only with the `std` feature (with `panic = "abort"` a panic is
//!   reported as `SIGABRT`).
//!
//! ## Feature flags
//!
//! - `std` (default): implies `alloc`; captures panic messages.
//! - `alloc`: [`execute_in_isolated_process`], [`Isolate::run`],
//!   [`Isolate::spawn`]. Without it, [`Isolate::run_with_buffer`] and
//!   [`execute_in_isolated_process_with_buffer`] work with a caller-provided
//!   buffer and no allocator at all.
//! - `tracing`: spans and events in the parent (never in the child).

#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]
#![warn(clippy::pedantic)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

/// Emits a `tracing` debug event (parent side only) when the feature is on.
macro_rules! trace {
    ($($arg:tt)*) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::debug!($($arg)*);
        }
    };
}

mod child;
pub mod errors;
#[cfg(feature = "alloc")]
mod handle;
mod isolate;
mod parent;
mod sys;
mod wire;

pub use errors::MemIsolateError;
#[cfg(feature = "alloc")]
pub use handle::IsolatedChild;
pub use isolate::Isolate;
pub use rustix::process::Pid;
pub use serde::{Serialize, de::DeserializeOwned};
pub use sys::ResourceUsage;

/// Runs `callable` in a forked child process and returns its value.
///
/// Memory changes made by `callable` (leaks, fragmentation, writes to
/// statics or captured variables) stay in the child. Equivalent to
/// [`Isolate::new().run(callable)`](Isolate::run).
///
/// # Errors
///
/// See [`MemIsolateError`]: the first level says whether `callable` ran.
///
/// # Example
///
/// ```
/// use mem_isolate::execute_in_isolated_process;
///
/// static mut COUNTER: u32 = 0;
/// let seen_in_child = execute_in_isolated_process(|| unsafe {
///     COUNTER += 1;
///     COUNTER
/// })?;
/// assert_eq!(seen_in_child, 1);
/// assert_eq!(unsafe { COUNTER }, 0); // the parent's copy is untouched
/// # Ok::<(), mem_isolate::MemIsolateError>(())
/// ```
#[cfg(feature = "alloc")]
pub fn execute_in_isolated_process<F, T>(callable: F) -> Result<T, MemIsolateError>
where
    F: FnOnce() -> T,
    T: Serialize + DeserializeOwned,
{
    Isolate::new().run(callable)
}

/// Runs `callable` in a forked child process without allocating: `buffer`
/// carries the result and bounds its serialized size. Equivalent to
/// [`Isolate::new().run_with_buffer(buffer, callable)`](Isolate::run_with_buffer).
///
/// # Errors
///
/// See [`MemIsolateError`].
///
/// # Example
///
/// ```
/// let mut buffer = [0u8; 32];
/// let word = mem_isolate::execute_in_isolated_process_with_buffer(&mut buffer, || {
///     heapless::String::<16>::try_from("isolated").unwrap()
/// })?;
/// assert_eq!(word, "isolated");
/// # Ok::<(), mem_isolate::MemIsolateError>(())
/// ```
pub fn execute_in_isolated_process_with_buffer<F, T>(
    buffer: &mut [u8],
    callable: F,
) -> Result<T, MemIsolateError>
where
    F: FnOnce() -> T,
    T: Serialize + DeserializeOwned,
{
    Isolate::new().run_with_buffer(buffer, callable)
}
