//! The crate lives inside other people's processes: it must keep working,
//! and touch nothing it does not own, when the process around it does
//! unusual things (closes descriptors it does not own, runs with stdio
//! closed, calls from thread-local destructors, traces its children).
#![cfg(feature = "std")]

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
                #[cfg(any(target_os = "linux", target_os = "android"))]
                let traced = traced
                    && libc::ptrace(
                        libc::PTRACE_TRACEME,
                        0,
                        std::ptr::null_mut::<libc::c_void>(),
                        std::ptr::null_mut::<libc::c_void>(),
                    ) == 0;
                #[cfg(not(any(target_os = "linux", target_os = "android")))]
                let traced =
                    traced && libc::ptrace(libc::PT_TRACE_ME, 0, std::ptr::null_mut(), 0) == 0;
                // Without ptrace (qemu-user has none, a seccomp filter may
                // refuse it) the child stops itself instead.
                libc::raise(if traced { libc::SIGUSR1 } else { libc::SIGSTOP });
            }
            5
        }
    }

    /// Waits (up to 30 s) until the child whose pid lands in `word` has
    /// recorded it and is stopped; returns the pid.
    fn stopped(word: &common::SharedWords) -> i32 {
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            let pid = word.get(0) as i32;
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
            let is_stopped = state
                .as_deref()
                .and_then(|s| s.rsplit_once(')'))
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['t', 'T']));
            // Without /proc (macOS, FreeBSD), the recorded pid and a pause.
            if pid > 0
                && (is_stopped
                    || (!cfg!(target_os = "linux") && {
                        std::thread::sleep(Duration::from_millis(200));
                        true
                    }))
            {
                return pid;
            }
            assert!(Instant::now() < give_up, "the child never stopped");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_stopped_child_has_not_finished_and_the_deadline_ends_it() {
        for traced in [true, false] {
            // Blocking: the deadline is enforced while the parent waits.
            let words = common::SharedWords::new();
            let r = Isolate::new()
                .timeout(Duration::from_millis(500))
                .run(stops(traced, words.addr(0)));
            assert_eq!(
                r,
                Err(Unknown::TimedOut(Duration::from_millis(500)).into()),
                "traced: {traced}"
            );
            let pid = words.get(0) as i32;
            assert!(
                pid == 0 || !exists(pid),
                "traced: {traced}: child {pid} left behind"
            );

            // Spawned, joined only once the child is certainly stopped and
            // its deadline past: a stop is not an end.
            let words = common::SharedWords::new();
            let child = Isolate::new()
                .timeout(Duration::from_millis(100))
                .spawn(stops(traced, words.addr(0)))
                .unwrap();
            let pid = stopped(&words);
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(
                child.join(),
                Err(Unknown::TimedOut(Duration::from_millis(100)).into()),
                "traced: {traced}"
            );
            assert!(!exists(pid), "traced: {traced}: child {pid} left behind");
        }
    }

    /// A spawned child that has stopped itself (and that the parent has
    /// had the chance to see stopped), with its pid.
    fn stopped_child(traced: bool) -> (mem_isolate::IsolatedChild<u8>, i32) {
        let words = common::SharedWords::new();
        let mut child = Isolate::new().spawn(stops(traced, words.addr(0))).unwrap();
        let pid = stopped(&words);
        assert_eq!(pid, child.pid().as_raw_nonzero().get());
        // The parent sees the stop if it can: it is not an end.
        assert_eq!(child.try_join(), Ok(None), "traced: {traced}");
        (child, pid)
    }

    #[test]
    fn kill_and_drop_end_a_stopped_child() {
        for traced in [true, false] {
            let (mut child, pid) = stopped_child(traced);
            child.kill().unwrap();
            assert_eq!(
                child.join(),
                Err(Unknown::ChildProcessKilledBySignal(libc::SIGKILL).into())
            );
            assert!(!exists(pid), "traced: {traced}: child {pid} left behind");

            let (child, pid) = stopped_child(traced);
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

mod descendants {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use super::*;

    const GENERATIONS: usize = 3;

    /// In the callable: starts three generations of `sleep 60`, each
    /// started by the one before, and records their pids in the words from
    /// `words` on. Returns once all three are recorded (or after 10 s).
    fn start_generations(words: usize) {
        /// Forks generation number `generation` and records its pid; the new process
        /// starts the next generation, then becomes `sleep 60`.
        unsafe fn fork_generation(words: usize, generation: usize) {
            if generation == GENERATIONS {
                return;
            }
            // SAFETY: the new process only forks, stores to shared memory,
            // and execs or exits.
            unsafe {
                let pid = libc::fork();
                if pid == 0 {
                    fork_generation(words, generation + 1);
                    let argv = [c"sleep".as_ptr(), c"60".as_ptr(), std::ptr::null()];
                    libc::execv(c"/bin/sleep".as_ptr(), argv.as_ptr());
                    libc::sleep(60);
                    libc::_exit(0);
                }
                if pid > 0 {
                    common::shared_word(words + generation * size_of::<usize>())
                        .store(pid as usize, Ordering::SeqCst);
                }
            }
        }
        // SAFETY: see above.
        unsafe { fork_generation(words, 0) };
        let give_up = Instant::now() + Duration::from_secs(10);
        while recorded(words) < GENERATIONS && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// How many generations have recorded their pid.
    fn recorded(words: usize) -> usize {
        (0..GENERATIONS)
            .filter(|g| {
                common::shared_word(words + g * size_of::<usize>()).load(Ordering::SeqCst) != 0
            })
            .count()
    }

    fn all_started(words: &common::SharedWords) {
        let give_up = Instant::now() + Duration::from_secs(30);
        while recorded(words.addr(0)) < GENERATIONS {
            assert!(Instant::now() < give_up, "the descendants never started");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether `pid` is still running. Orphans are reparented to this
    /// process (a subreaper on Linux), which reaps the ones that ended;
    /// where that is refused (qemu-user), an ended orphan waits as a zombie
    /// for the system's init to reap it, and a zombie has ended.
    fn running(pid: i32) -> bool {
        // SAFETY: plain syscalls.
        let exists = unsafe {
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
            libc::kill(pid, 0) == 0
        };
        exists && !zombie(pid)
    }

    #[cfg(target_os = "linux")]
    fn zombie(pid: i32) -> bool {
        // The state is the first field after the parenthesised name.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    }

    #[cfg(not(target_os = "linux"))]
    fn zombie(_pid: i32) -> bool {
        false
    }

    /// Runs `scenario` in a sealed child that adopts orphaned descendants,
    /// then, a second after it returns, lists the recorded descendants that
    /// are still running (and kills them). Returns what the scenario said,
    /// how many descendants were started, and the survivors.
    fn survivors(scenario: fn(&common::SharedWords) -> String) -> (String, usize, Vec<i32>) {
        common::sealed(move || {
            #[cfg(target_os = "linux")]
            // SAFETY: a flag on this (sealed) process.
            unsafe {
                libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
            }
            let words = common::SharedWords::new();
            let outcome = scenario(&words);
            std::thread::sleep(Duration::from_secs(1));
            let started: Vec<i32> = (0..GENERATIONS)
                .map(|g| words.get(g) as i32)
                .filter(|&p| p > 0)
                .collect();
            let left: Vec<i32> = started.iter().copied().filter(|&p| running(p)).collect();
            for &p in &left {
                // SAFETY: our own descendants, killed so that nothing
                // outlives the test.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            (outcome, started.len(), left)
        })
    }

    fn sleeper(words: usize) -> impl FnOnce() -> u8 {
        move || {
            start_generations(words);
            std::thread::sleep(Duration::from_secs(60));
            0
        }
    }

    /// Spawns a sleeper with a 100 ms deadline, and joins it only once all
    /// its descendants have started: the deadline is enforced with every
    /// generation certainly there.
    fn joined_after_the_deadline(isolate: &Isolate, words: &common::SharedWords) -> String {
        let child = isolate
            .clone()
            .timeout(Duration::from_millis(100))
            .spawn(sleeper(words.addr(0)))
            .unwrap();
        all_started(words);
        format!("{:?}", child.join())
    }

    #[test]
    fn the_deadline_ends_three_generations_of_descendants() {
        // As a user writes it: a 100 ms deadline.
        let (outcome, _, left) = survivors(|words| {
            let r = Isolate::new()
                .timeout(Duration::from_millis(100))
                .run(sleeper(words.addr(0)));
            format!("{r:?}")
        });
        assert_eq!(outcome, "Err(CallableStatusUnknown(TimedOut(100ms)))");
        assert!(left.is_empty(), "still running: {left:?}");

        // The same with every generation certainly started before the
        // deadline is enforced (the handle is joined after it).
        let (outcome, started, left) =
            survivors(|words| joined_after_the_deadline(&Isolate::new(), words));
        assert_eq!(outcome, "Err(CallableStatusUnknown(TimedOut(100ms)))");
        assert_eq!(started, GENERATIONS);
        assert!(left.is_empty(), "still running: {left:?}");
    }

    #[test]
    fn kill_drop_and_a_returned_value_end_the_descendants() {
        let (outcome, n, left) = survivors(|words| {
            let mut child = Isolate::new().spawn(sleeper(words.addr(0))).unwrap();
            all_started(words);
            child.kill().unwrap();
            format!("{:?}", child.join())
        });
        assert_eq!(
            outcome,
            "Err(CallableStatusUnknown(ChildProcessKilledBySignal(9)))"
        );
        assert_eq!((n, left), (GENERATIONS, vec![]), "after kill");

        let (_, n, left) = survivors(|words| {
            let child = Isolate::new().spawn(sleeper(words.addr(0))).unwrap();
            all_started(words);
            drop(child);
            String::new()
        });
        assert_eq!((n, left), (GENERATIONS, vec![]), "after drop");

        let (outcome, n, left) = survivors(|words| {
            let addr = words.addr(0);
            let r = Isolate::new().run(move || {
                start_generations(addr);
                5u8
            });
            format!("{r:?}")
        });
        assert_eq!(outcome, "Ok(5)");
        assert_eq!((n, left), (GENERATIONS, vec![]), "after a value");
    }

    /// What `setsid()` in the callable returned: `Ok(true)` if the child
    /// then leads a new session, or its `errno`.
    fn setsid_in_the_callable(isolate: &Isolate) -> Result<bool, i32> {
        isolate
            .run(|| {
                // SAFETY: plain syscalls on the child itself.
                unsafe {
                    if libc::setsid() == -1 {
                        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
                    } else {
                        Ok(libc::getsid(0) == libc::getpid())
                    }
                }
            })
            .unwrap()
    }

    #[test]
    fn a_callable_cannot_start_a_session_while_it_leads_its_group() {
        assert_eq!(setsid_in_the_callable(&Isolate::new()), Err(libc::EPERM));
        assert_eq!(
            setsid_in_the_callable(&Isolate::new().kill_descendants(false)),
            Ok(true)
        );
    }

    #[test]
    fn without_the_option_descendants_are_left_running() {
        let (outcome, n, left) = survivors(|words| {
            joined_after_the_deadline(&Isolate::new().kill_descendants(false), words)
        });
        assert_eq!(outcome, "Err(CallableStatusUnknown(TimedOut(100ms)))");
        assert_eq!(n, GENERATIONS);
        assert_eq!(left.len(), GENERATIONS, "(the test kills them after)");
    }
}
