//! Streams: a producer in the child sends typed items while it runs, and
//! the parent iterates over them ([`Isolate::stream`]).
//!
//! ```text
//! child  (StreamJob: the producer, then the usual path for its `()`)
//!   Sender::send ─ FrameWriter (staging buffer) ─ DATA… ITEM ─┐ one pipe
//!   producer returns / panics ─ END (child::run) ─────────────┘
//! parent (IsolatedStream: Call + Watch, as a spawned handle)
//!   Decoder::stream ─ ItemQueue (whole items) ─ next(): decode one item
//!   END + the child's exit ─ verdict ─ at most one Err, then None
//! ```
//!
//! Nothing here is a second protocol or a second driver: the frames are the
//! call's, with two more kinds (see [Streams](crate::wire#streams)); the
//! child is forked and watched by [`crate::call::start`] like a spawned
//! handle's; the parent's [`Call`](crate::call::Call) reads, reaps, keeps
//! the deadline and kills exactly as for a value. What differs is the
//! sink, [`ItemQueue`]: it holds whole items until the iterator takes
//! them and pauses reading while it holds one, which is the backpressure
//! (the producer blocks in `send` once the pipe is full) and the bound on
//! the parent's memory (one item and one read's worth of bytes).

use core::marker::PhantomData;

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use rustix::process::Pid;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::call::{self, verdict};
use crate::drive::Driven;
use crate::errors::MemIsolateError;
use crate::isolate::Isolate;
use crate::sys::{self, WaitMode};

#[cfg(feature = "tokio")]
mod asynchronous;
mod queue;
mod sender;

#[cfg(feature = "tokio")]
pub use asynchronous::AsyncIsolatedStream;
pub(crate) use queue::ItemQueue;
pub(crate) use sender::StreamJob;
pub use sender::{SendError, Sender};

impl Isolate {
    /// Runs `producer` in a forked child and returns the items it sends,
    /// as they come, as an iterator.
    ///
    /// - Items arrive in the order they were sent, while the producer
    ///   runs: each [`Sender::send`] reaches the parent before it returns.
    /// - After the last item the iterator yields at most one `Err`, then
    ///   `None` for ever: the producer panicked
    ///   ([`CallablePanicked`](crate::errors::CallableExecutedError::CallablePanicked),
    ///   with its message), died by a signal, ran past the
    ///   [`timeout`](Self::timeout), an item was larger than
    ///   [`max_result_size`](Self::max_result_size) (the child is then
    ///   killed) or could not be decoded. Every item sent before that is
    ///   delivered first, so a crash after an hour keeps the hour's items.
    /// - The `timeout` bounds the whole stream; `max_result_size` bounds
    ///   each item.
    /// - While the iterator is not advanced, the producer blocks in `send`
    ///   once the pipe is full, and the parent holds about one item: the
    ///   parent's memory does not grow with the number of items.
    /// - Dropping the stream, or [`IsolatedStream::kill`], kills the child
    ///   and its process group and reaps them.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn): the child could not be started
    /// ([`CallableDidNotExecute`](MemIsolateError::CallableDidNotExecute)).
    ///
    /// # Example
    ///
    /// ```
    /// # // A panic comes back as `CallablePanicked` only with `std`.
    /// # #[cfg(feature = "std")] {
    /// use mem_isolate::errors::CallableExecutedError::CallablePanicked;
    /// use mem_isolate::{Isolate, MemIsolateError, Sender};
    ///
    /// let rows = Isolate::new().stream(|tx: &mut Sender<(u32, String)>| {
    ///     for i in 0..3 {
    ///         tx.send(&(i, format!("row {i}"))).ok();
    ///     }
    ///     panic!("the parser leaked its last byte");
    /// })?;
    /// let mut got = Vec::new();
    /// for row in rows {
    ///     match row {
    ///         Ok(row) => got.push(row),
    ///         // The last item may be the error that ended the stream.
    ///         Err(MemIsolateError::CallableExecuted(CallablePanicked(message))) => {
    ///             assert_eq!(message, "the parser leaked its last byte");
    ///         }
    ///         Err(other) => panic!("{other:?}"),
    ///     }
    /// }
    /// assert_eq!(got.len(), 3);
    /// assert_eq!(got[2].1, "row 2");
    /// # }
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    pub fn stream<F, T>(&self, producer: F) -> Result<IsolatedStream<T>, MemIsolateError>
    where
        F: FnOnce(&mut Sender<T>),
        T: Serialize + DeserializeOwned,
    {
        call_span!("mem_isolate::stream");
        let sink = ItemQueue::new(self.result_cap());
        let (call, watch) = call::start(
            &self.options(),
            StreamJob::new(producer),
            sink,
            None,
            sys::getpid(),
            WaitMode::Queue,
        )?;
        Ok(IsolatedStream::new(Driven::new(call, watch)))
    }
}

