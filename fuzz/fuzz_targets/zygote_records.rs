//! The zygote's records on arbitrary bytes: a request as the zygote reads
//! it from its control socket, a reply as a caller reads it from its call
//! socket (see `src/zygote/wire.rs`).
//!
//! Input layout: byte 0 picks the record (even: request, odd: reply); the
//! rest is the record, cut or zero-padded to its length.
//!
//! Checks: no panic; a record that is accepted encodes back to exactly the
//! same bytes (nothing in it is ignored or reinterpreted).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mem_isolate::fuzzing::{ZYGOTE_RECORD_LENS, zygote_reply, zygote_request};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (request_len, reply_len) = ZYGOTE_RECORD_LENS;
    if which % 2 == 0 {
        let mut record = [0u8; 48];
        assert_eq!(record.len(), request_len);
        let n = rest.len().min(record.len());
        record[..n].copy_from_slice(&rest[..n]);
        if let Some(again) = zygote_request(&record) {
            assert_eq!(again, record, "an accepted request re-encodes differently");
        }
    } else {
        let mut record = [0u8; 40];
        assert_eq!(record.len(), reply_len);
        let n = rest.len().min(record.len());
        record[..n].copy_from_slice(&rest[..n]);
        if let Some(again) = zygote_reply(&record) {
            assert_eq!(again, record, "an accepted reply re-encodes differently");
        }
    }
});
