//! How much did a contained leak actually cost? `join_with_usage` reports
//! the child's peak resident memory and CPU time (from `wait4`).
//!
//! Run with `cargo run --example usage-report`.

use mem_isolate::Isolate;

fn leaky(megabytes: usize) -> usize {
    let v: &'static mut Vec<u8> = Box::leak(Box::new(vec![1u8; megabytes << 20]));
    v.iter().map(|&b| usize::from(b)).sum()
}

fn main() -> Result<(), mem_isolate::MemIsolateError> {
    println!(
        "{:>10} {:>14} {:>12} {:>12}",
        "leaked", "child peak RSS", "user CPU", "system CPU"
    );
    for mb in [1, 16, 64, 256] {
        let (result, usage) = Isolate::new().spawn(move || leaky(mb))?.join_with_usage();
        let sum = result?;
        assert_eq!(sum, mb << 20);
        let u = usage.expect("the handle reaped the child");
        println!(
            "{:>7} MiB {:>10.1} MiB {:>12.1?} {:>12.1?}",
            mb,
            u.max_rss_bytes as f64 / f64::from(1 << 20),
            u.user_time,
            u.system_time
        );
    }
    println!("none of it stayed with this process");
    Ok(())
}
