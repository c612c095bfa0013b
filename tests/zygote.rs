//! Calls through a `Zygote`: the same results as direct calls, forked from
//! a small snapshot of the process, with the zygote's lifetime tied to its
//! handle and to the process that started it.
#![cfg(feature = "std")]

mod common;

use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mem_isolate::errors::{
    CallableDidNotExecuteError as NotRun, CallableExecutedError as Ran,
    CallableStatusUnknownError as Unknown,
};
use mem_isolate::{Isolate, MemIsolateError, Pid, Zygote};
use serde::{Deserialize, Serialize};

fn double(n: u64) -> u64 {
    n * 2
}

fn raw(pid: Pid) -> i32 {
    pid.as_raw_nonzero().get()
}

/// Whether `pid` names no process at all (not even a zombie).
fn gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Waits (up to 30 s, then fails) until `pid` is gone.
fn wait_gone(pid: i32) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !gone(pid) {
        assert!(
            Instant::now() < give_up,
            "process {pid} still there after 30 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_call_returns_its_value() {
    let zygote = Zygote::start().unwrap();
    assert_eq!(zygote.run(double, 21), Ok(42));
    assert_eq!(
        zygote.run(|s: String| s.to_uppercase(), "hello".to_string()),
        Ok("HELLO".to_string())
    );
    // Arguments too large to travel inside the request take a socket.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let sum = zygote.run(
        |v: Vec<u8>| v.iter().map(|&b| u64::from(b)).sum::<u64>(),
        big.clone(),
    );
    assert_eq!(sum, Ok(big.iter().map(|&b| u64::from(b)).sum::<u64>()));
    // And so do results.
    assert_eq!(
        zygote
            .run(|n: usize| vec![7u8; n], 5 << 20)
            .map(|v| v.len()),
        Ok(5 << 20)
    );
}

#[test]
fn the_worker_is_a_fresh_child_of_the_zygote() {
    let zygote = Zygote::start().unwrap();
    let (pid, parent) = zygote
        .run(
            |()| (std::process::id(), std::os::unix::process::parent_id()),
            (),
        )
        .unwrap();
    assert_ne!(pid, std::process::id());
    assert_eq!(parent as i32, raw(zygote.pid()));
    let child = zygote.spawn(|()| std::process::id(), ()).unwrap();
    let worker = child.pid();
    assert_eq!(child.join(), Ok(raw(worker) as u32));
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let zygote = Zygote::start().unwrap();
    let e = zygote
        .run(|n: u32| -> u32 { panic!("no {n} today") }, 7)
        .unwrap_err();
    match e {
        MemIsolateError::CallableExecuted(Ran::CallablePanicked(msg)) => {
            assert_eq!(msg.as_str(), "no 7 today");
        }
        e => panic!("expected a panic, got {e:?}"),
    }
}

#[test]
fn a_signal_is_reported() {
    let zygote = Zygote::start().unwrap();
    let e = zygote
        .run(
            |()| -> u8 {
                common::silence_stderr();
                std::process::abort()
            },
            (),
        )
        .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableStatusUnknown(Unknown::ChildProcessKilledBySignal(libc::SIGABRT))
    );
}

#[test]
fn the_deadline_kills_the_worker() {
    let zygote = Zygote::start().unwrap();
    let e = Isolate::new()
        .timeout(Duration::from_millis(100))
        .run_in(
            &zygote,
            |()| std::thread::sleep(Duration::from_secs(60)),
            (),
        )
        .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableStatusUnknown(Unknown::TimedOut(Duration::from_millis(100)))
    );
    // The zygote serves on.
    assert_eq!(zygote.run(double, 1), Ok(2));
}

#[test]
fn the_result_cap_holds() {
    let zygote = Zygote::start().unwrap();
    let e = Isolate::new()
        .max_result_size(100)
        .run_in(&zygote, |n: usize| vec![1u8; n], 1000)
        .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(Ran::ResultTooLarge { limit: 100 })
    );
}

#[cfg(not(target_os = "macos"))]
#[test]
fn the_memory_limit_holds_in_the_worker() {
    let zygote = Zygote::start().unwrap();
    let limited = Isolate::new().memory_limit(64 << 20);
    let refused = limited.run_in(
        &zygote,
        |n: usize| {
            let mut v: Vec<u8> = Vec::new();
            v.try_reserve_exact(n).is_err()
        },
        1 << 30,
    );
    assert_eq!(refused, Ok(true));
    // Within the limit, it runs.
    assert_eq!(
        limited.run_in(&zygote, |n: usize| vec![1u8; n].len(), 1 << 20),
        Ok(1 << 20)
    );
}