/// The items a child's producer sends, started by [`Isolate::stream`]: an
/// iterator of `Result<T, MemIsolateError>`.
///
/// - [`pid`](Self::pid), [`kill`](Self::kill), and [`AsFd`] /
///   [`AsRawFd`] for readiness, as on [`IsolatedChild`](crate::IsolatedChild).
/// - Dropping it kills the child (and its process group, with
///   [`kill_descendants`](crate::Isolate::kill_descendants)) and reaps it:
///   no zombie, no descriptor left.
/// - The stream ends from its own framing and the child's exit, never from
///   end-of-file: a process the producer started that still holds the
///   pipe cannot keep it open.
pub struct IsolatedStream<T> {
    call: Driven<'static, ItemQueue>,
    /// The child has been reaped: what is queued is all there is.
    finished: bool,
    /// The end (`None`, or the one `Err`) has been yielded.
    over: bool,
    _item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> IsolatedStream<T> {
    fn new(call: Driven<'static, ItemQueue>) -> Self {
        Self {
            call,
            finished: false,
            over: false,
            _item: PhantomData,
        }
    }

    /// The child's process id; it names the child until the child is
    /// reaped (the stream's end, `kill`, or drop).
    #[must_use]
    pub fn pid(&self) -> Pid {
        self.call.call().pid()
    }

    /// Kills the child (`SIGKILL`, and its process group with
    /// [`kill_descendants`](crate::Isolate::kill_descendants)) and reaps
    /// it. The items already received are still yielded, then
    /// [`ChildProcessKilledBySignal`](crate::errors::CallableStatusUnknownError::ChildProcessKilledBySignal),
    /// unless the child had already been reaped.
    ///
    /// # Errors
    ///
    /// [`WaitFailed`](crate::errors::CallableStatusUnknownError::WaitFailed)
    /// if the signal could not be sent or the child not reaped.
    pub fn kill(&mut self) -> Result<(), MemIsolateError> {
        self.call.stop();
        self.finished = true;
        self.call.call().kill_result()
    }

    /// The next item, the stream's one error, or the end. Blocks until
    /// one of them is there.
    fn next_result(&mut self) -> Option<Result<T, MemIsolateError>> {
        loop {
            if self.over {
                return None;
            }
            if let Some(bytes) = self.call.call_mut().sink_mut().pop() {
                match decode_item::<T>(bytes) {
                    Ok(item) => return Some(Ok(item)),
                    Err(e) => {
                        // The rest cannot be trusted to line up either.
                        self.over = true;
                        self.call.stop();
                        return Some(Err(e));
                    }
                }
            }
            if self.finished {
                self.over = true;
                // A clean end is the producer's `()`.
                return self.call.call_mut().outcome::<()>().err().map(Err);
            }
            self.finished = self.call.advance(None);
        }
    }
}

/// One item from its bytes: a `Vec<u8>` or `String` in one copy (see
/// [`crate::bytes`]), anything else through postcard, which must use every
/// byte.
fn decode_item<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MemIsolateError> {
    if let Some(kind) = crate::bytes::kind::<T>() {
        if let Some(start) = crate::bytes::wholesale_start(bytes, kind) {
            // SAFETY: `kind` is `T`'s, and the bytes from `start` on are
            // the whole payload it was found for (checked as UTF-8 for
            // text).
            return Ok(unsafe { crate::bytes::into_value(bytes[start..].to_vec(), 0, kind) });
        }
    }
    verdict::decode(bytes)
}

impl<T: DeserializeOwned> Iterator for IsolatedStream<T> {
    type Item = Result<T, MemIsolateError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_result()
    }
}

impl<T: DeserializeOwned> core::iter::FusedIterator for IsolatedStream<T> {}

