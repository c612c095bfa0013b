//! The `tokio` feature's figures: what an awaited call costs next to a
//! blocking `spawn` + `join` (A/B interleaved in one process), and what
//! 500 children in flight on one `current_thread` runtime cost the parent
//! (descriptors and memory per child).
//!
//! `cargo bench -p mem-isolate-benches --bench async` from the repository
//! root (set `RATIO_ROUNDS_SCALE=0.2` for a quick look).

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use mem_isolate::Isolate;
use support::{ab, rounds};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() - 1)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Per-call cost of `run_async(..).await` against `spawn(..)?.join()`.
fn awaited_vs_joined() {
    let rt = current_thread();
    let isolate = Isolate::new();
    let (awaited, joined) = ab(
        rounds(2000),
        || {
            let v = rt.block_on(isolate.run_async(|| black_box(21u64) * 2));
            black_box(v.unwrap());
        },
        || {
            let v = isolate.spawn(|| black_box(21u64) * 2).unwrap().join();
            black_box(v.unwrap());
        },
    );
    let ratio = awaited.as_secs_f64() / joined.as_secs_f64();
    let mark = if ratio <= 1.10 { "met" } else { "MISSED" };
    println!("| case | awaited (run_async) | blocking spawn + join | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
    println!("| small result | {awaited:.3?} | {joined:.3?} | {ratio:.3}x | <= 1.10x {mark} |");
}

/// 500 calls in flight at once on one `current_thread` runtime: each
/// child sleeps for a second, so all are alive when counted.
fn five_hundred_in_flight() {
    const N: usize = 500;
    let rt = current_thread();
    let (fds_before, rss_before) = (open_fds(), rss_bytes());
    let started = Instant::now();
    let (fds_peak, rss_peak, ok) = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..N {
            set.spawn(Isolate::new().run_async(move || {
                std::thread::sleep(Duration::from_secs(1));
                i
            }));
        }
        let (mut fds, mut rss) = (0, 0);
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fds = fds.max(open_fds());
            rss = rss.max(rss_bytes());
        }
        let mut ok = 0;
        while let Some(r) = set.join_next().await {
            ok += usize::from(r.is_ok_and(|v| v.is_ok()));
        }
        (fds, rss, ok)
    });
    let took = started.elapsed();
    println!();
    println!(
        "| in flight | completed | wall time | descriptors per child | parent memory per child |"
    );
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {N} | {ok} | {took:.2?} | {:.2} | {:.1} KiB |",
        fds_peak.saturating_sub(fds_before) as f64 / N as f64,
        rss_peak.saturating_sub(rss_before) as f64 / N as f64 / 1024.0
    );
}

fn main() {
    awaited_vs_joined();
    five_hundred_in_flight();
}
