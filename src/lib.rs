//! Run a function in a forked child process and get its result back, so
//! that leaks, heap fragmentation, mutations of statics and crashes inside
//! the function cannot touch the caller's memory.
//!
//! The function sees an exact copy of the caller's memory as it was just
//! before the call; whatever it does to memory stays in the child, which is
//! thrown away. Its return value crosses back serialized with [postcard],
//! so it must implement [`Serialize`] and [`DeserializeOwned`].
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use mem_isolate::execute_in_isolated_process;
//!
//! // Leak a megabyte... in the child only.
//! let length = execute_in_isolated_process(|| {
//!     let leaked: &'static mut Vec<u8> = Box::leak(Box::new(vec![7u8; 1 << 20]));
//!     leaked.len()
//! })?;
//! assert_eq!(length, 1 << 20);
//! # }
//! # Ok::<(), mem_isolate::MemIsolateError>(())
//! ```
//!
//! # The API
//!
//! - [`execute_in_isolated_process`] is the one-liner (it needs the `alloc`
//!   feature, on by default).
//! - [`Isolate`] adds options, [`timeout`](Isolate::timeout),
//!   [`memory_limit`](Isolate::memory_limit) and
//!   [`max_result_size`](Isolate::max_result_size), and three ways to call:
//!   [`run`][Isolate::run] blocks until the value is in,
//!   [`spawn`][Isolate::spawn] returns an [`IsolatedChild`] at once (join
//!   it, poll it with `try_join`, kill it, or wait on its descriptor), and
//!   [`run_with_buffer`](Isolate::run_with_buffer) needs no allocator.
//! - Every failure is a [`MemIsolateError`], whose first level says what
//!   happened to your callable, and so whether you may retry it: see
//!   [`errors`].
//! - A spawned child's [`ResourceUsage`] tells how much memory and CPU time
//!   it used.
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use std::time::Duration;
//! use mem_isolate::Isolate;
//!
//! let isolate = Isolate::new()
//!     .timeout(Duration::from_secs(5)) // killed and reaped at the deadline
//!     .max_result_size(16 << 20); // bytes the parent will accept
//!
//! let total: u64 = isolate.run(|| (1..=1000u64).sum())?;
//! assert_eq!(total, 500_500);
//!
//! let child = isolate.spawn(|| "ready".to_string())?; // returns at once
//! assert_eq!(child.join()?, "ready");
//! # }
//! # Ok::<(), mem_isolate::MemIsolateError>(())
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it gives |
//! | --- | --- | --- |
//! | `std` | yes | implies `alloc`; panics are caught and their message returned ([`CallablePanicked`](errors::CallableExecutedError::CallablePanicked)) |
//! | `alloc` | via `std` | [`execute_in_isolated_process`], [`Isolate::run`], [`Isolate::spawn`] and [`IsolatedChild`] |
//! | `tracing` | no | debug events in the parent (fork, reap, decode); none in the child |
//! | `tokio` | no | implies `std`; `Isolate::run_async` and `child.await` on an [`IsolatedChild`] (`ChildFuture`), waited for through tokio's reactor: see [Async code](#async-code) |
//! | `sandbox` | no | implies `std`; `Sandbox` and `Isolate::sandbox`: seccomp and Landlock for the callable (Linux, Android), see the README's "Sandbox" section |
//!
//! Without `alloc` the crate is `#![no_std]` and needs no allocator:
//! [`Isolate::run_with_buffer`] and [`execute_in_isolated_process_with_buffer`]
//! receive the result into a buffer of yours, which also bounds its size.
//!
//! # Async code
//!
//! With the `tokio` feature, [`Isolate::run_async`] returns a future of the
//! call's result, and a spawned [`IsolatedChild`] can be awaited
//! (`child.await`, through [`ChildFuture`]). They wait through tokio's
//! reactor on the child's watcher and the result pipe, so thousands of
//! children can be in flight on one thread, at two descriptors each with
//! `run_async` (a spawned handle also holds the readiness queue its
//! `AsFd` hands out, made at the spawn: three on Linux). The
//! fork happens on the first poll; the [`timeout`](Isolate::timeout) keeps
//! its meaning; dropping the future kills the child (and its process
//! group) and reaps it without blocking the runtime. Both `current_thread`
//! and `multi_thread` runtimes work, with I/O and time enabled
//! (`enable_all`).
//!
//! The callable runs in a copy of the polling thread alone: it must not
//! use the runtime it was forked from, whose other threads do not exist in
//! the child. A task it spawns there never runs, and waiting for one hangs
//! until the timeout (see [`Isolate::run_async`]); build a fresh runtime
//! inside the callable if it needs one.
//!
//! Other runtimes (smol, async-io, glommio) await a handle through its
//! readiness descriptor: [`IsolatedChild`] implements `AsFd` and `AsRawFd`;
//! wait until it is readable, then call
//! [`IsolatedChild::try_join`].
//!
//! # Platforms
//!
//! Linux (glibc and musl), Android, macOS and FreeBSD; other targets fail
//! to compile. [`Isolate::memory_limit`] is enforced on Linux, Android and
//! FreeBSD, and refused before forking on macOS. On Linux, Android and
//! FreeBSD the child dies with its parent *process*, never because the
//! thread that forked it exited. On Linux and Android a blocking call's
//! child gets `SIGKILL` as its parent-death signal (its thread waits in
//! the call, so cannot exit first). A spawned child's signal is
//! `SIGRTMAX`, caught by a handler that ends the child (`SIGKILL`) only if
//! its parent process is gone, since the kernel sends it whenever a
//! thread that forked exits: that callable sees the handler as its
//! `SIGRTMAX` disposition and the signal unblocked (a program it `exec`s
//! gets the default, and then dies with the forking thread; a callable
//! that blocks the signal again gives up dying with its parent). Each such
//! thread exit runs the handler, so a spawned callable's system calls
//! that are never restarted (`poll`, `nanosleep`, calls with timeouts)
//! may return `EINTR` then. The repository's README describes how the
//! result travels, the wire protocol, and measured costs.
//!
//! # What isolation is not
//!
//! It isolates memory; it is not a sandbox. The child is a copy of your
//! process with your privileges: it can use every descriptor you had open,
//! write your files and shared mappings, signal other processes, and
//! return any value it likes. For code you do not trust, combine
//! [`timeout`](Isolate::timeout), [`memory_limit`](Isolate::memory_limit)
//! and [`max_result_size`](Isolate::max_result_size) with types whose
//! `Deserialize` validates what it accepts, and with an operating-system
//! sandbox applied inside the callable.
//!
//! Other limits:
//!
//! - Only the calling thread exists in the child. Locks other threads held
//!   at the fork stay locked there, so a callable that allocates in a
//!   multi-threaded program relies on the allocator's fork handlers (glibc's
//!   and musl's have them).
//! - Each call costs a `fork`, which grows with the parent's page tables.
//! - Panics are caught only with `std`; under `panic = "abort"` a panic is
//!   reported as `SIGABRT`. No panic hook runs on the child's thread: at
//!   its first call the crate wraps the process's hook in one that does
//!   nothing there (the default hook takes a lock another thread may have
//!   held at the fork). Install your own hook before the first call.
//! - The processes the callable starts end with the call (see
//!   [`Isolate::kill_descendants`]): the child leads a process group of its
//!   own, out of the terminal's job control.
//! - A stopped child (`SIGSTOP`, or a callable that made the parent its
//!   tracer) has not finished: it is waited for, and the deadline ends it.
//! - Every descriptor the crate makes is numbered 3 or above. On Linux each
//!   thread keeps one between calls (its spill file), checked by identity
//!   before every use: a program that closes descriptors it does not own
//!   and reuses their numbers loses nothing to the crate.
//!
//! [postcard]: https://docs.rs/postcard
// Without `alloc` the allocating API does not exist: its links lead to the
// feature table instead.
#![cfg_attr(
    not(feature = "alloc"),
    doc = "[`execute_in_isolated_process`]: #feature-flags",
    doc = "[`IsolatedChild`]: #feature-flags",
    doc = "[`Isolate::run`]: #feature-flags",
    doc = "[`Isolate::spawn`]: #feature-flags",
    doc = "[Isolate::run]: #feature-flags",
    doc = "[Isolate::spawn]: #feature-flags"
)]
// Without `tokio` the async API does not exist: its links lead to the
// section that describes it.
#![cfg_attr(
    not(feature = "tokio"),
    doc = "[`Isolate::run_async`]: #async-code",
    doc = "[`ChildFuture`]: #async-code"
)]
#![cfg_attr(
    not(feature = "alloc"),
    doc = "[`IsolatedChild::try_join`]: #feature-flags"
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]
#![warn(clippy::pedantic)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

