//! Error handling with only the first level: what happened to the callable,
//! and so whether it is safe to try again.
//!
//! Run with `cargo run --example error-handling-basic`.

use mem_isolate::{MemIsolateError, execute_in_isolated_process};

/// Pretend work that sometimes crashes its process.
fn flaky_job(attempt: u32) -> u64 {
    if attempt < 2 {
        // A crash in native code, say.
        std::process::abort();
    }
    u64::from(attempt) * 100
}

fn main() {
    for attempt in 0.. {
        match execute_in_isolated_process(|| flaky_job(attempt)) {
            Ok(value) => {
                println!("attempt {attempt}: got {value}");
                break;
            }
            Err(MemIsolateError::CallableDidNotExecute(e)) => {
                // Never started: retrying is always safe.
                println!("attempt {attempt}: did not run ({e}); retrying");
            }
            Err(MemIsolateError::CallableExecuted(e)) => {
                // It ran; only retry work that is safe to repeat.
                println!("attempt {attempt}: ran, but the result was lost ({e})");
                break;
            }
            Err(MemIsolateError::CallableStatusUnknown(e)) => {
                // Maybe it ran, maybe not. This job is idempotent, so retry.
                println!("attempt {attempt}: status unknown ({e}); retrying an idempotent job");
            }
        }
    }
}