/// The descriptor an event loop waits on: readable when the child has
/// sent something, ended, or its deadline passed, so that `next` has
/// something to give without waiting for the child.
///
/// As for [`IsolatedChild`](crate::IsolatedChild): on Linux an epoll
/// instance over the pipe and the pidfd, made before the fork (a system
/// that refuses it fails [`Isolate::stream`] with
/// [`WatchSetupFailed`](crate::errors::CallableDidNotExecuteError::WatchSetupFailed)),
/// elsewhere the stream's kqueue.
impl<T> AsFd for IsolatedStream<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self.call.ready_fd() {
            Some(fd) => fd,
            // `Isolate::stream` makes the watch with `WaitMode::Queue`,
            // whose queue exists from before the fork.
            None => unreachable!("a stream's watch has its queue"),
        }
    }
}

/// The same descriptor as [`AsFd`].
impl<T> AsRawFd for IsolatedStream<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl<T> core::fmt::Debug for IsolatedStream<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IsolatedStream")
            .field("pid", &self.call.call().pid())
            .finish_non_exhaustive()
    }
}

/// What the iterator yields for a stream fed in `pieces` from a child that
/// then exited with status 0: the items, then at most one error; `false`
/// while the stream is incomplete. For the fuzz targets, which drive the
/// decoder and the queue without processes.
#[cfg(fuzzing)]
pub(crate) fn judge_items<T: DeserializeOwned>(
    nonce: u64,
    pieces: &[&[u8]],
    limit: usize,
) -> (alloc::vec::Vec<Result<T, MemIsolateError>>, bool) {
    use crate::errors::{CallableExecutedError, CallableStatusUnknownError};
    use crate::sink::Sink;
    use crate::wire::{DecodeError, Decoder};

    let mut decoder = Decoder::stream(nonce);
    let mut queue = ItemQueue::new(limit);
    let mut out = alloc::vec::Vec::new();
    for piece in pieces {
        let fed = decoder.feed(piece, &mut queue);
        while let Some(bytes) = queue.pop() {
            let item = decode_item::<T>(bytes);
            let failed = item.is_err();
            out.push(item);
            if failed {
                return (out, true);
            }
        }
        match fed {
            Ok(_) => {}
            Err(DecodeError::TooLarge) => {
                out.push(Err(CallableExecutedError::ResultTooLarge {
                    limit: queue.limit(),
                }
                .into()));
                return (out, true);
            }
            Err(DecodeError::Corrupt) => {
                out.push(Err(CallableStatusUnknownError::ResultStreamCorrupted.into()));
                return (out, true);
            }
        }
        if decoder.is_finished() {
            break;
        }
    }
    match decoder.end() {
        Some(end) => {
            if let Err(e) = verdict::end_outcome::<(), _>(end, &decoder, &mut queue) {
                out.push(Err(e));
            }
            (out, true)
        }
        None => (out, false),
    }
}

/// The bytes a child's [`Sender`] would write for `items`, staged through
/// `staging` bytes, and the `END` of a producer that returned. For the fuzz
/// targets; not reentrant (the child's static staging buffer).
#[cfg(fuzzing)]
pub(crate) fn encode_items<T: Serialize>(
    items: &[T],
    nonce: u64,
    staging: usize,
) -> Result<alloc::vec::Vec<u8>, postcard::Error> {
    use crate::encode::{FrameWriter, Staging, serialize};
    use crate::wire::item_seed;

    let err = core::cell::Cell::new(None);
    let mut out = alloc::vec::Vec::new();
    for (i, item) in (0u64..).zip(items) {
        // SAFETY: the fuzz harness runs one input at a time on one thread,
        // so this writer is the staging buffer's only user.
        let store =
            unsafe { Staging::new(core::mem::take(&mut out), staging + 40, item_seed(nonce, i)) };
        let mut done = serialize(item, FrameWriter::new(store, &err))?;
        let len = done.item();
        out = core::mem::take(done.store.out());
        out.extend_from_slice(done.store.frames(len));
    }
    // SAFETY: as above.
    let store = unsafe { Staging::new(out, staging + 40, nonce) };
    let mut done = serialize(&(), FrameWriter::new(store, &err))?;
    let len = done.end();
    let mut out = core::mem::take(done.store.out());
    out.extend_from_slice(done.store.frames(len));
    Ok(out)
}
