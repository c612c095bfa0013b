//! Awaiting isolated calls from tokio: values and errors, the deadline,
//! cancellation by drop, many calls at once, both runtime flavours, and
//! children that outlive the thread that spawned them.

#![cfg(feature = "tokio")]

mod common;

use std::time::{Duration, Instant};

use mem_isolate::errors::{CallableExecutedError as Ran, CallableStatusUnknownError as Unknown};
use mem_isolate::{Isolate, MemIsolateError};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn spin_forever() -> u8 {
    loop {
        std::hint::spin_loop();
    }
}

/// True while `pid` exists (a zombie included).
fn exists(pid: i32) -> bool {
    // SAFETY: probing for existence with signal 0.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn run_async_and_await_on_both_runtime_flavours() {
    for rt in [current_thread(), multi_thread()] {
        let got = rt.block_on(async {
            let a = Isolate::new().run_async(|| "from the child".to_string());
            let b = Isolate::new().spawn(|| vec![7u64; 1000]).unwrap();
            // Sent to another task (a worker thread, on multi_thread).
            let c = tokio::spawn(Isolate::new().run_async(std::process::id));
            (a.await, b.await, c.await.unwrap())
        });
        assert_eq!(got.0.as_deref(), Ok("from the child"));
        assert_eq!(got.1, Ok(vec![7u64; 1000]));
        assert_ne!(got.2, Ok(std::process::id()));
    }
}

#[test]
fn a_large_result_streams_through_the_reactor() {
    let got = current_thread().block_on(Isolate::new().run_async(|| vec![3u8; 8 << 20]));
    assert_eq!(
        got.map(|v| (v.len(), v.iter().all(|&b| b == 3))),
        Ok((8 << 20, true))
    );
}

#[test]
fn the_fork_happens_on_the_first_poll() {
    let rt = current_thread();
    let marker = tempfile_path("first-poll");
    let m = marker.clone();
    let future = Isolate::new().run_async(move || std::fs::write(&m, b"ran").is_ok());
    std::thread::sleep(Duration::from_millis(50));
    assert!(!marker.exists(), "nothing ran before the first poll");
    assert_eq!(rt.block_on(future), Ok(true));
    assert!(marker.exists());
    let _ = std::fs::remove_file(marker);
}

fn tempfile_path(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mem-isolate-{what}-{}", std::process::id()))
}