/// Emits a `tracing` debug event (parent side only) when the feature is on.
///
/// Only ever in the parent: the child after `fork` may not take locks or
/// allocate (another thread of the parent may have held them at the fork),
/// and a subscriber does both, so the child emits nothing at all.
macro_rules! trace {
    ($($arg:tt)*) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::debug!($($arg)*);
        }
    };
}

/// Opens a `tracing` debug span for the rest of the enclosing block, when
/// the feature is on (parent side only; the span is exited in the child,
/// which emits nothing).
macro_rules! call_span {
    ($name:literal $(, $($field:tt)*)?) => {
        #[cfg(feature = "tracing")]
        let _span = ::tracing::debug_span!($name $(, $($field)*)?).entered();
    };
}

#[cfg(feature = "alloc")]
mod bytes;
mod call;
mod capture;
mod child;
mod decode_error;
mod drive;
mod encode;
mod errno;
pub mod errors;
#[cfg(feature = "alloc")]
mod handle;
mod isolate;
mod panic_hook;
mod report;
#[cfg(feature = "sandbox")]
mod sandbox;
mod sink;
#[cfg(feature = "alloc")]
mod stream;
mod sys;
mod transport;
mod wire;
#[cfg(feature = "alloc")]
mod zygote;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use drive::tokio::ChildFuture;
pub use errors::MemIsolateError;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use handle::IsolatedChild;
pub use isolate::Isolate;
pub use rustix::process::Pid;
#[cfg(feature = "sandbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "sandbox")))]
pub use sandbox::Sandbox;
pub use serde::{Serialize, de::DeserializeOwned};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use stream::AsyncIsolatedStream;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use stream::{IsolatedStream, SendError, Sender};
pub use sys::ResourceUsage;
#[cfg(feature = "alloc")]
pub use zygote::Zygote;

