//! Streams against their floors, every side once per round with the order
//! rotated each round, medians and ratios printed beside the targets:
//!
//! - u64 items per second against the raw floor (each 8-byte item in its
//!   own `write(2)`, the parent reading 64 KiB at a time) and, when
//!   `python3` is installed, against Python's `multiprocessing.Queue`
//!   (fork context), measured here by running it;
//! - 1 GiB as 1 MiB `Vec<u8>` items against one 1 GiB `Vec<u8>` result of
//!   a plain call;
//! - the latency of an item sent while the parent waits (median), beside
//!   the same handshake over a raw pipe.
//!
//! `cargo bench -p mem-isolate-benches --bench stream` from the repository
//! root (`RATIO_ROUNDS_SCALE=0.2` for a quick look; add `-- u64 gib
//! latency` words to run only those cases).

mod support;

use std::hint::black_box;
use std::time::Duration;

use mem_isolate::{Isolate, Sender};
use support::{rotated, rounds};

/// u64 items per round.
const ITEMS: u64 = 200_000;

fn ours_u64() {
    let s = Isolate::new()
        .stream(|tx: &mut Sender<u64>| {
            for i in 0..ITEMS {
                tx.send(&i).unwrap();
            }
        })
        .unwrap();
    let mut sum = 0u64;
    for item in s {
        sum += item.unwrap();
    }
    assert_eq!(black_box(sum), ITEMS * (ITEMS - 1) / 2);
}

/// In a raw child: writes item `i`'s 8 bytes to `fd`, or leaves with
/// `_exit(1)`.
///
/// # Safety
///
/// Only in a forked child, which this may end.
unsafe fn write_item(fd: libc::c_int, i: u64) {
    let b = i.to_le_bytes();
    let mut at = 0;
    while at < 8 {
        // SAFETY: a write from a live buffer; `_exit` ends only the child.
        let n = unsafe { libc::write(fd, b[at..].as_ptr().cast(), 8 - at) };
        if n <= 0 {
            // SAFETY: see above.
            unsafe { libc::_exit(1) }
        }
        at += n.unsigned_abs();
    }
}

/// In a raw parent: adds the 8-byte items in `bytes` to `sum`, keeping an
/// item split across reads in `held`.
fn add_items(bytes: &[u8], held: &mut Vec<u8>, sum: &mut u64) {
    for &b in bytes {
        held.push(b);
        if held.len() == 8 {
            *sum += u64::from_le_bytes(held[..].try_into().unwrap());
            held.clear();
        }
    }
}

/// The raw floor: a child that `write`s each 8-byte item on its own, a
/// parent that reads 64 KiB at a time until end-of-file.
fn raw_u64() {
    let mut fds = [0; 2];
    // SAFETY: plain system calls on descriptors made here; the child only
    // writes and leaves with `_exit`.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            libc::close(fds[0]);
            for i in 0..ITEMS {
                write_item(fds[1], i);
            }
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut buf = vec![0u8; 64 << 10];
        let mut held = Vec::with_capacity(8);
        let mut sum = 0u64;
        loop {
            let n = libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            add_items(&buf[..n as usize], &mut held, &mut sum);
        }
        libc::close(fds[0]);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
        assert_eq!(black_box(sum), ITEMS * (ITEMS - 1) / 2);
    }
}

/// The raw floor under the crate's own rules, with raw calls: the child
/// checks the write end's identity (`fstat`) before each `write`, since a
/// producer may have closed it and opened something else under its
/// number; the parent waits in `poll` (it must also watch the child, so it
/// never blocks in `read`) and then reads. Two system calls a side per
/// item where the plain floor makes one.
fn raw_u64_with_rules() {
    let mut fds = [0; 2];
    // SAFETY: plain system calls on descriptors made here; the child only
    // checks, writes and leaves with `_exit`.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            libc::close(fds[0]);
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstat(fds[1], &raw mut st);
            let id = (st.st_dev, st.st_ino);
            for i in 0..ITEMS {
                let mut now: libc::stat = std::mem::zeroed();
                if libc::fstat(fds[1], &raw mut now) != 0 || (now.st_dev, now.st_ino) != id {
                    libc::_exit(1);
                }
                write_item(fds[1], i);
            }
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut buf = vec![0u8; 16 << 10];
        let mut held = Vec::with_capacity(8);
        let mut sum = 0u64;
        loop {
            let mut ready = libc::pollfd {
                fd: fds[0],
                events: libc::POLLIN,
                revents: 0,
            };
            libc::poll(&raw mut ready, 1, -1);
            let n = libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            add_items(&buf[..n as usize], &mut held, &mut sum);
        }
        libc::close(fds[0]);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
        assert_eq!(black_box(sum), ITEMS * (ITEMS - 1) / 2);
    }
}