/// Linux only: it lowers the zygote's own process limit from outside
/// (`prlimit`), which macOS and FreeBSD have no call for.
#[cfg(target_os = "linux")]
#[test]
fn a_zygote_that_cannot_fork_refuses_the_call() {
    let refused = common::sealed(|| {
        // SAFETY: the credentials of the sealed child alone.
        unsafe {
            // Root ignores RLIMIT_NPROC: become nobody first.
            if libc::getuid() == 0 {
                assert_eq!(libc::setgid(65534), 0);
                assert_eq!(libc::setuid(65534), 0);
            }
        }
        let zygote = Zygote::start().expect("the zygote starts");
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: sets the limit of the zygote, this process's own child.
        let set = unsafe {
            libc::prlimit(
                raw(zygote.pid()),
                libc::RLIMIT_NPROC,
                &raw const zero,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
        zygote.run(double, 1)
    });
    assert_eq!(
        refused,
        Err(MemIsolateError::CallableDidNotExecute(NotRun::ForkFailed(
            mem_isolate::errors::Errno::AGAIN
        )))
    );
}

#[test]
fn arguments_that_cannot_be_serialized_are_not_sent() {
    struct Refuses;
    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("not today"))
        }
    }
    impl<'de> Deserialize<'de> for Refuses {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Ok(Self)
        }
    }
    let zygote = Zygote::start().unwrap();
    let e = zygote.run(|_: Refuses| 1u8, Refuses).unwrap_err();
    match e {
        MemIsolateError::CallableDidNotExecute(NotRun::ArgumentsNotSerialized(text)) => {
            assert_eq!(text.as_str(), "not today");
        }
        e => panic!("expected ArgumentsNotSerialized, got {e:?}"),
    }
}

#[test]
fn arguments_the_worker_cannot_decode_mean_the_callable_never_ran() {
    /// Serializes fine, refuses to deserialize: the worker's decoding fails.
    struct OneWay;
    impl Serialize for OneWay {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u8(1)
        }
    }
    impl<'de> Deserialize<'de> for OneWay {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Err(serde::de::Error::custom("no way back"))
        }
    }
    let zygote = Zygote::start().unwrap();
    let e = zygote
        .run(|_: OneWay| -> u8 { panic!("ran") }, OneWay)
        .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableDidNotExecute(NotRun::ChildSetupFailed(rustix_badmsg()))
    );
}

fn rustix_badmsg() -> mem_isolate::errors::Errno {
    mem_isolate::errors::Errno::from_raw_os_error(libc::EBADMSG)
}

