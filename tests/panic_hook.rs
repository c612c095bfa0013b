//! A panic hook the program installs still runs in the parent, and does
//! not run in the child (where a hook that locks could block for ever; see
//! `panic_hook_lock.rs`). In a binary of its own: it changes the process's
//! panic hook before the first isolated call.
#![cfg(feature = "std")]

use std::sync::atomic::Ordering;

use mem_isolate::errors::CallableExecutedError;
use mem_isolate::{Isolate, MemIsolateError};

mod common;

/// In a binary of its own: the crate wraps the hook the process has at its
/// first isolated call, and this one must be there by then.
#[test]
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
