//! A stream's decoder (many items: `ITEM` and `DROP` frames) on arbitrary
//! bytes, and the stream encoder's output read back.
//!
//! Input layout (fixed, so that seed files can be written by hand):
//!
//! ```text
//! offset 0   type    u8      which T to decode (modulo 3)
//! offset 1   nonce   u64 LE
//! offset 9   limit   u32 LE  per-item cap, clamped to 1 MiB
//! offset 13  ncuts   u8      number of cut points (modulo 16)
//! offset 14  cuts    ncuts x u16 LE, offsets into the stream
//! then       stream  the rest: bytes as read from the pipe
//! ```
//!
//! Checks: no panic; what the iterator would yield does not depend on how
//! the stream is split; after an error nothing more is yielded; and the
//! rest of the input, taken as a list of items, encoded as a child's
//! `Sender` would and decoded again, gives back the same items and a clean
//! end, whatever the split.

#![no_main]

use std::fmt::Debug;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mem_isolate::fuzzing::{decode_items, encode_items};
use mem_isolate_fuzz::{Sample, split};
use serde::Serialize;
use serde::de::DeserializeOwned;

const MAX_LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some(head) = data.get(..14) else {
        return;
    };
    let ty = head[0] % 3;
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
        0 => {
            check::<Vec<u8>>(nonce, stream, &cuts, limit);
            round_trip::<Vec<u8>>(nonce, stream, &cuts);
        }
        1 => {
            check::<Sample>(nonce, stream, &cuts, limit);
            round_trip::<Sample>(nonce, stream, &cuts);
        }
        _ => {
            check::<()>(nonce, stream, &cuts, limit);
            round_trip::<String>(nonce, stream, &cuts);
        }
    }
});

fn check<T: DeserializeOwned + PartialEq + Debug>(
    nonce: u64,
    stream: &[u8],
    cuts: &[u32],
    limit: usize,
) {
    let (items, complete) = decode_items::<T>(nonce, &split(stream, cuts), limit);
    let whole = decode_items::<T>(nonce, &[stream], limit);
    assert_eq!((&items, complete), (&whole.0, whole.1), "depends on the split");
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let bytewise = decode_items::<T>(nonce, &bytes, limit);
    assert_eq!((&items, complete), (&bytewise.0, bytewise.1), "differs byte by byte");
    if let Some(at) = items.iter().position(Result::is_err) {
        assert_eq!(at, items.len() - 1, "something after the error");
        assert!(complete, "an error ends the stream");
    }
}

fn round_trip<T>(nonce: u64, stream: &[u8], cuts: &[u32])
where
    T: for<'a> Arbitrary<'a> + Serialize + DeserializeOwned + PartialEq + Debug,
{
    let mut u = Unstructured::new(stream);
    let Ok(items) = Vec::<T>::arbitrary(&mut u) else {
        return;
    };
    let staging = 1 + usize::from(u.arbitrary::<u16>().unwrap_or(0));
    let Ok(encoded) = encode_items(&items, nonce, staging) else {
        return;
    };
    for pieces in [split(&encoded, cuts), vec![&encoded[..]]] {
        let (got, complete) = decode_items::<T>(nonce, &pieces, usize::MAX);
        assert!(complete, "an encoded stream is complete");
        let got: Vec<T> = got
            .into_iter()
            .map(|r| r.expect("an encoded item decodes"))
            .collect();
        assert_eq!(got, items);
    }
}