#[test]
fn a_spawned_call_can_be_polled_killed_and_dropped() {
    let zygote = Zygote::start().unwrap();
    let mut child = zygote
        .spawn(
            |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            },
            20,
        )
        .unwrap();
    let done = loop {
        if let Some(done) = child.try_join().unwrap() {
            break done;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(done, 20);

    let mut child = zygote
        .spawn(
            |()| -> u8 {
                loop {
                    std::hint::spin_loop()
                }
            },
            (),
        )
        .unwrap();
    let worker = raw(child.pid());
    child.kill().unwrap();
    // Killed and reaped by the zygote before `kill` returned.
    assert!(gone(worker));
    assert_eq!(
        child.join(),
        Err(MemIsolateError::CallableStatusUnknown(
            Unknown::ChildProcessKilledBySignal(libc::SIGKILL)
        ))
    );

    let child = zygote
        .spawn(|()| std::thread::sleep(Duration::from_secs(60)), ())
        .unwrap();
    let worker = raw(child.pid());
    drop(child);
    assert!(gone(worker));

    let (value, usage) = zygote
        .spawn(|n: usize| vec![1u8; n].len(), 32 << 20)
        .unwrap()
        .join_with_usage();
    assert_eq!(value, Ok(32 << 20));
    assert!(usage.expect("reaped").max_rss_bytes >= 32 << 20);
}

#[test]
fn a_zygote_is_shared_between_threads_and_its_handles_are_pollable() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Zygote>();
    use std::os::fd::{AsFd, AsRawFd};
    let zygote = Zygote::start().unwrap();
    let mut child = zygote.spawn(|n: u64| n + 1, 1).unwrap();
    let value = loop {
        let mut ready = libc::pollfd {
            fd: child.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; waits at most a second.
        unsafe { libc::poll(&raw mut ready, 1, 1000) };
        if let Some(value) = child.try_join().unwrap() {
            break value;
        }
    };
    assert_eq!(value, 2);
}

#[test]
fn kill_descendants_ends_what_the_worker_started() {
    let zygote = Zygote::start().unwrap();
    let e = Isolate::new()
        .kill_descendants(true)
        .timeout(Duration::from_millis(300))
        .run_in(
            &zygote,
            |path: String| {
                let child = std::process::Command::new("sh")
                    .args(["-c", "echo $$ > \"$0\"; exec sleep 60", &path])
                    .spawn()
                    .unwrap();
                drop(child);
                std::thread::sleep(Duration::from_secs(60));
            },
            grandchild_file(),
        )
        .unwrap_err();
    assert!(matches!(
        e,
        MemIsolateError::CallableStatusUnknown(Unknown::TimedOut(_))
    ));
    let pid: i32 = std::fs::read_to_string(grandchild_file())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(pid);
}

#[test]
fn a_blocking_call_returns_with_its_value_and_its_descendants_still_end() {
    let zygote = Zygote::start().unwrap();
    let pid = Isolate::new()
        .kill_descendants(true)
        .run_in(
            &zygote,
            |()| {
                // Never waited for: the group kill ends it.
                #[allow(clippy::zombie_processes)]
                let child = std::process::Command::new("sleep")
                    .arg("60")
                    .spawn()
                    .unwrap();
                child.id()
            },
            (),
        )
        .unwrap();
    // `run_in` returned with the value; the zygote reaps the worker and
    // kills its group right after.
    wait_gone(i32::try_from(pid).unwrap());
}

fn grandchild_file() -> String {
    std::env::temp_dir()
        .join(format!(
            "mem-isolate-zygote-grandchild-{}",
            std::process::id()
        ))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_zygote_killed_from_outside_fails_calls_at_once() {
    let zygote = Zygote::start().unwrap();
    let in_flight = zygote
        .spawn(|()| std::thread::sleep(Duration::from_secs(60)), ())
        .unwrap();
    // SAFETY: the zygote is this test's own child.
    assert_eq!(unsafe { libc::kill(raw(zygote.pid()), libc::SIGKILL) }, 0);
    let e = in_flight.join().unwrap_err();
    assert!(!e.callable_did_not_execute(), "{e:?}");
    assert!(
        matches!(e, MemIsolateError::CallableStatusUnknown(_)),
        "{e:?}"
    );
    match zygote.run(double, 1) {
        Err(MemIsolateError::CallableDidNotExecute(NotRun::ZygoteUnavailable(_))) => {}
        other => panic!("expected ZygoteUnavailable, got {other:?}"),
    }
}

#[test]
fn a_stopped_zygote_times_calls_out_and_can_still_be_dropped() {
    let zygote = Zygote::start().unwrap();
    let pid = raw(zygote.pid());
    // SAFETY: the zygote is this test's own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let e = Isolate::new()
        .timeout(Duration::from_millis(100))
        .run_in(&zygote, double, 1)
        .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableStatusUnknown(Unknown::TimedOut(Duration::from_millis(100)))
    );
    // Dropped while stopped: it is woken to see its end, and reaped.
    drop(zygote);
    assert!(gone(pid));
}

#[test]
fn dropping_the_zygote_ends_every_call_it_serves() {
    let zygote = Zygote::start().unwrap();
    let zygote_pid = raw(zygote.pid());
    let children: Vec<_> = (0..3)
        .map(|_| {
            zygote
                .spawn(|()| std::thread::sleep(Duration::from_secs(60)), ())
                .unwrap()
        })
        .collect();
    let workers: Vec<i32> = children.iter().map(|c| raw(c.pid())).collect();
    drop(zygote);
    // Killed and reaped by the zygote, which this process reaped: no
    // orphan, no zombie.
    assert!(gone(zygote_pid));
    for w in workers {
        assert!(gone(w), "worker {w} outlived its zygote");
    }
    for child in children {
        assert_eq!(
            child.join(),
            Err(MemIsolateError::CallableStatusUnknown(
                Unknown::ChildProcessKilledBySignal(libc::SIGKILL)
            ))
        );
    }
}

#[test]
fn a_forked_copy_of_the_owner_may_use_the_zygote_but_not_end_it() {
    let zygote = Zygote::start().unwrap();
    // A direct call's child holds a copy of the `Zygote`: it calls through
    // it, then drops its copy.
    let through_the_copy = common::sealed(|| {
        let copy = unsafe_copy(&zygote);
        let n = copy.run(double, 5);
        drop(copy);
        n
    });
    assert_eq!(through_the_copy, Ok(10));
    // The owner's zygote serves on.
    assert_eq!(zygote.run(double, 6), Ok(12));
}

/// A bitwise copy of `zygote`, as a forked copy of the process has: only
/// for a child that is about to `_exit`, where the original is never
/// dropped.
fn unsafe_copy(zygote: &Zygote) -> Zygote {
    // SAFETY: used only in a forked child, whose copy of the original is
    // never dropped (the child leaves with `_exit`); the two never close
    // the same descriptor in one process.
    unsafe { std::ptr::read(zygote) }
}

#[test]
fn the_zygote_outlives_the_thread_that_started_it() {
    let zygote = std::thread::spawn(|| Zygote::start().unwrap())
        .join()
        .unwrap();
    assert_eq!(zygote.run(double, 4), Ok(8));
}

#[test]
fn the_zygote_dies_with_the_process_that_started_it() {
    let zygote_pid: i32 = common::sealed(|| {
        let zygote = Zygote::start().unwrap();
        let pid = raw(zygote.pid());
        // Neither dropped nor shut down: only the process's end can end it.
        std::mem::forget(zygote);
        pid
    });
    wait_gone(zygote_pid);
}

#[test]
fn the_zygote_keeps_none_of_the_callers_descriptors() {
    let (mut reader, writer) = {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: `pipe` fills the two descriptors, which the files own.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    };
    let zygote = Zygote::start().unwrap();
    drop(writer);
    // End-of-file at once: nobody else, the zygote included, holds the
    // write end (a holder would make the non-blocking read `EAGAIN`).
    use std::os::fd::AsRawFd;
    // SAFETY: sets O_NONBLOCK on this test's own descriptor.
    unsafe {
        let fd = reader.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK), 0);
    }
    let mut rest = Vec::new();
    assert_eq!(reader.read_to_end(&mut rest).unwrap(), 0);
    // And a worker holds only 0-2 and its result pipe.
    let open = zygote
        .run(
            |()| {
                let mut fds: Vec<i32> = std::fs::read_dir("/dev/fd")
                    .unwrap()
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect();
                fds.sort_unstable();
                fds
            },
            (),
        )
        .unwrap();
    // 0, 1, 2, the result pipe, and the listing's own directory handle.
    assert_eq!(open.len(), 5, "{open:?}");
    assert_eq!(&open[..3], [0, 1, 2]);
    drop(zygote);
}

