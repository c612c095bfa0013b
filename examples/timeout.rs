//! A callable that hangs is killed at its deadline, and the caller goes on.
//! Also prints how closely the deadline was kept.
//!
//! Run with `cargo run --example timeout`.

use std::time::{Duration, Instant};

use mem_isolate::errors::CallableStatusUnknownError;
use mem_isolate::{Isolate, MemIsolateError};

/// Stands in for a call into a library that sometimes never returns.
fn sometimes_hangs(input: u32) -> u32 {
    if input % 3 == 0 {
        loop {
            std::hint::spin_loop();
        }
    }
    input * 2
}

fn main() {
    let isolate = Isolate::new().timeout(Duration::from_millis(100));
    for input in 1..=6 {
        match isolate.run(|| sometimes_hangs(input)) {
            Ok(v) => println!("input {input}: {v}"),
            Err(MemIsolateError::CallableStatusUnknown(CallableStatusUnknownError::TimedOut(
                after,
            ))) => {
                println!("input {input}: gave up after {after:?}; the child was killed and reaped");
            }
            Err(e) => println!("input {input}: {e}"),
        }
    }

    // How close to the deadline does the call return? 50 runs.
    let mut overshoot: Vec<Duration> = (0..50)
        .map(|_| {
            let start = Instant::now();
            let r = Isolate::new()
                .timeout(Duration::from_millis(20))
                .run(|| sometimes_hangs(3));
            assert!(r.is_err());
            start.elapsed().saturating_sub(Duration::from_millis(20))
        })
        .collect();
    overshoot.sort();
    println!(
        "deadline overshoot over 50 timed-out calls (kill and reap included): median {:?}, p90 {:?}, max {:?}",
        overshoot[25], overshoot[45], overshoot[49]
    );
}
