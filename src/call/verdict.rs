//! From what happened to the caller's answer: no I/O, and nothing but the
//! facts it is given. Decoding the value converts the sink's buffer in
//! place for `Vec<u8>` and `String` (see [`crate::bytes`]), its one
//! `unsafe`.
//!
//! [`Facts`] is everything the parent learned about one call; [`verdict`]
//! turns it into `Result<T, MemIsolateError>`. The fuzz targets call
//! `judge_stream`, which drives the same decoder and the same
//! [`end_outcome`] without processes.

use core::time::Duration;

use rustix::io::Errno;
use serde::de::DeserializeOwned;

use crate::errors::{
    CallableDidNotExecuteError, CallableExecutedError, CallableStatusUnknownError, ErrorText,
    MemIsolateError,
};
use crate::report::Failure;
use crate::sink::Sink;
use crate::sys::Exit;
use crate::wire::{DecodeError, Decoder, End, Outcome};

/// Why the parent stopped the child itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    TimedOut,
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    ByCaller,
}

/// What the parent learned about one call.
pub(crate) struct Facts<'f, S> {
    pub(crate) decoder: &'f Decoder,
    pub(crate) sink: &'f mut S,
    pub(crate) exit: Option<Exit>,
    pub(crate) stopped: Option<Stopped>,
    pub(crate) timeout: Option<Duration>,
    /// Reaping failed (`ECHILD`: something else in the process reaped it).
    pub(crate) reap_error: Option<Errno>,
    /// The readiness wait itself failed.
    pub(crate) watch_error: Option<Errno>,
    pub(crate) read_error: Option<Errno>,
    /// The child's own report of a failure of its own (see
    /// [`crate::report`]), if it left one.
    pub(crate) report: Option<Failure>,
}

/// The caller's answer. In order: a deadline the parent enforced, a stream
/// it rejected, a failed wait, a complete stream from a child that exited
/// cleanly (or that something else reaped), a failed read, the child's own
/// report, and last how the child ended.
#[allow(clippy::needless_pass_by_value)] // it holds the sink's borrow; taking it ends the call
pub(crate) fn verdict<T: DeserializeOwned, S: Sink>(
    facts: Facts<'_, S>,
) -> Result<T, MemIsolateError> {
    use CallableExecutedError as Executed;
    use CallableStatusUnknownError as Unknown;

    if facts.stopped == Some(Stopped::TimedOut) {
        return Err(Unknown::TimedOut(facts.timeout.unwrap_or_default()).into());
    }
    match facts.decoder.failure() {
        Some(DecodeError::TooLarge) => {
            return Err(Executed::ResultTooLarge {
                limit: facts.sink.limit(),
            }
            .into());
        }
        Some(DecodeError::Corrupt) => return Err(Unknown::ResultStreamCorrupted.into()),
        None => {}
    }
    if let Some(e) = facts.watch_error {
        return Err(Unknown::WaitFailed(e).into());
    }
    // ECHILD: something else in the process reaped the child. Its stream
    // may still be complete, in which case the value stands.
    let reaped_elsewhere = facts.reap_error == Some(Errno::CHILD);
    if let Some(e) = facts.reap_error.filter(|_| !reaped_elsewhere) {
        return Err(Unknown::WaitFailed(e).into());
    }
    if let (Some(end), Some(Exit::Code(0)) | None) = (facts.decoder.end(), facts.exit) {
        return end_outcome(end, facts.decoder, facts.sink);
    }
    if let Some(e) = facts.read_error {
        return Err(Unknown::ParentPipeReadFailed(e).into());
    }
    // No exit code is the crate's own: a failure of the child's own is
    // reported in shared memory.
    if let (Some(Exit::Code(_)) | None, Some(kind)) = (facts.exit, facts.report) {
        return Err(match kind {
            Failure::WriteFailed(e) => Executed::ChildPipeWriteFailed(e).into(),
            Failure::SetupFailed(e) => CallableDidNotExecuteError::ChildSetupFailed(e).into(),
            Failure::Unwound => Unknown::CallableProcessDiedDuringExecution.into(),
        });
    }
    Err(match facts.exit {
        Some(Exit::Signal(sig)) => Unknown::ChildProcessKilledBySignal(sig).into(),
        Some(Exit::Code(0)) => Unknown::CallableProcessDiedDuringExecution.into(),
        Some(Exit::Code(code)) => Unknown::UnexpectedChildExitStatus(code).into(),
        None => Unknown::WaitFailed(Errno::CHILD).into(),
    })
}

