//! The crate lives inside other people's processes: it must keep working,
//! and touch nothing it does not own, when the process around it does
//! unusual things (closes descriptors it does not own, runs with stdio
//! closed, calls from thread-local destructors, traces its children).

use std::cell::RefCell;
use std::sync::mpsc;

use mem_isolate::{Isolate, MemIsolateError};

mod common;

mod thread_local_destructors {
    use super::*;

    /// Makes isolated calls when dropped, and sends their results.
    struct CallsOnDrop(mpsc::Sender<Result<u32, MemIsolateError>>);

    impl Drop for CallsOnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(mem_isolate::execute_in_isolated_process(|| 7));
            let _ = self.0.send(
                Isolate::new()
                    .run(|| vec![8u8; 10_000])
                    .map(|v| v.len() as u32),
            );
            let _ = self.0.send(
                Isolate::new()
                    .spawn(|| 9)
                    .and_then(mem_isolate::IsolatedChild::join),
            );
            let mut buffer = [0u8; 8];
            let _ = self
                .0
                .send(Isolate::new().run_with_buffer(&mut buffer, || 10));
        }
    }

    std::thread_local! {
        static LATE: RefCell<Option<CallsOnDrop>> = const { RefCell::new(None) };
    }

    /// A thread that sets up `LATE` and makes a call, in either order, and
    /// exits: `LATE`'s destructor runs before or after the crate's own
    /// thread-local state is destroyed.
    fn results(call_first: bool) -> Vec<Result<u32, MemIsolateError>> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            if call_first {
                assert_eq!(mem_isolate::execute_in_isolated_process(|| 1), Ok(1));
            }
            LATE.with(|late| *late.borrow_mut() = Some(CallsOnDrop(tx)));
            if !call_first {
                assert_eq!(mem_isolate::execute_in_isolated_process(|| 1), Ok(1));
            }
        })
        .join()
        .expect("the thread panicked");
        rx.iter().collect()
    }

    #[test]
    fn a_call_from_a_thread_local_destructor_works() {
        for call_first in [false, true] {
            assert_eq!(
                results(call_first),
                [Ok(7), Ok(10_000), Ok(9), Ok(10)],
                "call first: {call_first}"
            );
        }
    }
}

mod stopped_children {
    use std::time::{Duration, Instant};

    use mem_isolate::errors::CallableStatusUnknownError as Unknown;

    use super::*;

    /// Whether a process with this pid still exists (zombies included).
    fn exists(pid: i32) -> bool {
        // SAFETY: signal 0 only checks for existence and permission.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    /// A callable that records its pid in `word` and stops itself: by
    /// `ptrace(PTRACE_TRACEME)` and a signal (the parent becomes its tracer,
    /// and `wait4` reports the stop), or by `SIGSTOP`.
    fn stops(traced: bool, word: usize) -> impl FnOnce() -> u8 {
        move || {
            // SAFETY: plain syscalls on this process.
            unsafe {
                common::shared_word(word)
                    .store(libc::getpid() as usize, std::sync::atomic::Ordering::SeqCst);
                if traced {
                    #[cfg(target_os = "linux")]
                    libc::ptrace(
                        libc::PTRACE_TRACEME,
                        0,
                        std::ptr::null_mut::<libc::c_void>(),
                        std::ptr::null_mut::<libc::c_void>(),
                    );
                    #[cfg(not(target_os = "linux"))]
                    libc::ptrace(libc::PT_TRACE_ME, 0, std::ptr::null_mut(), 0);
                    libc::raise(libc::SIGUSR1);
                } else {
                    libc::raise(libc::SIGSTOP);
                }
            }
            5
        }
    }

    #[test]
    fn a_stopped_child_has_not_finished_and_the_deadline_ends_it() {
        for traced in [true, false] {
            let words = common::SharedWords::new();
            let start = Instant::now();
            let r = Isolate::new()
                .timeout(Duration::from_millis(300))
                .run(stops(traced, words.addr(0)));
            assert_eq!(
                r,
                Err(Unknown::TimedOut(Duration::from_millis(300)).into()),
                "traced: {traced}"
            );
            assert!(start.elapsed() >= Duration::from_millis(300));
            let pid = words.get(0) as i32;
            assert!(pid > 0);
            assert!(!exists(pid), "traced: {traced}: child {pid} left behind");
        }
    }

    #[test]
    fn kill_and_drop_end_a_stopped_child() {
        for traced in [true, false] {
            let words = common::SharedWords::new();
            let mut child = Isolate::new().spawn(stops(traced, words.addr(0))).unwrap();
            let pid = child.pid().as_raw_nonzero().get();
            while words.get(0) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Let it stop, and the parent see the stop if it can.
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(child.try_join(), Ok(None), "traced: {traced}");
            child.kill().unwrap();
            assert_eq!(
                child.join(),
                Err(Unknown::ChildProcessKilledBySignal(libc::SIGKILL).into())
            );
            assert!(!exists(pid), "traced: {traced}: child {pid} left behind");

            let words = common::SharedWords::new();
            let mut child = Isolate::new().spawn(stops(traced, words.addr(0))).unwrap();
            let pid = child.pid().as_raw_nonzero().get();
            while words.get(0) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(child.try_join(), Ok(None), "traced: {traced}");
            drop(child);
            assert!(
                !exists(pid),
                "traced: {traced}: child {pid} left behind after drop"
            );
        }
    }
}

mod closed_stdio {
    use std::time::Duration;

