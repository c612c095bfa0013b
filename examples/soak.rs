//! A soak run: many isolated calls of every kind (values small and large,
//! spawned handles, panics, exits, crashes, kills and timeouts), each
//! checked against the exact outcome it must give, while the parent's open
//! descriptors, children and resident memory are watched.
//!
//! Run with `cargo run --release --example soak [calls]` (default 100000).
//! Exits non-zero if any outcome was wrong, if descriptors or children grew
//! at all, or if the parent's RSS grew by more than 8 MiB.

use std::time::{Duration, Instant};

use mem_isolate::errors::{CallableExecutedError as Ran, CallableStatusUnknownError as Unknown};
use mem_isolate::{Isolate, MemIsolateError};

/// The deadline of the spinning calls (one in fifty).
const SPIN_LIMIT: Duration = Duration::from_millis(2);
/// A deadline for every other call, so that a stuck child shows up as a
/// wrong outcome instead of hanging the run.
const SAFETY_LIMIT: Duration = Duration::from_secs(30);
/// Bytes of a large value: past the child's 128 KiB staging buffer and a
/// default pipe buffer, so it streams in several frames.
const LARGE: usize = 300_000;
/// The RSS growth tolerated, in KiB.
const RSS_SLACK_KIB: u64 = 8 << 10;

/// What one call does, chosen from its index: out of every 50 calls, 33
/// small values, 3 large ones, 2 spawned and joined, 1 spawned and killed,
/// 3 panics, 2 exits with a code, 1 exit(0), 2 segfaults, 2 raised
/// SIGKILLs and 1 timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Small,
    Large,
    Spawned,
    SpawnedKilled,
    Panic,
    Exit,
    ExitZero,
    Segv,
    Kill,
    Timeout,
}

const KINDS: [Kind; 10] = [
    Kind::Small,
    Kind::Large,
    Kind::Spawned,
    Kind::SpawnedKilled,
    Kind::Panic,
    Kind::Exit,
    Kind::ExitZero,
    Kind::Segv,
    Kind::Kill,
    Kind::Timeout,
];

fn kind_of(i: u64) -> Kind {
    match i % 50 {
        0..=32 => Kind::Small,
        33..=35 => Kind::Large,
        36 | 37 => Kind::Spawned,
        38 => Kind::SpawnedKilled,
        39..=41 => Kind::Panic,
        42 | 43 => Kind::Exit,
        44 => Kind::ExitZero,
        45 | 46 => Kind::Segv,
        47 | 48 => Kind::Kill,
        _ => Kind::Timeout,
    }
}

/// `len` bytes that depend on `seed`, so a value given to the wrong call
/// cannot pass.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    let mut x = seed | 1;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    bytes
}

fn spin() -> Vec<u8> {
    loop {
        std::hint::spin_loop();
    }
}

/// A real fault. (`raise(SIGSEGV)` would not do: Rust's own `SIGSEGV`
/// handler, there to report stack overflows, returns from a raised one.)
fn segfault() -> Vec<u8> {
    // SAFETY: none; a deliberate crash, in the child.
    unsafe { std::ptr::without_provenance_mut::<u8>(16).write_volatile(1) };
    unreachable!("a write to address 16 returned")
}

fn raise(signal: libc::c_int) -> Vec<u8> {
    // SAFETY: raise(3) in the child, which dies of it.
    unsafe { libc::raise(signal) };
    unreachable!("signal {signal} did not end the child")
}

fn exit_code(i: u64) -> i32 {
    // 1..=255: every code but 0 (which means something else); none is
    // the crate's own.
    i32::try_from(1 + i % 255).expect("small")
}

/// What a call gave, or must give.
type Outcome = Result<Vec<u8>, MemIsolateError>;

/// Makes call `i` and returns what it gave and what it must give.
fn call(i: u64) -> (Outcome, Outcome) {
    let safe = Isolate::new().timeout(SAFETY_LIMIT);
    let unknown = MemIsolateError::CallableStatusUnknown;
    match kind_of(i) {
        Kind::Small => (safe.run(move || pattern(i, 16)), Ok(pattern(i, 16))),
        Kind::Large => (safe.run(move || pattern(i, LARGE)), Ok(pattern(i, LARGE))),
        Kind::Spawned => {
            let got = safe
                .spawn(move || pattern(i, 1000))
                .and_then(mem_isolate::IsolatedChild::join);
            (got, Ok(pattern(i, 1000)))
        }
        Kind::SpawnedKilled => {
            let got = safe.spawn(spin).and_then(|mut child| {
                child.kill()?;
                child.join()
            });
            let killed = Unknown::ChildProcessKilledBySignal(libc::SIGKILL);
            (got, Err(unknown(killed)))
        }
        Kind::Panic => {
            let got = safe.run(move || -> Vec<u8> { panic!("soak {i}") });
            let message = format!("soak {i}").as_str().into();
            (got, Err(Ran::CallablePanicked(message).into()))
        }
        Kind::Exit => {
            let code = exit_code(i);
            // SAFETY: _exit(2) in the child.
            let got = safe.run(move || -> Vec<u8> { unsafe { libc::_exit(code) } });
            (got, Err(unknown(Unknown::UnexpectedChildExitStatus(code))))
        }
        Kind::ExitZero => (
            safe.run(|| -> Vec<u8> { std::process::exit(0) }),
            Err(unknown(Unknown::CallableProcessDiedDuringExecution)),
        ),
        Kind::Segv => (
            safe.run(segfault),
            Err(unknown(Unknown::ChildProcessKilledBySignal(libc::SIGSEGV))),
        ),
        Kind::Kill => (
            safe.run(|| raise(libc::SIGKILL)),
            Err(unknown(Unknown::ChildProcessKilledBySignal(libc::SIGKILL))),
        ),
        Kind::Timeout => (
            Isolate::new().timeout(SPIN_LIMIT).run(spin),
            Err(unknown(Unknown::TimedOut(SPIN_LIMIT))),
        ),
    }
}

