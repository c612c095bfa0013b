#![doc = include_str!("../README.md")]
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
mod capture;
mod child;
pub mod errors;
#[cfg(feature = "alloc")]
mod handle;
mod isolate;
mod parent;
mod report;
mod sys;
mod wire;

pub use errors::MemIsolateError;
#[cfg(feature = "alloc")]
pub use handle::IsolatedChild;
pub use isolate::Isolate;
pub use rustix::process::Pid;
pub use serde::{Serialize, de::DeserializeOwned};
pub use sys::ResourceUsage;

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
        let err = core::cell::Cell::new(None);
        // SAFETY: the fuzz harness runs one input at a time on one thread,
        // so this writer is the staging buffer's only user.
        let writer =
            unsafe { crate::child::FrameWriter::new(Vec::new(), staging + 40, nonce, &err) };
        let mut done = crate::child::serialize(value, writer)?;
        let mut out = core::mem::take(&mut done.out);
        out.extend_from_slice(done.with_end());
        Ok(out)
    }

    /// The checksum a non-`Value` `END` frame carries for `detail` and a
    /// panic message.
    #[must_use]
    pub fn side_checksum(nonce: u64, detail: [u8; 7], message: &[u8]) -> u64 {
        crate::wire::side_checksum(nonce, detail, message)
    }

    /// What the parent makes of `pieces` (one stream, split anywhere) from
    /// a child that exited with status 0; `None` while incomplete.
    #[must_use]
    pub fn decode<T: serde::de::DeserializeOwned>(
        nonce: u64,
        pieces: &[&[u8]],
        limit: usize,
    ) -> Option<Result<T, MemIsolateError>> {
        crate::parent::judge_stream(nonce, pieces, limit)
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
