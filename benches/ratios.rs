//! The ratio report: each case timed against its raw baseline, A/B
//! interleaved in one process, medians and ratios printed beside the
//! targets. Absolute times drift on shared machines; ratios measured this
//! way hold still.
//!
//! `cargo bench -p mem-isolate-benches --bench ratios` from the repository
//! root (set `RATIO_ROUNDS_SCALE=0.2` for a quick look; add `-- small rows`
//! to run only the cases whose names contain one of the words).

mod support;

use std::hint::black_box;
use std::time::Duration;

use mem_isolate::{Isolate, execute_in_isolated_process};
use support::{ab, ballast, bare_fork_wait, bytes, rows, shared_memory_bytes};

fn rounds(n: usize) -> usize {
    let scale: f64 = std::env::var("RATIO_ROUNDS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(3)
}

struct Line {
    case: &'static str,
    ours: Duration,
    base: Duration,
    baseline: &'static str,
    target: f64,
}

fn report(lines: &[Line]) {
    println!("| case | mem-isolate | baseline | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
    for l in lines {
        let ratio = l.ours.as_secs_f64() / l.base.as_secs_f64();
        let target = if l.target.is_finite() {
            let mark = if ratio <= l.target { "met" } else { "MISSED" };
            format!("<= {:.2}x {mark}", l.target)
        } else {
            "none".to_string()
        };
        println!(
            "| {} | {:.3?} | {:.3?} ({}) | {:.3}x | {target} |",
            l.case, l.ours, l.base, l.baseline, ratio
        );
    }
}

/// Peak resident memory growth of a fresh process while it receives a
/// 64 MiB result, as a multiple of the result's size (Linux: VmHWM).
fn receive_peak_ratio() -> Option<f64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let len = 64usize << 20;
    // Measured in a child of its own, so the bench's own history does not
    // count, with the high-water mark reset just before.
    execute_in_isolated_process(move || {
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        let before = hwm()?;
        let v = execute_in_isolated_process(move || bytes(len)).ok()?;
        let peak = hwm()?;
        assert_eq!(v.len(), len);
        Some((peak - before) as f64 / len as f64)
    })
    .ok()
    .flatten()
}

fn hwm() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// How far past a 20 ms deadline a timed-out call returns, median of `n`.
fn timeout_overshoot(n: usize) -> Duration {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = std::time::Instant::now();
            let r = Isolate::new()
                .timeout(Duration::from_millis(20))
                .run(|| -> u8 {
                    loop {
                        std::hint::spin_loop();
                    }
                });
            assert!(r.is_err());
            t.elapsed().saturating_sub(Duration::from_millis(20))
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {} {}",
        std::env::consts::OS,
        kernel.trim()
    )
}

