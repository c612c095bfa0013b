//! The fast path for results that are plain bytes: `Vec<u8>` and `String`.
//!
//! serde moves a `Vec<u8>` one element at a time, through a call per byte
//! on each side, which costs several times a copy. postcard encodes
//! `Vec<u8>`, `String`, `&str` and `&[u8]` identically (a varint length,
//! then the bytes), so for these two types the crate can move the bytes
//! wholesale and stay byte-for-byte compatible with the generic path:
//!
//! - the child serializes the value's bytes with one `serialize_bytes`
//!   instead of a call per element;
//! - the parent, when the received payload is exactly one well-formed
//!   length prefix followed by that many bytes (and, for `String`, valid
//!   UTF-8), turns its receive buffer into the value: no second buffer, no
//!   per-byte visitor. Anything else takes the generic path, so every error
//!   is the one postcard would report.
//!
//! The types are recognized by [`typeid::of`], which works for types that
//! are not `'static`. `Vec<u8>` and `String` have no lifetime parameters,
//! so equal ids mean the very same type, and the casts below are identity
//! casts.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Serialize, Serializer};

/// Which bytes-like type a result type is, if any.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Bytes,
    Text,
}

/// `Some` if `T` is `Vec<u8>` or `String`.
#[inline]
pub(crate) fn kind<T: ?Sized>() -> Option<Kind> {
    let id = typeid::of::<T>();
    if id == typeid::of::<Vec<u8>>() {
        Some(Kind::Bytes)
    } else if id == typeid::of::<String>() {
        Some(Kind::Text)
    } else {
        None
    }
}

/// The bytes of `value` if `T` is `Vec<u8>` or `String`.
#[inline]
pub(crate) fn as_bytes<T>(value: &T) -> Option<&[u8]> {
    let value: *const T = value;
    match kind::<T>()? {
        // SAFETY: `kind` found `T` to be `Vec<u8>` itself.
        Kind::Bytes => Some(unsafe { &*value.cast::<Vec<u8>>() }.as_slice()),
        // SAFETY: `kind` found `T` to be `String` itself.
        Kind::Text => Some(unsafe { &*value.cast::<String>() }.as_bytes()),
    }
}

/// Serializes as postcard serializes a `Vec<u8>` or a `String`.
pub(crate) struct Wholesale<'a>(pub(crate) &'a [u8]);

impl Serialize for Wholesale<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Where the bytes start if `payload` is one canonical varint length
/// followed by exactly that many bytes, and (for [`Kind::Text`]) those
/// bytes are UTF-8. `None` sends the payload down the generic path.
///
/// Only canonical varints are accepted (no padding continuation bytes, no
/// more bytes than a `usize` needs), a subset of what postcard accepts, so
/// a payload this takes decodes to the same value either way.
pub(crate) fn wholesale_start(payload: &[u8], kind: Kind) -> Option<usize> {
    const MAX_LEN: usize = (usize::BITS as usize).div_ceil(7);
    // The last byte a usize varint may have carries only the bits left.
    const LAST_MAX: u8 = (1 << (usize::BITS as usize - 7 * (MAX_LEN - 1))) - 1;
    let mut value: u64 = 0;
    for (i, &byte) in payload.iter().take(MAX_LEN).enumerate() {
        if i == MAX_LEN - 1 && byte > LAST_MAX {
            return None;
        }
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return None;
            }
            let start = i + 1;
            let len = usize::try_from(value).ok()?;
            if payload.len() - start != len {
                return None;
            }
            if kind == Kind::Text && core::str::from_utf8(&payload[start..]).is_err() {
                return None;
            }
            return Some(start);
        }
    }
    None
}

/// Turns a received payload, already checked by [`wholesale_start`], into
/// the value, reusing its buffer.
///
/// # Safety
///
/// `T` must be the type [`kind`] said, and `start` what [`wholesale_start`]
/// returned for `payload` and that kind.
pub(crate) unsafe fn into_value<T>(mut payload: Vec<u8>, start: usize, kind: Kind) -> T {
    // One move of the bytes down over the length prefix: far cheaper than
    // a second buffer. The receive buffer grew by doubling; giving back
    // the untouched tail is an in-place shrink (or `mremap`) for the
    // allocators this was measured with.
    payload.drain(..start);
    payload.shrink_to_fit();
    match kind {
        // SAFETY: `T` is `Vec<u8>` (the caller's promise).
        Kind::Bytes => unsafe { cast(payload) },
        Kind::Text => {
            // SAFETY: `wholesale_start` checked that the bytes are UTF-8.
            let text = unsafe { String::from_utf8_unchecked(payload) };
            // SAFETY: `T` is `String` (the caller's promise).
            unsafe { cast(text) }
        }
    }
}

