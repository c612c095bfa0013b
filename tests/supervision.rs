//! Timeouts, memory limits, result caps, parent death and spawned handles,
//! each provoked for real.

// The integration tests use the std API (panics, spawn, threads).
#![cfg(feature = "std")]

mod common;

use std::time::{Duration, Instant};

use mem_isolate::errors::{CallableExecutedError as Ran, CallableStatusUnknownError as Unknown};
use mem_isolate::{Isolate, MemIsolateError};

fn spin_forever() -> u8 {
    loop {
        std::hint::spin_loop();
    }
}

#[test]
fn isolate_is_default_clone_and_debug() {
    let a = Isolate::new()
        .timeout(Duration::from_secs(1))
        .max_result_size(10);
    let b = a.clone();
    assert_eq!(a, b);
    assert_eq!(Isolate::default(), Isolate::new());
    assert!(format!("{a:?}").contains("max_result_size"));
}

#[test]
fn a_timeout_kills_and_reaps_a_spinning_callable() {
    let r: (Result<u8, MemIsolateError>, usize) = common::sealed(|| {
        let r = Isolate::new()
            .timeout(Duration::from_millis(50))
            .run(spin_forever);
        (r, common::child_count())
    });
    assert_eq!(
        r.0,
        Err(MemIsolateError::CallableStatusUnknown(Unknown::TimedOut(
            Duration::from_millis(50)
        )))
    );
    assert_eq!(r.1, 0, "the timed-out child was reaped");
}

#[test]
fn a_grandchild_holding_the_pipe_cannot_stretch_a_timeout() {
    // The child forks a grandchild that keeps the pipe open for ten seconds,
    // then hangs itself. The call must end at its own deadline.
    let r = Isolate::new()
        .timeout(Duration::from_millis(200))
        .run(|| -> u8 {
            common::grandchild_holding_the_pipe(10);
            spin_forever()
        });
    assert_eq!(
        r,
        Err(MemIsolateError::CallableStatusUnknown(Unknown::TimedOut(
            Duration::from_millis(200)
        )))
    );
}

#[test]
fn a_timeout_that_is_not_reached_changes_nothing() {
    let r = Isolate::new()
        .timeout(Duration::from_secs(30))
        .run(|| vec![5u8; 1 << 20]);
    assert_eq!(r.unwrap().len(), 1 << 20);
}

#[cfg(not(target_vendor = "apple"))]
mod memory {
    use super::*;

    /// Makes this (multi-threaded, test-harness) process's address space
    /// large before the limited call: 4 GiB reserved but never touched, and
    /// a few threads with their stacks.
    fn fatten() -> (Vec<u8>, Vec<std::thread::JoinHandle<()>>) {
        let reserve = Vec::with_capacity(4 << 30);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = (0..4)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(5));
                })
            })
            .collect();
        drop(tx);
        (reserve, threads)
    }

    #[test]
    fn the_limit_is_what_the_callable_may_add_even_in_a_fat_process() {
        let (reserve, threads) = fatten();
        let limited = Isolate::new().memory_limit(256 << 20);

        // Well under the limit: fine, although the process already maps
        // gigabytes more than 256 MiB.
        let ok = limited.run(|| vec![1u8; 64 << 20].len());
        assert_eq!(ok, Ok(64 << 20));

        // Over it, asked politely: the allocation is refused in the child.
        let refused = limited.run(|| Vec::<u8>::new().try_reserve_exact(1 << 30).is_err());
        assert_eq!(refused, Ok(true));

        // Over it, the usual way: Rust's allocation-failure handler aborts
        // (after printing to stderr, which this child sends to /dev/null).
        let runaway = limited.run(|| {
            common::silence_stderr();
            let mut hog: Vec<Vec<u8>> = Vec::new();
            loop {
                hog.push(vec![1u8; 16 << 20]);
                if hog.len() > 1000 {
                    return hog.len();
                }
            }
        });
        let e = runaway.unwrap_err();
        common::assert_started(&e);
        assert_eq!(
            e,
            MemIsolateError::CallableStatusUnknown(Unknown::ChildProcessKilledBySignal(
                libc::SIGABRT
            ))
        );

        drop(reserve);
        for t in threads {
            t.join().unwrap();
        }
    }
}

