//! The sandbox (feature `sandbox`), provoked for real: a listener on
//! 127.0.0.1 that a sandboxed callable tries to reach, a real `Command`, a
//! real file in a temporary directory, a real `SIGSYS`, and the escape
//! attempts `compute_only` must refuse while the parent lives on. Every
//! way a result travels is tried under `compute_only` and under all the
//! deny policies at once.
//!
//! Where the kernel (or an emulator: qemu-user, which runs the aarch64
//! tests, does not emulate seccomp) cannot enforce a policy, each test
//! says so on stderr and skips, as the sandbox then refuses every call
//! (`SandboxUnsupported`); with `MEM_ISOLATE_REQUIRE_SANDBOX` set (the
//! native CI runs) such a skip fails instead.
#![cfg(feature = "sandbox")]

mod common;

use mem_isolate::{Isolate, Sandbox};

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::io::{ErrorKind, Write as _};
    use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    use mem_isolate::errors::{
        CallableDidNotExecuteError as NotRun, CallableExecutedError as Ran,
        CallableStatusUnknownError as Unknown, SandboxUnsupported,
    };
    use mem_isolate::{Isolate, MemIsolateError, Sandbox};

    use super::common::sealed;

    /// `isolate`, if this system enforces its sandbox; `None`, said on
    /// stderr, where it cannot (qemu-user, an old kernel). Learned by a
    /// real call, which the sandbox refuses before forking if it cannot be
    /// enforced.
    fn enforced(test: &str, isolate: Isolate) -> Option<Isolate> {
        match isolate.run(|| 1u8) {
            Ok(1) => Some(isolate),
            Err(MemIsolateError::CallableDidNotExecute(NotRun::SandboxUnsupported(why))) => {
                assert!(
                    std::env::var_os("MEM_ISOLATE_REQUIRE_SANDBOX").is_none(),
                    "{test}: the sandbox is required here, but: {why}"
                );
                eprintln!("{test}: skipped, this system cannot enforce the sandbox: {why}");
                None
            }
            other => panic!("{test}: a trivial sandboxed call gave {other:?}"),
        }
    }

    /// The errno in an I/O error (serializable, unlike its kind).
    fn os(e: std::io::Error) -> i32 {
        e.raw_os_error().unwrap_or(-1)
    }

    /// The errno of the last failed libc call, in the child.
    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    fn compute_only() -> Sandbox {
        Sandbox::new().compute_only()
    }

    fn all_denied() -> Sandbox {
        Sandbox::new()
            .deny_network()
            .deny_exec()
            .read_only_filesystem()
    }

    /// A unique directory under the system's temporary directory, removed
    /// on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(what: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "mem-isolate-sandbox-{what}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    // ---- deny_network ---------------------------------------------------

    #[test]
    fn deny_network_refuses_a_connection_to_a_listener_on_loopback() {
        let Some(isolate) = enforced(
            "deny_network",
            Isolate::new().sandbox(Sandbox::new().deny_network()),
        ) else {
            return;
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let tried = isolate
            .run(move || std::net::TcpStream::connect(addr).map(|_| ()).map_err(os))
            .unwrap();
        assert_eq!(tried, Err(libc::EPERM));
        // Nobody knocked.
        listener.set_nonblocking(true).unwrap();
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        // The parent still reaches it, and so does a plain call after.
        assert!(std::net::TcpStream::connect(addr).is_ok());
        let plain = Isolate::new()
            .run(move || std::net::TcpStream::connect(addr).is_ok())
            .unwrap();
        assert!(plain);
    }

    #[test]
    fn deny_network_refuses_connect_and_bind_on_an_inherited_tcp_socket() {
        let Some(isolate) = enforced(
            "inherited socket",
            Isolate::new().sandbox(Sandbox::new().deny_network()),
        ) else {
            return;
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        // Made before the call: the child inherits it, and the filter on
        // `socket()` never sees it.
        // SAFETY: a new socket, owned below.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(raw >= 0);
        // SAFETY: `raw` is the socket just made.
        let socket = unsafe { OwnedFd::from_raw_fd(raw) };
        let fd = socket.as_raw_fd();
        let sockaddr = |port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let (connect, bind) = isolate
            .run(move || {
                let to = sockaddr(port);
                // SAFETY: a valid address of `len` bytes.
                let c = unsafe { libc::connect(fd, (&raw const to).cast(), len) };
                let connect = if c == 0 { 0 } else { errno() };
                let any = sockaddr(0);
                // SAFETY: as above.
                let b = unsafe { libc::bind(fd, (&raw const any).cast(), len) };
                let bind = if b == 0 { 0 } else { errno() };
                (connect, bind)
            })
            .unwrap();
        assert_eq!((connect, bind), (libc::EACCES, libc::EACCES));
        listener.set_nonblocking(true).unwrap();
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        // The parent's socket is its own: it still connects.
        let to = sockaddr(port);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::connect(fd, (&raw const to).cast(), len) }, 0);
        drop(socket);
    }

    #[test]
    fn deny_network_leaves_unix_sockets() {
        let Some(isolate) = enforced(
            "unix sockets",
            Isolate::new().sandbox(Sandbox::new().deny_network()),
        ) else {
            return;
        };
        let echoed = isolate
            .run(|| {
                use std::io::Read as _;
                let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
                a.write_all(b"ping").unwrap();
                let mut got = [0u8; 4];
                b.read_exact(&mut got).unwrap();
                got
            })
            .unwrap();
        assert_eq!(&echoed, b"ping");
    }

    // ---- deny_exec ------------------------------------------------------

    #[test]
    fn deny_exec_refuses_a_command_and_the_parent_still_runs_one() {
        let Some(isolate) = enforced(
            "deny_exec",
            Isolate::new().sandbox(Sandbox::new().deny_exec()),
        ) else {
            return;
        };
        let ran = isolate
            .run(|| {
                std::process::Command::new("true")
                    .status()
                    .map(|s| s.success())
                    .map_err(os)
            })
            .unwrap();
        assert_eq!(ran, Err(libc::EPERM));
        assert!(
            std::process::Command::new("true")
                .status()
                .unwrap()
                .success()
        );
        let plain = Isolate::new()
            .run(|| {
                std::process::Command::new("true")
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .unwrap();
        assert!(plain);
    }

    #[test]
    fn a_process_the_callable_forks_is_bound_by_the_same_policy() {
        let Some(isolate) = enforced(
            "forked",
            Isolate::new().sandbox(Sandbox::new().deny_exec().deny_network()),
        ) else {
            return;
        };
        // The grandchild is an isolated call of its own, made from inside
        // the sandboxed callable: forking is allowed under deny_exec.
        let inner = isolate
            .run(|| {
                Isolate::new().run(|| {
                    let exec = std::process::Command::new("true")
                        .status()
                        .map_err(os)
                        .err();
                    let net = std::net::TcpListener::bind("127.0.0.1:0").map_err(os).err();
                    (exec, net)
                })
            })
            .unwrap()
            .unwrap();
        assert_eq!(inner, (Some(libc::EPERM), Some(libc::EPERM)));
    }

    /// Tries to reach into a process of its own (a grandchild, which
    /// Yama's `ptrace_scope` 1 still lets it trace): `ptrace` attach,
    /// `process_vm_writev`, and an `io_uring`. Each errno, or 0.
    fn reach_into_a_child() -> (i32, i32, i32) {
        // SAFETY (all below): plain system calls with valid arguments; the
        // grandchild only waits to be killed.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                loop {
                    libc::pause();
                }
            }
            let ptrace = or_errno(libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0));
            let mut byte = 0u8;
            let local = libc::iovec {
                iov_base: (&raw mut byte).cast(),
                iov_len: 1,
            };
            let remote = libc::iovec {
                iov_base: (&raw mut byte).cast(),
                iov_len: 1,
            };
            let vm_write =
                or_errno(
                    libc::process_vm_writev(pid, &raw const local, 1, &raw const remote, 1, 0)
                        as libc::c_long,
                );
            let mut params = [0u8; 120];
            let uring = or_errno(libc::syscall(
                libc::SYS_io_uring_setup,
                4,
                params.as_mut_ptr(),
            ));
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            (ptrace, vm_write, uring)
        }
    }

    #[test]
    fn deny_policies_refuse_reaching_into_other_processes() {
        let Some(isolate) = enforced("reach", Isolate::new().sandbox(Sandbox::new().deny_exec()))
        else {
            return;
        };
        // Without a sandbox each succeeds (or io_uring is missing, where
        // the kernel lacks it), so the refusals below are the sandbox's.
        let free = Isolate::new().run(reach_into_a_child).unwrap();
        assert_eq!((free.0, free.1), (0, 0), "without a sandbox");
        let denied = isolate.run(reach_into_a_child).unwrap();
        assert_eq!(denied, (libc::EPERM, libc::EPERM, libc::EPERM));
    }

    // ---- read_only_filesystem -------------------------------------------

    #[test]
    fn read_only_filesystem_refuses_every_write_to_a_real_file_and_allows_reading() {
        let Some(isolate) = enforced(
            "read-only",
            Isolate::new().sandbox(Sandbox::new().read_only_filesystem()),
        ) else {
            return;
        };
        let dir = TempDir::new("ro");
        let existing = dir.0.join("existing.txt");
        std::fs::write(&existing, b"original").unwrap();
        let (d, e) = (dir.0.clone(), existing.clone());
        let outcome = isolate
            .run(move || {
                let kind = |r: std::io::Result<()>| r.err().map(os);
                let read = std::fs::read(&e).ok();
                let create = kind(std::fs::write(d.join("new.txt"), b"x"));
                let overwrite = kind(std::fs::write(&e, b"changed"));
                let append = kind(
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(&e)
                        .map(|_| ()),
                );
                let truncate = kind(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .open(&e)
                        .map(|_| ()),
                );
                let remove = kind(std::fs::remove_file(&e));
                let rename = kind(std::fs::rename(&e, d.join("moved.txt")));
                let mkdir = kind(std::fs::create_dir(d.join("sub")));
                (
                    read,
                    [create, overwrite, append, truncate, remove, rename, mkdir],
                )
            })
            .unwrap();
        assert_eq!(outcome.0.as_deref(), Some(&b"original"[..]));
        for (what, result) in [
            "create",
            "overwrite",
            "append",
            "truncate",
            "remove",
            "rename",
            "mkdir",
        ]
        .iter()
        .zip(outcome.1)
        {
            assert_eq!(result, Some(libc::EACCES), "{what}");
        }
        assert_eq!(std::fs::read(&existing).unwrap(), b"original");
        assert!(!dir.0.join("new.txt").exists());
        // The parent writes where the child could not.
        std::fs::write(dir.0.join("new.txt"), b"parent").unwrap();
    }

    // ---- compute_only ---------------------------------------------------

    #[test]
    fn compute_only_allocates_computes_and_starts_threads() {
        let Some(isolate) = enforced("compute_only", Isolate::new().sandbox(compute_only())) else {
            return;
        };
        let sums = isolate
            .run(|| {
                let map: std::collections::HashMap<u64, u64> =
                    (0..10_000).map(|i| (i, i * i)).collect();
                let threads: Vec<_> = (0..4u64)
                    .map(|t| std::thread::spawn(move || (t * 1000..(t + 1) * 1000).sum::<u64>()))
                    .collect();
                let parts: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
                (map.values().sum::<u64>(), parts)
            })
            .unwrap();
        assert_eq!(
            sums,
            ((0..10_000u64).map(|i| i * i).sum(), (0..4000u64).sum())
        );
    }

    #[test]
    fn threads_the_callable_starts_inherit_the_policy() {
        let Some(isolate) = enforced("threads", Isolate::new().sandbox(compute_only())) else {
            return;
        };
        let in_thread = isolate
            .run(|| {
                std::thread::spawn(|| {
                    let open = std::fs::File::open("/dev/null").map_err(os).err();
                    let net = std::net::TcpListener::bind("127.0.0.1:0").map_err(os).err();
                    (open, net)
                })
                .join()
                .unwrap()
            })
            .unwrap();
        assert_eq!(in_thread, (Some(libc::EPERM), Some(libc::EPERM)));
        // Under a deny policy too (Landlock and the filter both bind
        // threads).
        let Some(isolate) = enforced("threads", Isolate::new().sandbox(all_denied())) else {
            return;
        };
        let dir = TempDir::new("threads");
        let file = dir.0.join("from-thread.txt");
        let written = isolate
            .run(move || {
                std::thread::spawn(move || std::fs::write(&file, b"x").map_err(os).err())
                    .join()
                    .unwrap()
            })
            .unwrap();
        assert_eq!(written, Some(libc::EACCES));
    }

    /// One escape attempt's errno in the child, or 0 if it succeeded.
    fn attempt(isolate: &Isolate, what: &str, f: fn(libc::pid_t) -> i32) {
        let parent = std::process::id() as libc::pid_t;
        let got = isolate.run(move || f(parent)).unwrap();
        assert_eq!(got, libc::EPERM, "{what}: errno {got}");
    }

    fn or_errno(r: libc::c_long) -> i32 {
        if r < 0 { errno() } else { 0 }
    }

    #[test]
    fn compute_only_refuses_every_escape_and_the_parent_lives() {
        let Some(isolate) = enforced("escapes", Isolate::new().sandbox(compute_only())) else {
            return;
        };
        // SAFETY (all below): plain system calls in the child, whose
        // failure is the point; the arguments are valid.
        attempt(&isolate, "ptrace-attach to the parent", |parent| unsafe {
            or_errno(libc::ptrace(libc::PTRACE_ATTACH, parent, 0, 0))
        });
        attempt(&isolate, "kill the parent", |parent| unsafe {
            or_errno(libc::kill(parent, libc::SIGKILL).into())
        });
        attempt(&isolate, "kill the process group", |_| unsafe {
            or_errno(libc::kill(0, libc::SIGKILL).into())
        });
        attempt(&isolate, "set no_new_privs again", |_| unsafe {
            or_errno(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into())
        });
        attempt(&isolate, "install a filter", |_| unsafe {
            let allow = libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            };
            let prog = libc::sock_fprog {
                len: 1,
                filter: (&raw const allow).cast_mut(),
            };
            or_errno(libc::syscall(libc::SYS_seccomp, 1, 0, &raw const prog))
        });
        attempt(&isolate, "raise an rlimit", |_| unsafe {
            let mut now = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut now), 0);
            now.rlim_cur = now.rlim_max;
            or_errno(libc::setrlimit(libc::RLIMIT_NOFILE, &raw const now).into())
        });
        attempt(&isolate, "fork", |_| unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            or_errno(pid.into())
        });
        attempt(&isolate, "execve", |_| unsafe {
            let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
            or_errno(libc::execv(c"/bin/true".as_ptr(), argv.as_ptr()).into())
        });
        attempt(&isolate, "open", |_| unsafe {
            or_errno(libc::open(c"/etc/passwd".as_ptr(), libc::O_RDONLY).into())
        });
        attempt(&isolate, "socket", |_| unsafe {
            or_errno(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0).into())
        });
        attempt(&isolate, "unix socket", |_| unsafe {
            or_errno(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0).into())
        });
        // The parent lives, and its own calls are free.
        assert!(std::fs::File::open("/dev/null").is_ok());
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).is_ok());
    }

    #[test]
    fn compute_only_refuses_connect_on_an_inherited_socket() {
        let Some(isolate) = enforced("inherited connect", Isolate::new().sandbox(compute_only()))
        else {
            return;
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        // SAFETY: a new socket, owned below.
        let socket =
            unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0)) };
        let fd = socket.as_raw_fd();
        let got = isolate
            .run(move || {
                let to = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: port.to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                // SAFETY: a valid address of `len` bytes.
                or_errno(unsafe { libc::connect(fd, (&raw const to).cast(), len) }.into())
            })
            .unwrap();
        assert_eq!(got, libc::EPERM);
        drop(socket);
    }

    // ---- kill_on_violation: a real SIGSYS ---------------------------------

    #[test]
    fn kill_on_violation_ends_the_child_with_sigsys() {
        let sigsys = MemIsolateError::CallableStatusUnknown(Unknown::ChildProcessKilledBySignal(
            libc::SIGSYS,
        ));
        let Some(strict) = enforced(
            "SIGSYS",
            Isolate::new().sandbox(compute_only().kill_on_violation()),
        ) else {
            return;
        };
        let opened = strict.run(|| std::fs::File::open("/dev/null").is_ok());
        assert_eq!(opened.unwrap_err(), sigsys);
        let Some(offline) = enforced(
            "SIGSYS",
            Isolate::new().sandbox(Sandbox::new().deny_network().kill_on_violation()),
        ) else {
            return;
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, listener.local_addr().unwrap().port());
        let connected = offline.run(move || std::net::TcpStream::connect(addr).is_ok());
        assert_eq!(connected.unwrap_err(), sigsys);
        let Some(no_exec) = enforced(
            "SIGSYS",
            Isolate::new().sandbox(Sandbox::new().deny_exec().kill_on_violation()),
        ) else {
            return;
        };
        // `execve` in the callable itself: the child dies.
        let ran = no_exec.run(|| {
            let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
            // SAFETY: a valid path and argument vector.
            unsafe { libc::execv(c"/bin/true".as_ptr(), argv.as_ptr()) }
        });
        assert_eq!(ran.unwrap_err(), sigsys);
        // In a process it started (`Command` forks, then the new process
        // calls `execve`): that process dies, the child reports it.
        let grandchild = no_exec
            .run(|| {
                use std::os::unix::process::ExitStatusExt as _;
                std::process::Command::new("true")
                    .status()
                    .map(|s| s.signal())
                    .map_err(os)
            })
            .unwrap();
        assert_eq!(grandchild, Ok(Some(libc::SIGSYS)));
        // A plain call on the same thread afterwards is free.
        assert_eq!(
            Isolate::new().run(|| std::fs::File::open("/dev/null").is_ok()),
            Ok(true)
        );
    }

    // ---- every transport, under each policy ---------------------------------

    /// A value whose `Serialize` fails with a message of its own.
    struct Unserializable;

    impl serde::Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused to serialize"))
        }
    }

    impl<'de> serde::Deserialize<'de> for Unserializable {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            <()>::deserialize(d).map(|()| Unserializable)
        }
    }

    impl std::fmt::Debug for Unserializable {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Unserializable")
        }
    }

    /// Every way a result travels, with `sandbox`: the shared page, the
    /// spill file, the pipe, a spawned handle, a panic's message, a
    /// serializer's message, a deadline, a memory limit.
    fn every_transport(name: &str, sandbox: Sandbox) {
        let Some(isolate) = enforced(name, Isolate::new().sandbox(sandbox.clone())) else {
            return;
        };
        let big = || vec![7u8; 64 << 10];
        // A fresh thread, so that the route follows from this thread's
        // history alone: the first large value spills to the page's file,
        // the next one takes the pipe (see `call::plan`).
        let isolate2 = isolate.clone();
        std::thread::spawn(move || {
            assert_eq!(isolate2.run(|| 42u32), Ok(42), "page");
            assert_eq!(isolate2.run(big), Ok(big()), "spill file");
            assert_eq!(isolate2.run(big), Ok(big()), "pipe");
            assert_eq!(isolate2.run(|| 43u32), Ok(43), "page again");
        })
        .join()
        .unwrap();
        assert_eq!(
            isolate.spawn(big).unwrap().join(),
            Ok(big()),
            "{name}: spawned, large"
        );
        assert_eq!(
            isolate.spawn(|| 5u8).unwrap().join(),
            Ok(5),
            "{name}: spawned, small"
        );
        assert_eq!(
            isolate.run(|| -> u8 { panic!("boom in the sandbox") }),
            Err(MemIsolateError::CallableExecuted(Ran::CallablePanicked(
                "boom in the sandbox".into()
            ))),
            "{name}: panic"
        );
        assert_eq!(
            isolate.run(|| Unserializable).unwrap_err(),
            MemIsolateError::CallableExecuted(Ran::SerializationFailed(
                "refused to serialize".into()
            )),
            "{name}: serialize failure"
        );
        let deadline = Duration::from_millis(100);
        assert_eq!(
            isolate.clone().timeout(deadline).run(|| -> u8 {
                loop {
                    std::hint::spin_loop()
                }
            }),
            Err(MemIsolateError::CallableStatusUnknown(Unknown::TimedOut(
                deadline
            ))),
            "{name}: deadline"
        );
        let limited = isolate.clone().memory_limit(64 << 20);
        assert_eq!(
            limited.run(|| {
                let mut v: Vec<u8> = Vec::new();
                v.try_reserve_exact(1 << 30).is_err()
            }),
            Ok(true),
            "{name}: memory limit, refused allocation"
        );
        // A callable that aborts on a refused allocation: `abort` signals
        // the process itself, which `compute_only` allows. (Not through
        // Rust's out-of-memory handler, which with `RUST_BACKTRACE` set
        // opens the executable for its symbols: under `kill_on_violation`
        // that is a violation.)
        assert_eq!(
            limited.run(|| -> u8 {
                let mut v: Vec<u8> = Vec::new();
                if v.try_reserve_exact(1 << 30).is_err() {
                    std::process::abort();
                }
                0
            }),
            Err(MemIsolateError::CallableStatusUnknown(
                Unknown::ChildProcessKilledBySignal(libc::SIGABRT)
            )),
            "{name}: memory limit, abort"
        );
    }

    #[test]
    fn every_transport_delivers_under_compute_only() {
        every_transport("compute_only", compute_only());
    }

    #[test]
    fn every_transport_delivers_under_compute_only_with_kill_on_violation() {
        every_transport("compute_only, kill", compute_only().kill_on_violation());
    }

    #[test]
    fn every_transport_delivers_under_all_deny_policies_at_once() {
        every_transport("all denied", all_denied().kill_on_violation());
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn an_async_call_delivers_under_compute_only() {
        let Some(isolate) = enforced("async", Isolate::new().sandbox(compute_only())) else {
            return;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(isolate.run_async(|| vec![3u8; 100_000]));
        assert_eq!(got, Ok(vec![3u8; 100_000]));
    }

    // ---- the kernel cannot: SandboxUnsupported ------------------------------

    /// Installs, in this process, a filter that fails `numbers` with
    /// `ENOSYS`, as a container runtime that does not know them does.
    fn hide_system_calls(numbers: &[libc::c_long]) {
        let rules = numbers.iter().map(|&n| (n, vec![])).collect();
        let filter = seccompiler::SeccompFilter::new(
            rules,
            seccompiler::SeccompAction::Allow,
            seccompiler::SeccompAction::Errno(libc::ENOSYS as u32),
            std::env::consts::ARCH.try_into().unwrap(),
        )
        .unwrap();
        let program: seccompiler::BpfProgram = filter.try_into().unwrap();
        // SAFETY: sets this (sealed) process's own flag.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
            0
        );
        seccompiler::apply_filter(&program).unwrap();
    }

    #[test]
    fn a_kernel_without_landlock_refuses_the_call_unless_best_effort() {
        if enforced(
            "no landlock",
            Isolate::new().sandbox(Sandbox::new().deny_network()),
        )
        .is_none()
        {
            return;
        }
        // In a child of its own, which hides Landlock from itself.
        let (strict, best_effort) = sealed(|| {
            hide_system_calls(&[444, 445, 446]);
            let strict = Isolate::new()
                .sandbox(Sandbox::new().deny_network())
                .run(|| 1u8);
            // Best effort: the filter still refuses new sockets.
            let best_effort = Isolate::new()
                .sandbox(Sandbox::new().deny_network().best_effort())
                .run(|| std::net::TcpListener::bind("127.0.0.1:0").map_err(os).err());
            (strict, best_effort)
        });
        assert_eq!(
            strict,
            Err(MemIsolateError::CallableDidNotExecute(
                NotRun::SandboxUnsupported(SandboxUnsupported::Landlock {
                    needed: 4,
                    available: 0
                })
            ))
        );
        assert_eq!(best_effort, Ok(Some(libc::EPERM)));
    }

    #[test]
    fn a_kernel_without_seccomp_refuses_the_call() {
        if enforced("no seccomp", Isolate::new().sandbox(compute_only())).is_none() {
            return;
        }
        let refused = sealed(|| {
            hide_system_calls(&[libc::SYS_seccomp]);
            Isolate::new().sandbox(compute_only()).run(|| 1u8)
        });
        let e = refused.unwrap_err();
        assert!(e.callable_did_not_execute());
        assert_eq!(
            e,
            MemIsolateError::CallableDidNotExecute(NotRun::SandboxUnsupported(
                SandboxUnsupported::Seccomp(mem_isolate::errors::Errno::NOSYS)
            ))
        );
        assert_eq!(
            std::error::Error::source(&e)
                .map(ToString::to_string)
                .as_deref(),
            Some("the sandbox cannot be enforced here: seccomp filters are unavailable")
        );
    }
}

/// Off Linux the type exists, and every sandboxed call is refused.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[test]
fn off_linux_a_sandboxed_call_is_refused_before_it_runs() {
    use mem_isolate::MemIsolateError;
    use mem_isolate::errors::{CallableDidNotExecuteError as NotRun, SandboxUnsupported};
    let got = Isolate::new()
        .sandbox(Sandbox::new().best_effort())
        .run(|| 1u8);
    assert_eq!(
        got,
        Err(MemIsolateError::CallableDidNotExecute(
            NotRun::SandboxUnsupported(SandboxUnsupported::Platform)
        ))
    );
}

/// A sandbox is part of the `Isolate`'s value: equal policies compare
/// equal, and a plain `Isolate` differs.
#[test]
fn a_sandbox_is_part_of_the_isolates_value() {
    let a = Isolate::new().sandbox(Sandbox::new().compute_only());
    let b = Isolate::new().sandbox(Sandbox::new().compute_only());
    assert_eq!(a, b);
    assert_ne!(a, Isolate::new());
    assert_ne!(a, Isolate::new().sandbox(Sandbox::new().deny_exec()));
    assert!(format!("{a:?}").contains("compute_only: true"));
}
