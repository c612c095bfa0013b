//! Proves that the child allocates and frees nothing between the callable's
//! return and `_exit`, for small results and for results many times larger
//! than the staging buffer.
//!
//! This test binary's global allocator has a tripwire: once armed (the last
//! thing each callable does before returning), any allocation or free ends
//! the process with exit code 99, which the parent reports as
//! `UnexpectedChildExitStatus(99)`. The flag lives in the child's copy of
//! memory, so arming it never affects the parent or other tests.

// The integration tests use the std API (panics, spawn, threads).
#![cfg(feature = "std")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

use mem_isolate::errors::{CallableExecutedError, CallableStatusUnknownError};
use mem_isolate::{Isolate, MemIsolateError, execute_in_isolated_process};
use serde::{Serialize, Serializer};

static ARMED: AtomicBool = AtomicBool::new(false);

struct Tripwire;

const TRIPPED: i32 = 99;

fn trip() -> ! {
    let msg = b"tripwire: allocator used after the callable returned\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe and allocate nothing.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(TRIPPED)
    }
}

// SAFETY: defers to the system allocator; only adds a check.
unsafe impl GlobalAlloc for Tripwire {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            trip();
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) {
            trip();
        }
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            trip();
        }
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tripwire = Tripwire;

/// Points this (child) process's stderr at `/dev/null`. Allocates nothing.
fn silence_stderr() {
    // SAFETY: open and dup2 on this child's descriptor table.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        assert!(null >= 0, "open /dev/null");
        assert_eq!(libc::dup2(null, 2), 2);
        libc::close(null);
    }
}

/// Returns `value` with the tripwire armed: from here on, only the crate's
/// child path runs.
fn armed<T>(value: T) -> T {
    ARMED.store(true, Ordering::SeqCst);
    value
}

#[test]
fn small_result_crosses_without_allocating() {
    let v = execute_in_isolated_process(|| armed(42u64)).unwrap();
    assert_eq!(v, 42);
    assert!(
        !ARMED.load(Ordering::SeqCst),
        "the parent's flag is untouched"
    );
}

#[test]
fn structured_result_crosses_without_allocating() {
    let v = execute_in_isolated_process(|| {
        armed((
            String::from("name"),
            vec![1.5f64, 2.5],
            Some(vec!["a".to_string()]),
        ))
    })
    .unwrap();
    assert_eq!(v.0, "name");
    assert_eq!(v.2.unwrap(), ["a"]);
}

#[test]
fn result_many_times_the_staging_buffer_crosses_without_allocating() {
    // 8 MiB of bytes and 100k strings: dozens of flushes of the 128 KiB
    // staging buffer, and many times a pipe's capacity.
    let v = execute_in_isolated_process(|| {
        let bytes: Vec<u8> = (0..8u32 << 20).map(|i| (i % 253) as u8).collect();
        let words: Vec<String> = (0..100_000).map(|i| format!("w{i}")).collect();
        armed((bytes, words))
    })
    .unwrap();
    assert_eq!(v.0.len(), 8 << 20);
    assert_eq!(v.0[1000], (1000 % 253) as u8);
    assert_eq!(v.1[99_999], "w99999");
}

#[test]
fn bytes_and_text_on_the_fast_path_cross_without_allocating() {
    let bytes = execute_in_isolated_process(|| {
        let bytes: Vec<u8> = (0..3u32 << 20).map(|i| (i % 249) as u8).collect();
        armed(bytes)
    })
    .unwrap();
    assert_eq!(bytes.len(), 3 << 20);
    assert_eq!(bytes[5000], (5000 % 249) as u8);
    let text = execute_in_isolated_process(|| armed("ü".repeat(1 << 20))).unwrap();
    assert_eq!(text, "ü".repeat(1 << 20));
}

/// A value whose serialization fails half way, with a formatted message of
/// its own (formatting it allocates nothing: `format_args!`).
#[derive(Debug)]
struct FailsWithAMessage;

impl Serialize for FailsWithAMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeTuple};
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&[7u8; 32])?;
        Err(S::Error::custom(format_args!("refused after {} bytes", 32)))
    }
}

