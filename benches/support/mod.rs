//! Workloads and raw baselines shared by the criterion benches and the
//! ratio report.
#![allow(dead_code)]

pub mod mixed;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The "rows" workload's element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub id: u64,
    pub name: String,
    pub score: f64,
}

/// Computes `n` rows directly: the baseline for the rows case.
pub fn rows(n: u64) -> Vec<Row> {
    (0..n)
        .map(|id| Row {
            id,
            name: format!("row-{id}"),
            score: id as f64 * 0.5,
        })
        .collect()
}

/// Builds `len` bytes with a pattern the compiler cannot fold away.
pub fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) >> 3) as u8).collect()
}

/// The bare cost of isolation: `fork`, `_exit(0)` in the child, `waitpid`
/// in the parent, nothing else.
pub fn bare_fork_wait() {
    // SAFETY: the child only calls `_exit`.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            libc::_exit(0);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
    }
}

/// The raw baseline for moving bytes out of a child: a `MAP_SHARED`
/// region mapped before the fork; the child builds the vector and copies
/// it in; the parent copies it out into a vector of its own.
pub fn shared_memory_bytes(len: usize) -> Vec<u8> {
    // SAFETY: an anonymous shared mapping, used only as plain bytes below
    // and unmapped before returning.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(map, libc::MAP_FAILED);
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            let v = bytes(len);
            std::ptr::copy_nonoverlapping(v.as_ptr(), map.cast::<u8>(), len);
            libc::_exit(0);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
        let out = std::slice::from_raw_parts(map.cast::<u8>(), len).to_vec();
        libc::munmap(map, len);
        out
    }
}

/// `n` rounds, scaled by `RATIO_ROUNDS_SCALE` (e.g. `0.2` for a quick
/// look), and never fewer than three.
pub fn rounds(n: usize) -> usize {
    let scale: f64 = std::env::var("RATIO_ROUNDS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(3)
}

/// Runs `a` and `b` alternately `rounds` times (after one warm-up each) and
/// returns their median times: [`rotated`] with two sides.
pub fn ab(rounds: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    let m = rotated(rounds, &mut [&mut a, &mut b]);
    (m[0], m[1])
}

/// Runs every side once per round, `rounds` times (after one warm-up
/// each), starting each round one side further along, so that no side
/// always runs first or last; returns each side's median time. Drift on a
/// shared machine hits all sides alike.
pub fn rotated(rounds: usize, sides: &mut [&mut dyn FnMut()]) -> Vec<Duration> {
    let n = sides.len();
    for side in sides.iter_mut() {
        side();
    }
    let mut times: Vec<Vec<Duration>> = (0..n).map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            times[i].push(time(&mut *sides[i]));
        }
    }
    times.iter_mut().map(|t| median(t)).collect()
}

fn time(f: &mut (impl FnMut() + ?Sized)) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Holds `bytes` of touched memory for as long as it lives.
pub fn ballast(bytes: usize) -> Vec<u8> {
    let mut v = vec![0u8; bytes];
    for page in v.chunks_mut(4096) {
        page[0] = 1;
    }
    v
}

/// This thread's page shared with the children of the raw floors, mapped
/// at its first use and kept, as the crate keeps one per thread.
#[cfg(target_os = "linux")]
fn floor_page() -> *mut u8 {
    use std::cell::Cell;
    thread_local! {
        static PAGE: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
    }
    PAGE.with(|page| {
        if page.get().is_null() {
            page.set(shared_page());
        }
        page.get()
    })
}

/// A new page shared with the children forked after this: an anonymous
/// shared mapping, used only as plain bytes and never unmapped.
#[cfg(target_os = "linux")]
pub fn shared_page() -> *mut u8 {
    // SAFETY: a fresh mapping the kernel places; nothing else is touched.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    map.cast()
}

/// The floor under a small blocking call on Linux: the kernel work the
/// crate cannot skip, done with raw calls and nothing else. In the child,
/// `PR_SET_PDEATHSIG` and `getppid` (so it dies with the parent), and a
/// result written into this thread's page shared with the parent (see
/// [`floor_page`]); in the parent, `waitpid` and reading the
/// page back.
#[cfg(target_os = "linux")]
pub fn raw_isolation_floor() {
    let page = floor_page();
    // SAFETY: plain system calls; the page is this thread's shared
    // anonymous mapping, never unmapped; the child only makes system
    // calls, writes the page and leaves with `_exit`.
    unsafe {
        page.cast::<u64>().write_volatile(0);
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::getppid();
            page.cast::<u64>().write_volatile(42);
            libc::_exit(0);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
        assert_eq!(page.cast::<u64>().read_volatile(), 42);
    }
}