#[test]
fn the_callers_signal_handlers_are_not_the_zygotes() {
    extern "C" fn noted(_: libc::c_int) {}
    fn disposition(signal: libc::c_int) -> usize {
        // SAFETY: reads the current action into a zeroed `sigaction`.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(signal, std::ptr::null(), &raw mut old), 0);
            old.sa_sigaction
        }
    }
    let in_the_worker = common::sealed(|| {
        // SAFETY: a handler that does nothing, in the sealed child alone.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = noted as extern "C" fn(libc::c_int) as usize;
            assert_eq!(
                libc::sigaction(libc::SIGUSR1, &raw const action, std::ptr::null_mut()),
                0
            );
        }
        assert_ne!(disposition(libc::SIGUSR1), libc::SIG_DFL);
        let zygote = Zygote::start().unwrap();
        zygote.run(|()| disposition(libc::SIGUSR1), ())
    });
    assert_eq!(in_the_worker, Ok(libc::SIG_DFL));
}

static HELD_AFTER_START: Mutex<u32> = Mutex::new(0);
static HELD_AT_START: Mutex<u32> = Mutex::new(0);

#[test]
fn locks_taken_after_start_never_reach_a_worker() {
    let at_start = HELD_AT_START.lock().unwrap();
    let zygote = Zygote::start().unwrap();
    drop(at_start);
    let (held, release) = std::sync::mpsc::channel::<()>();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _mine = HELD_AFTER_START.lock().unwrap();
        let _out = std::io::stdout().lock();
        held.send(()).unwrap();
        wait.recv().unwrap();
    });
    release.recv().unwrap();
    let isolate = Isolate::new().timeout(Duration::from_secs(30));
    let took = isolate.run_in(
        &zygote,
        |()| {
            let n = *HELD_AFTER_START.lock().unwrap();
            println!("a worker prints while the caller's thread holds stdout");
            n + 1
        },
        (),
    );
    assert_eq!(took, Ok(1));
    // The documented hazard: a lock held by another thread at `start`
    // stays held in every worker.
    let free = isolate.run_in(&zygote, |()| HELD_AT_START.try_lock().is_ok(), ());
    assert_eq!(free, Ok(false));
    go.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn many_threads_share_one_zygote() {
    let zygote = Zygote::start().unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let zygote = &zygote;
            s.spawn(move || {
                for i in 0..40u64 {
                    let n = t * 1000 + i;
                    assert_eq!(zygote.run(double, n), Ok(n * 2));
                }
            });
        }
    });
}

