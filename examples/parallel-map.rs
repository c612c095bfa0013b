//! A parallel map over many inputs, each in its own isolated child, with at
//! most `LIMIT` children alive at once, using `spawn` and `try_join`.
//!
//! Run with `cargo run --example parallel-map`.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use mem_isolate::{Isolate, IsolatedChild, MemIsolateError};

const LIMIT: usize = 4;

/// Some leaky, occasionally crashing work.
fn work(n: u64) -> u64 {
    let leak: &'static mut Vec<u64> = Box::leak(Box::new((0..n * 1000).collect()));
    if n % 17 == 0 {
        std::process::abort();
    }
    leak.iter().sum()
}

/// Blocks until at least one of `children` can make progress.
fn wait_any(children: &VecDeque<(u64, IsolatedChild<u64>)>) {
    let mut fds: Vec<libc::pollfd> = children
        .iter()
        .map(|(_, c)| libc::pollfd {
            fd: c.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: polling valid descriptors owned by `children`.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
}

fn main() -> Result<(), MemIsolateError> {
    let isolate = Isolate::new().timeout(Duration::from_secs(10));
    let mut inputs: VecDeque<u64> = (1..=40).collect();
    let mut running: VecDeque<(u64, IsolatedChild<u64>)> = VecDeque::new();
    let mut results = Vec::new();
    let started = Instant::now();

    while !inputs.is_empty() || !running.is_empty() {
        while running.len() < LIMIT {
            let Some(n) = inputs.pop_front() else { break };
            running.push_back((n, isolate.spawn(move || work(n))?));
        }
        wait_any(&running);
        let mut still = VecDeque::new();
        for (n, mut child) in running.drain(..) {
            match child.try_join() {
                Ok(None) => still.push_back((n, child)),
                Ok(Some(v)) => results.push((n, Ok(v))),
                Err(e) => results.push((n, Err(e))),
            }
        }
        running = still;
    }

    results.sort_by_key(|r| r.0);
    let failed: Vec<u64> = results
        .iter()
        .filter(|r| r.1.is_err())
        .map(|r| r.0)
        .collect();
    println!(
        "{} inputs in {:?} with at most {LIMIT} children at once; {} succeeded, crashed: {failed:?}",
        results.len(),
        started.elapsed(),
        results.len() - failed.len()
    );
    println!(
        "first results: {:?}",
        &results
            .iter()
            .take(3)
            .map(|r| r.1.clone().ok())
            .collect::<Vec<_>>()
    );
    Ok(())
}
