//! Calls through a `Zygote`: the same results as direct calls, from a
//! small snapshot of the process, with its lifetime tied to the handle.

use std::time::Duration;

use mem_isolate::errors::{
    CallableDidNotExecuteError as NotRun, CallableExecutedError as Ran,
    CallableStatusUnknownError as Unknown,
};
use mem_isolate::{Isolate, MemIsolateError, Zygote};

fn double(n: u64) -> u64 {
    n * 2
}

#[test]
fn a_call_returns_its_value() {
    let zygote = Zygote::start().unwrap();
    assert_eq!(zygote.run(double, 21), Ok(42));
    assert_eq!(
        zygote.run(|s: String| s.to_uppercase(), "hello".to_string()),
        Ok("HELLO".to_string())
    );
}