/// The answer a complete, verified stream gives.
pub(crate) fn end_outcome<T: DeserializeOwned, S: Sink>(
    end: End,
    decoder: &Decoder,
    sink: &mut S,
) -> Result<T, MemIsolateError> {
    match end.outcome {
        Outcome::Value => value(sink),
        // The child cut the message on a character boundary; anything
        // else is kept up to its first invalid byte.
        Outcome::Panicked => Err(CallableExecutedError::CallablePanicked(
            ErrorText::from_utf8_lossy_prefix(decoder.panic_message()),
        )
        .into()),
        Outcome::SerializeFailed => Err(CallableExecutedError::SerializationFailed(
            ErrorText::from_utf8_lossy_prefix(decoder.panic_message()),
        )
        .into()),
        Outcome::SetupFailed => {
            let mut raw = [0u8; 4];
            raw.copy_from_slice(&end.detail[..4]);
            let errno = crate::errno::errno_from_raw(i32::from_le_bytes(raw)).unwrap_or(Errno::IO);
            Err(CallableDidNotExecuteError::ChildSetupFailed(errno).into())
        }
    }
}

/// The parent's verdict on a whole stream fed in `pieces`, for a child that
/// then exited with status 0: `None` if the stream is incomplete. Used by
/// the fuzz targets, which drive the decoder without processes.
#[cfg(all(fuzzing, feature = "alloc"))]
pub(crate) fn judge_stream<T: DeserializeOwned>(
    nonce: u64,
    pieces: &[&[u8]],
    limit: usize,
) -> Option<Result<T, MemIsolateError>> {
    let mut decoder = Decoder::new(nonce);
    let mut sink = crate::sink::VecSink::new(limit);
    for piece in pieces {
        match decoder.feed(piece, &mut sink) {
            Ok(_) => {}
            Err(DecodeError::TooLarge) => {
                return Some(Err(CallableExecutedError::ResultTooLarge { limit }.into()));
            }
            Err(DecodeError::Corrupt) => {
                return Some(Err(CallableStatusUnknownError::ResultStreamCorrupted.into()));
            }
        }
        if decoder.is_finished() {
            break;
        }
    }
    decoder
        .end()
        .map(|end| end_outcome(end, &decoder, &mut sink))
}

/// The value a complete stream carried. A `Vec<u8>` or `String` payload
/// that is exactly a length and its bytes becomes the value in place (see
/// [`crate::bytes`]); everything else is decoded by postcard.
fn value<T: DeserializeOwned, S: Sink>(sink: &mut S) -> Result<T, MemIsolateError> {
    #[cfg(feature = "alloc")]
    if let Some(kind) = crate::bytes::kind::<T>() {
        if let Some(owned) = sink.owned() {
            if let Some(start) = crate::bytes::wholesale_start(owned, kind) {
                let owned = core::mem::take(owned);
                // SAFETY: `kind` is `T`'s, and `start` was found for it.
                return Ok(unsafe { crate::bytes::into_value(owned, start, kind) });
            }
        }
    }
    decode(sink.bytes())
}

/// Decodes the value, insisting that it uses every byte: a checksummed
/// stream with bytes left over means `Serialize` and `Deserialize` disagree.
/// A `Deserialize` impl's own message is kept (see [`crate::capture`]).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MemIsolateError> {
    use CallableExecutedError::DeserializationFailed;
    let mut deserializer = postcard::Deserializer::from_bytes(bytes);
    match crate::capture::deserialize::<T, _>(&mut deserializer) {
        Ok(value) => {
            let left = deserializer.finalize().map_or(0, <[u8]>::len);
            if left == 0 {
                return Ok(value);
            }
            // Dropping the value here is the parent's own memory: fine.
            drop(value);
            let what = postcard::Error::DeserializeBadEncoding;
            let mut text = ErrorText::empty();
            let _ = core::fmt::Write::write_fmt(
                &mut text,
                format_args!("{what} ({left} bytes left over)"),
            );
            Err(DeserializationFailed(text).into())
        }
        Err(text) => Err(DeserializationFailed(text).into()),
    }
}