/// Python's `multiprocessing.Queue` with the fork context, moving `n`
/// ints from a child process: items per second, the median of three runs
/// in one interpreter. `None` without `python3`.
fn python_queue(n: u64) -> Option<f64> {
    const SCRIPT: &str = r"
import multiprocessing as mp, sys, time
def produce(q, n):
    for i in range(n):
        q.put(i)
    q.put(None)
if __name__ == '__main__':
    ctx = mp.get_context('fork')
    n = int(sys.argv[1])
    rates = []
    for _ in range(3):
        q = ctx.Queue()
        t = time.perf_counter()
        p = ctx.Process(target=produce, args=(q, n))
        p.start()
        total = 0
        while True:
            x = q.get()
            if x is None:
                break
            total += x
        p.join()
        assert total == n * (n - 1) // 2
        rates.append(n / (time.perf_counter() - t))
    rates.sort()
    print(rates[1])
";
    let out = std::process::Command::new("python3")
        .args(["-c", SCRIPT, &n.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

const MIB: usize = 1 << 20;

/// 1 GiB as 1024 items of 1 MiB, each made fresh in the child.
fn ours_gib_in_items() {
    let s = Isolate::new()
        .stream(|tx: &mut Sender<Vec<u8>>| {
            for i in 0..1024 {
                tx.send(&vec![i as u8; MIB]).unwrap();
            }
        })
        .unwrap();
    let mut n = 0;
    for item in s {
        let item = item.unwrap();
        assert_eq!(item.len(), MIB);
        black_box(&item);
        n += 1;
    }
    assert_eq!(n, 1024);
}

/// One 1 GiB `Vec<u8>` through a plain call.
fn plain_gib() {
    let v = Isolate::new().run(|| vec![7u8; 1024 * MIB]).unwrap();
    assert_eq!(black_box(v).len(), 1024 * MIB);
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec; CLOCK_MONOTONIC is system-wide, so a
    // reading in the child compares with one in the parent.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn pipe_pair() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

/// The child waits for the parent's go, gives the parent time to be
/// waiting, then stamps the clock and sends the stamp; the parent's delay
/// is the time from the stamp to having the item.
fn latencies_ours(samples: usize) -> Vec<Duration> {
    let (go_read, go_write) = pipe_pair();
    let s = Isolate::new()
        .stream(move |tx: &mut Sender<u64>| {
            // SAFETY: the child's copy of the parent's end: without it the
            // handshake pipe would never reach end-of-file here.
            unsafe { libc::close(go_write) };
            let mut b = [0u8; 1];
            // SAFETY: reading one byte from the handshake pipe.
            while unsafe { libc::read(go_read, b.as_mut_ptr().cast(), 1) } == 1 {
                std::thread::sleep(Duration::from_micros(300));
                tx.send(&now_ns()).unwrap();
            }
        })
        .unwrap();
    // SAFETY: the parent's copy of the child's end.
    unsafe { libc::close(go_read) };
    let mut s = s;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        // SAFETY: one byte to the handshake pipe.
        assert_eq!(
            unsafe { libc::write(go_write, [1u8].as_ptr().cast(), 1) },
            1
        );
        let stamp = s.next().unwrap().unwrap();
        out.push(Duration::from_nanos(now_ns() - stamp));
    }
    // SAFETY: closing the handshake pipe ends the child's loop.
    unsafe { libc::close(go_write) };
    assert!(s.next().is_none());
    out
}

/// The same handshake with a raw pipe: the child `write`s the stamp, the
/// parent waits in `poll` and `read`s it.
fn latencies_raw(samples: usize) -> Vec<Duration> {
    let (go_read, go_write) = pipe_pair();
    let (item_read, item_write) = pipe_pair();
    // SAFETY: plain system calls; the child loops on the handshake and
    // leaves with `_exit`.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            libc::close(go_write);
            libc::close(item_read);
            let mut b = [0u8; 1];
            while libc::read(go_read, b.as_mut_ptr().cast(), 1) == 1 {
                std::thread::sleep(Duration::from_micros(300));
                let stamp = now_ns().to_le_bytes();
                libc::write(item_write, stamp.as_ptr().cast(), 8);
            }
            libc::_exit(0);
        }
        libc::close(go_read);
        libc::close(item_write);
        let mut out = Vec::with_capacity(samples);
        for _ in 0..samples {
            assert_eq!(libc::write(go_write, [1u8].as_ptr().cast(), 1), 1);
            let mut fd = libc::pollfd {
                fd: item_read,
                events: libc::POLLIN,
                revents: 0,
            };
            libc::poll(&raw mut fd, 1, -1);
            let mut b = [0u8; 8];
            assert_eq!(libc::read(item_read, b.as_mut_ptr().cast(), 8), 8);
            out.push(Duration::from_nanos(now_ns() - u64::from_le_bytes(b)));
        }
        libc::close(go_write);
        libc::close(item_read);
        let mut status = 0;
        libc::waitpid(pid, &raw mut status, 0);
        out
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |case: &str| words.is_empty() || words.iter().any(|w| case.contains(w.as_str()));
    println!("| case | mem-isolate | baseline | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
    let mark = |met: bool| if met { "met" } else { "MISSED" };

    if wanted("u64 items") {
        let t = rotated(
            rounds(30),
            &mut [&mut ours_u64, &mut raw_u64, &mut raw_u64_with_rules],
        );
        let rate = |d: Duration| ITEMS as f64 / d.as_secs_f64();
        let (ours, raw, ruled) = (rate(t[0]), rate(t[1]), rate(t[2]));
        println!(
            "| u64 items/s ({ITEMS} per stream) | {ours:.0} | {raw:.0} (one write(2) per item) | {:.3}x | >= 0.80x {} |",
            ours / raw,
            mark(ours / raw >= 0.8)
        );
        println!(
            "| u64 items/s, floor under the crate's rules | {ours:.0} | {ruled:.0} (fstat + write per item; poll + read per wake) | {:.3}x | none |",
            ours / ruled
        );
        println!(
            "| u64 items/s, that floor against the plain one | {ruled:.0} | {raw:.0} (one write(2) per item) | {:.3}x | none |",
            ruled / raw
        );
        match python_queue(ITEMS) {
            Some(py) => println!(
                "| u64 items/s vs Python | {ours:.0} | {py:.0} (Python multiprocessing.Queue, fork, measured now) | {:.1}x | >= 10x {} |",
                ours / py,
                mark(ours / py >= 10.0)
            ),
            None => {
                println!("| u64 items/s vs Python | {ours:.0} | (python3 not found) | - | >= 10x |")
            }
        }
    }

    if wanted("gib") {
        let t = rotated(rounds(8), &mut [&mut ours_gib_in_items, &mut plain_gib]);
        let r = t[0].as_secs_f64() / t[1].as_secs_f64();
        println!(
            "| 1 GiB as 1 MiB Vec<u8> items | {:.3?} | {:.3?} (one 1 GiB Vec<u8> by a plain call) | {r:.3}x | <= 1.20x {} |",
            t[0],
            t[1],
            mark(r <= 1.2)
        );
    }

    if wanted("latency") {
        let n = rounds(2000);
        let mut ours = Vec::new();
        let mut raw = Vec::new();
        // Alternated in blocks, so that drift hits both alike.
        for _ in 0..4 {
            ours.extend(latencies_ours(n / 4));
            raw.extend(latencies_raw(n / 4));
        }
        let (ours, raw) = (median(ours), median(raw));
        println!(
            "| latency of an item sent while the parent waits (median) | {ours:.1?} | {raw:.1?} (raw pipe, poll + read) | {:.2}x | <= 100 us {} |",
            ours.as_secs_f64() / raw.as_secs_f64(),
            mark(ours <= Duration::from_micros(100))
        );
    }
}
