//! Shared pieces of the fuzz targets: the value types, a reference model of
//! the result stream (written from the protocol description at the top of
//! `src/wire.rs`, not from the decoder), and helpers to split a stream.
//!
//! Build only through cargo-fuzz, which sets `--cfg fuzzing`; without it
//! `mem_isolate::fuzzing` does not exist.

use arbitrary::Arbitrary;
use mem_isolate::MemIsolateError;
use mem_isolate::errors::{
    CallableDidNotExecuteError, CallableExecutedError, CallableStatusUnknownError, Errno,
    ErrorText, PANIC_MESSAGE_CAPACITY,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer, ser::SerializeTuple};

pub const HEADER_LEN: usize = 8;
pub const END_LEN: usize = 24;
pub const END_FRAME_LEN: usize = HEADER_LEN + END_LEN;
/// The largest `DATA` body the child ever sends; longer ones are forged.
pub const MAX_DATA_LEN: usize = 128 * 1024;
pub const KIND_DATA: u8 = 0xD4;
pub const KIND_PANIC: u8 = 0x9A;
pub const KIND_END: u8 = 0xE6;
pub const MAGIC: [u8; 3] = *b"MI\x01";

/// A value with most shapes postcard encodes: varints, strings, byte
/// vectors, options, enums with every kind of variant, nested sequences.
/// No floats, so that `PartialEq` is an equivalence.
#[derive(Arbitrary, Serialize, Deserialize, PartialEq, Eq, Debug, Clone)]
pub struct Sample {
    pub id: u64,
    pub delta: i32,
    pub name: String,
    pub bytes: Vec<u8>,
    pub maybe: Option<u16>,
    pub kind: Kind,
    pub list: Vec<(u8, Option<String>)>,
    pub kinds: Vec<Kind>,
    pub flag: bool,
    pub wide: u128,
}

#[derive(Arbitrary, Serialize, Deserialize, PartialEq, Eq, Debug, Clone)]
pub enum Kind {
    Unit,
    Tuple(u8, i64),
    Struct { words: Vec<u32>, label: String },
    Char(char),
}

/// Serializes as the bytes themselves: postcard writes a tuple of `u8`
/// with no length prefix, one byte per element.
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(self.0.len())?;
        for b in self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

/// The checksum a child sends in `END` for `payload` under `nonce`, taken
/// from the crate's own encoder (the checksum function is not part of the
/// documented protocol, so the model does not restate it).
#[must_use]
pub fn checksum_of(payload: &[u8], nonce: u64) -> u64 {
    let stream = mem_isolate::fuzzing::encode(&Raw(payload), nonce, payload.len() + HEADER_LEN)
        .expect("a tuple of bytes always serializes");
    let end = &stream[stream.len() - END_FRAME_LEN..];
    assert_eq!(
        u64_at(end, 16),
        payload.len() as u64,
        "END length of a raw payload"
    );
    u64_at(end, 24)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// What the protocol says about a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// A proper prefix of a stream that could still become valid.
    Incomplete,
    /// Breaks the grammar or fails a check.
    Corrupt,
    /// Carries more `DATA` bytes than `limit`.
    TooLarge,
    /// A complete, verified stream.
    End {
        outcome: u8,
        detail: [u8; 7],
        payload: Vec<u8>,
        panic: Option<Vec<u8>>,
        /// Sizes of the `DATA` bodies, in order.
        data_frames: Vec<usize>,
        /// Bytes of the stream up to and including `END`.
        used: usize,
    },
}

