//! No sandbox: without the `sandbox` feature, off Linux, or on an
//! architecture seccompiler does not compile for. A [`Sandbox`] refuses
//! every call here (feature on), or does not exist (feature off).
//!
//! [`Sandbox`]: https://docs.rs/mem-isolate/latest/mem_isolate/struct.Sandbox.html

use core::ptr::NonNull;

use rustix::io::Errno;

#[cfg(feature = "sandbox")]
use crate::errors::SandboxUnsupported;

/// Nothing can be prepared here: no value of this type exists.
pub(crate) enum Prepared {}

/// Refuses: this platform has neither seccomp nor Landlock.
#[cfg(feature = "sandbox")]
#[allow(clippy::trivially_copy_pass_by_ref, clippy::needless_pass_by_value)]
pub(crate) fn prepare(_: super::SandboxPolicy) -> Result<Prepared, SandboxUnsupported> {
    Err(SandboxUnsupported::Platform)
}

/// Never called: there is no [`Prepared`] to enter.
#[inline]
pub(crate) unsafe fn enter(prepared: NonNull<Prepared>) -> Result<(), Errno> {
    // SAFETY: a `NonNull<Prepared>` cannot point to a value here.
    match *unsafe { prepared.as_ref() } {}
}
