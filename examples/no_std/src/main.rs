//! A `#![no_std]`, `#![no_main]` program with no allocator at all that runs
//! a closure in a forked child through `mem-isolate`'s allocation-free API.
//!
//! It links against the C library only: `main` below is the symbol the C
//! runtime calls, output goes through raw `write(2)`, and a panic aborts.
//! On success it prints `isolated ok` and exits 0; otherwise it says what
//! failed on standard error and exits 1.

#![no_std]
#![no_main]
#![warn(clippy::pedantic)]

use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicBool, Ordering};

use mem_isolate::errors::CallableExecutedError;
use mem_isolate::{Isolate, MemIsolateError};
use serde::{Deserialize, Serialize};

/// Changed by the child only: the parent's copy must keep its value.
static mut COUNTER: u64 = 1;

/// Set by the child only: the parent must still see `false`.
static CHILD_RAN_HERE: AtomicBool = AtomicBool::new(false);

/// The text the child sends back in [`Report::label`].
const LABEL: &str = "computed in the child";

/// What the child computes and sends back through the caller's buffer.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Report {
    /// The sum of 1 to 100.
    sum: u64,
    /// `COUNTER` as the child saw it after changing it.
    counter_in_child: u64,
    /// Whether the child saw its own store to `CHILD_RAN_HERE`.
    saw_own_store: bool,
    /// The child's process id, which must differ from the parent's.
    pid: i32,
    /// A short, fixed-capacity string.
    label: heapless::String<32>,
}

/// The C runtime's entry point.
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    match run() {
        Ok(()) if write_all(1, b"isolated ok\n") => 0,
        _ => 1,
    }
}

/// Every check; a failure has already been reported on standard error.
fn run() -> Result<(), ()> {
    // SAFETY: getpid has no preconditions.
    let parent_pid = unsafe { libc::getpid() };

    // The main call: a structured result through a stack buffer.
    let mut buffer = [0u8; 64];
    let report = mem_isolate::execute_in_isolated_process_with_buffer(&mut buffer, || {
        // SAFETY: this program is single-threaded, and the write happens in
        // the child's own copy of the static.
        let counter_in_child = unsafe {
            COUNTER += 41;
            COUNTER
        };
        CHILD_RAN_HERE.store(true, Ordering::SeqCst);
        Report {
            sum: (1..=100u64).sum(),
            counter_in_child,
            saw_own_store: CHILD_RAN_HERE.load(Ordering::SeqCst),
            // SAFETY: getpid has no preconditions.
            pid: unsafe { libc::getpid() },
            label: heapless::String::try_from(LABEL).unwrap_or_default(),
        }
    });
    let report = match report {
        Ok(report) => report,
        Err(e) => return fail(format_args!("the isolated call failed: {e:?}")),
    };

    check(report.sum == 5050, "sum", &report)?;
    check(report.counter_in_child == 42, "counter_in_child", &report)?;
    check(report.saw_own_store, "saw_own_store", &report)?;
    check(report.pid != parent_pid && report.pid > 0, "pid", &report)?;
    check(report.label == LABEL, "label", &report)?;
    parent_untouched("the successful call")?;

    // The error path: a result that does not fit in a tiny buffer.
    let mut tiny = [0u8; 8];
    let too_large = Isolate::new().run_with_buffer(&mut tiny, || {
        let mut text = heapless::String::<64>::new();
        while text.push('x').is_ok() {}
        text
    });
    match too_large {
        Err(MemIsolateError::CallableExecuted(CallableExecutedError::ResultTooLarge {
            limit: 8,
        })) => {}
        other => {
            return fail(format_args!(
                "expected ResultTooLarge {{ limit: 8 }}, got {other:?}"
            ));
        }
    }
    parent_untouched("the failed call")
}

/// Fails with the whole report when `ok` is false.
fn check(ok: bool, field: &str, report: &Report) -> Result<(), ()> {
    if ok {
        Ok(())
    } else {
        fail(format_args!("wrong `{field}` in {report:?}"))
    }
}

/// Fails unless the parent's statics still hold their initial values.
fn parent_untouched(after: &str) -> Result<(), ()> {
    // SAFETY: single-threaded; a plain read of the value, no reference kept.
    let counter = unsafe { COUNTER };
    if counter != 1 {
        return fail(format_args!(
            "after {after}, the parent's COUNTER is {counter}, expected 1"
        ));
    }
    if CHILD_RAN_HERE.load(Ordering::SeqCst) {
        return fail(format_args!(
            "after {after}, the parent's CHILD_RAN_HERE is true"
        ));
    }
    Ok(())
}

/// Reports a failure on standard error.
fn fail(what: fmt::Arguments<'_>) -> Result<(), ()> {
    let _ = writeln!(Fd(2), "mem-isolate-no-std-demo: {what}");
    Err(())
}

/// Writes all of `bytes` to `fd` with raw `write(2)`; false on failure.
fn write_all(fd: i32, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        // No signal handler is installed, so there is no EINTR to retry.
        match usize::try_from(n) {
            Ok(n) if n > 0 => bytes = &bytes[n..],
            _ => return false,
        }
    }
    true
}

/// A file descriptor as a `core::fmt` sink, so that messages can be
/// formatted without an allocator.
struct Fd(i32);

impl fmt::Write for Fd {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if write_all(self.0, s.as_bytes()) {
            Ok(())
        } else {
            Err(fmt::Error)
        }
    }
}

/// The unwinder's personality routine, which the precompiled `core` names
/// even though nothing here unwinds (`panic = "abort"`): `core`'s objects
/// carry an `.eh_frame` CIE that points at it, and the linker keeps that
/// CIE after dropping every function that used it. Stable Rust offers no
/// `eh_personality` lang item, so define the symbol; it is never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Fd(2), "mem-isolate-no-std-demo: {info}");
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