#[test]
fn a_huge_result_against_a_small_cap_is_cut_off_and_the_parent_stays_small() {
    let (r, growth): (Result<Vec<u8>, MemIsolateError>, u64) = common::sealed(|| {
        let before = rss();
        let r = Isolate::new()
            .max_result_size(1 << 20)
            .run(|| vec![9u8; 200 << 20]);
        (r, rss().saturating_sub(before))
    });
    assert_eq!(
        r,
        Err(MemIsolateError::CallableExecuted(Ran::ResultTooLarge {
            limit: 1 << 20
        }))
    );
    if cfg!(target_os = "linux") {
        assert!(
            growth < 8 << 20,
            "the parent grew by {growth} bytes receiving a capped result"
        );
    }
}

fn rss() -> u64 {
    #[cfg(target_os = "linux")]
    return common::rss_bytes();
    #[cfg(not(target_os = "linux"))]
    0
}

#[test]
fn a_cap_reached_inside_a_frame_is_reported_as_the_cap() {
    // 10 kB takes the pipe; the cap falls inside its one DATA frame.
    for (limit, len) in [(1000, 10_000), (5000, 200_000), (1 << 20, 3 << 20)] {
        let r = Isolate::new()
            .max_result_size(limit)
            .run(move || vec![0u8; len]);
        assert_eq!(
            r,
            Err(MemIsolateError::CallableExecuted(Ran::ResultTooLarge {
                limit
            }))
        );
        let child = Isolate::new()
            .max_result_size(limit)
            .spawn(move || vec![0u8; len])
            .unwrap();
        assert_eq!(
            child.join(),
            Err(MemIsolateError::CallableExecuted(Ran::ResultTooLarge {
                limit
            }))
        );
    }
}

#[test]
fn handles_can_move_to_other_threads() {
    fn is_send<T: Send>(_: &T) {}
    let child = Isolate::new().spawn(|| 5u8).unwrap();
    is_send(&child);
    assert_eq!(
        std::thread::spawn(move || child.join()).join().unwrap(),
        Ok(5)
    );
}

#[test]
fn a_result_exactly_at_the_cap_is_accepted() {
    // postcard: a one-byte length prefix, then the bytes.
    let r = Isolate::new().max_result_size(100).run(|| vec![1u8; 99]);
    assert_eq!(r.unwrap().len(), 99);
    let r = Isolate::new().max_result_size(100).run(|| vec![1u8; 100]);
    assert_eq!(
        r,
        Err(MemIsolateError::CallableExecuted(Ran::ResultTooLarge {
            limit: 100
        }))
    );
}

#[cfg(any(target_os = "linux", target_os = "freebsd"))]
#[test]
fn a_child_dies_with_its_parent() {
    // A sealed process spawns a child that would run for a minute, lets go
    // of the handle without killing it, and dies. The child must not run on.
    assert_dies_with_its_parent(orphan(false));
}

#[cfg(any(target_os = "linux", target_os = "freebsd"))]
#[test]
fn a_child_dies_with_its_parent_even_when_its_thread_blocks_every_signal() {
    // Programs that handle signals on one thread block them on the others;
    // the child inherits the mask of the thread that forked it.
    assert_dies_with_its_parent(orphan(true));
}

