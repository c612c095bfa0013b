//! Every error variant, provoked for real: exhausted descriptors, refused
//! forks, signals, exits, closed descriptors, failing (de)serializers.
//!
//! Process-wide changes (resource limits, credentials, signal dispositions)
//! are made inside `common::sealed`, an isolated child of its own, so the
//! test process and the tests running beside it are untouched.

// The integration tests use the std API (panics, spawn, threads).
#![cfg(feature = "std")]

mod common;

use std::time::Duration;

use mem_isolate::errors::{
    CallableDidNotExecuteError as NotRun, CallableExecutedError as Ran,
    CallableStatusUnknownError as Unknown, Errno,
};
use mem_isolate::{Isolate, MemIsolateError, execute_in_isolated_process};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use common::exhaust_descriptors;

#[test]
fn pipe_creation_failed_when_no_descriptor_is_left() {
    // A spawned handle always streams through a pipe. (A blocking call on
    // Linux may need none: see the next test.)
    let r: Result<u8, MemIsolateError> = common::sealed(|| {
        exhaust_descriptors(256, 0);
        Isolate::new()
            .spawn(|| 1u8)
            .and_then(mem_isolate::IsolatedChild::join)
    });
    assert_eq!(
        r,
        Err(MemIsolateError::CallableDidNotExecute(
            NotRun::PipeCreationFailed(Errno::MFILE)
        ))
    );
}

#[cfg(target_os = "linux")]
#[test]
fn on_linux_a_blocking_call_needs_no_new_descriptor() {
    // The thread's spill file is made with its shared page, at its first
    // call; after that a blocking call opens nothing: no pipe, and no
    // pidfd without a deadline. With a deadline the pidfd cannot be made
    // either, and the parent checks on the child by the tick instead.
    type Calls = (
        Result<u8, MemIsolateError>,
        Result<Vec<u8>, MemIsolateError>,
        Result<Vec<u8>, MemIsolateError>,
    );
    // The sealed child's first call makes the child's own page and spill
    // file (its thread's first page is still its parent's), kept for the
    // thread's life.
    let r: Calls = common::sealed(|| {
        assert_eq!(execute_in_isolated_process(|| 0u8), Ok(0));
        exhaust_descriptors(256, 0);
        (
            execute_in_isolated_process(|| 1u8),
            execute_in_isolated_process(|| vec![7u8; 300_000]),
            Isolate::new()
                .timeout(Duration::from_secs(30))
                .run(|| vec![8u8; 300_000]),
        )
    });
    assert_eq!(r.0, Ok(1));
    assert_eq!(r.1, Ok(vec![7u8; 300_000]));
    assert_eq!(r.2, Ok(vec![8u8; 300_000]));
}

#[cfg(target_os = "linux")]
fn limit_file_size(soft: libc::rlim_t, hard: libc::rlim_t) {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: lowering this (isolated) process's own limit.
    assert_eq!(
        unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &raw const lim) },
        0
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_file_size_limit_does_not_stop_a_large_result() {
    // Writes to the spill file count against RLIMIT_FSIZE (writes to a
    // pipe do not). Under a limit the parent sends results down a pipe;
    // a callable that lowers its own soft limit gets it raised back
    // before its result is written.
    let under_a_hard_limit: (Result<u8, MemIsolateError>, Result<bool, MemIsolateError>) =
        common::sealed(|| {
            limit_file_size(256 * 1024, 256 * 1024);
            (
                execute_in_isolated_process(|| 1u8),
                execute_in_isolated_process(|| vec![3u8; 1 << 20]).map(|v| v == vec![3u8; 1 << 20]),
            )
        });
    assert_eq!(under_a_hard_limit, (Ok(1), Ok(true)));
    let lowered_inside = Isolate::new()
        .run(|| {
            limit_file_size(64 * 1024, libc::RLIM_INFINITY);
            vec![4u8; 1 << 20]
        })
        .map(|v| v == vec![4u8; 1 << 20]);
    assert_eq!(lowered_inside, Ok(true));
    // Both limits lowered: the write past them fails, and says so. (After
    // a small result, so that this call spills rather than taking a pipe.)
    assert_eq!(Isolate::new().run(|| 0u8), Ok(0));
    let both_lowered = Isolate::new()
        .run(|| {
            limit_file_size(64 * 1024, 64 * 1024);
            vec![4u8; 1 << 20]
        })
        .map(|v| v.len());
    assert_eq!(
        both_lowered,
        Err(MemIsolateError::CallableExecuted(
            Ran::ChildPipeWriteFailed(Errno::FBIG)
        ))
    );
}

