//! Panics in the child: every payload shape comes back as
//! `CallablePanicked`, on every channel a result can take, and a panic
//! never blocks on a lock another thread of the parent held at the fork.
#![cfg(feature = "std")]

use std::time::Duration;

use mem_isolate::errors::CallableExecutedError;
use mem_isolate::{Isolate, MemIsolateError};

/// The message of a `CallablePanicked`, or a failure naming what came
/// back instead.
fn panic_message<T: std::fmt::Debug>(r: Result<T, MemIsolateError>) -> String {
    match r {
        Err(MemIsolateError::CallableExecuted(CallableExecutedError::CallablePanicked(m))) => {
            m.as_str().to_owned()
        }
        other => panic!("expected CallablePanicked, got {other:?}"),
    }
}

/// Runs a panicking callable through every way a result can travel: the
/// free function, a blocking call whose thread last returned a large value
/// (so it streams), a spawned handle, and the allocation-free API.
fn on_every_channel(panics: fn() -> u8) -> Vec<String> {
    let isolate = Isolate::new().timeout(Duration::from_secs(30));
    let mut seen = vec![panic_message(mem_isolate::execute_in_isolated_process(
        panics,
    ))];
    // A large result first: the thread's next blocking call takes a pipe.
    let large = isolate.run(|| vec![7u8; 1 << 20]).unwrap();
    assert_eq!(large.len(), 1 << 20);
    seen.push(panic_message(isolate.run(panics)));
    seen.push(panic_message(isolate.spawn(panics).unwrap().join()));
    let mut buffer = [0u8; 16];
    seen.push(panic_message(isolate.run_with_buffer(&mut buffer, panics)));
    seen
}

fn all_equal(seen: &[String], expected: &str) {
    for (channel, message) in seen.iter().enumerate() {
        assert_eq!(message, expected, "channel {channel}");
    }
}

#[test]
fn an_empty_panic_message_is_a_panic_not_a_corrupt_stream() {
    all_equal(&on_every_channel(|| panic!("")), "");
    all_equal(
        &on_every_channel(|| std::hint::black_box(None::<u8>).expect("")),
        "",
    );
    all_equal(
        &on_every_channel(|| std::panic::panic_any(String::new())),
        "",
    );
    all_equal(&on_every_channel(|| std::panic::panic_any("")), "");
}

#[test]
fn every_payload_shape_comes_back_as_a_panic() {
    all_equal(
        &on_every_channel(|| std::panic::panic_any("a static str")),
        "a static str",
    );
    all_equal(
        &on_every_channel(|| std::panic::panic_any(String::from("an owned String"))),
        "an owned String",
    );
    all_equal(
        &on_every_channel(|| panic!("formatted {}", 6 * 7)),
        "formatted 42",
    );
    all_equal(
        &on_every_channel(|| std::panic::panic_any(42_i32)),
        "(panic payload is not a string)",
    );
}

#[test]
fn a_long_message_is_cut_on_a_character_boundary() {
    let cap = mem_isolate::errors::PANIC_MESSAGE_CAPACITY;
    // ASCII: cut at exactly the capacity.
    for m in on_every_channel(|| panic!("{}", "x".repeat(1000))) {
        assert_eq!(m, "x".repeat(cap));
    }
    // A two-byte character straddles the cut: it is left out whole.
    let straddling = || panic!("a{}", "é".repeat(100));
    let expected = format!("a{}", "é".repeat((cap - 1) / 2));
    assert!(expected.len() < cap, "the cut must fall inside a character");
    all_equal(&on_every_channel(straddling), &expected);
    // Four-byte characters: whole ones only, whatever the offset.
    for lead in 0..4 {
        let text = format!("{}{}", "-".repeat(lead), "🦀".repeat(40));
        let m = panic_message(Isolate::new().run(move || -> u8 { panic!("{text}") }));
        assert!(
            m.len() <= cap && m.len() > cap - 4,
            "{lead}: {} bytes",
            m.len()
        );
        assert!(m.ends_with('🦀'), "{lead}: {m:?}");
    }
}