#[test]
fn the_timeout_means_the_same_in_async_code() {
    for rt in [current_thread(), multi_thread()] {
        let started = Instant::now();
        let got = rt.block_on(
            Isolate::new()
                .timeout(Duration::from_millis(100))
                .run_async(spin_forever),
        );
        assert_eq!(
            got,
            Err(MemIsolateError::CallableStatusUnknown(Unknown::TimedOut(
                Duration::from_millis(100)
            )))
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
}

#[test]
fn a_timeout_not_reached_changes_nothing() {
    let got = current_thread().block_on(
        Isolate::new()
            .timeout(Duration::from_secs(30))
            .run_async(|| 5u8),
    );
    assert_eq!(got, Ok(5));
}

#[test]
fn cancel_on_drop_leaves_no_child_and_no_zombie() {
    // Sealed: its own process, so that its children are only these.
    let (pids, alive, left): (Vec<i32>, Vec<bool>, usize) = common::sealed(|| {
        let rt = current_thread();
        let pids = rt.block_on(async {
            let mut pids = Vec::new();
            // A handle's future, given up on by a timeout.
            let child = Isolate::new().spawn(spin_forever).unwrap();
            pids.push(child.pid().as_raw_nonzero().get());
            assert!(
                tokio::time::timeout(Duration::from_millis(30), child)
                    .await
                    .is_err()
            );
            // `run_async`, losing a `select!`, with a grandchild of its own.
            let (tx, rx) = std::sync::mpsc::channel();
            let slow = Isolate::new().run_async(move || {
                let _ = std::process::Command::new("sleep").arg("60").spawn();
                spin_forever()
            });
            tokio::select! {
                _ = slow => unreachable!("it spins"),
                () = tokio::time::sleep(Duration::from_millis(50)) => tx.send(()).unwrap(),
            }
            rx.recv().unwrap();
            // A child with a large address space, slow to tear down.
            let big = Isolate::new()
                .spawn(|| {
                    let v = vec![1u8; 256 << 20];
                    std::hint::black_box(&v);
                    spin_forever()
                })
                .unwrap();
            pids.push(big.pid().as_raw_nonzero().get());
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(big.into_future_for_test());
            // The reaper tasks run while the runtime does.
            tokio::time::sleep(Duration::from_millis(300)).await;
            pids
        });
        let alive = pids.iter().map(|&p| exists(p)).collect();
        (pids, alive, common::child_count())
    });
    assert_eq!(pids.len(), 2);
    assert_eq!(alive, [false, false], "killed and reaped");
    assert_eq!(left, 0, "no child, not even a zombie");
}

/// `IntoFuture` by name, so that dropping the future (not the handle) is
/// what the test exercises.
trait IntoFutureForTest: std::future::IntoFuture + Sized {
    fn into_future_for_test(self) -> Self::IntoFuture {
        std::future::IntoFuture::into_future(self)
    }
}

impl<T: std::future::IntoFuture> IntoFutureForTest for T {}

#[test]
fn a_future_dropped_outside_any_runtime_still_reaps_its_child() {
    let (alive, left): (bool, usize) = common::sealed(|| {
        let rt = current_thread();
        let child = Isolate::new().spawn(spin_forever).unwrap();
        let pid = child.pid().as_raw_nonzero().get();
        let mut future = Box::pin(child.into_future_for_test());
        // Polled once inside the runtime (registered with its reactor).
        rt.block_on(async {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            assert!(future.as_mut().poll(&mut cx).is_pending());
        });
        drop(rt);
        drop(future);
        (exists(pid), common::child_count())
    });
    assert!(!alive);
    assert_eq!(left, 0);
}

#[test]
fn five_hundred_calls_in_flight_on_one_current_thread_runtime() {
    let (ok, peak_fds, base_fds): (usize, usize, usize) =
        common::sealed_without_deadline(|| {
            // The default soft limit, whatever this machine's is.
            // SAFETY: reads and lowers this (sealed) process's own limit.
            unsafe {
                let mut limit = std::mem::zeroed::<libc::rlimit>();
                assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit), 0);
                limit.rlim_cur = 1024.min(limit.rlim_max);
                assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit), 0);
            }
            let base = common::open_fds();
            let rt = current_thread();
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for i in 0..500u32 {
                    set.spawn(Isolate::new().timeout(Duration::from_secs(120)).run_async(
                        move || {
                            std::thread::sleep(Duration::from_millis(1500));
                            i
                        },
                    ));
                }
                // Let every task fork, then count while all are in flight.
                let mut peak = 0;
                for _ in 0..20 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    peak = peak.max(common::open_fds());
                }
                let mut ok = 0;
                while let Some(got) = set.join_next().await {
                    if got.unwrap().is_ok() {
                        ok += 1;
                    }
                }
                (ok, peak, base)
            })
        });
    assert_eq!(ok, 500);
    assert!(
        peak_fds - base_fds <= 2 * 500 + 16,
        "{peak_fds} descriptors at the peak, {base_fds} before"
    );
}

#[test]
fn an_awaited_child_outlives_the_thread_that_spawned_it() {
    for linger in [Duration::ZERO, Duration::from_millis(100)] {
        let child = std::thread::spawn(move || {
            let child = Isolate::new()
                .spawn(|| {
                    std::thread::sleep(Duration::from_millis(400));
                    std::process::id()
                })
                .unwrap();
            std::thread::sleep(linger);
            child
        })
        .join()
        .unwrap();
        let pid = child.pid().as_raw_nonzero().get().unsigned_abs();
        // Awaited on another thread's runtime.
        let got = std::thread::spawn(move || multi_thread().block_on(async { child.await }))
            .join()
            .unwrap();
        assert_eq!(got, Ok(pid));
    }
}

#[test]
fn a_runtime_worker_that_forked_may_retire_first() {
    // The future is first polled (and forks) on a blocking-pool thread,
    // which retires long before the child ends.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(10))
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let child = tokio::task::spawn_blocking(|| {
            Isolate::new().spawn(|| {
                std::thread::sleep(Duration::from_millis(500));
                9u8
            })
        })
        .await
        .unwrap()
        .unwrap();
        child.await
    });
    assert_eq!(got, Ok(9));
}

#[test]
fn an_awaited_panic_signal_and_oversized_result_report_their_errors() {
    let rt = multi_thread();
    let (panicked, signalled, too_big) = rt.block_on(async {
        let panicked = Isolate::new().run_async(|| -> u8 { panic!("boom in the child") });
        let signalled = Isolate::new().run_async(|| -> u8 { std::process::abort() });
        let too_big = Isolate::new()
            .max_result_size(1000)
            .run_async(|| vec![0u8; 100_000]);
        tokio::join!(panicked, signalled, too_big)
    });
    assert_eq!(
        panicked,
        Err(MemIsolateError::CallableExecuted(Ran::CallablePanicked(
            "boom in the child".into()
        )))
    );
    assert_eq!(
        signalled,
        Err(MemIsolateError::CallableStatusUnknown(
            Unknown::ChildProcessKilledBySignal(libc::SIGABRT)
        ))
    );
    assert_eq!(
        too_big,
        Err(MemIsolateError::CallableExecuted(Ran::ResultTooLarge {
            limit: 1000
        }))
    );
}