#[test]
fn watch_setup_failed_when_only_the_pipe_fits() {
    // Two free slots: the pipe takes both. The handle's readiness queue
    // (epoll on Linux, kqueue elsewhere), made before the fork, finds none.
    let r: Result<u8, MemIsolateError> = common::sealed(|| {
        exhaust_descriptors(256, 2);
        Isolate::new()
            .spawn(|| 1u8)
            .and_then(mem_isolate::IsolatedChild::join)
    });
    assert_eq!(
        r,
        Err(MemIsolateError::CallableDidNotExecute(
            NotRun::WatchSetupFailed(Errno::MFILE)
        ))
    );
}

/// In a sealed child: makes an isolated call with a process limit of zero,
/// so that `fork` fails. Root is exempt from `RLIMIT_NPROC`, so it becomes
/// nobody first.
fn call_with_no_process_left() -> Result<u8, MemIsolateError> {
    // SAFETY: credential and limit changes, only ever in a sealed child.
    unsafe {
        if libc::getuid() == 0 {
            assert_eq!(libc::setgid(65534), 0);
            assert_eq!(libc::setuid(65534), 0);
        }
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NPROC, &raw const zero), 0);
    }
    execute_in_isolated_process(|| 1u8)
}

#[test]
fn fork_failed_under_a_process_limit() {
    let r: Result<u8, MemIsolateError> = common::sealed(call_with_no_process_left);
    assert_eq!(
        r,
        Err(MemIsolateError::CallableDidNotExecute(NotRun::ForkFailed(
            Errno::AGAIN
        )))
    );
}

#[cfg(not(target_vendor = "apple"))]
#[test]
fn child_setup_failed_when_the_memory_limit_exceeds_the_hard_limit() {
    let r: Result<u8, MemIsolateError> = common::sealed(|| {
        let hard = libc::rlimit {
            rlim_cur: 64 << 30,
            rlim_max: 64 << 30,
        };
        // SAFETY: lowering this sealed process's own limit.
        assert_eq!(
            unsafe { libc::setrlimit(libc::RLIMIT_AS, &raw const hard) },
            0
        );
        Isolate::new().memory_limit(128 << 30).run(|| 1u8)
    });
    assert_eq!(
        r,
        Err(MemIsolateError::CallableDidNotExecute(
            NotRun::ChildSetupFailed(Errno::INVAL)
        ))
    );
}

#[cfg(target_vendor = "apple")]
#[test]
fn memory_limit_is_refused_where_it_cannot_be_enforced() {
    let r = Isolate::new().memory_limit(1 << 30).run(|| 1u8);
    assert_eq!(
        r,
        Err(MemIsolateError::CallableDidNotExecute(
            NotRun::MemoryLimitUnsupported
        ))
    );
}

/// Serializes a prefix bigger than the staging buffer, then fails.
#[derive(Debug)]
struct FailsHalfWay;

impl Serialize for FailsHalfWay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeTuple};
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&vec![0xAB_u8; 1 << 20])?;
        let _ = &mut t;
        Err(S::Error::custom("refusing half way"))
    }
}

impl<'de> Deserialize<'de> for FailsHalfWay {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        unreachable!("a failed serialization must never be decoded")
    }
}

#[test]
fn serialization_failed_even_after_partial_output() {
    let e = execute_in_isolated_process(|| FailsHalfWay).unwrap_err();
    // The user's own message, as 0.1 gave it.
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(Ran::SerializationFailed("refusing half way".into()))
    );
}

/// Writes a `u8` that is not a valid `bool`.
#[derive(Debug)]
struct Asymmetric;

impl Serialize for Asymmetric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(7)
    }
}

impl<'de> Deserialize<'de> for Asymmetric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bool::deserialize(d).map(|_| Asymmetric)
    }
}

#[test]
fn deserialization_failed_when_the_types_disagree() {
    let e = execute_in_isolated_process(|| Asymmetric).unwrap_err();
    // No custom message here: postcard's own description of the bytes.
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(Ran::DeserializationFailed(
            postcard::Error::DeserializeBadBool
                .to_string()
                .as_str()
                .into()
        ))
    );
}