    use super::*;

    /// Whether descriptors 0, 1 and 2 are all closed.
    fn stdio_closed() -> bool {
        // SAFETY: F_GETFD only asks about the descriptor.
        (0..3).all(|fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1)
    }

    /// A callable that logs to stdout and stderr, writes stray bytes to
    /// descriptors 0 to 2 as a careless C library might, and returns
    /// whether those three were still closed in the child (so none of them
    /// is the crate's) with `len` bytes of value.
    fn noisy(len: usize) -> impl FnOnce() -> (bool, Vec<u8>) + Send + 'static {
        move || {
            let closed = stdio_closed();
            println!("a line to stdout");
            eprintln!("a line to stderr");
            for fd in 0..3 {
                // SAFETY: writing a buffer of ours to a descriptor number.
                unsafe { libc::write(fd, b"\xD4MI\x01garbage".as_ptr().cast(), 11) };
            }
            (closed, vec![0x5A; len])
        }
    }

    #[test]
    fn with_stdio_closed_the_crate_takes_none_of_descriptors_0_to_2() {
        let failures: Vec<String> = common::sealed(|| {
            for fd in 0..3 {
                // SAFETY: this sealed child's own stdio; nothing here uses
                // it after.
                unsafe { libc::close(fd) };
            }
            let mut failures = Vec::new();
            let mut check = |what: &str, r: Result<(bool, Vec<u8>), MemIsolateError>, len| {
                match r {
                    Ok((true, v)) if v.len() == len && v.iter().all(|&b| b == 0x5A) => {}
                    Ok((closed, v)) => failures.push(format!(
                        "{what}: stdio closed in the child: {closed}, {} bytes",
                        v.len()
                    )),
                    Err(e) => failures.push(format!("{what}: {e:?}")),
                }
                if !stdio_closed() {
                    failures.push(format!("{what}: the crate left a descriptor on 0-2"));
                }
            };
            let timed = Isolate::new().timeout(Duration::from_secs(30));
            for len in [16, 300_000, 300_000, 16] {
                // Small results in the page; large ones in the spill file,
                // then (after a large one) down a pipe.
                check("run", Isolate::new().run(noisy(len)), len);
                check("run with a deadline", timed.run(noisy(len)), len);
                check(
                    "spawn",
                    Isolate::new()
                        .spawn(noisy(len))
                        .and_then(mem_isolate::IsolatedChild::join),
                    len,
                );
                check(
                    "spawn with a deadline",
                    timed
                        .spawn(noisy(len))
                        .and_then(mem_isolate::IsolatedChild::join),
                    len,
                );
            }
            let mut buffer = vec![0u8; 1 << 20];
            check(
                "run_with_buffer",
                Isolate::new().run_with_buffer(&mut buffer, noisy(100_000)),
                100_000,
            );
            failures
        });
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
