//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use mem_isolate::{Isolate, MemIsolateError};

/// Runs `body` inside an isolated child of its own, so that process-wide
/// changes it makes (resource limits, signal dispositions, credentials)
/// cannot touch the test process or the tests running beside it. The body
/// usually makes a nested isolated call and returns its result; errors
/// cross back because `MemIsolateError` is serializable.
pub fn sealed<T>(body: impl FnOnce() -> T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    Isolate::new()
        .timeout(std::time::Duration::from_secs(60))
        .run(body)
        .expect("the outer isolated call itself failed")
}

/// [`sealed`] without its 60 s deadline, for work bounded by a count
/// rather than by time, which a slow or emulated machine may take longer
/// over (a hang shows as a test that never ends, which the test harness
/// reports after 60 s).
pub fn sealed_without_deadline<T>(body: impl FnOnce() -> T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    Isolate::new()
        .run(body)
        .expect("the outer isolated call itself failed")
}

/// Resident set size of this process, in bytes (Linux).
#[cfg(target_os = "linux")]
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Descriptors open in this process (Linux and FreeBSD/macOS via /dev/fd).
pub fn open_fds() -> usize {
    let dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    // One entry is the directory handle used for the listing itself.
    std::fs::read_dir(dir).unwrap().count() - 1
}

/// Children of this process still present, zombies included: each zombie
/// found is reaped and counted, and living children count as one more.
/// Only meaningful in a sealed child, which has no other children.
pub fn child_count() -> usize {
    let mut n = 0;
    loop {
        let mut status = 0;
        // SAFETY: non-blocking wait for any child.
        match unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) } {
            0 => return n + 1,
            p if p > 0 => n += 1,
            _ => return n,
        }
    }
}

/// Asserts the first-level promise on an error that came from a callable
/// that certainly started.
pub fn assert_started(e: &MemIsolateError) {
    assert!(
        !e.callable_did_not_execute(),
        "a callable that ran was reported as not run: {e:?}"
    );
}

/// In a child: forks a grandchild that closes stdio (so it holds none of
/// the test's output), keeps every other inherited descriptor (the result
/// pipe's write end among them) and sleeps `secs` seconds. Returns its pid.
pub fn grandchild_holding_the_pipe(secs: u32) -> i32 {
    // SAFETY: the grandchild only closes descriptors, sleeps and exits.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::close(1);
            libc::close(2);
            libc::sleep(secs);
            libc::_exit(0);
        }
        assert!(pid > 0, "fork failed");
        pid
    }
}

/// Waits (up to 30 s, then fails) until the child `pid` has exited,
/// leaving it unreaped for its handle.
pub fn exited_unreaped(pid: mem_isolate::Pid) {
    // `id_t` is unsigned on Linux and macOS, 64-bit on FreeBSD.
    #[allow(clippy::unnecessary_fallible_conversions)]
    let id = libc::id_t::try_from(pid.as_raw_nonzero().get()).unwrap();
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        // SAFETY: an all-zero siginfo_t is valid; with WNOWAIT, waitid
        // only observes the exit.
        let exited = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                id,
                &raw mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            );
            assert_eq!(r, 0, "waitid: {}", std::io::Error::last_os_error());
            info.si_pid() != 0
        };
        if exited {
            return;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "child {pid:?} still running after 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A page of memory shared with every child forked while it lives.
pub struct SharedWords {
    page: *mut libc::c_void,
}

const PAGE: usize = 4096;

impl SharedWords {
    pub fn new() -> Self {
        // SAFETY: a fresh anonymous shared mapping, zero-filled.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        Self { page }
    }

    /// The address of word `i`, for `shared_word` (in a child or a
    /// thread).
    pub fn addr(&self, i: usize) -> usize {
        assert!(i < PAGE / size_of::<usize>());
        self.page.expose_provenance() + i * size_of::<usize>()
    }

    pub fn get(&self, i: usize) -> usize {
        shared_word(self.addr(i)).load(Ordering::SeqCst)
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: unmapping the page mapped in `new`; no reference to it
        // outlives `self` in this process.
        unsafe { libc::munmap(self.page, PAGE) };
    }
}

/// The atomic word at `addr`, in a mapping shared between parent and
/// children (see `SharedWords`), which outlives every use of the address.
pub fn shared_word(addr: usize) -> &'static AtomicUsize {
    // SAFETY: `addr` comes from `SharedWords::addr`, whose mapping is
    // page-aligned, zero-filled, and kept until the test no longer uses it
    // (children hold their own copy of the mapping until they exit).
    unsafe { &*std::ptr::with_exposed_provenance::<AtomicUsize>(addr) }
}

/// In a child that is about to fail on purpose (an allocation failure, a
/// tripwire): points its stderr at `/dev/null`, so that what the runtime
/// prints on the way down (`memory allocation of N bytes failed`, a
/// backtrace) does not reach the test run's output. Allocates nothing.
pub fn silence_stderr() {
    // SAFETY: open and dup2 on this (child) process's descriptor table.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        assert!(null >= 0, "open /dev/null");
        assert_eq!(libc::dup2(null, 2), 2);
        libc::close(null);
    }
}

/// Fills every descriptor slot below `limit` and sets `RLIMIT_NOFILE` to
/// `limit + free`, so exactly `free` new descriptors can still be made.
/// Only call in a sealed child.
pub fn exhaust_descriptors(limit: u64, free: u64) {
    let base = std::fs::File::open("/dev/null").unwrap();
    let base = std::os::fd::IntoRawFd::into_raw_fd(base);
    loop {
        // SAFETY: dup of a valid descriptor; the new one is leaked on purpose.
        let fd = unsafe { libc::dup(base) };
        assert!(fd >= 0, "dup failed while filling descriptor slots");
        if u64::try_from(fd).unwrap() >= limit {
            // SAFETY: closing the descriptor just made.
            unsafe { libc::close(fd) };
            break;
        }
    }
    let n = libc::rlim_t::try_from(limit + free).unwrap();
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: plain setrlimit on this (sealed) process.
    assert_eq!(
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) },
        0
    );
}
