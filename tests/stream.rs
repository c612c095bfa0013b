//! `Isolate::stream`: each behaviour provoked for real in a forked child.

#![cfg(feature = "std")]

use std::time::Duration;

use mem_isolate::errors::{CallableExecutedError, CallableStatusUnknownError};
use mem_isolate::{Isolate, MemIsolateError, Sender};
use serde::{Deserialize, Serialize, Serializer};

/// Every item, then the one error (if any), then the check that the
/// stream stays ended.
fn drain<T: serde::de::DeserializeOwned>(
    mut s: mem_isolate::IsolatedStream<T>,
) -> (Vec<T>, Option<MemIsolateError>) {
    let mut items = Vec::new();
    let mut error = None;
    for r in s.by_ref() {
        match r {
            Ok(item) => {
                assert!(error.is_none(), "an item after the error");
                items.push(item);
            }
            Err(e) => {
                assert!(error.is_none(), "a second error");
                error = Some(e);
            }
        }
    }
    assert!(s.next().is_none(), "the stream stays ended");
    (items, error)
}

fn signalled(sig: i32) -> MemIsolateError {
    CallableStatusUnknownError::ChildProcessKilledBySignal(sig).into()
}

#[test]
fn items_arrive_in_order_small_and_large() {
    let s = Isolate::new()
        .stream(|tx: &mut Sender<(u32, Vec<u8>)>| {
            for i in 0..20_000u32 {
                // Every 1000th item is far larger than the staging buffer.
                let len = if i % 1000 == 7 { 300_000 } else { (i % 50) as usize };
                tx.send(&(i, vec![(i % 251) as u8; len])).unwrap();
            }
        })
        .unwrap();
    let (items, error) = drain(s);
    assert_eq!(error, None);
    assert_eq!(items.len(), 20_000);
    for (i, (n, bytes)) in items.iter().enumerate() {
        assert_eq!(*n as usize, i);
        let len = if i % 1000 == 7 { 300_000 } else { i % 50 };
        assert_eq!(bytes.len(), len);
        assert!(bytes.iter().all(|&b| b as usize == i % 251));
    }
}

#[test]
fn unit_items_and_an_empty_stream() {
    let (items, error) = drain(
        Isolate::new()
            .stream(|tx: &mut Sender<()>| {
                for _ in 0..1000 {
                    tx.send(&()).unwrap();
                }
            })
            .unwrap(),
    );
    assert_eq!((items.len(), error), (1000, None));
    let (items, error) = drain(Isolate::new().stream(|_: &mut Sender<u8>| {}).unwrap());
    assert_eq!((items, error), (vec![], None));
}
