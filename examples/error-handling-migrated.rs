//! mem-isolate 0.1.6's `examples/error-handling-complete.rs`, migrated to
//! 0.2: the same match over every error, with each 0.1 arm kept where its
//! variant still exists, and a note where it changed. See `MIGRATING.md`.
//!
//! In 0.1 this match was exhaustive, so that any change to the errors broke
//! the build. In 0.2 the second-level enums are `#[non_exhaustive]` (new
//! variants may be added without a breaking release), so each level ends in
//! a wildcard arm; the first level is still exhaustive.
//!
//! Run with `cargo run --example error-handling-migrated --features full`
//! (`full` is accepted as in 0.1).

use MemIsolateError::*;
use mem_isolate::errors::CallableDidNotExecuteError::*;
use mem_isolate::errors::CallableExecutedError::*;
use mem_isolate::errors::CallableStatusUnknownError::*;
use mem_isolate::{MemIsolateError, execute_in_isolated_process};

/// What 0.1's arms did, kept: nothing, but every binding named, so that a
/// change of a payload's type shows here.
fn handle(result: Result<(), MemIsolateError>) -> &'static str {
    match result {
        Ok(()) => "ok",

        // 0.1: SerializationFailed(String). Now the message is an
        // `ErrorText` (bounded, `Deref<Target = str>`): the text a
        // `Serialize` impl gave `custom`, as before.
        Err(CallableExecuted(SerializationFailed(_text))) => "SerializationFailed",
        // 0.1: DeserializationFailed(String). Likewise an `ErrorText`.
        Err(CallableExecuted(DeserializationFailed(_text))) => "DeserializationFailed",
        // 0.1: ChildPipeWriteFailed(Option<io::Error>). Now always an
        // `Errno` (`std::io::Error::from(errno)` gives the old type).
        Err(CallableExecuted(ChildPipeWriteFailed(_errno))) => "ChildPipeWriteFailed",
        // New: a panic. 0.1 let it unwind through its copy of your program
        // in the child, and reported the exit status (usually
        // `UnexpectedChildExitStatus(101)`).
        Err(CallableExecuted(CallablePanicked(_message))) => "CallablePanicked",
        // New: `Isolate::max_result_size`, or the buffer of the
        // allocation-free API.
        Err(CallableExecuted(ResultTooLarge { limit: _ })) => "ResultTooLarge",
        // New: `IsolatedChild::try_join` after the value was handed out.
        Err(CallableExecuted(ResultAlreadyTaken)) => "ResultAlreadyTaken",
        Err(CallableExecuted(_)) => "a CallableExecuted variant newer than this example",

        // 0.1: PipeCreationFailed(io::Error). Now an `Errno`.
        Err(CallableDidNotExecute(PipeCreationFailed(_errno))) => "PipeCreationFailed",
        // 0.1: ChildPipeCloseFailed(Option<io::Error>). Gone: the child no
        // longer reports closing its copy of the read end (a close that
        // cannot matter), and exit code 3 is no longer reserved for it.
        // 0.1: ForkFailed(io::Error). Now an `Errno`.
        Err(CallableDidNotExecute(ForkFailed(_errno))) => "ForkFailed",
        // New: the parent's watch on the child (epoll, kqueue).
        Err(CallableDidNotExecute(WatchSetupFailed(_errno))) => "WatchSetupFailed",
        // New: `Isolate::memory_limit` on macOS.
        Err(CallableDidNotExecute(MemoryLimitUnsupported)) => "MemoryLimitUnsupported",
        // New: the child could not apply an option before the callable.
        Err(CallableDidNotExecute(ChildSetupFailed(_errno))) => "ChildSetupFailed",
        Err(CallableDidNotExecute(_)) => "a CallableDidNotExecute variant newer than this example",

        // 0.1: ParentPipeCloseFailed(io::Error). Gone: closing the parent's
        // copy of the write end cannot fail in a way that matters.
        // 0.1: WaitFailed(io::Error). Now an `Errno`.
        Err(CallableStatusUnknown(WaitFailed(_errno))) => "WaitFailed",
        // 0.1: ParentPipeReadFailed(io::Error). Now an `Errno`.
        Err(CallableStatusUnknown(ParentPipeReadFailed(_errno))) => "ParentPipeReadFailed",
        Err(CallableStatusUnknown(CallableProcessDiedDuringExecution)) => {
            "CallableProcessDiedDuringExecution"
        }
        // Unchanged, except that no code is reserved any more: 0.1 read 3
        // and 4 as its own failures; now every code is the callable's.
        Err(CallableStatusUnknown(UnexpectedChildExitStatus(_status))) => {
            "UnexpectedChildExitStatus"
        }
        Err(CallableStatusUnknown(ChildProcessKilledBySignal(_signal))) => {
            "ChildProcessKilledBySignal"
        }
        // 0.1: UnexpectedWaitpidReturnValue(i32). Gone: a reaped child
        // either exited or was killed by a signal.
        // New: `Isolate::timeout`.
        Err(CallableStatusUnknown(TimedOut(_after))) => "TimedOut",
        // New: bytes on the result pipe that mem-isolate's child did not
        // write.
        Err(CallableStatusUnknown(ResultStreamCorrupted)) => "ResultStreamCorrupted",
        Err(CallableStatusUnknown(_)) => "a CallableStatusUnknown variant newer than this example",
    }
}

/// A call to make, what it shows, and the arm it must reach.
type Case = (
    &'static str,
    fn() -> Result<(), MemIsolateError>,
    &'static str,
);

fn main() {
    // 0.1's example ran one call that succeeds; this one also shows the
    // arms that changed meaning, for real.
    let cases: [Case; 4] = [
        (
            "a call that succeeds",
            || execute_in_isolated_process(|| {}),
            "ok",
        ),
        (
            "a panic (0.1: an exit status)",
            || execute_in_isolated_process(|| panic!("as in 0.1")),
            "CallablePanicked",
        ),
        (
            "exit(4) (0.1: ChildPipeWriteFailed)",
            || execute_in_isolated_process(|| std::process::exit(4)),
            "UnexpectedChildExitStatus",
        ),
        (
            "exit(3) (0.1: ChildPipeCloseFailed)",
            || execute_in_isolated_process(|| std::process::exit(3)),
            "UnexpectedChildExitStatus",
        ),
    ];
    for (what, call, want) in cases {
        let got = handle(call());
        println!("{what:<40} {got}");
        assert_eq!(got, want, "{what}");
    }
}

// As in 0.1: runs `main` under `cargo test --examples`.
#[cfg(test)]
mod example_error_handling_migrated {
    use super::*;

    #[test]
    fn execute_main() {
        main();
    }
}