/// Entry points for the fuzz targets in `fuzz/` (built only with
/// `--cfg fuzzing`, as cargo-fuzz does): the child's encoder and the
/// parent's decoder, driven without processes.
#[cfg(all(fuzzing, feature = "alloc"))]
#[doc(hidden)]
pub mod fuzzing {
    use alloc::vec::Vec;

    use crate::MemIsolateError;

    /// The bytes a child would write for `value`, staged through `staging`
    /// bytes (at least 1, at most 128 KiB) plus room for a header and `END`,
    /// with the `END` frame. Not reentrant: it uses the child's static
    /// staging buffer.
    ///
    /// # Errors
    ///
    /// The serializer's error.
    pub fn encode<T: serde::Serialize>(
        value: &T,
        nonce: u64,
        staging: usize,
    ) -> Result<Vec<u8>, postcard::Error> {
        use crate::encode::{FrameWriter, Staging, serialize};
        let err = core::cell::Cell::new(None);
        // SAFETY: the fuzz harness runs one input at a time on one thread,
        // so this store is the staging buffer's only user.
        let store = unsafe { Staging::new(Vec::new(), staging + 40, nonce) };
        let mut done = serialize(value, FrameWriter::new(store, &err))?;
        let len = done.end();
        let last = done.store.frames(len).to_vec();
        let mut out = core::mem::take(done.store.out());
        out.extend_from_slice(&last);
        Ok(out)
    }

    /// The checksum a non-`Value` `END` frame carries for `detail` and a
    /// panic message.
    #[must_use]
    pub fn side_checksum(nonce: u64, detail: [u8; 7], message: &[u8]) -> u64 {
        crate::wire::side_checksum(nonce, detail, message)
    }

    /// The bytes a stream's child would write for `items` (see
    /// [`encode`]), then the `END` of a producer that returned.
    ///
    /// # Errors
    ///
    /// The serializer's error.
    pub fn encode_items<T: serde::Serialize>(
        items: &[T],
        nonce: u64,
        staging: usize,
    ) -> Result<Vec<u8>, postcard::Error> {
        crate::stream::encode_items(items, nonce, staging)
    }

    /// What a stream's iterator yields for `pieces` (one stream, split
    /// anywhere) from a child that exited with status 0: the items, then
    /// at most one error; `false` while the stream is incomplete.
    #[must_use]
    pub fn decode_items<T: serde::de::DeserializeOwned>(
        nonce: u64,
        pieces: &[&[u8]],
        limit: usize,
    ) -> (Vec<Result<T, MemIsolateError>>, bool) {
        crate::stream::judge_items(nonce, pieces, limit)
    }

    /// What the parent makes of `pieces` (one stream, split anywhere) from
    /// a child that exited with status 0; `None` while incomplete.
    #[must_use]
    pub fn decode<T: serde::de::DeserializeOwned>(
        nonce: u64,
        pieces: &[&[u8]],
        limit: usize,
    ) -> Option<Result<T, MemIsolateError>> {
        crate::call::verdict::judge_stream(nonce, pieces, limit)
    }

    /// Bytes in a zygote request and in a zygote reply.
    pub const ZYGOTE_RECORD_LENS: (usize, usize) = (
        crate::zygote::wire::REQUEST_LEN,
        crate::zygote::wire::REPLY_LEN,
    );

    /// What the zygote makes of a request record: `Some` with the record
    /// encoded again from what it decoded, `None` if refused.
    #[must_use]
    pub fn zygote_request(bytes: &[u8; crate::zygote::wire::REQUEST_LEN]) -> Option<Vec<u8>> {
        crate::zygote::wire::Request::decode(bytes).map(|r| r.encode().to_vec())
    }

    /// What a caller makes of a reply record from its zygote: as
    /// [`zygote_request`].
    #[must_use]
    pub fn zygote_reply(bytes: &[u8; crate::zygote::wire::REPLY_LEN]) -> Option<Vec<u8>> {
        crate::zygote::wire::Reply::decode(bytes).map(|r| r.encode().to_vec())
    }
}

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
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
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

// The README's Rust examples are complete programs; test them as doctests.
#[cfg(all(doctest, feature = "std"))]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
