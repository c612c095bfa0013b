//! Calls through a zygote from a large, multi-threaded parent.
//!
//! `cargo run --example zygote`
//!
//! The zygote is started first thing, while the process is small. Then the
//! parent grows to 1 GiB and a thread takes stdout's lock and keeps it.
//! Calls through the zygote fork the small zygote, so they stay fast and
//! can print; direct calls fork the 1 GiB parent (slow), and a direct call
//! that prints waits for ever on the lock its copy of the parent holds (a
//! deadline ends it here).

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mem_isolate::{Isolate, MemIsolateError, Zygote};

/// What each call does: a little work, and a line on stdout.
fn greet(n: u32) -> u64 {
    println!("  worker {}: call {n}", std::process::id());
    (1..=u64::from(n) * 1000).sum()
}

fn main() -> Result<(), MemIsolateError> {
    let zygote = Zygote::start()?;

    // The parent grows to 1 GiB (touched, so it is resident)...
    let mut ballast = vec![0u8; 1 << 30];
    for page in ballast.chunks_mut(4096) {
        page[0] = 1;
    }
    // ...and a thread holds stdout's lock until told to let go.
    let (held, lock_held) = mpsc::channel();
    let (release, let_go) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _stdout = std::io::stdout().lock();
        held.send(()).unwrap();
        let_go.recv().unwrap();
    });
    lock_held.recv().unwrap();
    eprintln!("parent: 1 GiB, stdout locked by another thread; calling");

    let isolate = Isolate::new().timeout(Duration::from_secs(5));
    let mut report = Vec::new();

    let mut through_zygote = Vec::new();
    for n in 1..=20 {
        let t = Instant::now();
        let sum = isolate.run_in(&zygote, greet, n)?;
        through_zygote.push(t.elapsed());
        assert_eq!(sum, (1..=u64::from(n) * 1000).sum());
    }

    let mut direct = Vec::new();
    for n in 1..=3u64 {
        let t = Instant::now();
        let sum = isolate.run(move || (1..=n * 1000).sum::<u64>())?;
        direct.push(t.elapsed());
        assert_eq!(sum, (1..=n * 1000).sum());
    }

    // A direct call that prints: its copy of stdout's lock is held by a
    // thread that does not exist in the child.
    let printing = Isolate::new()
        .timeout(Duration::from_secs(1))
        .run(|| println!("never printed"));
    report.push(format!(
        "a direct call that prints, while a thread holds stdout: {printing:?}"
    ));

    release.send(()).unwrap();
    holder.join().unwrap();
    drop(ballast);

    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (z, d) = (median(&mut through_zygote), median(&mut direct));
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nparent holding 1 GiB, one thread holding stdout's lock:"
    )
    .unwrap();
    writeln!(out, "  call through the zygote (median of 20): {z:?}").unwrap();
    writeln!(out, "  direct call (median of 3):              {d:?}").unwrap();
    writeln!(
        out,
        "  the zygote call is {:.0}x faster",
        d.as_secs_f64() / z.as_secs_f64()
    )
    .unwrap();
    for line in report {
        writeln!(out, "  {line}").unwrap();
    }
    Ok(())
}