impl<'de> serde::Deserialize<'de> for FailsWithAMessage {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        unreachable!("a failed serialization is never decoded")
    }
}

#[test]
fn a_serializers_message_crosses_without_allocating() {
    let e = execute_in_isolated_process(|| armed(FailsWithAMessage)).unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(CallableExecutedError::SerializationFailed(
            "refused after 32 bytes".into()
        ))
    );
}

#[test]
fn the_childs_own_failure_is_reported_without_allocating() {
    // The write fails (the callable closed its descriptors): the child
    // reports it in shared memory. Blocking (the thread's shared page) and
    // spawned (a page mapped for the call).
    fn closes_everything() -> Vec<u8> {
        for fd in 3..4096 {
            // SAFETY: closing descriptors in the child only.
            unsafe { libc::close(fd) };
        }
        armed(vec![3u8; 64 * 1024])
    }
    let want = MemIsolateError::CallableExecuted(CallableExecutedError::ChildPipeWriteFailed(
        mem_isolate::errors::Errno::BADF,
    ));
    let blocking = execute_in_isolated_process(closes_everything);
    assert_eq!(blocking, Err(want.clone()));
    let spawned = Isolate::new().spawn(closes_everything).unwrap().join();
    assert_eq!(spawned, Err(want));
}

/// A value whose serialization allocates: the tripwire must catch it,
/// which shows the tripwire works.
#[derive(Debug)]
struct AllocatesWhileSerializing;

impl Serialize for AllocatesWhileSerializing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = format!("{}", 12345);
        s.serialize_str(&text)
    }
}

impl<'de> serde::Deserialize<'de> for AllocatesWhileSerializing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|_| Self)
    }
}

#[test]
fn the_tripwire_itself_fires_on_an_allocation() {
    let e = Isolate::new()
        .run(|| {
            // This child trips on purpose: keep its message out of the
            // test run's output.
            silence_stderr();
            armed(AllocatesWhileSerializing)
        })
        .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableStatusUnknown(
            CallableStatusUnknownError::UnexpectedChildExitStatus(TRIPPED)
        )
    );
}

/// Items built before the tripwire is armed: from then on only
/// `Sender::send` (and, after the producer returns, the child's usual
/// path) runs.
#[test]
fn stream_sends_allocate_nothing() {
    use mem_isolate::Sender;
    let s = Isolate::new()
        .stream(|tx: &mut Sender<(u64, String, Vec<u8>)>| {
            let small = (1u64, String::from("row"), vec![1u8, 2, 3]);
            // Many times the staging buffer: flushed part way through.
            let large = (2u64, "ü".repeat(100_000), vec![9u8; 3 << 20]);
            armed(());
            for _ in 0..100 {
                tx.send(&small).unwrap();
            }
            tx.send(&large).unwrap();
            tx.send(&small).unwrap();
            // Deliberately never dropped: dropping frees.
            std::mem::forget((small, large));
        })
        .unwrap();
    let items: Vec<_> = s.collect::<Result<_, _>>().unwrap();
    assert_eq!(items.len(), 102);
    assert_eq!(items[100].2.len(), 3 << 20);
    assert_eq!(items[101].1, "row");
}

#[test]
fn a_stream_send_that_fails_to_serialize_allocates_nothing() {
    use mem_isolate::{SendError, Sender};
    // The child's checks end it with a code of their own: any exit but a
    // clean one shows up as the stream's error.
    let s = Isolate::new()
        .stream(|tx: &mut Sender<Failing>| {
            armed(());
            let e = tx.send(&Failing).unwrap_err();
            let SendError::SerializationFailed(text) = e else {
                // SAFETY: async-signal-safe; a distinct code for the test.
                unsafe { libc::_exit(98) }
            };
            if text.as_str() != "refused after 32 bytes" {
                // SAFETY: as above.
                unsafe { libc::_exit(97) }
            }
        })
        .unwrap();
    let results: Vec<_> = s.collect();
    assert!(results.is_empty(), "{results:?}");
}

/// `FailsWithAMessage` as a stream item.
#[derive(Debug)]
struct Failing;

impl Serialize for Failing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FailsWithAMessage.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Failing {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        unreachable!("a failed serialization is never decoded")
    }
}