/// Moves `value` out as `T`.
///
/// # Safety
///
/// `T` must be `U`.
unsafe fn cast<U, T>(value: U) -> T {
    let value = core::mem::ManuallyDrop::new(value);
    // SAFETY: the same type: reading it moves it, and the original is
    // never dropped.
    unsafe { core::mem::transmute_copy::<U, T>(&value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vec_u8_and_string_are_recognized() {
        assert_eq!(kind::<Vec<u8>>(), Some(Kind::Bytes));
        assert_eq!(kind::<String>(), Some(Kind::Text));
        assert_eq!(kind::<Vec<i8>>(), None);
        assert_eq!(kind::<alloc::boxed::Box<[u8]>>(), None);
        assert_eq!(kind::<&'static str>(), None);
        assert_eq!(kind::<(Vec<u8>,)>(), None);
        assert_eq!(as_bytes(&alloc::vec![1u8, 2]), Some(&[1u8, 2][..]));
        assert_eq!(as_bytes(&String::from("é")), Some("é".as_bytes()));
        assert_eq!(as_bytes(&[1u8, 2]), None);
    }

    /// Every payload of up to four bytes drawn from edge-case bytes: what
    /// the fast path takes, postcard decodes to the same value; what it
    /// refuses is a payload postcard rejects or one with a padded length.
    #[test]
    fn the_fast_path_agrees_with_postcard() {
        const ALPHABET: [u8; 10] = [0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0x81, 0xFF, 0xC3, 0xA9];
        let mut taken = 0;
        for len in 0..=4u32 {
            for n in 0..ALPHABET.len().pow(len) {
                let mut payload = Vec::new();
                let mut rest = n;
                for _ in 0..len {
                    payload.push(ALPHABET[rest % ALPHABET.len()]);
                    rest /= ALPHABET.len();
                }
                for kind in [Kind::Bytes, Kind::Text] {
                    let ours = wholesale_start(&payload, kind).map(|s| payload[s..].to_vec());
                    let theirs = match kind {
                        Kind::Bytes => postcard::take_from_bytes::<Vec<u8>>(&payload)
                            .ok()
                            .filter(|(_, rest)| rest.is_empty())
                            .map(|(v, _)| v),
                        Kind::Text => postcard::take_from_bytes::<String>(&payload)
                            .ok()
                            .filter(|(_, rest)| rest.is_empty())
                            .map(|(v, _)| v.into_bytes()),
                    };
                    let padded = payload.len() > 1 && payload[0] & 0x80 != 0 && {
                        let end = payload.iter().position(|b| b & 0x80 == 0);
                        end.is_some_and(|e| payload[e] == 0)
                    };
                    match (&ours, &theirs) {
                        (Some(a), Some(b)) => {
                            assert_eq!(a, b, "{payload:02x?}");
                            taken += 1;
                        }
                        (None, Some(_)) => assert!(padded, "refused {payload:02x?}"),
                        (Some(_), None) => panic!("took {payload:02x?}, postcard refuses it"),
                        (None, None) => {}
                    }
                }
            }
        }
        assert!(taken > 100, "only {taken} payloads took the fast path");
    }

    #[test]
    fn lengths_past_what_fits_are_refused() {
        // Ten bytes whose last carries more than a u64's top bit: postcard
        // refuses it, and so must the fast path (it would read length 5).
        let mut padded = alloc::vec![0x85];
        padded.extend([0x80; 8]);
        padded.push(0x02);
        padded.extend([b'x'; 5]);
        assert!(postcard::from_bytes::<Vec<u8>>(&padded).is_err());
        assert_eq!(wholesale_start(&padded, Kind::Bytes), None);
        assert_eq!(wholesale_start(&padded, Kind::Text), None);
        // u64::MAX as a varint: ten bytes, more than the length allows.
        let mut payload = alloc::vec![0xFF; 9];
        payload.push(0x01);
        assert_eq!(wholesale_start(&payload, Kind::Bytes), None);
        // An unterminated length.
        assert_eq!(wholesale_start(&[0x80; 3], Kind::Bytes), None);
        assert_eq!(wholesale_start(&[], Kind::Bytes), None);
    }

    #[test]
    fn the_value_takes_over_the_buffer() {
        let mut payload = alloc::vec![0x82, 0x01];
        payload.extend(core::iter::repeat_n(b'x', 130));
        let start = wholesale_start(&payload, Kind::Text).unwrap();
        assert_eq!(start, 2);
        // SAFETY: `String` is `Kind::Text`, and `start` was found for it.
        let text: String = unsafe { into_value(payload, start, Kind::Text) };
        assert_eq!(text, "x".repeat(130));
    }
}
