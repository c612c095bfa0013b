//! The child's result writer: a value starts in the shared page
//! ([`PageStore`]); on the first write that would not fit there, the bytes
//! so far move to the staging buffer and the same framing carries on from
//! them there ([`Staging`]). The value is encoded once, whatever its size:
//! a `Serialize` impl may be good for one call only.
//!
//! The bytes that move are read back from the shared page, which other
//! processes map too; they are checked against the checksum taken as they
//! were stored before they count, and a mismatch fails the write.

use core::cell::Cell;

use postcard::ser_flavors::Flavor;
use rustix::io::Errno;

use super::frames::{Finished, FrameWriter};
use super::page::PageStore;
use super::staging::{STAGING_LEN, Staging};
use crate::transport::Out;
use crate::transport::page::ChildPage;
use crate::wire::Checksum;

/// The child's encoder (see the module docs).
pub(crate) enum ResultWriter<'a> {
    /// Still in the page, with what the staging writer will need.
    Page {
        frames: FrameWriter<'a, PageStore<'a>>,
        out: Out<'a>,
        nonce: u64,
    },
    /// In the staging buffer.
    Frames(FrameWriter<'a, Staging<Out<'a>>>),
    /// Between the two, or after a failed move.
    Moving,
}

// Small enough that moving it (into postcard's serializer) is a few
// register moves, not a `memcpy` call (ARCHITECTURE.md, "Page faults
// after fork").
const _: () = assert!(core::mem::size_of::<ResultWriter<'static>>() <= 128);

impl<'a> ResultWriter<'a> {
    /// Starts in `page` if there is one (`checksum`, seeded with `nonce`,
    /// then follows it), in the staging buffer otherwise; stops past `cap`
    /// bytes sent, recording why in `write_error`.
    ///
    /// # Safety
    ///
    /// No other reference to, or user of, the staging buffer may exist
    /// while this writer or its [`Finished`] lives (see [`Staging::new`]).
    #[inline]
    pub(crate) unsafe fn new(
        page: Option<ChildPage>,
        checksum: &'a mut Checksum,
        out: Out<'a>,
        nonce: u64,
        cap: u64,
        write_error: &'a Cell<Option<Errno>>,
    ) -> Self {
        match page {
            Some(area) => Self::Page {
                frames: FrameWriter::new(PageStore::new(area, checksum), write_error)
                    .capped_at(cap),
                out,
                nonce,
            },
            // SAFETY: the caller's promise about the staging buffer.
            None => Self::Frames(unsafe { staging_writer(out, nonce, cap, write_error) }),
        }
    }

    /// Moves the page's bytes to a new staging writer. Cold: at most once
    /// per value, and only for one larger than the page.
    #[cold]
    #[inline(never)]
    fn leave_page(&mut self) -> postcard::Result<()> {
        let Self::Page { frames, out, nonce } = core::mem::replace(self, Self::Moving) else {
            return Err(postcard::Error::SerializeBufferFull);
        };
        let (cap, write_error) = frames.limits();
        // SAFETY: the caller of `new` made this the staging buffer's one
        // user, and this is the only staging writer it makes.
        let mut staged = unsafe { staging_writer(out, nonce, cap, write_error) };
        let page = frames.store();
        let mut check = Checksum::new(nonce);
        let mut chunk = [0u8; 256];
        let mut at = 0;
        while at < frames.staged() {
            let n = chunk.len().min(frames.staged() - at);
            for (i, slot) in chunk[..n].iter_mut().enumerate() {
                *slot = page.body(at + i);
            }
            check.update(&chunk[..n]);
            staged.try_extend(&chunk[..n])?;
            at += n;
        }
        if check.finish() != page.running_checksum() {
            // Something else wrote into the page meanwhile.
            write_error.set(Some(Errno::BADMSG));
            return Err(postcard::Error::SerializeBufferFull);
        }
        *self = Self::Frames(staged);
        Ok(())
    }

    #[inline]
    fn page_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if let Self::Page { frames, .. } = self {
            if data.len() <= frames.room() {
                return frames.try_extend(data);
            }
        }
        self.leave_page()?;
        match self {
            Self::Frames(frames) => frames.try_extend(data),
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }
}

/// A [`FrameWriter`] through the whole staging buffer, stopping at `cap`.
///
/// # Safety
///
/// As for [`Staging::new`].
#[inline]
unsafe fn staging_writer<'a>(
    out: Out<'a>,
    nonce: u64,
    cap: u64,
    write_error: &'a Cell<Option<Errno>>,
) -> FrameWriter<'a, Staging<Out<'a>>> {
    // SAFETY: the caller's promise.
    let store = unsafe { Staging::new(out, STAGING_LEN, nonce) };
    FrameWriter::new(store, write_error).capped_at(cap)
}

impl<'a> Flavor for ResultWriter<'a> {
    /// `None`: the value is in the shared page, head word and all.
    type Output = Option<Finished<Staging<Out<'a>>>>;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        match self {
            Self::Frames(frames) => frames.try_push(byte),
            _ => self.page_extend(&[byte]),
        }
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match self {
            Self::Frames(frames) => frames.try_extend(data),
            _ => self.page_extend(data),
        }
    }

    #[inline]
    fn finalize(self) -> postcard::Result<Self::Output> {
        match self {
            Self::Frames(frames) => frames.finalize().map(Some),
            Self::Page { frames, .. } => {
                let mut done = frames.finalize()?;
                let len = done.end();
                done.store.publish(len);
                Ok(None)
            }
            Self::Moving => Err(postcard::Error::SerializeBufferFull),
        }
    }
}
