//! The process-wide panic hook that keeps a panicking callable from
//! blocking in the child.
//!
//! Rust runs the panic hook before it unwinds, and the default hook takes a
//! process-wide lock (std's backtrace lock, also held while any thread
//! captures, resolves or prints a backtrace, or prints its own panic). If
//! another thread of the parent held that lock at the moment of the fork,
//! it is held for ever in the child, which has no such thread: a callable
//! that panics there would block inside the hook. So before its first fork
//! the crate wraps whatever hook the process has in one that does nothing
//! in an isolated child and calls the wrapped hook everywhere else. The
//! panic's message still reaches the parent, from the unwind payload, as
//! [`CallablePanicked`](crate::errors::CallableExecutedError::CallablePanicked).
//!
//! It runs in the parent (before each fork) and, for one flag, in the
//! child straight after it.

#[cfg(feature = "std")]
use core::cell::Cell;

#[cfg(feature = "std")]
std::thread_local! {
    /// Set in a child forked by the crate, on its one thread, before
    /// its callable runs; inherited by whatever that thread forks.
    ///
    /// A thread-local rather than a static, measured: the child writes
    /// it on a page that `fork` itself already made the child copy (the
    /// thread's TLS block, beside the thread control block that the C
    /// library updates in the child), where a static cost every call
    /// one more page fault. The price: threads that the callable
    /// starts in the child run the wrapped hook.
    static IN_CHILD: Cell<bool> = const { Cell::new(false) };
}

/// In the parent, before a fork: wraps the process's panic hook once.
/// A hook installed later replaces the wrapper (and then runs in
/// children too). Skipped while this thread panics, where std forbids
/// changing the hook: a call made from a destructor during unwinding.
#[cfg(feature = "std")]
#[inline]
pub(crate) fn install() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    if INSTALLED.is_completed() || std::thread::panicking() {
        return;
    }
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(std::boxed::Box::new(move |info| {
            if !IN_CHILD.try_with(Cell::get).unwrap_or(false) {
                previous(info);
            }
        }));
    });
}

/// In the child, straight after the fork.
#[cfg(feature = "std")]
#[inline]
pub(crate) fn entered_child() {
    let _ = IN_CHILD.try_with(|c| c.set(true));
}

/// Without `std` there is no panic hook to wrap: a panic goes to the
/// program's panic handler.
#[cfg(not(feature = "std"))]
#[inline]
pub(crate) fn install() {}
/// Without `std`, nothing to mark.
#[cfg(not(feature = "std"))]
#[inline]
pub(crate) fn entered_child() {}
