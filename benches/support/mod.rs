//! Workloads and raw baselines shared by the criterion benches and the
//! ratio report.
#![allow(dead_code)]

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

/// Runs `a` and `b` alternately `rounds` times (after one warm-up each) and
/// returns their median times. Interleaving makes drift on a shared
/// machine hit both sides alike.
pub fn ab(rounds: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    a();
    b();
    let mut ta = Vec::with_capacity(rounds);
    let mut tb = Vec::with_capacity(rounds);
    for i in 0..rounds {
        // Alternate which side goes first, too.
        if i % 2 == 0 {
            ta.push(time(&mut a));
            tb.push(time(&mut b));
        } else {
            tb.push(time(&mut b));
            ta.push(time(&mut a));
        }
    }
    (median(&mut ta), median(&mut tb))
}

fn time(f: &mut impl FnMut()) -> Duration {
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

/// The floor under a small isolated call on Linux: the kernel work the
/// crate cannot skip, done with raw calls and nothing else. A pipe for the
/// result (non-blocking, close-on-exec); in the child, closing the read
/// end, `PR_SET_PDEATHSIG`, `getppid` and the `fstat` identity check of the
/// write end; in the parent, a pidfd, one `ppoll` over both, and the reap
/// (with the same brief check after end-of-file the crate makes).
#[cfg(target_os = "linux")]
pub fn raw_isolation_floor() {
    // SAFETY: plain system calls on descriptors made here; the child only
    // makes system calls and leaves with `_exit`.
    unsafe {
        let mut fds = [0; 2];
        assert_eq!(
            libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK),
            0
        );
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            libc::close(fds[0]);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::getppid();
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstat(fds[1], &raw mut st);
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as libc::c_int;
        if pidfd < 0 {
            // No pidfd here (old kernel, seccomp): reap and leave nothing
            // behind; the figure then understates the floor.
            let mut status = 0;
            libc::waitpid(pid, &raw mut status, 0);
            libc::close(fds[0]);
            return;
        }
        let mut set = [
            libc::pollfd {
                fd: fds[0],
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        libc::ppoll(set.as_mut_ptr(), 2, std::ptr::null(), std::ptr::null());
        libc::close(fds[0]);
        let mut status = 0;
        let start = Instant::now();
        let mut got = libc::waitpid(pid, &raw mut status, libc::WNOHANG);
        while got == 0 && start.elapsed() < Duration::from_micros(100) {
            libc::sched_yield();
            got = libc::waitpid(pid, &raw mut status, libc::WNOHANG);
        }
        if got == 0 {
            assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
        }
        libc::close(pidfd);
    }
}