#[test]
fn child_pipe_write_failed_when_the_callable_closes_its_descriptors() {
    let e = execute_in_isolated_process(|| {
        for fd in 3..4096 {
            // SAFETY: closing descriptors in the child only.
            unsafe { libc::close(fd) };
        }
        vec![5u8; 64 * 1024] // too big for the shared page: it must take the pipe
    })
    .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(Ran::ChildPipeWriteFailed(Errno::BADF))
    );
}

#[test]
fn callable_panicked() {
    let e = execute_in_isolated_process(|| -> u8 { panic!("on purpose") }).unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(Ran::CallablePanicked("on purpose".into()))
    );
}

#[test]
fn result_too_large_for_the_callers_buffer() {
    let mut buffer = [0u8; 300];
    let e =
        mem_isolate::execute_in_isolated_process_with_buffer(&mut buffer, || vec![u64::MAX; 100])
            .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(Ran::ResultTooLarge { limit: 300 })
    );
}

/// A value whose serialization never ends on its own: `u64::MAX` after
/// `u64::MAX` (ten bytes each), counting each one in a word shared with
/// the parent (an address from `common::SharedWords`), until the
/// serializer refuses.
struct Endless(usize);

impl Serialize for Endless {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(usize::MAX)?;
        loop {
            common::shared_word(self.0).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            t.serialize_element(&u64::MAX)?;
        }
    }
}

impl<'de> Deserialize<'de> for Endless {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("never decoded"))
    }
}

#[test]
fn a_result_past_the_cap_is_cut_off_in_the_child_too() {
    // Blocking calls on Linux spill to a file nobody reads until the child
    // exits, so the child itself stops at the cap; through a pipe the
    // parent stops reading and kills the child. Either way the result is
    // too large, the child stops soon after the cap (well inside the
    // deadline), and the parent returns.
    const CAP: usize = 1 << 20;
    let words = common::SharedWords::new();
    let count = || common::shared_word(words.addr(0)).swap(0, std::sync::atomic::Ordering::Relaxed);
    let isolate = Isolate::new()
        .max_result_size(CAP)
        .timeout(Duration::from_secs(60));
    let address = words.addr(0);
    let endless = move || Endless(address);
    // A small result first: the thread's next call then spills (after a
    // large one it would stream through a pipe).
    assert_eq!(isolate.run(|| 0u8), Ok(0));
    let blocking = isolate.run(endless);
    let blocking_count = count();
    let spawned = isolate.spawn(endless).unwrap().join();
    let spawned_count = count();
    let too_large = MemIsolateError::CallableExecuted(Ran::ResultTooLarge { limit: CAP });
    assert_eq!(blocking.map(|_| ()), Err(too_large.clone()));
    assert_eq!(spawned.map(|_| ()), Err(too_large));
    // Ten bytes an element. Past the cap, a spilling child writes at most
    // one more frame; a piping one at most fills the pipe (1 MiB) and its
    // staging buffer before it is killed.
    for (how, n) in [("blocking", blocking_count), ("spawned", spawned_count)] {
        let bytes = n * 10;
        assert!(bytes > CAP, "{how}: only {n} elements");
        assert!(bytes < CAP + (4 << 20), "{how}: {n} elements serialized");
    }
}

#[test]
fn result_already_taken_from_a_handle() {
    let mut child = Isolate::new().spawn(|| 9u8).unwrap();
    let value = loop {
        if let Some(v) = child.try_join().unwrap() {
            break v;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(value, 9);
    assert_eq!(
        child.try_join(),
        Err(MemIsolateError::CallableExecuted(Ran::ResultAlreadyTaken))
    );
}

#[test]
fn unexpected_child_exit_status_when_the_callable_exits() {
    let e = execute_in_isolated_process(|| -> u8 { std::process::exit(3) }).unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableStatusUnknown(Unknown::UnexpectedChildExitStatus(3))
    );
}

#[test]
fn callable_process_died_during_execution_when_it_exits_zero() {
    let e = execute_in_isolated_process(|| -> u8 { std::process::exit(0) }).unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableStatusUnknown(Unknown::CallableProcessDiedDuringExecution)
    );
}

#[test]
fn child_process_killed_by_signal() {
    let e = execute_in_isolated_process(|| -> u8 {
        // SAFETY: none; a deliberate crash, in the child.
        unsafe { std::ptr::without_provenance_mut::<u8>(16).write_volatile(1) };
        0
    })
    .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableStatusUnknown(Unknown::ChildProcessKilledBySignal(libc::SIGSEGV))
    );

    let e = execute_in_isolated_process(|| -> u8 { std::process::abort() }).unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableStatusUnknown(Unknown::ChildProcessKilledBySignal(libc::SIGABRT))
    );
}

