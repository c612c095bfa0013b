//! What users of the seed crate rely on: memory effects stay in the child,
//! every kind of closure works, values of any size and shape come back.

// The integration tests use the std API (panics, spawn, threads).
#![cfg(feature = "std")]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use mem_isolate::errors::{CallableExecutedError, PANIC_MESSAGE_CAPACITY};
use mem_isolate::{MemIsolateError, execute_in_isolated_process};
use serde::{Deserialize, Serialize};

static mut PLAIN_STATIC: u64 = 7;
static ATOMIC_STATIC: AtomicU64 = AtomicU64::new(7);

#[test]
fn static_mutations_stay_in_the_child() {
    let seen = execute_in_isolated_process(|| {
        // SAFETY: the child is single-threaded.
        unsafe { PLAIN_STATIC = 99 };
        ATOMIC_STATIC.store(99, Ordering::SeqCst);
        // SAFETY: as above.
        (
            unsafe { PLAIN_STATIC },
            ATOMIC_STATIC.load(Ordering::SeqCst),
        )
    })
    .unwrap();
    assert_eq!(seen, (99, 99), "the child saw its own writes");
    // SAFETY: no other test writes PLAIN_STATIC in the parent.
    assert_eq!(unsafe { PLAIN_STATIC }, 7);
    assert_eq!(ATOMIC_STATIC.load(Ordering::SeqCst), 7);
}

#[test]
fn captured_mutations_stay_in_the_child() {
    let mut counter = 1;
    let mut names = vec!["parent".to_string()];
    let seen = execute_in_isolated_process(|| {
        counter += 41;
        names.push("child".into());
        (counter, names.len())
    })
    .unwrap();
    assert_eq!(seen, (42, 2));
    assert_eq!(counter, 1);
    assert_eq!(names, ["parent"]);
}

#[test]
fn every_kind_of_closure_runs() {
    fn plain() -> u8 {
        1
    }
    let owned = String::from("moved");
    let borrowed = [1, 2, 3];
    let mut state = 0;

    assert_eq!(execute_in_isolated_process(plain).unwrap(), 1);
    assert_eq!(execute_in_isolated_process(|| borrowed.len()).unwrap(), 3);
    assert_eq!(execute_in_isolated_process(move || owned).unwrap(), "moved");
    let fn_mut = || {
        state += 1;
        state
    };
    assert_eq!(execute_in_isolated_process(fn_mut).unwrap(), 1);
    let boxed: Box<dyn FnOnce() -> i32> = Box::new(|| -5);
    assert_eq!(execute_in_isolated_process(boxed).unwrap(), -5);
    assert_eq!(state, 0);
}

#[test]
fn unit_and_empty_values_come_back() {
    execute_in_isolated_process(|| ()).unwrap();
    assert_eq!(
        execute_in_isolated_process(Vec::<u8>::new).unwrap(),
        Vec::<u8>::new()
    );
    assert_eq!(execute_in_isolated_process(String::new).unwrap(), "");
    assert_eq!(execute_in_isolated_process(|| None::<u8>).unwrap(), None);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    id: u64,
    name: String,
    score: f64,
    tags: BTreeMap<String, i32>,
}

#[test]
fn structured_values_and_results_round_trip() {
    let rows = execute_in_isolated_process(|| {
        (0..1000u32)
            .map(|i| Row {
                id: u64::from(i),
                name: format!("row {i}"),
                score: f64::from(i) / 3.0,
                tags: [("k".to_string(), i32::try_from(i).unwrap())].into(),
            })
            .collect::<Vec<_>>()
    })
    .unwrap();
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows[999].name, "row 999");
    assert!((rows[3].score - 1.0).abs() < f64::EPSILON);

    let failed: Result<u8, String> =
        execute_in_isolated_process(|| Err("the callable's own error".to_string())).unwrap();
    assert_eq!(failed, Err("the callable's own error".to_string()));
}

