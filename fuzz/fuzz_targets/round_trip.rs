//! The child's encoder against the parent's decoder.
//!
//! An arbitrary `Sample` is encoded as a child would send it (staging
//! buffer of 16..=4096 bytes) and decoded in arbitrary pieces. Checks: the
//! stream has the documented shape; it decodes to exactly the value, at any
//! limit from its payload size up; another nonce, a smaller limit, a
//! truncation and a flipped byte are each answered as the protocol says.
//! The sample's `Vec<u8>` and `String` fields, sent alone, take the
//! crate's wholesale path for bytes: their streams must carry exactly
//! postcard's encoding and decode back to the same value.

#![no_main]

use std::fmt::Debug;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mem_isolate::MemIsolateError;
use mem_isolate::errors::{CallableExecutedError, CallableStatusUnknownError};
use mem_isolate::fuzzing::{decode, encode};
use mem_isolate_fuzz::{Framing, Sample, expected, model, split};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Arbitrary, Debug)]
struct Input {
    value: Sample,
    nonce: u64,
    other_nonce: u64,
    staging: u16,
    cuts: Vec<u32>,
    slack: u16,
    small: u32,
    cut_at: u32,
    flip_at: u32,
    flip_mask: u8,
    trailer: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let Input {
        value,
        nonce,
        other_nonce,
        staging,
        cuts,
        slack,
        small,
        cut_at,
        flip_at,
        flip_mask,
        trailer,
    } = input;
    let staging = 16 + usize::from(staging) % (4096 - 16 + 1);
    alone(&value.bytes, nonce, staging, &cuts);
    alone(&value.name, nonce, staging, &cuts);
    let stream = encode(&value, nonce, staging).expect("a Sample always serializes");
    let payload = postcard::to_allocvec(&value).unwrap();
    let corrupt: MemIsolateError = CallableStatusUnknownError::ResultStreamCorrupted.into();

    // The documented shape: full DATA frames, a shorter last one, then END
    // with outcome Value, zero detail, the length and a verified checksum.
    match model(nonce, &stream, usize::MAX) {
        Framing::End {
            outcome,
            detail,
            payload: sent,
            panic,
            data_frames,
            used,
        } => {
            assert_eq!(outcome, 1);
            assert_eq!(detail, [0; 7]);
            assert_eq!(sent, payload, "DATA bytes are not the postcard encoding");
            assert_eq!(panic, None);
            assert_eq!(used, stream.len(), "bytes after END");
            // Each flush sends a full staging buffer: all frames but the
            // last have one size, which fits in the buffer.
            let (last, full) = data_frames.split_last().expect("a Sample is never empty");
            let body = full.first().copied().unwrap_or(*last);
            assert!(
                body <= staging,
                "a DATA frame larger than the staging buffer"
            );
            assert!(
                full.iter().all(|&n| n == body),
                "DATA frames of different sizes"
            );
            assert!(
                (1..=body).contains(last),
                "a last DATA frame larger than the others"
            );
        }
        other => panic!("the encoder's stream is {other:?}"),
    }

    // Back to the value: any split, any limit that fits, even exactly.
    let ok = Some(Ok(value.clone()));
    let pieces = split(&stream, &cuts);
    assert_eq!(
        decode::<Sample>(nonce, &pieces, payload.len() + usize::from(slack)),
        ok
    );
    assert_eq!(decode::<Sample>(nonce, &[&stream], payload.len()), ok);

    // Bytes after END are not read.
    let mut longer = stream.clone();
    longer.extend_from_slice(&trailer);
    assert_eq!(
        decode::<Sample>(nonce, &split(&longer, &cuts), usize::MAX),
        ok
    );

    // Another call's nonce: the checksum is a bijection of the seed, so
    // this is always caught.
    let wrong = if other_nonce == nonce {
        nonce ^ 1
    } else {
        other_nonce
    };
    for n in [nonce ^ 1, wrong] {
        assert_eq!(
            decode::<Sample>(n, &pieces, usize::MAX),
            Some(Err(corrupt.clone()))
        );
    }

    // A limit below the payload.
    let limit = small as usize % payload.len();
    assert_eq!(
        decode::<Sample>(nonce, &pieces, limit),
        Some(Err(CallableExecutedError::ResultTooLarge { limit }.into()))
    );

    // Cut short anywhere: incomplete, never a verdict.
    let cut = cut_at as usize % stream.len();
    assert_eq!(
        decode::<Sample>(nonce, &split(&stream[..cut], &cuts), usize::MAX),
        None
    );

    // One byte changed.
    let mut flipped = stream.clone();
    let at = flip_at as usize % stream.len();
    flipped[at] ^= if flip_mask == 0 { 1 } else { flip_mask };
    let verdict = decode::<Sample>(nonce, &split(&flipped, &cuts), usize::MAX);
    expected::<Sample>(nonce, &flipped, usize::MAX).check(&verdict);
    // Every byte of the stream is covered by a check: no change at all
    // may still decode.
    assert!(
        !matches!(verdict, Some(Ok(_))),
        "a flipped byte at {at} of {} still decoded",
        stream.len()
    );
});

/// `value` sent as a whole result: postcard's encoding on the wire, and
/// the value back at the exact limit.
fn alone<T>(value: &T, nonce: u64, staging: usize, cuts: &[u32])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + Clone,
{
    let stream = encode(value, nonce, staging).expect("bytes always serialize");
    let payload = postcard::to_allocvec(value).unwrap();
    match model(nonce, &stream, usize::MAX) {
        Framing::End {
            outcome: 1,
            payload: sent,
            used,
            ..
        } => {
            assert_eq!(sent, payload, "not postcard's encoding");
            assert_eq!(used, stream.len(), "bytes after END");
        }
        other => panic!("the encoder's stream is {other:?}"),
    }
    assert_eq!(
        decode::<T>(nonce, &split(&stream, cuts), payload.len()),
        Some(Ok(value.clone()))
    );
}