#[test]
fn timed_out() {
    let e = Isolate::new()
        .timeout(Duration::from_millis(100))
        .run(|| -> u8 {
            loop {
                std::hint::spin_loop();
            }
        })
        .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableStatusUnknown(Unknown::TimedOut(Duration::from_millis(100)))
    );
}

#[test]
fn wait_failed_when_sigchld_is_ignored_and_the_child_dies() {
    // With SIGCHLD ignored the kernel reaps children itself, so the exit
    // status of a child that delivered nothing is lost.
    let r: Result<u8, MemIsolateError> = common::sealed(|| {
        // SAFETY: signal disposition of the sealed child only.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        execute_in_isolated_process(|| -> u8 { std::process::exit(4) })
    });
    assert_eq!(
        r,
        Err(MemIsolateError::CallableStatusUnknown(Unknown::WaitFailed(
            Errno::CHILD
        )))
    );
}

#[test]
fn a_value_survives_sigchld_being_ignored() {
    let r: Result<Vec<u8>, MemIsolateError> = common::sealed(|| {
        // SAFETY: signal disposition of the sealed child only.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        execute_in_isolated_process(|| vec![3u8; 200_000])
    });
    assert_eq!(r, Ok(vec![3u8; 200_000]));
}

#[cfg(target_os = "linux")]
#[test]
fn parent_pipe_read_failed_when_the_parents_pipe_is_closed_under_it() {
    // Fault injection on the parent side: replace the result pipe's read
    // end, behind the handle's back, with a descriptor that cannot be read
    // (in a sealed child, where no other thread uses descriptors).
    let r: Result<u8, MemIsolateError> = common::sealed(|| {
        let pipes_before = pipe_fds();
        let child = Isolate::new()
            .spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                1u8
            })
            .unwrap();
        // The parent holds only the read end of the result pipe (checked
        // by opening mode, in case that ever changes).
        let new: Vec<i32> = pipe_fds()
            .into_iter()
            .filter(|fd| !pipes_before.contains(fd))
            // SAFETY: querying the flags of a descriptor that exists.
            .filter(
                |&fd| unsafe { libc::fcntl(fd, libc::F_GETFL) } & libc::O_ACCMODE == libc::O_RDONLY,
            )
            .collect();
        assert_eq!(new.len(), 1, "exactly one new read end: the result pipe's");
        let write_only = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        // SAFETY: deliberately swapping the handle's descriptor; the number
        // stays open, so the handle's eventual close is still valid.
        assert!(unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&write_only), new[0]) } >= 0);
        child.join()
    });
    assert_eq!(
        r,
        Err(MemIsolateError::CallableStatusUnknown(
            Unknown::ParentPipeReadFailed(Errno::BADF)
        ))
    );
}

#[cfg(target_os = "linux")]
fn pipe_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("pipe:"))
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

#[test]
fn errors_are_serializable_and_clone() {
    let e = execute_in_isolated_process(|| -> u8 { std::process::exit(9) }).unwrap_err();
    let bytes = postcard::to_allocvec(&e).unwrap();
    let back: MemIsolateError = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, e.clone());
    fn is_send_sync<T: Send + Sync + 'static>(_: &T) {}
    is_send_sync(&e);
    // The first level says only its own part; the code is the second's.
    let MemIsolateError::CallableStatusUnknown(second) = &e else {
        panic!("{e:?}")
    };
    assert!(second.to_string().contains("status 9"), "{second}");
}

#[test]
fn an_error_carrying_an_impossible_errno_does_not_deserialize() {
    // A serialized error from elsewhere is input too: an errno rustix would
    // panic on must be refused, not passed on.
    let good = MemIsolateError::CallableDidNotExecute(NotRun::ForkFailed(Errno::AGAIN));
    let mut bytes = postcard::to_allocvec(&good).unwrap();
    assert_eq!(postcard::from_bytes::<MemIsolateError>(&bytes), Ok(good));
    // The errno is the last field: a zigzag varint; replace it with 0.
    let last = bytes.len() - 1;
    bytes[last] = 0;
    assert!(postcard::from_bytes::<MemIsolateError>(&bytes).is_err());
}