fn main() {
    // `cargo bench` passes `--bench`; any other word picks cases by name.
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |case: &str| words.is_empty() || words.iter().any(|w| case.contains(w.as_str()));
    println!("machine: {}", machine());
    let mut lines = Vec::new();

    // Timed on Linux only (it needs `PR_SET_PDEATHSIG`).
    #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
    let mut floor: Option<(Duration, Duration)> = None;
    let mut rows_floor: Option<(Duration, Duration)> = None;
    let mut rows_after_fork: Option<(Duration, Duration)> = None;
    if wanted("small result") {
        let (ours, base) = ab(
            rounds(2000),
            || {
                black_box(execute_in_isolated_process(|| black_box(21u64) * 2).unwrap());
            },
            bare_fork_wait,
        );
        lines.push(Line {
            case: "small result",
            ours,
            base,
            baseline: "bare fork+waitpid",
            target: 1.10,
        });
        // Measured now, while the process is as small as for the case
        // above: fork time grows with the parent's page tables.
        #[cfg(target_os = "linux")]
        {
            floor = Some(ab(
                rounds(2000),
                support::raw_isolation_floor,
                bare_fork_wait,
            ));
        }
    }

    if wanted("small result, parent holding 1 GiB") {
        let held = ballast(1 << 30);
        let (ours, base) = ab(
            rounds(60),
            || {
                black_box(execute_in_isolated_process(|| black_box(21u64) * 2).unwrap());
            },
            bare_fork_wait,
        );
        drop(held);
        lines.push(Line {
            case: "small result, parent holding 1 GiB",
            ours,
            base,
            baseline: "bare fork+waitpid",
            target: 1.02,
        });
    }

    for (case, mib, target) in [
        ("1 MiB Vec<u8>", 1usize, f64::INFINITY),
        ("64 MiB Vec<u8>", 64, 1.5),
    ] {
        if !wanted(case) {
            continue;
        }
        let len = mib << 20;
        let (ours, base) = ab(
            rounds(if mib == 1 { 300 } else { 20 }),
            || {
                let v = execute_in_isolated_process(move || bytes(len)).unwrap();
                assert_eq!(v.len(), len);
            },
            || {
                let v = shared_memory_bytes(len);
                assert_eq!(v.len(), len);
            },
        );
        lines.push(Line {
            case,
            ours,
            base,
            baseline: "child copies into MAP_SHARED",
            target,
        });
    }

    if wanted("1M rows {id, name, score}") {
        let (ours, base) = ab(
            rounds(8),
            || {
                let r = execute_in_isolated_process(|| rows(1_000_000)).unwrap();
                assert_eq!(r.len(), 1_000_000);
            },
            || {
                let r = rows(1_000_000);
                assert_eq!(black_box(r).len(), 1_000_000);
            },
        );
        lines.push(Line {
            case: "1M rows {id, name, score}",
            ours,
            base,
            baseline: "computed directly",
            target: 2.0,
        });
        // What any serde transport pays before it moves a byte: building
        // the rows, encoding them with postcard and decoding them back, all
        // in this process (no fork, no copy between processes).
        rows_floor = Some(ab(
            rounds(8),
            || {
                let built = rows(1_000_000);
                let bytes = postcard::to_allocvec(&built).unwrap();
                drop(built);
                let back: Vec<support::Row> = postcard::from_bytes(&bytes).unwrap();
                assert_eq!(black_box(back).len(), 1_000_000);
            },
            || {
                let r = rows(1_000_000);
                assert_eq!(black_box(r).len(), 1_000_000);
            },
        ));
        // What a fork costs the work after it, with no isolation at all:
        // every page of the parent's heap is write-protected by the fork,
        // so the first write to each (here, malloc reusing the freed
        // strings of the previous round) takes a fault. A forked child
        // pays the same for the pages it writes, as a copy.
        rows_after_fork = Some(ab(
            rounds(8),
            || {
                bare_fork_wait();
                let r = rows(1_000_000);
                assert_eq!(black_box(r).len(), 1_000_000);
            },
            || {
                let r = rows(1_000_000);
                assert_eq!(black_box(r).len(), 1_000_000);
            },
        ));
    }

    report(&lines);
    if wanted("parent peak memory") {
        match receive_peak_ratio() {
            Some(r) => println!(
                "parent peak memory receiving a 64 MiB Vec<u8>: {r:.2}x the result (target <= 2.2x {})",
                if r <= 2.2 { "met" } else { "MISSED" }
            ),
            None => println!("parent peak memory: not measured on this platform"),
        }
    }
    if wanted("timeout precision") {
        println!(
            "timeout precision: a 20 ms deadline returns {:.2?} late (median of 30, kill and reap included)",
            timeout_overshoot(rounds(30))
        );
    }
    if let Some((floor, base)) = rows_floor {
        println!(
            "floor for rows: building, encoding and decoding them in one process takes {:.3?}, {:.3}x computing them",
            floor,
            floor.as_secs_f64() / base.as_secs_f64()
        );
    }
    if let Some((after, base)) = rows_after_fork {
        println!(
            "rows after a fork: a bare fork+waitpid, then computing them in the parent, takes {:.3?}, {:.3}x computing them",
            after,
            after.as_secs_f64() / base.as_secs_f64()
        );
    }
    if let Some((floor, base)) = floor {
        println!(
            "floor for a small call: the parent-death signal and a shared page with raw calls alone take {:.3?}, {:.3}x bare fork+waitpid",
            floor,
            floor.as_secs_f64() / base.as_secs_f64()
        );
    }
}
