//! A panicking callable must not block on a lock that another thread of
//! the parent held at the moment of the fork. Rust's default panic hook
//! takes std's backtrace lock, which a thread holds while it resolves a
//! `std::backtrace::Backtrace`; the crate keeps the hook out of its
//! children. In a binary of its own: it changes the process's panic hook.
#![cfg(feature = "std")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mem_isolate::errors::CallableExecutedError;
use mem_isolate::{Isolate, MemIsolateError};

mod common;

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

/// One test, because the order matters: the crate wraps the hook the
/// process has at its first isolated call.
#[test]
fn panics_in_children_skip_the_hook_and_never_block_on_its_lock() {
    a_users_hook_runs_in_the_parent_and_not_in_the_child();
    a_panic_in_the_child_does_not_wait_for_the_parents_backtrace_lock();
}

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

fn a_users_hook_runs_in_the_parent_and_not_in_the_child() {
    // Leaked: the hook may run (in the parent) until the process ends.
    let words = Box::leak(Box::new(common::SharedWords::new()));
    let counter = words.addr(0);
    // A hook installed before the first call is wrapped, not replaced. It
    // stays installed: putting the old one back would replace the wrapper.
    std::panic::set_hook(Box::new(move |_| {
        common::shared_word(counter).fetch_add(1, Ordering::SeqCst);
    }));
    let r = Isolate::new().run(|| -> u8 { panic!("in the child") });
    let in_child = words.get(0);
    let in_parent = std::panic::catch_unwind(|| panic!("in the parent"));
    let after_parent = words.get(0);
    assert!(matches!(
        r,
        Err(MemIsolateError::CallableExecuted(
            CallableExecutedError::CallablePanicked(_)
        ))
    ));
    assert!(in_parent.is_err());
    assert_eq!(in_child, 0, "the user's hook ran in the child");
    assert_eq!(after_parent, 1, "the user's hook did not run in the parent");
}