#[test]
fn a_reused_result_descriptor_number_never_receives_the_result() {
    // The callable closes every descriptor, then opens a file so often that
    // its copies take every low number, the result pipe's old one among
    // them. The result must not be written into that file.
    let path = std::env::temp_dir().join(format!("mem-isolate-reuse-{}", std::process::id()));
    let file_path = path.clone();
    let e = execute_in_isolated_process(move || {
        for fd in 3..4096 {
            // SAFETY: closing descriptors in the child only.
            unsafe { libc::close(fd) };
        }
        let file = std::fs::File::create(&file_path).unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
        for _ in 0..1024 {
            // SAFETY: duplicating a descriptor this child owns.
            if unsafe { libc::dup(fd) } < 0 {
                break;
            }
        }
        vec![5u8; 64 * 1024] // too big for the shared page: it must take the pipe
    })
    .unwrap_err();
    let written = std::fs::metadata(&path).map(|m| m.len());
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(Ran::ChildPipeWriteFailed(Errno::BADF))
    );
    assert_eq!(
        written.unwrap(),
        0,
        "the result went into the callable's file"
    );
}

/// A value whose `Serialize` fails deep inside a structure, with a message
/// of its own.
#[derive(Debug, Serialize)]
struct Order {
    id: u32,
    lines: Vec<Option<Widget>>,
}

#[derive(Debug)]
struct Widget(&'static str);

impl Serialize for Widget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        if self.0.is_empty() {
            return Err(S::Error::custom(format_args!(
                "widget without a name (line {})",
                2
            )));
        }
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Order {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        unreachable!("a failed serialization must never be decoded")
    }
}

#[test]
fn a_users_serialize_error_keeps_its_message_from_any_depth() {
    let e = execute_in_isolated_process(|| Order {
        id: 7,
        lines: vec![Some(Widget("bolt")), None, Some(Widget(""))],
    })
    .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(Ran::SerializationFailed(
            "widget without a name (line 2)".into()
        ))
    );
    // The same from a spawned child, whose stream always takes the pipe.
    let spawned = Isolate::new()
        .spawn(|| Order {
            id: 7,
            lines: vec![Some(Widget(""))],
        })
        .unwrap()
        .join()
        .unwrap_err();
    assert_eq!(spawned, e);
}

/// Fails to serialize with a message longer than an `ErrorText` holds, in
/// three-byte characters.
#[derive(Debug)]
struct Verbose;

impl Serialize for Verbose {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        Err(S::Error::custom("€".repeat(100)))
    }
}

impl<'de> Deserialize<'de> for Verbose {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        unreachable!("a failed serialization must never be decoded")
    }
}

#[test]
fn a_long_serialize_message_is_cut_on_a_character_boundary() {
    use mem_isolate::errors::ERROR_TEXT_CAPACITY;
    let e = execute_in_isolated_process(|| Verbose).unwrap_err();
    let MemIsolateError::CallableExecuted(Ran::SerializationFailed(text)) = e else {
        panic!("{e:?}")
    };
    // 96 is a multiple of three: exactly 32 whole characters fit.
    assert_eq!(text.len(), ERROR_TEXT_CAPACITY);
    assert!(text.chars().all(|c| c == '€'));
}

/// Deserializes only values up to nine, saying why otherwise.
#[derive(Debug, Serialize)]
struct Digit(u8);

impl<'de> Deserialize<'de> for Digit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u8::deserialize(d)?;
        if v > 9 {
            return Err(serde::de::Error::custom(format_args!("{v} is not a digit")));
        }
        Ok(Digit(v))
    }
}

#[test]
fn a_users_deserialize_error_keeps_its_message_from_any_depth() {
    let e =
        execute_in_isolated_process(|| (1u8, vec![Some(Digit(3)), Some(Digit(42))])).unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(Ran::DeserializationFailed("42 is not a digit".into()))
    );
    // Without allocation too: the same wrapper decodes the caller's buffer.
    let mut buffer = [0u8; 64];
    let e = mem_isolate::execute_in_isolated_process_with_buffer(&mut buffer, || Digit(10))
        .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(Ran::DeserializationFailed("10 is not a digit".into()))
    );
}

