//! Calls through a zygote against direct calls (issue 23's targets).
//!
//! `cargo bench -p mem-isolate-benches --bench zygote` from the repository
//! root (`RATIO_ROUNDS_SCALE=0.2` for a quick look).
//!
//! The "small parent" is a helper process forked first thing, while this
//! one is small: it makes direct calls on request and times them itself.
//! This process then starts its zygote, grows to 1 GiB and starts 8 busy
//! threads, and the rounds rotate three sides: the helper's direct call,
//! a call through the zygote here, and the same call through a raw fork
//! server forked as early (the floor: raw calls, the same hops, the same
//! load). Then 8
//! threads call through one zygote, against 8 threads making direct calls
//! in the helper; then the zygote's RSS over 10,000 calls; then Python's
//! `forkserver` on the same machine.

mod support;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mem_isolate::{Isolate, Zygote};
use support::{ballast, in_parallel, rounds};

const THREADS: usize = 8;
const PER_THREAD: usize = 50;

fn small(n: u64) -> u64 {
    n + 1
}

/// The small parent: a process forked before anything grew, serving
/// requests on `stream`: `b'1'` times one direct small call, `b'8'` times
/// `THREADS` threads making `PER_THREAD` direct calls each; the answer is
/// the time in nanoseconds.
fn small_parent(mut stream: UnixStream) -> ! {
    let mut request = [0u8; 1];
    while stream.read_exact(&mut request).is_ok() {
        let took = match request[0] {
            b'1' => {
                let t = Instant::now();
                let n = Isolate::new().run(|| small(41)).unwrap();
                assert_eq!(n, 42);
                t.elapsed()
            }
            _ => in_parallel(THREADS, PER_THREAD, &|| {
                assert_eq!(Isolate::new().run(|| small(1)).unwrap(), 2);
            }),
        };
        let nanos = u64::try_from(took.as_nanos()).unwrap();
        stream.write_all(&nanos.to_le_bytes()).unwrap();
    }
    // SAFETY: leaving the helper without running the parent's exit code.
    unsafe { libc::_exit(0) }
}

/// The floor for a call through a zygote, with raw calls: a process
/// forked as early as the zygote, which for each request byte on `stream`
/// forks a worker that writes its 8-byte result straight to the caller
/// and exits, then reaps it and writes its 4-byte wait status. The
/// caller learns the result and how the worker ended, as from a call;
/// nothing else (no pidfd, no descriptors passed, no checksum, no
/// options).
fn raw_zygote(mut stream: UnixStream) -> ! {
    let mut request = [0u8; 1];
    while stream.read_exact(&mut request).is_ok() {
        // SAFETY: this process is single-threaded; the worker writes to
        // an inherited socket and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let value = small(41).to_le_bytes();
            // SAFETY: a write of a live buffer, then `_exit`.
            unsafe {
                libc::write(stream.as_raw_fd(), value.as_ptr().cast(), value.len());
                libc::_exit(0)
            }
        }
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        // SAFETY: `status` is valid for writes.
        assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
        stream.write_all(&status.to_le_bytes()).unwrap();
    }
    // SAFETY: leaving without running the parent's exit code.
    unsafe { libc::_exit(0) }
}

/// One call through [`raw_zygote`]: the result, then how the worker ended.
fn raw_call(stream: &mut UnixStream) {
    stream.write_all(b"1").unwrap();
    let mut reply = [0u8; 12];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(u64::from_le_bytes(reply[..8].try_into().unwrap()), 42);
    assert_eq!(i32::from_le_bytes(reply[8..].try_into().unwrap()), 0);
}

/// Forks `serve` as a helper process on one end of a socket pair and
/// returns the other end.
fn fork_helper(serve: fn(UnixStream) -> !) -> UnixStream {
    let (mine, theirs) = UnixStream::pair().unwrap();
    // SAFETY: called while this process is still single-threaded; the
    // helper runs only `serve`, which never returns.
    match unsafe { libc::fork() } {
        0 => {
            drop(mine);
            serve(theirs)
        }
        pid => assert!(pid > 0, "fork failed"),
    }
    mine
}

fn ask(stream: &mut UnixStream, what: u8) -> Duration {
    stream.write_all(&[what]).unwrap();
    let mut nanos = [0u8; 8];
    stream.read_exact(&mut nanos).unwrap();
    Duration::from_nanos(u64::from_le_bytes(nanos))
}

