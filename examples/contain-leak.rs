//! The crate at work: a function that leaks and fragments memory runs in a
//! forked child, and the caller's memory does not move.
//!
//! Run with `cargo run --example contain-leak`.

use mem_isolate::{Isolate, execute_in_isolated_process};

/// Resident memory of this process in MiB, where the platform tells us.
fn resident_mib() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

fn show(label: &str) {
    match resident_mib() {
        Some(mib) => println!("{label:<44} parent resident memory: {mib:7.1} MiB"),
        None => println!("{label}"),
    }
}

/// A "library call" with a leak: it keeps a cache it never frees and
/// fragments the heap with many small allocations.
fn leaky_parse(input: &str) -> usize {
    let cache: &'static mut Vec<Vec<u8>> = Box::leak(Box::default());
    for (i, word) in input.split_whitespace().cycle().take(400_000).enumerate() {
        cache.push(word.repeat(1 + i % 64).into_bytes());
    }
    cache.iter().map(Vec::len).sum()
}

fn main() -> Result<(), mem_isolate::MemIsolateError> {
    let text = "isolate the leak not the caller";
    show("start");

    for round in 1..=3 {
        let bytes = execute_in_isolated_process(|| leaky_parse(text))?;
        show(&format!(
            "isolated round {round}: child built {} MiB",
            bytes >> 20
        ));
    }

    let report = Isolate::new()
        .spawn(|| leaky_parse(text))?
        .join_with_usage();
    let (bytes, usage) = (report.0?, report.1);
    if let Some(u) = usage {
        println!(
            "the child peaked at {:.0} MiB resident and used {:?} of CPU; all of it was returned with the process",
            u.max_rss_bytes as f64 / (1024.0 * 1024.0),
            u.user_time + u.system_time
        );
    }
    println!("result delivered: {bytes} bytes of parsed output counted");

    let direct = leaky_parse(text);
    show(&format!("after one direct call ({} MiB)", direct >> 20));
    println!("the direct call's leak stays with the caller; the isolated ones did not");
    Ok(())
}
