//! A panicking callable must not block on a lock that another thread of
//! the parent held at the moment of the fork. Rust's default panic hook
//! takes std's backtrace lock, which a thread holds while it resolves a
//! `std::backtrace::Backtrace`; the crate keeps the hook out of its
//! children. In a binary of its own, which keeps the default hook: no other
//! test here installs one.
#![cfg(feature = "std")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mem_isolate::errors::CallableExecutedError;
use mem_isolate::{Isolate, MemIsolateError};

/// Recurses `depth` frames, then captures and resolves a backtrace (the
/// resolving is done under std's backtrace lock).
#[inline(never)]
fn resolve_deep_backtrace(depth: usize) -> usize {
    if depth == 0 {
        let bt = std::backtrace::Backtrace::force_capture();
        return format!("{bt}").len();
    }
    std::hint::black_box(resolve_deep_backtrace(depth - 1)) + 1
}

#[test]
fn a_panic_in_the_child_does_not_wait_for_the_parents_backtrace_lock() {
    let stop = Arc::new(AtomicBool::new(false));
    let resolved = Arc::new(AtomicUsize::new(0));
    let busy = {
        let (stop, resolved) = (Arc::clone(&stop), Arc::clone(&resolved));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                resolve_deep_backtrace(300);
                resolved.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Let the first resolution (which loads the debug info) get going.
    while resolved.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let isolate = Isolate::new().timeout(Duration::from_secs(10));
    let mut outcomes = Vec::new();
    for _ in 0..8 {
        let r = isolate.run(|| -> u8 { panic!("boom") });
        let ok = matches!(
            &r,
            Err(MemIsolateError::CallableExecuted(CallableExecutedError::CallablePanicked(m)))
                if m.as_str() == "boom"
        );
        outcomes.push(r);
        if !ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    assert!(
        outcomes.iter().all(|r| matches!(
            r,
            Err(MemIsolateError::CallableExecuted(
                CallableExecutedError::CallablePanicked(_)
            ))
        )),
        "{outcomes:?}"
    );
}