/// The reference model: walks `stream` frame by frame.
#[must_use]
pub fn model(nonce: u64, stream: &[u8], limit: usize) -> Framing {
    let mut pos = 0;
    let mut payload = Vec::new();
    let mut panic: Option<Vec<u8>> = None;
    let mut data_frames = Vec::new();
    loop {
        let Some(h) = stream.get(pos..pos + HEADER_LEN) else {
            return Framing::Incomplete;
        };
        pos += HEADER_LEN;
        if h[1..4] != MAGIC {
            return Framing::Corrupt;
        }
        let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        let avail = &stream[pos..];
        let body = &avail[..len.min(avail.len())];
        match h[0] {
            KIND_DATA if len > 0 && len <= MAX_DATA_LEN => {
                if payload.len() + body.len() > limit {
                    return Framing::TooLarge;
                }
                payload.extend_from_slice(body);
                if body.len() < len {
                    return Framing::Incomplete;
                }
                data_frames.push(len);
            }
            KIND_PANIC if panic.is_none() && len <= PANIC_MESSAGE_CAPACITY => {
                if body.len() < len {
                    return Framing::Incomplete;
                }
                panic = Some(body.to_vec());
            }
            KIND_END if len == END_LEN => {
                if body.len() < len {
                    return Framing::Incomplete;
                }
                let outcome = body[0];
                let detail: [u8; 7] = body[1..8].try_into().unwrap();
                let length = u64_at(body, 8);
                let sum = u64_at(body, 16);
                let message = panic.as_deref().unwrap_or_default();
                let side = mem_isolate::fuzzing::side_checksum(nonce, detail, message);
                let errno = i32::from_le_bytes(detail[..4].try_into().unwrap());
                let ok = match outcome {
                    1 => {
                        detail == [0; 7]
                            && panic.is_none()
                            && length == payload.len() as u64
                            && sum == checksum_of(&payload, nonce)
                    }
                    2 => detail == [0; 7] && length == 0 && panic.is_some() && sum == side,
                    // The serializer's message, if any, came in a PANIC frame.
                    3 => detail == [0; 7] && length == 0 && sum == side,
                    4 => {
                        payload.is_empty()
                            && panic.is_none()
                            && length == 0
                            && detail[4..] == [0; 3]
                            && (1..=4095).contains(&errno)
                            && sum == side
                    }
                    _ => false,
                };
                if !ok {
                    return Framing::Corrupt;
                }
                return Framing::End {
                    outcome,
                    detail,
                    payload,
                    panic,
                    data_frames,
                    used: pos + len,
                };
            }
            _ => return Framing::Corrupt,
        }
        pos += len;
    }
}

/// A verdict of `mem_isolate::fuzzing::decode`.
pub type Verdict<T> = Option<Result<T, MemIsolateError>>;

/// The verdict `mem_isolate::fuzzing::decode` must give, from the model.
#[derive(Debug)]
pub enum Expect<T> {
    /// Exactly this.
    Exactly(Verdict<T>),
    /// `DeserializationFailed`, for this error of postcard's: with
    /// postcard's description as its text, except for a custom error,
    /// whose text is the `Deserialize` impl's own message (which postcard
    /// drops, so the model cannot know it) and must not be empty.
    Deserialization(postcard::Error, usize),
    /// A `SetupFailed` end whose errno is not one (outside 1..=4095): no
    /// `Errno` can hold it, so the decoder must reject the stream as
    /// corrupt. Anything but a panic or an `Ok` is accepted here.
    NotAnErrno(i32),
}

impl<T: PartialEq + std::fmt::Debug> Expect<T> {
    /// Asserts that `verdict` is what the model allows.
    pub fn check(&self, verdict: &Verdict<T>) {
        match self {
            Self::Exactly(want) => assert_eq!(verdict, want, "decoder disagrees with the model"),
            Self::Deserialization(e, left) => {
                let Some(Err(MemIsolateError::CallableExecuted(
                    CallableExecutedError::DeserializationFailed(text),
                ))) = verdict
                else {
                    panic!("expected DeserializationFailed for {e:?}, got {verdict:?}");
                };
                if *e == postcard::Error::SerdeDeCustom {
                    assert!(!text.is_empty(), "a custom error without its message");
                } else if *left > 0 {
                    assert!(text.starts_with(&e.to_string()), "{text:?} for {e:?}");
                } else {
                    assert_eq!(text.as_str(), ErrorText::new(&e.to_string()).as_str());
                }
            }
            Self::NotAnErrno(raw) => assert!(
                matches!(verdict, Some(Err(_))),
                "SetupFailed with errno {raw} gave {verdict:?}"
            ),
        }
    }
}

