//! Every error, provoked and explained: each second-level variant that can
//! happen on this platform is caused for real, and the example says what it
//! means and what to do. Those that cannot happen here are named, with the
//! reason. The example fails if any scenario gives another error than the
//! one it provokes.
//!
//! Changes to the whole process (resource limits, credentials, signal
//! dispositions) are made inside an isolated call of their own, so this
//! program is untouched; the nested call's error comes back through it,
//! since errors are serializable.
//!
//! Run with `cargo run --example error-handling-complete`.

use std::time::Duration;

use mem_isolate::errors::{
    CallableDidNotExecuteError, CallableExecutedError, CallableStatusUnknownError,
};
use mem_isolate::{Isolate, IsolatedChild, MemIsolateError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The second-level variant's name, and what it means for the caller.
fn explain(e: &MemIsolateError) -> (&'static str, String) {
    use CallableDidNotExecuteError as NotRun;
    use CallableExecutedError as Ran;
    use CallableStatusUnknownError as Unknown;
    match e {
        // Level 1: the callable never started. Retrying is always safe.
        MemIsolateError::CallableDidNotExecute(e) => match e {
            NotRun::PipeCreationFailed(errno) => (
                "PipeCreationFailed",
                format!("no pipe ({errno}): the process is out of descriptors; free some, retry"),
            ),
            NotRun::WatchSetupFailed(errno) => (
                "WatchSetupFailed",
                format!("no readiness queue ({errno}): also descriptors, usually; retry"),
            ),
            NotRun::ForkFailed(errno) => (
                "ForkFailed",
                format!("fork failed ({errno}): process or memory limits; retry later"),
            ),
            NotRun::MemoryLimitUnsupported => (
                "MemoryLimitUnsupported",
                "memory limits cannot be enforced here; drop the option or accept the risk".into(),
            ),
            NotRun::ChildSetupFailed(errno) => (
                "ChildSetupFailed",
                format!("the child could not apply an option ({errno}); check the limit"),
            ),
            NotRun::SandboxUnsupported(why) => (
                "SandboxUnsupported",
                format!(
                    "the sandbox cannot be enforced here ({why}): run where it can, or ask for best_effort"
                ),
            ),
            other => ("(newer variant)", format!("did not run: {other}")),
        },
        // Level 1: the callable ran; its result did not arrive.
        MemIsolateError::CallableExecuted(e) => match e {
            Ran::SerializationFailed(msg) => (
                "SerializationFailed",
                format!("the value's Serialize failed in the child ({msg:?}): fix the impl"),
            ),
            Ran::DeserializationFailed(msg) => (
                "DeserializationFailed",
                format!("the bytes did not decode ({msg:?}): Serialize and Deserialize disagree"),
            ),
            Ran::ChildPipeWriteFailed(errno) => (
                "ChildPipeWriteFailed",
                format!(
                    "the child could not write its result ({errno}): did the callable close descriptors?"
                ),
            ),
            Ran::CallablePanicked(msg) => (
                "CallablePanicked",
                format!("the callable panicked: {msg:?}"),
            ),
            Ran::ResultTooLarge { limit } => (
                "ResultTooLarge",
                format!("the result exceeded the {limit}-byte cap; the child was killed"),
            ),
            Ran::ResultAlreadyTaken => (
                "ResultAlreadyTaken",
                "the handle had already returned its value".into(),
            ),
            other => ("(newer variant)", format!("ran, result lost: {other}")),
        },
        // Level 1: nobody knows how far the callable got.
        MemIsolateError::CallableStatusUnknown(e) => match e {
            Unknown::WaitFailed(errno) => (
                "WaitFailed",
                format!("waiting for the child failed ({errno}); ECHILD: something else reaped it"),
            ),
            Unknown::ParentPipeReadFailed(errno) => (
                "ParentPipeReadFailed",
                format!("reading the result failed ({errno})"),
            ),
            Unknown::CallableProcessDiedDuringExecution => (
                "CallableProcessDiedDuringExecution",
                "the callable ended the process with exit(0) before returning".into(),
            ),
            Unknown::UnexpectedChildExitStatus(code) => (
                "UnexpectedChildExitStatus",
                format!("the callable called exit({code}) before returning"),
            ),
            Unknown::ChildProcessKilledBySignal(sig) => (
                "ChildProcessKilledBySignal",
                format!("the child was killed by signal {sig} (a crash, an abort, the OOM killer)"),
            ),
            Unknown::TimedOut(after) => (
                "TimedOut",
                format!("no result within {after:?}; the child was killed"),
            ),
            Unknown::ResultStreamCorrupted => (
                "ResultStreamCorrupted",
                "something other than mem-isolate wrote to the result pipe; nothing was accepted"
                    .into(),
            ),
            other => ("(newer variant)", format!("status unknown: {other}")),
        },
    }
}

/// The error and its sources, as an error reporter prints them: each
/// level says only its own part.
fn chain(e: &MemIsolateError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// Runs `body` in an isolated child of its own, so that process-wide
/// changes it makes stay there.
fn sealed<T: Serialize + serde::de::DeserializeOwned>(body: impl FnOnce() -> T) -> T {
    Isolate::new()
        .timeout(Duration::from_secs(60))
        .run(body)
        .expect("the sealing call itself succeeds")
}

/// Fills every descriptor slot below `limit` and lowers `RLIMIT_NOFILE`
/// so that exactly `free` more can be made. Only in a sealed child.
fn exhaust_descriptors(limit: i32, free: u64) {
    let base = std::os::fd::IntoRawFd::into_raw_fd(std::fs::File::open("/dev/null").unwrap());
    loop {
        // SAFETY: dup of a valid descriptor; the copy is leaked on purpose.
        let fd = unsafe { libc::dup(base) };
        assert!(fd >= 0, "dup failed");
        if fd >= limit {
            // SAFETY: closing the descriptor just made.
            unsafe { libc::close(fd) };
            break;
        }
    }
    let n = libc::rlim_t::try_from(u64::try_from(limit).unwrap() + free).unwrap();
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

/// Closes every descriptor above stderr. Only in a child.
fn close_all_descriptors() {
    for fd in 3..4096 {
        // SAFETY: closing descriptors in the child only.
        unsafe { libc::close(fd) };
    }
}

/// A value whose `Serialize` refuses, with a message of its own.
struct Refuses;

impl Serialize for Refuses {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this widget cannot be sent"))
    }
}

impl<'de> Deserialize<'de> for Refuses {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        unreachable!("never decoded")
    }
}

/// A value whose `Deserialize` rejects what its `Serialize` wrote.
struct Lopsided;

impl Serialize for Lopsided {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(200)
    }
}

