//! Every error `mem-isolate` can return, with what it means and what to do.
//! The example provokes most of them for real and explains each one.
//!
//! Run with `cargo run --example error-handling-complete`.

use std::time::Duration;

use mem_isolate::errors::{
    CallableDidNotExecuteError, CallableExecutedError, CallableStatusUnknownError,
};
use mem_isolate::{Isolate, MemIsolateError};

fn explain(e: &MemIsolateError) -> String {
    use CallableDidNotExecuteError as NotRun;
    use CallableExecutedError as Ran;
    use CallableStatusUnknownError as Unknown;
    match e {
        // Level 1: the callable never started. Retrying is always safe.
        MemIsolateError::CallableDidNotExecute(e) => match e {
            NotRun::PipeCreationFailed(errno) => {
                format!("no pipe ({errno}): the process is out of descriptors; free some, retry")
            }
            NotRun::WatchSetupFailed(errno) => {
                format!("no readiness queue ({errno}): also descriptors, usually; retry")
            }
            NotRun::ForkFailed(errno) => {
                format!("fork failed ({errno}): process or memory limits; retry later")
            }
            NotRun::MemoryLimitUnsupported => {
                "memory limits cannot be enforced here (macOS); drop the option or accept the risk"
                    .into()
            }
            NotRun::ChildSetupFailed(errno) => {
                format!("the child could not apply an option ({errno}); check the limit")
            }
            other => format!("did not run: {other}"),
        },
        // Level 1: the callable ran, its result did not arrive.
        MemIsolateError::CallableExecuted(e) => match e {
            Ran::SerializationFailed(err) => {
                format!(
                    "the value could not be serialized in the child ({err}): fix its Serialize impl"
                )
            }
            Ran::DeserializationFailed(err) => {
                format!("the bytes did not decode ({err}): Serialize and Deserialize disagree")
            }
            Ran::ChildPipeWriteFailed(errno) => {
                format!(
                    "the child could not write its result ({errno}): did the callable close descriptors?"
                )
            }
            Ran::CallablePanicked(msg) => format!("the callable panicked: {msg:?}"),
            Ran::ResultTooLarge { limit } => {
                format!("the result exceeded the {limit}-byte cap; the child was killed")
            }
            Ran::ResultAlreadyTaken => "the handle had already returned its value".into(),
            other => format!("ran, result lost: {other}"),
        },
        // Level 1: nobody knows how far the callable got.
        MemIsolateError::CallableStatusUnknown(e) => match e {
            Unknown::WaitFailed(errno) => {
                format!(
                    "waiting for the child failed ({errno}); ECHILD: another part of the program reaped it"
                )
            }
            Unknown::ParentPipeReadFailed(errno) => format!("reading the result failed ({errno})"),
            Unknown::CallableProcessDiedDuringExecution => {
                "the callable ended the process with exit(0) before returning".into()
            }
            Unknown::UnexpectedChildExitStatus(code) => {
                format!("the callable called exit({code}) before returning")
            }
            Unknown::ChildProcessKilledBySignal(sig) => {
                format!("the child was killed by signal {sig} (a crash, an abort, the OOM killer)")
            }
            Unknown::TimedOut(after) => format!("no result within {after:?}; the child was killed"),
            Unknown::ResultStreamCorrupted => {
                "something other than mem-isolate wrote to the result pipe; nothing was accepted"
                    .into()
            }
            other => format!("status unknown: {other}"),
        },
    }
}

fn show<T: std::fmt::Debug>(what: &str, r: Result<T, MemIsolateError>) {
    match r {
        Ok(v) => println!("{what:<28} ok: {v:?}"),
        Err(e) => println!("{what:<28} {}", explain(&e)),
    }
}

fn main() {
    show("a normal call", Isolate::new().run(|| 2 + 2));
    show(
        "a panic",
        Isolate::new().run(|| -> u8 { panic!("bad input") }),
    );
    show(
        "an exit(3)",
        Isolate::new().run(|| -> u8 { std::process::exit(3) }),
    );
    show(
        "an exit(0)",
        Isolate::new().run(|| -> u8 { std::process::exit(0) }),
    );
    show(
        "an abort",
        Isolate::new().run(|| -> u8 { std::process::abort() }),
    );
    show(
        "a hang, with a timeout",
        Isolate::new()
            .timeout(Duration::from_millis(200))
            .run(|| -> u8 {
                loop {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }),
    );
    show(
        "a result over its cap",
        Isolate::new()
            .max_result_size(1024)
            .run(|| vec![0u8; 1 << 20]),
    );
    let mut small = [0u8; 16];
    show(
        "a result over its buffer",
        Isolate::new().run_with_buffer(&mut small, || [1u64 << 60; 4]),
    );
    show(
        "a closed result descriptor",
        Isolate::new().run(|| {
            for fd in 3..1024 {
                // SAFETY: closing descriptors in the child only.
                unsafe { libc::close(fd) };
            }
            vec![1u8; 64 * 1024] // large enough to need the pipe
        }),
    );
    show(
        "a runaway allocation",
        Isolate::new()
            .memory_limit(64 << 20)
            .run(|| vec![1u8; 1 << 30].len()),
    );
}
