//! A runaway allocation is stopped by a memory limit inside the child; the
//! caller is untouched and learns what happened.
//!
//! Run with `cargo run --example memory-limit` (Linux or FreeBSD; macOS
//! cannot enforce the limit and says so).

use mem_isolate::errors::{CallableDidNotExecuteError, CallableStatusUnknownError};
use mem_isolate::{Isolate, MemIsolateError};

/// Stands in for a parser that, on some inputs, tries to build a gigantic
/// structure.
fn parse(input: &str) -> usize {
    let copies: u64 = if input.contains("bomb") {
        1 << 40
    } else {
        1000
    };
    let mut out: Vec<u8> = Vec::new();
    for _ in 0..copies {
        out.extend_from_slice(input.as_bytes());
    }
    out.len()
}

fn main() {
    let limited = Isolate::new().memory_limit(128 << 20);
    for input in ["hello world", "zip bomb"] {
        match limited.run(|| parse(input)) {
            Ok(n) => println!("{input:?}: parsed {n} bytes"),
            Err(MemIsolateError::CallableStatusUnknown(
                CallableStatusUnknownError::ChildProcessKilledBySignal(sig),
            )) => println!(
                "{input:?}: the child hit the 128 MiB limit and was stopped (signal {sig}); the caller is fine"
            ),
            Err(MemIsolateError::CallableDidNotExecute(
                CallableDidNotExecuteError::MemoryLimitUnsupported,
            )) => {
                println!("this platform cannot enforce memory limits; nothing was run");
                return;
            }
            Err(e) => println!("{input:?}: {e}"),
        }
    }

    // Code that uses fallible allocation sees the limit as an error value.
    let answer = limited.run(|| match Vec::<u8>::new().try_reserve(1 << 30) {
        Ok(()) => "reserved a GiB".to_string(),
        Err(e) => format!("refused politely: {e}"),
    });
    println!(
        "try_reserve under the limit: {}",
        answer.unwrap_or_else(|e| e.to_string())
    );
}