/// In a sealed process (with every signal blocked on its thread, if
/// `block`): spawns a child that would run for a minute and lets go of its
/// handle without killing it; the sealed process then exits. Returns the
/// child's pid.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn orphan(block: bool) -> i32 {
    common::sealed(move || {
        if block {
            // SAFETY: a full set, applied to this (sealed) thread's mask.
            unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&raw mut all);
                assert_eq!(
                    libc::pthread_sigmask(libc::SIG_BLOCK, &raw const all, std::ptr::null_mut()),
                    0
                );
            }
        }
        let child = Isolate::new()
            .spawn(|| {
                std::thread::sleep(Duration::from_secs(60));
                0u8
            })
            .unwrap();
        let pid = child.pid().as_raw_nonzero().get();
        // Let the child arm its parent-death signal before the parent goes.
        std::thread::sleep(Duration::from_millis(100));
        std::mem::forget(child);
        pid
    })
}

#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn assert_dies_with_its_parent(orphan: i32) {
    let waited = Instant::now();
    while running(orphan) {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "orphan {orphan} still running"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True while `pid` exists and is not a zombie.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn running(pid: i32) -> bool {
    #[cfg(target_os = "linux")]
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next());
        return state != Some("Z") && state != Some("X");
    }
    // SAFETY: probing for existence with signal 0.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn a_dropped_handle_leaves_no_child_behind() {
    let (pid, left, still_there): (i32, usize, bool) = common::sealed(|| {
        let child = Isolate::new().spawn(spin_forever).unwrap();
        let pid = child.pid().as_raw_nonzero().get();
        drop(child);
        // SAFETY: probing for existence with signal 0.
        let still_there = unsafe { libc::kill(pid, 0) } == 0;
        (pid, common::child_count(), still_there)
    });
    assert!(pid > 0);
    assert_eq!(left, 0, "no child, not even a zombie");
    assert!(!still_there);
}

#[test]
fn four_spawned_children_overlap_in_time() {
    let start = Instant::now();
    let children: Vec<_> = (0..4u64)
        .map(|i| {
            Isolate::new()
                .spawn(move || {
                    let began = start.elapsed();
                    std::thread::sleep(Duration::from_millis(300));
                    (i, began, start.elapsed())
                })
                .unwrap()
        })
        .collect();
    let spans: Vec<(u64, Duration, Duration)> =
        children.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(spans.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
    let last_start = spans.iter().map(|s| s.1).max().unwrap();
    let first_end = spans.iter().map(|s| s.2).min().unwrap();
    assert!(
        last_start < first_end,
        "all four were running at once: {spans:?}"
    );
}

#[test]
fn try_join_never_blocks_and_as_fd_wakes_a_poller() {
    use std::os::fd::{AsFd, AsRawFd};
    let mut child = Isolate::new()
        .spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            vec![3u16; 100_000] // several pipe buffers: needs reading to finish
        })
        .unwrap();
    assert_eq!(child.try_join(), Ok(None), "still sleeping");
    let mut wakeups = 0;
    let value = loop {
        let mut pfd = libc::pollfd {
            fd: child.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polling one valid descriptor, with no timeout.
        assert_eq!(unsafe { libc::poll(&raw mut pfd, 1, -1) }, 1);
        wakeups += 1;
        if let Some(v) = child.try_join().unwrap() {
            break v;
        }
    };
    assert_eq!(value, vec![3u16; 100_000]);
    assert!(
        wakeups < 10_000,
        "readiness, not a busy loop: {wakeups} wake-ups"
    );
}

#[test]
fn kill_stops_a_running_child_and_join_reports_it() {
    let mut child = Isolate::new().spawn(spin_forever).unwrap();
    child.kill().unwrap();
    assert_eq!(
        child.join(),
        Err(MemIsolateError::CallableStatusUnknown(
            Unknown::ChildProcessKilledBySignal(libc::SIGKILL)
        ))
    );
}

#[test]
fn kill_after_the_child_finished_keeps_its_value() {
    let mut child = Isolate::new().spawn(|| 77u8).unwrap();
    let pid = child.pid();
    // Wait for the exit without reaping, then kill.
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&child)),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling one valid descriptor.
    unsafe { libc::poll(&raw mut pfd, 1, -1) };
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    assert_eq!(child.join(), Ok(77));
    assert!(pid.as_raw_nonzero().get() > 0);
}