/// The floor under any seccomp sandbox that a child installs for itself:
/// `fork`, then in the child `prctl(PR_SET_NO_NEW_PRIVS)` and a filter of
/// one instruction that allows everything, `_exit`; the parent waits. What
/// the kernel charges for a filter (compiling it, and freeing it when the
/// child is reaped) whatever the filter says.
#[cfg(target_os = "linux")]
pub fn raw_seccomp_floor() {
    #[repr(C)]
    struct Insn {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }
    #[repr(C)]
    struct Prog {
        len: u16,
        filter: *const Insn,
    }
    // BPF_RET | BPF_K, SECCOMP_RET_ALLOW.
    let allow = [Insn {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0x7fff_0000,
    }];
    let prog = Prog {
        len: 1,
        filter: allow.as_ptr(),
    };
    // SAFETY: plain system calls; the child makes system calls only and
    // leaves with `_exit`; `prog` outlives the `seccomp` call.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            // SECCOMP_SET_MODE_FILTER = 1.
            let r = libc::syscall(libc::SYS_seccomp, 1, 0, &raw const prog);
            libc::_exit(i32::from(r != 0));
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
        assert_eq!(status, 0, "the raw filter was refused");
    }
}

/// Minor page faults per call of `f`, over `n` calls: `(parent, child)`,
/// the parent's from `getrusage(RUSAGE_SELF)` (call it while no other
/// thread runs), the children's from `getrusage(RUSAGE_CHILDREN)`, which
/// counts every child reaped meanwhile.
pub fn faults_per_call(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    fn minflt(who: i32) -> i64 {
        // SAFETY: `getrusage` fills the struct it is given.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(who, &raw mut u), 0);
            u.ru_minflt
        }
    }
    f();
    let (p0, c0) = (minflt(libc::RUSAGE_SELF), minflt(libc::RUSAGE_CHILDREN));
    for _ in 0..n {
        f();
    }
    let (p1, c1) = (minflt(libc::RUSAGE_SELF), minflt(libc::RUSAGE_CHILDREN));
    ((p1 - p0) as f64 / n as f64, (c1 - c0) as f64 / n as f64)
}

/// Runs `per_thread` calls of `f` on each of `threads` threads at once,
/// all released together; returns the time from release until the last
/// one finished.
pub fn in_parallel(threads: usize, per_thread: usize, f: &(dyn Fn() + Sync)) -> Duration {
    let start = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait();
                for _ in 0..per_thread {
                    f();
                }
            });
        }
        start.wait();
        Instant::now()
    })
    // The scope joined every thread before it returned.
    .elapsed()
}

/// [`raw_isolation_floor`] with the work of
/// [`kill_descendants`](mem_isolate::Isolate::kill_descendants) (on by
/// default) added, with raw calls: `setpgid(0, 0)` in the child; in the
/// parent `waitid(WNOWAIT)` for the exit, `kill(-pid, SIGKILL)` for the
/// group, then `waitpid` to reap. The kernel work a default small
/// blocking call cannot skip.
#[cfg(target_os = "linux")]
pub fn raw_isolation_floor_with_group() {
    let page = floor_page();
    // SAFETY: as in `raw_isolation_floor`; `waitid` fills the `siginfo_t`
    // it is given.
    unsafe {
        page.cast::<u64>().write_volatile(0);
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::getppid();
            page.cast::<u64>().write_volatile(42);
            libc::_exit(0);
        }
        let mut info: libc::siginfo_t = std::mem::zeroed();
        assert_eq!(
            libc::waitid(
                libc::P_PID,
                pid.unsigned_abs(),
                &raw mut info,
                libc::WEXITED | libc::WNOWAIT
            ),
            0
        );
        libc::kill(-pid, libc::SIGKILL);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
        assert_eq!(page.cast::<u64>().read_volatile(), 42);
    }
}
