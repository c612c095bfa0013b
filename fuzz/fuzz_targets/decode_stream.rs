//! The parent's decoder on arbitrary bytes.
//!
//! Input layout (fixed, so that seed files can be written by hand):
//!
//! ```text
//! offset 0   type    u8      which T to decode (modulo 5)
//! offset 1   nonce   u64 LE
//! offset 9   limit   u32 LE  result-size cap, clamped to 1 MiB
//! offset 13  ncuts   u8      number of cut points (modulo 16)
//! offset 14  cuts    ncuts x u16 LE, offsets into the stream
//! then       stream  the rest: bytes as read from the pipe
//! ```
//!
//! Checks: no panic; the verdict does not depend on how the stream is
//! split; it equals the reference model's (`mem_isolate_fuzz::expected`);
//! a stream whose first header is invalid is never accepted.

#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use mem_isolate::fuzzing::decode;
use mem_isolate_fuzz::{Sample, expected, split, starts_with_valid_header};
use serde::de::DeserializeOwned;

const MAX_LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some(head) = data.get(..14) else {
        return;
    };
    let ty = head[0] % 5;
    let nonce = u64::from_le_bytes(head[1..9].try_into().unwrap());
    let limit = (u32::from_le_bytes(head[9..13].try_into().unwrap()) as usize).min(MAX_LIMIT);
    let ncuts = usize::from(head[13] % 16);
    let Some(cut_bytes) = data.get(14..14 + 2 * ncuts) else {
        return;
    };
    let cuts: Vec<u32> = cut_bytes
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    let stream = &data[14 + 2 * ncuts..];
    match ty {
        0 => check::<Vec<u8>>(nonce, stream, &cuts, limit),
        1 => check::<String>(nonce, stream, &cuts, limit),
        2 => check::<Sample>(nonce, stream, &cuts, limit),
        3 => check::<()>(nonce, stream, &cuts, limit),
        _ => check::<Option<(u64, bool)>>(nonce, stream, &cuts, limit),
    }
});

fn check<T: DeserializeOwned + PartialEq + Debug>(
    nonce: u64,
    stream: &[u8],
    cuts: &[u32],
    limit: usize,
) {
    let verdict = decode::<T>(nonce, &split(stream, cuts), limit);

    // The same bytes, whole and one byte at a time: the same verdict.
    let whole = decode::<T>(nonce, &[stream], limit);
    assert_eq!(verdict, whole, "verdict depends on the split");
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let bytewise = decode::<T>(nonce, &bytes, limit);
    assert_eq!(verdict, bytewise, "verdict differs when fed byte by byte");

    // The protocol's own answer.
    expected::<T>(nonce, stream, limit).check(&verdict);

    if let Some(Ok(_)) = &verdict {
        assert!(
            starts_with_valid_header(stream),
            "accepted a stream that does not start with a frame header"
        );
    }
}