#[test]
fn a_handle_joined_after_its_deadline_keeps_what_its_child_did() {
    // The children end at once, but their handles are joined only after
    // the deadline. The deadline is kept while the parent waits; a child
    // found ended when it looks is not timed out, and what it left in the
    // pipe (all of it, for these) is still read.
    let timeout = Duration::from_millis(50);
    let isolate = Isolate::new().timeout(timeout);
    let small = isolate.spawn(|| 0xC0FF_EE00_u32).unwrap();
    // Under the 64 KiB a pipe holds by default, frames and all.
    let large = isolate.spawn(|| vec![0x5A_u8; 60_000]).unwrap();
    let died = isolate
        .spawn(|| -> u32 {
            // Holds the pipe open: the parent finds no end-of-file either.
            common::grandchild_holding_the_pipe(5);
            // SAFETY: leaving the child without a value.
            unsafe { libc::_exit(0) }
        })
        .unwrap();
    let killed = isolate
        .spawn(|| -> u32 {
            // SAFETY: the child kills itself.
            unsafe { libc::raise(libc::SIGKILL) };
            1
        })
        .unwrap();
    // Every deadline counts from before its child's fork.
    let spawned = Instant::now();
    for pid in [small.pid(), large.pid(), died.pid(), killed.pid()] {
        common::exited_unreaped(pid);
    }
    std::thread::sleep((2 * timeout).saturating_sub(spawned.elapsed()));
    assert_eq!(small.join(), Ok(0xC0FF_EE00));
    assert_eq!(large.join(), Ok(vec![0x5A; 60_000]));
    assert_eq!(
        died.join(),
        Err(MemIsolateError::CallableStatusUnknown(
            Unknown::CallableProcessDiedDuringExecution
        ))
    );
    assert_eq!(
        killed.join(),
        Err(MemIsolateError::CallableStatusUnknown(
            Unknown::ChildProcessKilledBySignal(libc::SIGKILL)
        ))
    );
}

#[test]
fn join_with_usage_reports_what_the_child_used() {
    let (r, usage) = Isolate::new()
        .spawn(|| {
            let v = vec![1u8; 96 << 20];
            let busy = Instant::now();
            let mut x = 0u64;
            while busy.elapsed() < Duration::from_millis(200) {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            (v.iter().map(|&b| u64::from(b)).sum::<u64>(), x > 0)
        })
        .unwrap()
        .join_with_usage();
    assert_eq!(r.unwrap().0, 96 << 20);
    let usage = usage.expect("the child was reaped by the handle");
    assert!(usage.max_rss_bytes >= 96 << 20, "{usage:?}");
    assert!(
        usage.user_time + usage.system_time >= Duration::from_millis(100),
        "{usage:?}"
    );
}

#[test]
fn a_panic_arrives_through_a_handle() {
    let child = Isolate::new()
        .spawn(|| -> u8 { panic!("in a spawned child") })
        .unwrap();
    assert_eq!(
        child.join(),
        Err(MemIsolateError::CallableExecuted(Ran::CallablePanicked(
            "in a spawned child".into()
        )))
    );
}

#[test]
fn spawned_children_leave_no_descriptor_behind() {
    let (before, after): (usize, usize) = common::sealed(|| {
        // The first blocking call makes this process's page and spill
        // file, kept for the thread's life: not a leak.
        assert_eq!(Isolate::new().run(|| 0u8), Ok(0));
        let before = common::open_fds();
        for i in 0..50u32 {
            let mut c = Isolate::new().spawn(move || i).unwrap();
            match i % 3 {
                0 => assert_eq!(c.join(), Ok(i)),
                1 => c.kill().unwrap(),
                _ => drop(c),
            }
        }
        let _ = Isolate::new().run(|| -> u8 { panic!("x") });
        let _ = Isolate::new()
            .timeout(Duration::from_millis(10))
            .run(spin_forever);
        (before, common::open_fds())
    });
    assert_eq!(before, after);
}
