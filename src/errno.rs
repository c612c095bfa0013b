//! Errno numbers that arrive from outside the process (a child's frame, a
//! report in shared memory, a deserialized error): the one range check that
//! stands between them and rustix, which panics on a number out of range.
//! A leaf: it imports nothing else of the crate.

use rustix::io::Errno;

/// The largest errno value any supported system uses (Linux reserves
/// 1..=4095); anything else that claims to be one is forged.
const MAX_ERRNO: i32 = 4095;

/// `raw` as an [`Errno`], if it is one any supported system uses.
pub(crate) fn errno_from_raw(raw: i32) -> Option<Errno> {
    (1..=MAX_ERRNO)
        .contains(&raw)
        .then(|| Errno::from_raw_os_error(raw))
}
