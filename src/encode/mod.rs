//! The child's encoder: how a value becomes frames, after the callable
//! returned, without allocating, freeing or locking.
//!
//! | file | what |
//! | --- | --- |
//! | `frames.rs` | [`FrameWriter`]: the one framing (`DATA` frames, then `END`), a postcard flavor over a [`Store`] |
//! | `staging.rs` | [`Staging`]: the static staging buffer as a store, flushing frames to the route's `Out` |
//! | `page.rs` | [`PageStore`]: the shared page's frames area as a store, holding one frame |
//! | `result.rs` | [`ResultWriter`]: starts in the page, moves to staging when the value outgrows it |
//!
//! [`serialize`] drives postcard's serializer over any of them. The value
//! is never dropped and the staging buffer existed before the fork (see
//! ARCHITECTURE.md, "Invariants").

use postcard::ser_flavors::Flavor;
use serde::Serialize;

mod frames;
mod page;
mod result;
mod staging;

pub(crate) use frames::{Finished, OVER_CAP};
// The page encoder alone, and a staging writer over any `Emit`: for the
// page's tests and the fuzz targets.
#[cfg_attr(not(any(test, fuzzing)), allow(unused_imports))]
pub(crate) use frames::FrameWriter;
#[cfg_attr(not(test), allow(unused_imports))]
pub(crate) use page::PageStore;
pub(crate) use result::ResultWriter;
pub(crate) use staging::Staging;

/// Serializes `value` into `writer`: a `Vec<u8>` or `String` as one run of
/// bytes (see [`crate::bytes`]), anything else through its `Serialize`.
///
/// What `postcard::serialize_with_flavor` does, written out so that it is
/// inlined into the child's path rather than left on a page of code of its
/// own (ARCHITECTURE.md, "Page faults after fork").
#[inline]
pub(crate) fn serialize<T: Serialize, W: Flavor>(
    value: &T,
    writer: W,
) -> postcard::Result<W::Output> {
    let mut serializer = postcard::Serializer { output: writer };
    #[cfg(feature = "alloc")]
    if let Some(bytes) = crate::bytes::as_bytes(value) {
        crate::bytes::Wholesale(bytes).serialize(&mut serializer)?;
        return finish(serializer);
    }
    crate::capture::serialize(value, &mut serializer)?;
    finish(serializer)
}

#[inline]
fn finish<W: Flavor>(serializer: postcard::Serializer<W>) -> postcard::Result<W::Output> {
    serializer
        .output
        .finalize()
        .map_err(|_| postcard::Error::SerializeBufferFull)
}
