//! The child's side of a stream: [`Sender`], which frames each item
//! through the child's encoder ([`FrameWriter`] over [`Staging`]) and
//! writes it out before `send` returns.

use core::cell::Cell;
use core::marker::PhantomData;

use rustix::io::Errno;
use serde::Serialize;

use crate::child::Job;
use crate::encode::{FrameWriter, Staging, serialize};
use crate::errors::ErrorText;
use crate::transport::{Emit, Out};
use crate::wire;

/// The producer's end of a stream: sends items to the parent, one at a
/// time, in order. Given to the producer of
/// [`Isolate::stream`](crate::Isolate::stream) and
/// [`Isolate::stream_async`](crate::Isolate#method.stream_async); it lives
/// in the child only.
///
/// Each [`send`](Self::send) encodes the item into the child's staging
/// buffer (made before the fork) and writes it to the pipe with raw
/// `write` before it returns, so the parent has it while the producer
/// computes the next one. The crate's code in `send` allocates nothing and
/// takes no lock. When the parent is not reading, `send` blocks: the pipe
/// and the parent hold about one item, whatever the producer makes.
pub struct Sender<T> {
    /// The pipe, checked before every write (see `sys::CheckedFd`).
    out: Out<'static>,
    nonce: u64,
    /// Item boundaries written so far (see [`wire::item_seed`]).
    boundaries: u64,
    _item: PhantomData<fn(&T)>,
}

/// Why [`Sender::send`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The item's `Serialize` impl failed, with this message. Nothing of
    /// it reaches the parent; the stream goes on, and the next item can be
    /// sent.
    #[error("the item could not be serialized: {0}")]
    SerializationFailed(ErrorText),
    /// Writing to the parent failed (it stopped reading: it dropped or
    /// killed the stream, or rejected an item). Nothing more can be sent.
    #[error("the item could not be written to the parent: {0}")]
    WriteFailed(Errno),
}

impl<T: Serialize> Sender<T> {
    /// Sends `item` to the parent, blocking while the parent is not
    /// reading.
    ///
    /// # Errors
    ///
    /// [`SendError::SerializationFailed`] with the serializer's message if
    /// `item` cannot be serialized (the stream goes on without it), and
    /// [`SendError::WriteFailed`] if the parent is no longer reading.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::{Isolate, Sender};
    ///
    /// let squares = Isolate::new().stream(|tx: &mut Sender<u64>| {
    ///     for i in 1..=3 {
    ///         tx.send(&(i * i)).expect("the parent reads");
    ///     }
    /// })?;
    /// let got: Result<Vec<u64>, _> = squares.collect();
    /// assert_eq!(got?, [1, 4, 9]);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    pub fn send(&mut self, item: &T) -> Result<(), SendError> {
        let write_error = Cell::new(None);
        let flushed = Cell::new(false);
        let out = ItemOut {
            out: self.out,
            flushed: &flushed,
        };
        let seed = wire::item_seed(self.nonce, self.boundaries);
        // SAFETY: the staging buffer's one writer in this process: the
        // child's usual path makes its own only after the producer
        // returned, and `&mut self` keeps two sends from overlapping.
        // (The length is clamped to the whole buffer.)
        let store = unsafe { Staging::new(out, usize::MAX, seed) };
        let Ok(mut done) = serialize(item, FrameWriter::new(store, &write_error)) else {
            return Err(self.abandon(write_error.get(), flushed.get()));
        };
        // The item's last frame and its ITEM leave in one write.
        let len = done.item();
        self.out
            .write_all(done.store.frames(len))
            .map_err(SendError::WriteFailed)?;
        self.boundaries += 1;
        Ok(())
    }
}

impl<T> Sender<T> {
    /// After a failed encoding: the error for the producer, and a `DROP`
    /// for the parent if part of the item already left.
    #[cold]
    fn abandon(&mut self, write_error: Option<Errno>, flushed: bool) -> SendError {
        if let Some(e) = write_error {
            return SendError::WriteFailed(e);
        }
        let message = crate::capture::ser_message();
        if flushed {
            if let Err(e) = self.out.write_all(&wire::drop_frame()) {
                return SendError::WriteFailed(e);
            }
            self.boundaries += 1;
        }
        SendError::SerializationFailed(message)
    }
}

impl<T> core::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sender")
            .field("sent", &self.boundaries)
            .finish_non_exhaustive()
    }
}

/// The pipe, noting whether an item's encoding outgrew the staging buffer
/// (then part of it is already out, and a failure needs a `DROP`).
struct ItemOut<'a> {
    out: Out<'static>,
    flushed: &'a Cell<bool>,
}

impl Emit for ItemOut<'_> {
    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.out.write_all(bytes)
    }

    fn spilling(&mut self) {
        self.flushed.set(true);
        Emit::spilling(&mut self.out);
    }
}

/// A stream's producer as the child's job: it runs with a [`Sender`] over
/// the call's pipe, and its `()` is the call's value (an `END` with no
/// `DATA`, see [Streams](crate::wire#streams)).
pub(crate) struct StreamJob<F, T> {
    producer: F,
    _item: PhantomData<fn(&T)>,
}

impl<F, T> StreamJob<F, T> {
    pub(crate) fn new(producer: F) -> Self {
        Self {
            producer,
            _item: PhantomData,
        }
    }
}

impl<F: FnOnce(&mut Sender<T>), T: Serialize> Job for StreamJob<F, T> {
    type Value = ();

    #[inline]
    fn run(self, out: Out<'_>, nonce: u64) {
        // SAFETY: `out` borrows the child's write end, which the child
        // never closes (it leaves with `_exit`); the sender lives only for
        // the producer's call, as `&mut`, so it cannot escape it.
        let out = unsafe { core::mem::transmute::<Out<'_>, Out<'static>>(out) };
        let mut sender = Sender {
            out,
            nonce,
            boundaries: 0,
            _item: PhantomData,
        };
        (self.producer)(&mut sender);
    }
}