impl<'de> Deserialize<'de> for Lopsided {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u8::deserialize(d)?;
        Err(serde::de::Error::custom(format!("{v} is out of range")))
    }
}

type Outcome = Result<(), MemIsolateError>;

/// One way to provoke an error, and the variant it must give.
struct Scenario {
    what: &'static str,
    expect: &'static str,
    run: fn() -> Outcome,
}

fn scenarios() -> Vec<Scenario> {
    let mut all = vec![
        Scenario {
            what: "no descriptor left for the pipe",
            expect: "PipeCreationFailed",
            run: || {
                sealed(|| {
                    exhaust_descriptors(256, 0);
                    Isolate::new()
                        .spawn(|| 1u8)
                        .and_then(IsolatedChild::join)
                        .map(drop)
                })
            },
        },
        Scenario {
            what: "a process limit of zero",
            expect: "ForkFailed",
            run: || {
                sealed(|| {
                    // SAFETY: credentials and limits of the sealed child.
                    unsafe {
                        // Root ignores RLIMIT_NPROC: become nobody first.
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
                    Isolate::new().run(|| 1u8).map(drop)
                })
            },
        },
        Scenario {
            what: "a panic",
            expect: "CallablePanicked",
            run: || {
                Isolate::new()
                    .run(|| -> u8 { panic!("bad input") })
                    .map(drop)
            },
        },
        Scenario {
            what: "a Serialize impl that fails",
            expect: "SerializationFailed",
            run: || Isolate::new().run(|| Refuses).map(drop),
        },
        Scenario {
            what: "a Deserialize impl that refuses",
            expect: "DeserializationFailed",
            run: || Isolate::new().run(|| Lopsided).map(drop),
        },
        Scenario {
            what: "a callable closing its descriptors",
            expect: "ChildPipeWriteFailed",
            run: || {
                Isolate::new()
                    .run(|| {
                        close_all_descriptors();
                        vec![1u8; 64 * 1024] // too large for the shared page
                    })
                    .map(drop)
            },
        },
        Scenario {
            what: "a result over its cap",
            expect: "ResultTooLarge",
            run: || {
                Isolate::new()
                    .max_result_size(1024)
                    .run(|| vec![0u8; 1 << 20])
                    .map(drop)
            },
        },
        Scenario {
            what: "a handle joined twice",
            expect: "ResultAlreadyTaken",
            run: || {
                let mut child = Isolate::new().spawn(|| 9u8)?;
                while child.try_join()?.is_none() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                child.try_join().map(drop)
            },
        },
        Scenario {
            what: "SIGCHLD ignored, child exits",
            expect: "WaitFailed",
            run: || {
                sealed(|| {
                    // SAFETY: signal disposition of the sealed child only.
                    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
                    Isolate::new()
                        .run(|| -> u8 { std::process::exit(4) })
                        .map(drop)
                })
            },
        },
        Scenario {
            what: "an exit(0)",
            expect: "CallableProcessDiedDuringExecution",
            run: || {
                Isolate::new()
                    .run(|| -> u8 { std::process::exit(0) })
                    .map(drop)
            },
        },
        Scenario {
            what: "an exit(109)",
            expect: "UnexpectedChildExitStatus",
            run: || {
                Isolate::new()
                    .run(|| -> u8 { std::process::exit(109) })
                    .map(drop)
            },
        },
        Scenario {
            what: "an abort",
            expect: "ChildProcessKilledBySignal",
            run: || {
                Isolate::new()
                    .run(|| -> u8 { std::process::abort() })
                    .map(drop)
            },
        },
        Scenario {
            what: "a hang, with a timeout",
            expect: "TimedOut",
            run: || {
                Isolate::new()
                    .timeout(Duration::from_millis(200))
                    .run(|| -> u8 {
                        loop {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    })
                    .map(drop)
            },
        },
        Scenario {
            what: "bytes forged onto the pipe",
            expect: "ResultStreamCorrupted",
            run: || {
                // A spawned child's result always takes the pipe: the
                // callable writes a bogus frame to every pipe it holds.
                Isolate::new()
                    .spawn(|| {
                        for fd in 3..1024 {
                            // SAFETY: fstat into a zeroed struct, then a
                            // write to a descriptor that exists.
                            unsafe {
                                let mut st: libc::stat = std::mem::zeroed();
                                if libc::fstat(fd, &raw mut st) == 0
                                    && st.st_mode & libc::S_IFMT == libc::S_IFIFO
                                {
                                    let junk = *b"\xD4MI\x01\x04\x00\x00\x00junk";
                                    libc::write(fd, junk.as_ptr().cast(), junk.len());
                                }
                            }
                        }
                        1u8
                    })?
                    .join()
                    .map(drop)
            },
        },
    ];
    all.push(Scenario {
        what: "descriptors for the pipe only",
        expect: "WatchSetupFailed",
        run: || {
            sealed(|| {
                exhaust_descriptors(256, 2);
                Isolate::new()
                    .spawn(|| 1u8)
                    .and_then(IsolatedChild::join)
                    .map(drop)
            })
        },
    });
    if cfg!(target_vendor = "apple") {
        all.push(Scenario {
            what: "a memory limit on macOS",
            expect: "MemoryLimitUnsupported",
            run: || Isolate::new().memory_limit(1 << 30).run(|| 1u8).map(drop),
        });
    } else {
        all.push(Scenario {
            what: "a memory limit over the hard limit",
            expect: "ChildSetupFailed",
            run: || {
                sealed(|| {
                    let hard = libc::rlimit {
                        rlim_cur: 64 << 30,
                        rlim_max: 64 << 30,
                    };
                    // SAFETY: lowering the sealed child's own limit.
                    assert_eq!(
                        unsafe { libc::setrlimit(libc::RLIMIT_AS, &raw const hard) },
                        0
                    );
                    Isolate::new().memory_limit(128 << 30).run(|| 1u8).map(drop)
                })
            },
        });
    }
    #[cfg(target_os = "linux")]
    all.push(Scenario {
        what: "the parent's pipe swapped",
        expect: "ParentPipeReadFailed",
        run: || sealed(parent_pipe_read_failed),
    });
    all
}

/// In a sealed child: replaces a handle's read end, behind its back, with
/// a descriptor that cannot be read (found through `/proc`).
#[cfg(target_os = "linux")]
fn parent_pipe_read_failed() -> Outcome {
    let read_ends = || -> Vec<i32> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("pipe:"))
            })
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            // SAFETY: querying the flags of a descriptor that exists.
            .filter(
                |&fd| unsafe { libc::fcntl(fd, libc::F_GETFL) } & libc::O_ACCMODE == libc::O_RDONLY,
            )
            .collect()
    };
    let before = read_ends();
    let child = Isolate::new().spawn(|| {
        std::thread::sleep(Duration::from_millis(100));
        1u8
    })?;
    let new: Vec<i32> = read_ends()
        .into_iter()
        .filter(|fd| !before.contains(fd))
        .collect();
    let write_only = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    // SAFETY: swapping the handle's descriptor number for another open
    // file; the number stays valid for the handle's own close.
    assert!(unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&write_only), new[0]) } >= 0);
    child.join().map(drop)
}