#[test]
fn a_value_already_taken_by_try_join_is_not_given_twice() {
    let rt = current_thread();
    let mut child = Isolate::new().spawn(|| 1u8).unwrap();
    while child.try_join().unwrap().is_none() {
        std::thread::yield_now();
    }
    assert_eq!(
        rt.block_on(async { child.await }),
        Err(MemIsolateError::CallableExecuted(Ran::ResultAlreadyTaken))
    );
}

#[test]
fn the_futures_are_send_and_static() {
    fn send_static<F: std::future::Future + Send + 'static>(_: &F) {}
    let isolate = Isolate::new();
    let a = isolate.run_async(|| 1u8);
    drop(isolate);
    send_static(&a);
    let child = Isolate::new().spawn(|| 2u8).unwrap();
    let b = std::future::IntoFuture::into_future(child);
    send_static(&b);
    let rt = current_thread();
    assert_eq!(rt.block_on(async { (a.await, b.await) }), (Ok(1), Ok(2)));
}

/// What the docs of `run_async` promise about a callable that uses the
/// runtime it was forked from: a task it spawns never runs in the child,
/// so waiting for it hangs, and only the timeout ends the call.
#[test]
fn a_callable_that_uses_the_forked_runtime_hangs_until_its_timeout() {
    for rt in [current_thread(), multi_thread()] {
        let got = rt.block_on(
            Isolate::new()
                .timeout(Duration::from_millis(300))
                .run_async(|| {
                    let (tx, rx) = std::sync::mpsc::channel();
                    tokio::runtime::Handle::current().spawn(async move {
                        let _ = tx.send(7u8);
                    });
                    rx.recv().unwrap_or(0)
                }),
        );
        assert_eq!(
            got,
            Err(MemIsolateError::CallableStatusUnknown(Unknown::TimedOut(
                Duration::from_millis(300)
            )))
        );
    }
}

/// Installs a seccomp filter on this (sealed) process that fails every
/// `pidfd_open` with ENOSYS and allows everything else.
#[cfg(target_os = "linux")]
fn refuse_pidfd_open() {
    const NR_OFFSET: u32 = 0; // `seccomp_data.nr`
    let nr = u32::try_from(libc::SYS_pidfd_open).unwrap();
    let errno = u32::try_from(libc::ENOSYS).unwrap();
    let op = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: u16::try_from(code).unwrap(),
        jt,
        jf,
        k,
    };
    let mut program = [
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, NR_OFFSET, 0, 0),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, nr, 0, 1),
        op(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | errno,
            0,
            0,
        ),
        op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ];
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).unwrap(),
        filter: program.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls with a valid filter program that outlives
    // them (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const fprog
            ),
            0
        );
        assert_eq!(libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0), -1);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn without_a_pidfd_the_child_is_checked_on_a_timer() {
    // A seccomp filter makes `pidfd_open` fail with ENOSYS, as on a
    // kernel before 5.3, so nothing can wake the reactor when the child
    // exits. The future falls back to checking on a timer: for a child
    // whose pipe a grandchild holds open, for a deadline, and for a
    // spawned handle awaited later.
    type Got = (
        Result<(u8, bool), MemIsolateError>,
        Result<u8, MemIsolateError>,
        Result<u8, MemIsolateError>,
    );
    let got: Got = common::sealed(|| {
        let rt = current_thread();
        refuse_pidfd_open();
        rt.block_on(async {
            // A grandchild keeps the pipe open, so no end-of-file tells
            // the parent that the child has exited, and the child takes a
            // while to exit after its result (256 MiB to tear down): only
            // a check sees the exit.
            let started = Instant::now();
            let slow = Isolate::new()
                .run_async(|| {
                    // SAFETY: the grandchild only sleeps and leaves with
                    // `_exit`.
                    unsafe {
                        if libc::fork() == 0 {
                            libc::sleep(30);
                            libc::_exit(0);
                        }
                    }
                    std::mem::forget(vec![1u8; 256 << 20]);
                    7u8
                })
                .await;
            let timed_out = Isolate::new()
                .timeout(Duration::from_millis(50))
                .run_async(spin_forever)
                .await;
            let child = Isolate::new().spawn(|| 9u8).expect("spawn");
            tokio::time::sleep(Duration::from_millis(20)).await;
            (
                slow.map(|v| (v, started.elapsed() < Duration::from_secs(10))),
                timed_out,
                child.await,
            )
        })
    });
    assert_eq!(
        got.0,
        Ok((7, true)),
        "(value, seen before the grandchild ended)"
    );
    assert_eq!(
        got.1,
        Err(MemIsolateError::CallableStatusUnknown(Unknown::TimedOut(
            Duration::from_millis(50)
        )))
    );
    assert_eq!(got.2, Ok(9));
}