#[cfg(target_os = "linux")]
#[test]
fn leaks_in_workers_never_grow_the_zygote() {
    fn zygote_rss(pid: i32) -> u64 {
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }
    let zygote = Zygote::start().unwrap();
    let pid = raw(zygote.pid());
    assert_eq!(zygote.run(double, 1), Ok(2));
    let before = zygote_rss(pid);
    for _ in 0..100 {
        let leaked = zygote.run(
            |n: usize| {
                let v = vec![1u8; n];
                let len = v.len();
                std::mem::forget(v);
                len
            },
            10 << 20,
        );
        assert_eq!(leaked, Ok(10 << 20));
    }
    let after = zygote_rss(pid);
    assert!(
        after <= before + (1 << 20),
        "the zygote grew from {before} to {after} bytes"
    );
}

#[cfg(feature = "tokio")]
mod with_tokio {
    use super::*;

    fn pid_file(name: &str) -> String {
        std::env::temp_dir()
            .join(format!("mem-isolate-zygote-{name}-{}", std::process::id()))
            .to_string_lossy()
            .into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_async_in_returns_the_value_and_is_send() {
        let zygote = Zygote::start().unwrap();
        let future = Isolate::new().run_async_in(&zygote, double, 21);
        // Send and 'static: it can be handed to the runtime.
        assert_eq!(tokio::spawn(future).await.unwrap(), Ok(42));
        let e = Isolate::new()
            .timeout(Duration::from_millis(50))
            .run_async_in(
                &zygote,
                |()| std::thread::sleep(Duration::from_secs(60)),
                (),
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            MemIsolateError::CallableStatusUnknown(Unknown::TimedOut(Duration::from_millis(50)))
        );
    }

    #[tokio::test]
    async fn cancelling_run_async_in_kills_the_worker() {
        let zygote = Zygote::start().unwrap();
        let path = pid_file("cancelled");
        let _ = std::fs::remove_file(&path);
        let call = Isolate::new().run_async_in(
            &zygote,
            |path: String| {
                std::fs::write(&path, std::process::id().to_string()).unwrap();
                std::thread::sleep(Duration::from_secs(60));
            },
            path.clone(),
        );
        // Polled until the worker is known to run, then dropped.
        let mut call = Box::pin(call);
        let pid: i32 = loop {
            tokio::select! {
                done = &mut call => panic!("the call ended: {done:?}"),
                () = tokio::time::sleep(Duration::from_millis(5)) => {
                    if let Some(pid) = std::fs::read_to_string(&path).ok().and_then(|s| s.parse().ok()) {
                        break pid;
                    }
                }
            }
        };
        drop(call);
        wait_gone(pid);
        let _ = std::fs::remove_file(&path);
    }
}

#[cfg(feature = "sandbox")]
#[test]
fn a_sandboxed_call_through_a_zygote_is_refused() {
    use mem_isolate::Sandbox;
    use mem_isolate::errors::SandboxUnsupported;
    let zygote = Zygote::start().unwrap();
    let sandboxed = Isolate::new().sandbox(Sandbox::new());
    let e = sandboxed.run_in(&zygote, double, 1).unwrap_err();
    if sandboxed.run(|| 1u8).is_ok() {
        // Where sandboxes work at all, the zygote is the reason.
        assert_eq!(
            e,
            MemIsolateError::CallableDidNotExecute(NotRun::SandboxUnsupported(
                SandboxUnsupported::Zygote
            ))
        );
    } else {
        assert!(e.callable_did_not_execute(), "{e:?}");
    }
}