#[test]
fn results_much_larger_than_the_staging_buffer_and_the_pipe() {
    let big = execute_in_isolated_process(|| {
        (0..48u32 << 20)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
    })
    .unwrap();
    assert_eq!(big.len(), 48 << 20);
    assert!(big.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

/// `Vec<u8>` and `String` move as one run of bytes (no per-element
/// serde): every size around the frame and pipe boundaries, multi-byte
/// characters straddling them, through each way of calling.
#[test]
fn bytes_and_text_of_every_size_come_back_whole() {
    const STAGING: usize = 128 << 10;
    for len in [
        0,
        1,
        127,
        128,
        16_383,
        16_384,
        STAGING - 9,
        STAGING - 1,
        STAGING,
        STAGING + 1,
        3 * STAGING + 5,
        (5 << 20) + 3,
    ] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let expected = bytes.clone();
        let got = execute_in_isolated_process(move || bytes).unwrap();
        assert_eq!(got, expected, "Vec<u8> of {len}");

        // Characters of one to four bytes, so some straddle each frame
        // boundary.
        let text: String = "aé€🦀"
            .chars()
            .cycle()
            .scan(0, |n, c| {
                *n += c.len_utf8();
                (*n <= len).then_some(c)
            })
            .collect();
        let expected = text.clone();
        let got = execute_in_isolated_process(move || text).unwrap();
        assert_eq!(got, expected, "String of about {len}");
    }

    // A spawned handle and a caller's buffer agree with the blocking call.
    let text = "€".repeat(50_000);
    let spawned = mem_isolate::Isolate::new()
        .spawn({
            let text = text.clone();
            move || text
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(spawned, text);
    let mut buffer = vec![0u8; 200_000];
    let borrowed: String = mem_isolate::execute_in_isolated_process_with_buffer(&mut buffer, {
        let text = text.clone();
        move || text
    })
    .unwrap();
    assert_eq!(borrowed, text);
}

/// The size cap counts the encoded payload (length prefix included) on the
/// fast path as on every other.
#[test]
fn the_size_cap_counts_the_length_prefix_of_bytes() {
    // 300 bytes encode as a two-byte length and the bytes: 302.
    let ok = mem_isolate::Isolate::new()
        .max_result_size(302)
        .run(|| vec![9u8; 300])
        .unwrap();
    assert_eq!(ok, vec![9u8; 300]);
    let err = mem_isolate::Isolate::new()
        .max_result_size(301)
        .run(|| vec![9u8; 300])
        .unwrap_err();
    assert!(
        matches!(
            err,
            MemIsolateError::CallableExecuted(CallableExecutedError::ResultTooLarge { limit: 301 })
        ),
        "{err:?}"
    );
}

#[test]
fn a_panic_comes_back_with_its_message() {
    let e = execute_in_isolated_process(|| -> u8 { panic!("static message") }).unwrap_err();
    assert!(
        matches!(&e, MemIsolateError::CallableExecuted(CallableExecutedError::CallablePanicked(m)) if m == "static message"),
        "{e:?}"
    );

    let n = 17;
    let e = execute_in_isolated_process(|| -> u8 { panic!("formatted {n}") }).unwrap_err();
    assert!(
        matches!(&e, MemIsolateError::CallableExecuted(CallableExecutedError::CallablePanicked(m)) if m == "formatted 17"),
        "{e:?}"
    );

    let e = execute_in_isolated_process(|| -> u8 { std::panic::panic_any(5_u32) }).unwrap_err();
    assert!(
        matches!(&e, MemIsolateError::CallableExecuted(CallableExecutedError::CallablePanicked(m)) if m.contains("not a string")),
        "{e:?}"
    );
}

#[test]
fn a_long_panic_message_is_cut_on_a_character_boundary() {
    // Two-byte characters, so the cut must not split one.
    let long = "é".repeat(PANIC_MESSAGE_CAPACITY);
    let e = execute_in_isolated_process(move || -> u8 { panic!("{long}") }).unwrap_err();
    let MemIsolateError::CallableExecuted(CallableExecutedError::CallablePanicked(m)) = e else {
        panic!("{e:?}")
    };
    assert!(m.len() <= PANIC_MESSAGE_CAPACITY && m.len() >= PANIC_MESSAGE_CAPACITY - 1);
    assert!(m.chars().all(|c| c == 'é'));
}

#[cfg(target_os = "linux")]
#[test]
fn leaks_and_fragmentation_stay_in_the_child() {
    // Measured inside a sealed, single-threaded child so that other tests'
    // allocations cannot move the figure.
    let (before, after, child_held) = common::sealed(|| {
        let before = common::rss_bytes();
        let child_held = execute_in_isolated_process(|| {
            // Leak 256 MiB, touched, and fragment the heap with many small
            // blocks freed in a checkerboard.
            let leaked: &'static mut Vec<u8> = Box::leak(Box::new(vec![1u8; 256 << 20]));
            let mut blocks: Vec<Vec<u8>> = (0..100_000).map(|i| vec![0u8; 64 + i % 512]).collect();
            for i in (0..blocks.len()).step_by(2) {
                blocks[i] = Vec::new();
            }
            std::mem::forget(blocks);
            common::rss_bytes().saturating_sub(leaked.len() as u64 / 2)
        })
        .unwrap();
        (before, common::rss_bytes(), child_held)
    });
    assert!(
        child_held > before + (128 << 20),
        "the child really held the memory"
    );
    assert!(
        after < before + (16 << 20),
        "the parent grew from {before} to {after} bytes"
    );
}

#[test]
fn the_allocation_free_api_uses_only_the_callers_buffer() {
    let mut buffer = [0u8; 512];
    let v: (u32, heapless::String<32>) =
        mem_isolate::execute_in_isolated_process_with_buffer(&mut buffer, || {
            (
                7,
                heapless::String::try_from("no allocator needed").unwrap(),
            )
        })
        .unwrap();
    assert_eq!(v.0, 7);
    assert_eq!(v.1, "no allocator needed");

    // A buffer smaller than the child's minimum staging area still works
    // for a value that fits.
    let mut tiny = [0u8; 4];
    let x: u16 =
        mem_isolate::execute_in_isolated_process_with_buffer(&mut tiny, || 300u16).unwrap();
    assert_eq!(x, 300);
}

#[test]
fn many_threads_calling_at_once_each_get_their_own_value() {
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..20u64 {
                    let v = execute_in_isolated_process(move || {
                        vec![t * 1000 + i; 20_000] // larger than a pipe buffer
                    })
                    .unwrap();
                    assert!(v.len() == 20_000 && v.iter().all(|&x| x == t * 1000 + i));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn calls_nest() {
    let v = execute_in_isolated_process(|| {
        execute_in_isolated_process(|| execute_in_isolated_process(|| 3u8).unwrap() * 2).unwrap()
            + 1
    })
    .unwrap();
    assert_eq!(v, 7);
}

/// A value that can be serialized once only: its `Serialize` takes the
/// numbers out (a one-shot iterator or a buffer handed over would behave
/// the same).
struct Once(std::cell::Cell<Option<Vec<u32>>>);

impl serde::Serialize for Once {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.take().unwrap_or_default().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Once {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::deserialize(d).map(|v| Once(std::cell::Cell::new(Some(v))))
    }
}

#[test]
fn a_value_is_serialized_once_whatever_its_size() {
    // Small enough for the shared page, and several times larger: the
    // child moves from the page to its staging buffer without starting
    // over.
    for len in [10usize, 5_000, 100_000] {
        let numbers: Vec<u32> = (0..u32::try_from(len).unwrap()).collect();
        let expected = numbers.clone();
        let back = mem_isolate::execute_in_isolated_process(move || {
            Once(std::cell::Cell::new(Some(numbers)))
        })
        .map(|once| once.0.take());
        assert_eq!(back, Ok(Some(expected)), "{len} numbers");
    }
}

#[test]
fn values_around_the_size_of_the_shared_page_arrive_intact() {
    // The child starts encoding into the shared page and moves to its
    // staging buffer at the first write that does not fit: by a run of
    // bytes (a Vec<u8>) or one byte at a time (small u32s, a byte each).
    // The page holds 4,036 bytes of encoding; these straddle that.
    for n in 4_020..4_050usize {
        let bytes: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let expected = bytes.clone();
        assert_eq!(
            execute_in_isolated_process(move || bytes),
            Ok(expected),
            "{n} bytes"
        );
        let numbers: Vec<u32> = (0..n).map(|i| (i % 100) as u32).collect();
        let expected = numbers.clone();
        assert_eq!(
            execute_in_isolated_process(move || numbers),
            Ok(expected),
            "{n} numbers"
        );
    }
}
