//! Many leaky jobs at once from async code, on one thread.
//!
//! Each job leaks what it allocates (as a buggy library might), so it runs
//! in a child of its own through `Isolate::run_async`; the parent's memory
//! stays where it was. Every job has its own timeout, and the jobs that
//! hang are ended by it. A second batch loses a `tokio::select!` against a
//! shutdown signal: dropping its futures kills and reaps its children.
//!
//! ```text
//! cargo run --example async-jobs --features tokio
//! ```

use std::time::{Duration, Instant};

use mem_isolate::{Isolate, MemIsolateError};
use tokio::task::JoinSet;

/// A job that leaks `mib` MiB and returns a checksum of them; job 7 of
/// each ten hangs.
fn leaky_job(id: u32, mib: usize) -> u64 {
    if id % 10 == 7 {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let leaked: &'static mut [u8] = Vec::leak(vec![u8::try_from(id % 251).unwrap(); mib << 20]);
    leaked.iter().step_by(4096).map(|&b| u64::from(b)).sum()
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let before = rss_kib();
    let started = Instant::now();

    // Batch one: 40 jobs, each with its own deadline.
    let mut jobs = JoinSet::new();
    for id in 0..40u32 {
        let timeout = Duration::from_millis(300 + 10 * u64::from(id));
        let job = Isolate::new()
            .timeout(timeout)
            .run_async(move || leaky_job(id, 16));
        jobs.spawn(async move { (id, job.await) });
    }
    let (mut done, mut timed_out) = (0, 0);
    while let Some(joined) = jobs.join_next().await {
        match joined.expect("the task ran") {
            (_, Ok(_)) => done += 1,
            (id, Err(MemIsolateError::CallableStatusUnknown(e))) => {
                println!("job {id}: {e}");
                timed_out += 1;
            }
            (id, Err(e)) => println!("job {id} failed: {e}"),
        }
    }
    println!(
        "batch one: {done} done, {timed_out} timed out, in {:?}",
        started.elapsed()
    );

    // Batch two: hanging jobs, given up on when "shutdown" comes first.
    let batch = async {
        let mut jobs = JoinSet::new();
        for id in 0..20u32 {
            jobs.spawn(Isolate::new().run_async(move || leaky_job(id * 10 + 7, 1)));
        }
        jobs.join_all().await
    };
    let shutdown = tokio::time::sleep(Duration::from_millis(200));
    tokio::select! {
        _ = batch => unreachable!("these jobs hang"),
        () = shutdown => println!("batch two: cancelled; its 20 children are killed and reaped"),
    }
    // The reaps were handed to the runtime: let them run.
    tokio::time::sleep(Duration::from_millis(100)).await;

    if let (Some(before), Some(after)) = (before, rss_kib()) {
        println!(
            "parent RSS: {before} KiB before, {after} KiB after (the jobs leaked {} MiB)",
            36 * 16
        );
    }
}