/// Medians of small calls, sides rotated each round: through `zygote`,
/// through the raw floor, and direct from the small parent (timed there).
fn small_calls(zygote: &Zygote, raw: &mut UnixStream, helper: &mut UnixStream) -> [Duration; 3] {
    let n = rounds(300);
    let mut times: [Vec<Duration>; 3] = Default::default();
    for round in 0..n {
        for k in 0..3 {
            let side = (round + k) % 3;
            let took = match side {
                0 => {
                    let t = Instant::now();
                    assert_eq!(zygote.run(small, 41), Ok(42));
                    t.elapsed()
                }
                1 => {
                    let t = Instant::now();
                    raw_call(raw);
                    t.elapsed()
                }
                _ => ask(helper, b'1'),
            };
            times[side].push(took);
        }
    }
    times.map(|mut v| median(&mut v))
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[cfg(target_os = "linux")]
fn rss(pid: i32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    Some(statm.split_whitespace().nth(1)?.parse::<u64>().ok()? * 4096)
}

#[cfg(not(target_os = "linux"))]
fn rss(_pid: i32) -> Option<u64> {
    None
}

/// Python's `forkserver` per call on this machine, in milliseconds.
fn python_forkserver() -> Option<f64> {
    let script = r"
import multiprocessing as mp, time
def f(): pass
if __name__ == '__main__':
    ctx = mp.get_context('forkserver')
    p = ctx.Process(target=f); p.start(); p.join()
    times = []
    for _ in range(30):
        t = time.perf_counter(); p = ctx.Process(target=f); p.start(); p.join()
        times.append(time.perf_counter() - t)
    times.sort()
    print(times[len(times) // 2] * 1000)
";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn main() {
    let mut helper = fork_helper(small_parent);
    let mut raw = fork_helper(raw_zygote);
    let zygote = Zygote::start().unwrap();
    let zygote_pid = zygote.pid().as_raw_nonzero().get();

    let _ballast = ballast(1 << 30);
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..THREADS)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                }
            })
        })
        .collect();

    println!("| case | mem-isolate | baseline | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");

    let [z, r, d] = small_calls(&zygote, &mut raw, &mut helper);
    println!(
        "| small call through a zygote, parent 1 GiB + {THREADS} busy threads | {z:?} | {d:?} (direct, small parent) | {:.2}x | <= 1.5x |",
        z.as_secs_f64() / d.as_secs_f64()
    );
    println!(
        "| the raw floor (fork server of raw calls) under the same load | {r:?} | {d:?} (direct, small parent) | {:.2}x | - |",
        r.as_secs_f64() / d.as_secs_f64()
    );
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }

    // The same comparison with the parent's threads idle: what the zygote's
    // extra process costs on its own.
    let [z_idle, r_idle, d_idle] = small_calls(&zygote, &mut raw, &mut helper);
    println!(
        "| small call through a zygote, parent 1 GiB, threads idle | {z_idle:?} | {d_idle:?} (direct, small parent) | {:.2}x | - |",
        z_idle.as_secs_f64() / d_idle.as_secs_f64()
    );
    println!(
        "| the raw floor, threads idle | {r_idle:?} | {d_idle:?} (direct, small parent) | {:.2}x | - |",
        r_idle.as_secs_f64() / d_idle.as_secs_f64()
    );

    let mut direct_big = Vec::new();
    for _ in 0..rounds(10) {
        let t = Instant::now();
        assert_eq!(Isolate::new().run(|| small(41)), Ok(42));
        direct_big.push(t.elapsed());
    }
    let big = median(&mut direct_big);
    println!(
        "| direct small call from the 1 GiB parent, threads idle | {big:?} | {z_idle:?} (through the zygote) | {:.0}x slower | - |",
        big.as_secs_f64() / z_idle.as_secs_f64()
    );

    let n = rounds(5);
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 0..n {
        let mut through_zygote = || {
            ours.push(in_parallel(THREADS, PER_THREAD, &|| {
                assert_eq!(zygote.run(small, 1), Ok(2));
            }));
        };
        if round % 2 == 0 {
            through_zygote();
            base.push(ask(&mut helper, b'8'));
        } else {
            base.push(ask(&mut helper, b'8'));
            through_zygote();
        }
    }
    let calls = (THREADS * PER_THREAD) as f64;
    let (z, d) = (median(&mut ours), median(&mut base));
    let (z_rate, d_rate) = (calls / z.as_secs_f64(), calls / d.as_secs_f64());
    println!(
        "| {THREADS} threads through one zygote, calls/s | {z_rate:.0} | {d_rate:.0} (direct, small parent) | {:.2}x | >= 0.9x |",
        z_rate / d_rate
    );

    match rss(zygote_pid) {
        Some(first) => {
            for _ in 0..10_000 {
                assert_eq!(zygote.run(small, 1), Ok(2));
            }
            let after = rss(zygote_pid).unwrap();
            println!(
                "| zygote RSS after 10,000 calls | {after} B | {first} B (after the first calls) | {:+} B | within 1 MiB |",
                i128::from(after) - i128::from(first)
            );
        }
        None => println!("| zygote RSS | not measured: /proc/<pid>/statm is Linux's | | | |"),
    }

    let mut ours = Vec::new();
    for _ in 0..rounds(100) {
        let t = Instant::now();
        assert_eq!(zygote.run(small, 41), Ok(42));
        ours.push(t.elapsed());
    }
    let z = median(&mut ours);
    match python_forkserver() {
        Some(ms) => println!(
            "| per call, idle parent: ours through a zygote vs Python 3 `forkserver` | {z:?} | {ms:.2} ms | {:.1}x faster | - |",
            ms / 1000.0 / z.as_secs_f64()
        ),
        None => println!("| Python `forkserver` | not measured: python3 not found | | | |"),
    }
}