/// Descriptors open in this process.
fn open_fds() -> usize {
    let dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    // Less the one that lists the directory.
    std::fs::read_dir(dir).map_or(0, |d| d.count().saturating_sub(1))
}

/// Processes whose parent is this one, zombies included, from
/// `/proc/*/stat` (Linux; `None` elsewhere).
fn children() -> Option<usize> {
    let me = std::process::id();
    let entries = std::fs::read_dir("/proc").ok()?;
    let count = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // "pid (comm) state ppid ...": comm may hold spaces and ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(me)
        })
        .count();
    Some(count)
}

/// `VmRSS` of this process in KiB (Linux; `None` elsewhere).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn show<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

/// A short account of an outcome (never a whole value).
fn describe(r: &Outcome) -> String {
    match r {
        Ok(v) => format!("Ok({} bytes)", v.len()),
        Err(e) => format!("Err({e:?})"),
    }
}

fn main() {
    let calls: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse().expect("usage: soak [number of calls]"),
        None => 100_000,
    };
    // A thousand panics and crashes: no reports, no core files.
    std::panic::set_hook(Box::new(|_| {}));
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lowering this process's own limit (inherited by the children).
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &raw const no_core) };

    // The first blocking call on a thread makes the thread's shared page
    // and (on Linux) its spill file, kept for the thread's life: made
    // before counting, they are not mistaken for a leak.
    assert_eq!(mem_isolate::execute_in_isolated_process(|| 1u8), Ok(1));
    let (fds0, children0, rss0) = (open_fds(), children(), rss_kib());
    println!(
        "soak: {calls} calls; at start: {fds0} descriptors, {} children, RSS {} KiB",
        show(children0),
        show(rss0)
    );

    let started = Instant::now();
    let mut wrong = 0u64;
    let mut per_kind = [0u64; KINDS.len()];
    let step = (calls / 10).max(1);
    for i in 0..calls {
        let (got, expected) = call(i);
        per_kind[KINDS.iter().position(|&k| k == kind_of(i)).expect("listed")] += 1;
        if got != expected {
            wrong += 1;
            if wrong <= 10 {
                println!(
                    "  WRONG call {i} ({:?}): got {}, expected {}",
                    kind_of(i),
                    describe(&got),
                    describe(&expected)
                );
            }
        }
        if (i + 1) % step == 0 || i + 1 == calls {
            let secs = started.elapsed().as_secs_f64();
            #[allow(clippy::cast_precision_loss)] // a rate for display
            let rate = (i + 1) as f64 / secs;
            println!(
                "  {:>3}%  {} calls  {secs:.1} s  {rate:.0} calls/s  {} descriptors, {} children, RSS {} KiB, {wrong} wrong",
                (i + 1) * 100 / calls,
                i + 1,
                open_fds(),
                show(children()),
                show(rss_kib()),
            );
        }
    }
    let elapsed = started.elapsed();

    let (fds1, children1, rss1) = (open_fds(), children(), rss_kib());
    #[allow(clippy::cast_precision_loss)] // a rate for display
    let rate = calls as f64 / elapsed.as_secs_f64();
    println!(
        "soak: {calls} calls in {:.1} s ({rate:.0} calls/s), {wrong} wrong",
        elapsed.as_secs_f64()
    );
    for (kind, n) in KINDS.iter().zip(per_kind) {
        println!("  {kind:?}: {n}");
    }
    println!(
        "descriptors {fds0} -> {fds1}, children {} -> {}, RSS {} -> {} KiB",
        show(children0),
        show(children1),
        show(rss0),
        show(rss1)
    );

    let mut failures = Vec::new();
    if wrong > 0 {
        failures.push(format!("{wrong} wrong outcomes"));
    }
    if fds1 > fds0 {
        failures.push(format!("descriptors grew by {}", fds1 - fds0));
    }
    if let (Some(a), Some(b)) = (children0, children1) {
        if b > a {
            failures.push(format!("children grew by {}", b - a));
        }
    }
    if let (Some(a), Some(b)) = (rss0, rss1) {
        if b > a + RSS_SLACK_KIB {
            failures.push(format!("RSS grew by {} KiB", b - a));
        }
    }
    if failures.is_empty() {
        println!("soak: ok");
    } else {
        println!("soak: FAILED: {}", failures.join("; "));
        std::process::exit(1);
    }
}