/// The variants this platform cannot produce, and why.
fn not_here() -> Vec<(&'static str, &'static str)> {
    let mut none = Vec::new();
    if cfg!(target_vendor = "apple") {
        none.push((
            "ChildSetupFailed",
            "the only child setup that can fail is a memory limit, which macOS refuses before forking",
        ));
    } else {
        none.push((
            "MemoryLimitUnsupported",
            "this platform enforces memory limits (only macOS cannot)",
        ));
    }
    none.push((
        "SandboxUnsupported",
        "a sandbox needs the `sandbox` feature; tests/sandbox.rs provokes it (a kernel without Landlock or seccomp, made by a filter)",
    ));
    if !cfg!(target_os = "linux") {
        none.push((
            "ParentPipeReadFailed",
            "provoking it needs /proc to find the handle's descriptor (Linux)",
        ));
    }
    none
}

fn main() {
    let mut seen = Vec::new();
    for s in scenarios() {
        let outcome = (s.run)();
        let Err(e) = outcome else {
            panic!("{}: expected {}, the call succeeded", s.what, s.expect);
        };
        let (name, meaning) = explain(&e);
        assert_eq!(name, s.expect, "{}: {}", s.what, chain(&e));
        println!(
            "{:<36} {name}\n{:<36} {meaning}\n{:<36} chain: {}\n",
            s.what,
            "",
            "",
            chain(&e)
        );
        seen.push(name);
    }
    for (name, why) in not_here() {
        println!("{name:<36} not provoked here: {why}");
        seen.push(name);
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen.len(),
        19,
        "every second-level variant is covered: {seen:?}"
    );
    println!("\nall 19 second-level variants: provoked, or said why not");
}