/// The verdict `mem_isolate::fuzzing::decode` must give, from the model.
#[must_use]
pub fn expected<T: DeserializeOwned>(nonce: u64, stream: &[u8], limit: usize) -> Expect<T> {
    match expected_verdict(nonce, stream, limit) {
        Ok(Ok(v)) => Expect::Exactly(v),
        Ok(Err((e, left))) => Expect::Deserialization(e, left),
        Err(raw) => Expect::NotAnErrno(raw),
    }
}

/// `Ok(Err((e, left)))`: deserialization failed with postcard's `e`, or
/// left `left` bytes over (see [`Expect::Deserialization`]).
#[allow(clippy::type_complexity)]
fn expected_verdict<T: DeserializeOwned>(
    nonce: u64,
    stream: &[u8],
    limit: usize,
) -> Result<Result<Verdict<T>, (postcard::Error, usize)>, i32> {
    use CallableExecutedError as Executed;
    Ok(Ok(Some(Err(match model(nonce, stream, limit) {
        Framing::Incomplete => return Ok(Ok(None)),
        Framing::Corrupt => CallableStatusUnknownError::ResultStreamCorrupted.into(),
        Framing::TooLarge => Executed::ResultTooLarge { limit }.into(),
        Framing::End {
            outcome,
            detail,
            payload,
            panic,
            ..
        } => match outcome {
            1 => match postcard::take_from_bytes::<T>(&payload) {
                Ok((v, [])) => return Ok(Ok(Some(Ok(v)))),
                Ok((_, rest)) => {
                    return Ok(Err((postcard::Error::DeserializeBadEncoding, rest.len())));
                }
                Err(e) => return Ok(Err((e, 0))),
            },
            2 => Executed::CallablePanicked(text_of(&panic.unwrap_or_default())).into(),
            3 => Executed::SerializationFailed(text_of(&panic.unwrap_or_default())).into(),
            4 => {
                let errno = i32::from_le_bytes(detail[..4].try_into().unwrap());
                if !(1..=4095).contains(&errno) {
                    return Err(errno);
                }
                CallableDidNotExecuteError::ChildSetupFailed(Errno::from_raw_os_error(errno)).into()
            }
            _ => unreachable!("the model accepts outcomes 1..=4 only"),
        },
    }))))
}

/// A message as the parent shows it: whole characters up to the first
/// invalid byte.
fn text_of(bytes: &[u8]) -> ErrorText {
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap(),
    };
    assert!(valid.len() <= PANIC_MESSAGE_CAPACITY);
    ErrorText::new(valid)
}

/// Splits `bytes` at `cuts` (offsets taken modulo `len + 1`, sorted;
/// repeats give empty pieces, which the decoder must also take).
#[must_use]
pub fn split<'a>(bytes: &'a [u8], cuts: &[u32]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| c as usize % (bytes.len() + 1))
        .collect();
    at.sort_unstable();
    let mut pieces = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for c in at {
        pieces.push(&bytes[start..c]);
        start = c;
    }
    pieces.push(&bytes[start..]);
    pieces
}

/// True if `b` begins with a header the decoder could accept as a first
/// frame (kind, magic and a length that kind allows).
#[must_use]
pub fn starts_with_valid_header(b: &[u8]) -> bool {
    let Some(h) = b.get(..HEADER_LEN) else {
        return false;
    };
    let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
    h[1..4] == MAGIC
        && match h[0] {
            KIND_DATA => len > 0 && len <= MAX_DATA_LEN,
            KIND_PANIC => (1..=PANIC_MESSAGE_CAPACITY).contains(&len),
            KIND_END => len == END_LEN,
            _ => false,
        }
}