#[test]
fn no_exit_code_is_reserved() {
    // 3 and 4 were 0.1's codes for its own failed close and write, 109 and
    // 112 this crate's until now (a failed write, an unwound child); 1 and
    // 255 bound the range. Each is the callable's own, blocking or
    // spawned, whether it exits before or after writing part of its value.
    for code in [1, 3, 4, 109, 112, 255] {
        let blocking = execute_in_isolated_process(move || -> u8 { std::process::exit(code) });
        let spawned = Isolate::new()
            .spawn(move || -> u8 { std::process::exit(code) })
            .unwrap()
            .join();
        let mid_value = execute_in_isolated_process(move || ExitsHalfWay(code));
        let want = MemIsolateError::CallableStatusUnknown(Unknown::UnexpectedChildExitStatus(code));
        assert_eq!(blocking, Err(want.clone()), "exit({code})");
        assert_eq!(spawned, Err(want.clone()), "spawned exit({code})");
        assert_eq!(mid_value.map(|_| ()), Err(want), "exit({code}) half way");
    }
}

/// Serializes more than the staging buffer holds, then exits with its code.
struct ExitsHalfWay(i32);

impl Serialize for ExitsHalfWay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&vec![1u8; 300_000])?;
        std::process::exit(self.0)
    }
}

impl<'de> Deserialize<'de> for ExitsHalfWay {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        unreachable!("the child exits before finishing its value")
    }
}

#[test]
fn a_spawned_child_reports_its_own_failed_write_too() {
    // A spawned child has no shared result page: it reports through a page
    // mapped for the call.
    let e = Isolate::new()
        .spawn(|| {
            for fd in 3..4096 {
                // SAFETY: closing descriptors in the child only.
                unsafe { libc::close(fd) };
            }
            7u8
        })
        .unwrap()
        .join()
        .unwrap_err();
    assert_eq!(
        e,
        MemIsolateError::CallableExecuted(Ran::ChildPipeWriteFailed(Errno::BADF))
    );
}

/// The chain from `e` down, each level's Display.
fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut levels = vec![e.to_string()];
    let mut at = e.source();
    while let Some(next) = at {
        levels.push(next.to_string());
        at = next.source();
    }
    levels
}

/// The deepest error in `e`'s chain.
fn last_source<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut at = e;
    while let Some(next) = at.source() {
        at = next;
    }
    at
}

#[test]
fn each_level_says_only_its_own_part_and_the_chain_ends_at_the_errno() {
    // Real errors, one of each level-two shape: an errno, an errno from
    // the child's own report, a code, a message, and none.
    let fork_failed: Result<u8, MemIsolateError> = common::sealed(call_with_no_process_left);
    let write_failed = execute_in_isolated_process(|| {
        for fd in 3..4096 {
            // SAFETY: closing descriptors in the child only.
            unsafe { libc::close(fd) };
        }
        vec![5u8; 64 * 1024]
    })
    .map(|_| 0u8);
    let with_errno = [
        (fork_failed.unwrap_err(), Errno::AGAIN),
        (write_failed.unwrap_err(), Errno::BADF),
    ];
    for (e, errno) in &with_errno {
        let levels = chain(e);
        assert_eq!(levels.len(), 3, "{levels:?}");
        let last = last_source(e).downcast_ref::<Errno>();
        assert_eq!(last, Some(errno), "{levels:?}");
        assert_eq!(levels[2], errno.to_string());
        assert_no_level_repeats_the_next(&levels);
    }

    let exit = execute_in_isolated_process(|| -> u8 { std::process::exit(3) }).unwrap_err();
    let panic = execute_in_isolated_process(|| -> u8 { panic!("my own words") }).unwrap_err();
    let ser = execute_in_isolated_process(|| Verbose).unwrap_err();
    for e in [&exit, &panic, &ser] {
        let levels = chain(e);
        assert_eq!(levels.len(), 2, "{levels:?}");
        assert_no_level_repeats_the_next(&levels);
    }
    // The level that carries the detail shows it, once.
    assert!(chain(&exit)[1].contains("status 3"));
    assert!(chain(&panic)[1].contains("my own words"));

    // Printed whole, as an error reporter or anyhow's `{:#}` does, each
    // part appears once.
    let printed = chain(&with_errno[0].0).join(": ");
    assert_eq!(printed.matches("fork failed").count(), 1, "{printed}");
    assert_eq!(
        printed.matches(&Errno::AGAIN.to_string()).count(),
        1,
        "{printed}"
    );
}

fn assert_no_level_repeats_the_next(levels: &[String]) {
    for pair in levels.windows(2) {
        assert!(
            !pair[0].contains(&pair[1]),
            "{:?} repeats its source {:?}",
            pair[0],
            pair[1]
        );
    }
}
