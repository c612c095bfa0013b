//! Options, then `run` (blocking) or `spawn` (a handle).

use core::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::call;
use crate::drive::Driven;
use crate::errors::MemIsolateError;
use crate::sink::SliceSink;
#[cfg(feature = "alloc")]
use crate::sink::VecSink;
use crate::sys::WaitMode;
use crate::transport::page::with_thread_page;

/// How to run a callable in isolation: options first, then
#[cfg_attr(
    feature = "alloc",
    doc = "[`run`](Self::run), [`spawn`](Self::spawn) or [`run_with_buffer`](Self::run_with_buffer)."
)]
#[cfg_attr(
    not(feature = "alloc"),
    doc = "[`run_with_buffer`](Self::run_with_buffer) (`run` and `spawn` need the `alloc` feature)."
)]
///
#[cfg_attr(
    feature = "alloc",
    doc = "With no options set, [`Isolate::new().run(f)`](Self::run) is exactly [`execute_in_isolated_process(f)`](crate::execute_in_isolated_process)."
)]
///
/// An `Isolate` is a small value (`Clone`, `Default`, `PartialEq`): keep
/// one and reuse it for many calls.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "alloc")] {
/// use std::time::Duration;
/// use mem_isolate::Isolate;
///
/// let isolate = Isolate::new()
///     .timeout(Duration::from_secs(5))
///     .max_result_size(1 << 20);
/// let total: u64 = isolate.run(|| (1..=100).sum())?;
/// assert_eq!(total, 5050);
/// # }
/// # Ok::<(), mem_isolate::MemIsolateError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Isolate {
    timeout: Option<Duration>,
    memory_limit: Option<u64>,
    max_result_size: Option<usize>,
    kill_descendants: bool,
    #[cfg(feature = "sandbox")]
    sandbox: Option<crate::Sandbox>,
}

impl Default for Isolate {
    fn default() -> Self {
        Self {
            timeout: None,
            memory_limit: None,
            max_result_size: None,
            kill_descendants: true,
            #[cfg(feature = "sandbox")]
            sandbox: None,
        }
    }
}

impl Isolate {
    /// No timeout, no memory limit, no result cap; descendants are killed
    /// with the child (see [`kill_descendants`](Self::kill_descendants)).
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::Isolate;
    ///
    /// let mut buffer = [0u8; 16];
    /// let answer: u32 = Isolate::new().run_with_buffer(&mut buffer, || 6 * 7)?;
    /// assert_eq!(answer, 42);
    /// assert_eq!(Isolate::new(), Isolate::default());
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the processes the callable starts (and theirs) end with the
    /// call. On by default.
    ///
    /// The child becomes the leader of a process group of its own
    /// (`setpgid`, first thing after the fork, before the callable runs),
    /// and when the call ends, however it ends (a value, a panic, the
    /// deadline, a spawned handle's `kill`, dropping the handle), the whole
    /// group is sent `SIGKILL` while the child is still unreaped, so that
    /// the group's id cannot have been reused. A C library
    /// that forks helpers, a shell-out, a worker pool: none of them outlives
    /// the call and keeps its memory.
    ///
    /// What it costs, and what still escapes:
    ///
    /// - The child is no longer in the terminal's foreground process group.
    ///   A Ctrl-C at the terminal reaches the parent, not the child (which
    ///   still dies with the parent on Linux and FreeBSD, and its group
    ///   with it when the parent ends the call); and a callable that reads
    ///   from the terminal is stopped by `SIGTTIN`, which the parent treats
    ///   as a stopped child: it waits, and a deadline ends it.
    /// - A descendant that leaves the group (`setsid`, `setpgid`, as a
    ///   daemon does) escapes, and so does one started after the group was
    ///   killed by a descendant that escaped.
    /// - The child itself leads its group, so `setsid()` called by the
    ///   callable fails with `EPERM` (a group leader cannot start a
    ///   session). A callable that needs a session of its own calls it in
    ///   a process it forks, or runs with `kill_descendants(false)`, where
    ///   `setsid()` succeeds (and the new session leaves the group it would
    ///   have been killed with, so its descendants escape the call).
    ///
    /// With `false` the child stays in its parent's process group and only
    /// the child itself is killed, as in 0.1.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::Isolate;
    ///
    /// // The shell started by the callable is killed when the call ends.
    /// let mut buffer = [0u8; 16];
    /// let n: u32 = Isolate::new()
    ///     .kill_descendants(true)
    ///     .run_with_buffer(&mut buffer, || {
    ///         let _ = std::process::Command::new("sh").args(["-c", "sleep 60"]).spawn();
    ///         7
    ///     })?;
    /// assert_eq!(n, 7);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    pub fn kill_descendants(mut self, kill: bool) -> Self {
        self.kill_descendants = kill;
        self
    }

    /// Wall-clock limit on waiting for the child, counted from just before
    /// `fork`.
    ///
    /// The deadline is kept while the parent waits (in `run`, or in a
    /// handle's `join` or `try_join`): a child still running at the
    /// deadline is killed with `SIGKILL` and reaped, and the call returns
    /// [`CallableStatusUnknown(TimedOut)`](crate::errors::CallableStatusUnknownError::TimedOut).
    /// A child that the parent finds already ended when it looks (it may
    /// have been held up, or a handle may be joined late) is not killed,
    /// even if it ran past its deadline: what it did stands (its value, a
    /// panic, a signal, an exit). What it left is read whichever way it
    /// travelled, bounded by what a child that has ended can have left (its
    /// pipe's capacity, the page, the spill file's size) and by the result
    /// cap.
    ///
    /// A child that has stopped (`SIGSTOP`, or a callable that made the
    /// parent its tracer with `ptrace(PTRACE_TRACEME)` and raised a signal)
    /// has not finished: it is waited for, and killed at the deadline, like
    /// a running one.
    ///
    /// The parent sleeps in one readiness wait on the child itself (pidfd
    /// on Linux, kqueue on macOS and FreeBSD) and the pipe, if the result
    /// takes one, so the deadline is kept to within scheduling noise,
    /// without polling, even when a grandchild holds the pipe open.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use mem_isolate::{Isolate, MemIsolateError};
    /// use mem_isolate::errors::CallableStatusUnknownError;
    ///
    /// let mut buffer = [0u8; 16];
    /// let hangs = Isolate::new()
    ///     .timeout(Duration::from_millis(50))
    ///     .run_with_buffer(&mut buffer, || -> u32 { loop { std::hint::spin_loop() } });
    /// assert_eq!(
    ///     hangs,
    ///     Err(MemIsolateError::CallableStatusUnknown(
    ///         CallableStatusUnknownError::TimedOut(Duration::from_millis(50))
    ///     ))
    /// );
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Bytes of address space the callable may *add* to what the process
    /// already maps at the moment of the fork.
    ///
    /// The child sets `RLIMIT_AS` to its current size plus `bytes` before the
    /// callable runs, so the limit means the same in a small program and in
    /// one that already maps gigabytes (many threads, a big heap). An
    /// allocation past it fails inside the child: Rust's default handler
    /// aborts, which the parent reports as
    /// [`ChildProcessKilledBySignal(SIGABRT)`](crate::errors::CallableStatusUnknownError::ChildProcessKilledBySignal);
    /// code that uses `try_reserve` sees the failure itself.
    ///
    /// | platform | enforced by |
    /// | --- | --- |
    /// | Linux, Android | `RLIMIT_AS`; current size from `/proc/self/statm` |
    /// | FreeBSD | `RLIMIT_AS`; current size from `sysctl(KERN_PROC_PID)` |
    /// | macOS | not enforceable: the call fails with [`MemoryLimitUnsupported`](crate::errors::CallableDidNotExecuteError::MemoryLimitUnsupported) before forking |
    ///
    /// Address space is not resident memory: reserving (not touching) a
    /// large mapping counts against the limit.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::Isolate;
    ///
    /// let mut buffer = [0u8; 16];
    /// let limited = Isolate::new().memory_limit(64 << 20);
    /// // Asking for a gigabyte more than the limit allows fails in the child.
    /// let refused = limited.run_with_buffer(&mut buffer, || {
    ///     let mut v: Vec<u8> = Vec::new();
    ///     v.try_reserve_exact(1 << 30).is_err()
    /// });
    /// match refused {
    ///     Ok(refused) => assert!(refused),
    ///     // macOS: MemoryLimitUnsupported, before any fork.
    ///     Err(e) => assert!(e.callable_did_not_execute()),
    /// }
    /// ```
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// The most bytes of serialized result the parent will accept.
    ///
    /// The parent never reads past the cap and returns
    /// [`CallableExecuted(ResultTooLarge)`](crate::errors::CallableExecutedError::ResultTooLarge),
    /// so its memory stays bounded whatever the child sends. Down a pipe it
    /// stops reading at the cap and kills and reaps the child; a child
    /// writing to the spill file (blocking calls on Linux), which nobody
    /// reads until it exits, stops itself just past the cap.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::{Isolate, MemIsolateError};
    /// use mem_isolate::errors::CallableExecutedError;
    ///
    /// let mut buffer = [0u8; 4096];
    /// let too_big = Isolate::new()
    ///     .max_result_size(100)
    ///     .run_with_buffer(&mut buffer, || [[7u8; 32]; 7]); // 224 bytes
    /// assert_eq!(
    ///     too_big,
    ///     Err(MemIsolateError::CallableExecuted(
    ///         CallableExecutedError::ResultTooLarge { limit: 100 }
    ///     ))
    /// );
    /// ```
    pub fn max_result_size(mut self, bytes: usize) -> Self {
        self.max_result_size = Some(bytes);
        self
    }

    /// Runs the callable under `sandbox`: a policy that refuses what it
    /// may do besides computing (the network, running programs, writing
    /// files, or every system call computing does not need), from just
    /// before it starts to the child's end. See [`Sandbox`](crate::Sandbox)
    /// for the policies, what stays reachable, and what each kernel
    /// enforces.
    ///
    /// The filters are compiled here (or on the first call, for a sandbox
    /// that a clone of this `Isolate` has not used yet), never per call. A
    /// system that cannot enforce the policy fails every call with
    /// [`SandboxUnsupported`](crate::errors::CallableDidNotExecuteError::SandboxUnsupported)
    /// before anything runs, unless it is
    /// [`best_effort`](crate::Sandbox::best_effort).
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::{Isolate, Sandbox};
    ///
    /// let no_programs = Isolate::new().sandbox(Sandbox::new().deny_exec());
    /// let ran = no_programs.run(|| std::process::Command::new("true").status().is_ok());
    /// # if !matches!(ran, Err(ref e) if e.callable_did_not_execute()) {
    /// assert_eq!(ran?, false);
    /// # }
    /// // The parent, and a call without the sandbox, are free.
    /// assert_eq!(Isolate::new().run(|| std::process::Command::new("true").status().is_ok())?, true);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    #[cfg(feature = "sandbox")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sandbox")))]
    pub fn sandbox(mut self, sandbox: crate::Sandbox) -> Self {
        // Built now, so that no call pays for it; an error waits for the
        // first call.
        let _ = sandbox.for_call();
        self.sandbox = Some(sandbox);
        self
    }

    /// Runs `callable` in a forked child and returns its value, blocking
    /// until the child has finished and been reaped.
    ///
    /// # Errors
    ///
    /// See [`MemIsolateError`]: each variant says what happened to the
    /// callable.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::Isolate;
    ///
    /// let isolate = Isolate::new();
    /// let words = isolate.run(|| {
    ///     // Anything this leaks or mutates stays in the child.
    ///     let text: &'static str = Box::leak("one two three".to_string().into_boxed_str());
    ///     text.split(' ').map(str::to_owned).collect::<Vec<String>>()
    /// })?;
    /// assert_eq!(words, ["one", "two", "three"]);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    pub fn run<F, T>(&self, callable: F) -> Result<T, MemIsolateError>
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        call_span!("execute_in_isolated_process", api = "run");
        let limit = self.max_result_size.unwrap_or(usize::MAX);
        with_thread_page(|page, pid| {
            let sink = VecSink::new(limit);
            let (call, watch) =
                call::start(&self.options(), callable, sink, page, pid, WaitMode::Direct)?;
            let mut driven = Driven::new(call, watch);
            driven.advance(None);
            driven.call_mut().outcome()
        })
    }

    /// Starts `callable` in a forked child and returns at once with a
    /// handle to it.
    ///
    /// # Errors
    ///
    /// Only [`MemIsolateError::CallableDidNotExecute`]: the child could not
    /// be started.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::Isolate;
    ///
    /// let children: Vec<_> = (0..4u64)
    ///     .map(|i| Isolate::new().spawn(move || i * i))
    ///     .collect::<Result<_, _>>()?;
    /// let squares: Vec<u64> = children
    ///     .into_iter()
    ///     .map(|c| c.join())
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(squares, [0, 1, 4, 9]);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    pub fn spawn<F, T>(&self, callable: F) -> Result<crate::IsolatedChild<T>, MemIsolateError>
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        call_span!("mem_isolate::spawn");
        // The handle's readiness queue is made before the fork, so that
        // `as_fd` cannot fail.
        let driven = self.start_unshared(callable, WaitMode::Queue)?;
        Ok(crate::IsolatedChild::new(driven))
    }

    /// Starts a call whose child may outlive this thread, waited for as
    /// `mode` says. Several such children may be alive at once, so they do
    /// not share a page: their results always travel through the pipe.
    #[cfg(feature = "alloc")]
    fn start_unshared<F, T>(
        &self,
        callable: F,
        mode: WaitMode,
    ) -> Result<Driven<'static, VecSink>, MemIsolateError>
    where
        F: FnOnce() -> T,
        T: Serialize,
    {
        let sink = VecSink::new(self.max_result_size.unwrap_or(usize::MAX));
        let pid = crate::sys::getpid();
        let (call, watch) = call::start(&self.options(), callable, sink, None, pid, mode)?;
        Ok(Driven::new(call, watch))
    }

    /// Runs `callable` in a forked child and returns a future of its value,
    /// which waits through tokio's reactor rather than blocking a thread.
    ///
    /// The fork happens when the future is first polled, not when this is
    /// called, and the [`timeout`](Self::timeout) counts from there. The
    /// future owns a copy of the options, so it borrows nothing: it can be
    /// stored, pushed into a `Vec`, or handed to `tokio::spawn` (it is
    /// `Send` and `'static` whenever `callable` and `T` are). It resolves
    /// to the same `Result` as [`run`](Self::run), and dropping it before
    /// then kills and reaps the child (see [`ChildFuture`](crate::ChildFuture),
    /// which it awaits after the fork, and for what the runtime must
    /// provide).
    ///
    /// It works on tokio's `current_thread` and `multi_thread` runtimes
    /// alike: the child is a copy of the thread that polled the future,
    /// and lives as long as the future, not as long as that thread.
    ///
    /// # The runtime in the child
    ///
    /// The callable must not use the runtime it was forked from: the child
    /// holds a copy of it whose worker threads, reactor thread and timer
    /// do not exist in the child (only the forking thread is copied). A
    /// `Handle::block_on`, a `spawn`ed task awaited, or a channel fed by
    /// another task waits for ever; only the
    /// [`timeout`](Self::timeout) ends such a call. A callable that needs
    /// async code builds a fresh runtime of its own (a `current_thread`
    /// one is cheapest) inside the child.
    ///
    /// # Errors
    ///
    /// See [`MemIsolateError`]; the future resolves to
    /// [`CallableDidNotExecute`](MemIsolateError::CallableDidNotExecute)
    /// when the fork itself failed.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use mem_isolate::Isolate;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let isolate = Isolate::new().timeout(Duration::from_secs(10));
    /// // Nothing forks yet: the futures own what they need.
    /// let jobs: Vec<_> = (1..=3u64).map(|n| isolate.run_async(move || n * 100)).collect();
    /// let mut total = 0;
    /// for job in jobs {
    ///     total += job.await?;
    /// }
    /// assert_eq!(total, 600);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// # }).unwrap();
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn run_async<F, T>(
        &self,
        callable: F,
    ) -> impl core::future::Future<Output = Result<T, MemIsolateError>> + use<F, T>
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        let isolate = self.clone();
        async move {
            let driven = {
                call_span!("mem_isolate::spawn");
                // The reactor waits on the pipe and the pidfd: no queue.
                isolate.start_unshared(callable, WaitMode::Reactor)?
            };
            crate::drive::tokio::ChildFuture::<T>::new(driven, false).await
        }
    }

    /// Runs `f(args)` in a worker forked from `zygote`, with these
    /// options, and returns its value, blocking until the worker has
    /// finished and been reaped. See [`Zygote`](crate::Zygote) for what a
    /// call through a zygote is.
    ///
    /// # Errors
    ///
    /// See [`MemIsolateError`], and [`Zygote`](crate::Zygote) for what is
    /// particular to calls through a zygote.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use mem_isolate::{Isolate, Zygote};
    ///
    /// let zygote = Zygote::start()?;
    /// let len = Isolate::new()
    ///     .timeout(Duration::from_secs(5))
    ///     .run_in(&zygote, |s: String| s.len(), "hello".to_string())?;
    /// assert_eq!(len, 5);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    #[allow(clippy::needless_pass_by_value)] // the arguments are the call's, as a value
    pub fn run_in<A, T>(
        &self,
        zygote: &crate::Zygote,
        f: fn(A) -> T,
        args: A,
    ) -> Result<T, MemIsolateError>
    where
        A: Serialize + DeserializeOwned,
        T: Serialize + DeserializeOwned,
    {
        call_span!("mem_isolate::run_in");
        let sink = VecSink::new(self.max_result_size.unwrap_or(usize::MAX));
        let (mut call, watch) = call::zygote::start(
            zygote.via(),
            &self.options(),
            f,
            &args,
            sink,
            WaitMode::Direct,
        )?;
        // The value is all a blocking call returns: it need not wait for
        // the zygote to reap the worker.
        call.release_at_end();
        let mut driven = Driven::new(call, watch);
        driven.advance(None);
        driven.call_mut().outcome()
    }

    /// Starts `f(args)` in a worker forked from `zygote`, with these
    /// options, and returns at once with a handle to it: the same
    /// [`IsolatedChild`](crate::IsolatedChild) as [`spawn`](Self::spawn)
    /// returns, whose [`pid`](crate::IsolatedChild::pid) is the worker's.
    ///
    /// # Errors
    ///
    /// Only [`MemIsolateError::CallableDidNotExecute`]: the worker could
    /// not be started.
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::{Isolate, Zygote};
    ///
    /// let zygote = Zygote::start()?;
    /// let children: Vec<_> = (0..4u64)
    ///     .map(|i| Isolate::new().spawn_in(&zygote, |i: u64| i * i, i))
    ///     .collect::<Result<_, _>>()?;
    /// let squares: Vec<u64> = children.into_iter().map(|c| c.join()).collect::<Result<_, _>>()?;
    /// assert_eq!(squares, [0, 1, 4, 9]);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    #[allow(clippy::needless_pass_by_value)] // the arguments are the call's, as a value
    pub fn spawn_in<A, T>(
        &self,
        zygote: &crate::Zygote,
        f: fn(A) -> T,
        args: A,
    ) -> Result<crate::IsolatedChild<T>, MemIsolateError>
    where
        A: Serialize + DeserializeOwned,
        T: Serialize + DeserializeOwned,
    {
        let limit = self.max_result_size.unwrap_or(usize::MAX);
        let sink = VecSink::new(limit);
        let (call, watch) = call::zygote::start(
            zygote.via(),
            &self.options(),
            f,
            &args,
            sink,
            WaitMode::Queue,
        )?;
        Ok(crate::IsolatedChild::new(Driven::new(call, watch)))
    }

    /// Runs `f(args)` in a worker forked from `zygote` and returns a future
    /// of its value, which waits through tokio's reactor: what
    /// [`run_async`](Self::run_async) is to [`run`](Self::run), this is to
    /// [`run_in`](Self::run_in). The request is sent when the future is
    /// first polled, and that poll waits, on the polling thread, for the
    /// zygote to acknowledge the fork (a fork of the small zygote, well
    /// under a millisecond) and for the worker to take arguments larger
    /// than 2 KiB; the rest is awaited through the reactor. The future
    /// owns what it needs (a duplicate of the
    /// zygote's control socket), so it is `Send` and `'static`, and
    /// dropping it kills and reaps the worker. Dropping the
    /// [`Zygote`](crate::Zygote) meanwhile ends the call as it ends a
    /// spawned one.
    ///
    /// # Errors
    ///
    /// See [`MemIsolateError`]; a control socket that could not be
    /// duplicated is
    /// [`PipeCreationFailed`](crate::errors::CallableDidNotExecuteError::PipeCreationFailed).
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::{Isolate, Zygote};
    ///
    /// let zygote = Zygote::start()?;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let n = Isolate::new().run_async_in(&zygote, |n: u64| n + 1, 41).await?;
    /// assert_eq!(n, 42);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// # }).unwrap();
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn run_async_in<A, T>(
        &self,
        zygote: &crate::Zygote,
        f: fn(A) -> T,
        args: A,
    ) -> impl core::future::Future<Output = Result<T, MemIsolateError>> + Send + 'static + use<A, T>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let isolate = self.clone();
        let handle = zygote.handle();
        async move {
            let handle = handle?;
            let sink = VecSink::new(isolate.max_result_size.unwrap_or(usize::MAX));
            let (mut call, watch) = call::zygote::start(
                handle.via(),
                &isolate.options(),
                f,
                &args,
                sink,
                WaitMode::Queue,
            )?;
            // As `run_in`: the value is all it returns.
            call.release_at_end();
            crate::IsolatedChild::<T>::new(Driven::new(call, watch)).await
        }
    }

    /// Runs `callable` in a forked child without allocating: the parent
    /// receives the serialized result into `buffer` and decodes it from
    /// there.
    ///
    /// The serialized result may be at most `buffer.len()` bytes (or the
    /// [`max_result_size`](Self::max_result_size), if smaller); a larger one
    /// fails with
    /// [`ResultTooLarge`](crate::errors::CallableExecutedError::ResultTooLarge).
    /// This is the entry point for `#![no_std]` programs built with
    /// `default-features = false`.
    ///
    /// # Errors
    ///
    /// See [`MemIsolateError`].
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::Isolate;
    ///
    /// let mut buffer = [0u8; 64];
    /// let (sum, max) = Isolate::new()
    ///     .run_with_buffer(&mut buffer, || {
    ///         let xs = [3u32, 9, 4];
    ///         (xs.iter().sum::<u32>(), *xs.iter().max().unwrap())
    ///     })?;
    /// assert_eq!((sum, max), (16, 9));
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// ```
    pub fn run_with_buffer<F, T>(
        &self,
        buffer: &mut [u8],
        callable: F,
    ) -> Result<T, MemIsolateError>
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        call_span!("execute_in_isolated_process", api = "run_with_buffer");
        let cap = self.max_result_size.unwrap_or(usize::MAX).min(buffer.len());
        with_thread_page(|page, pid| {
            let sink = SliceSink::new(&mut buffer[..cap]);
            let (call, watch) =
                call::start(&self.options(), callable, sink, page, pid, WaitMode::Direct)?;
            let mut driven = Driven::new(call, watch);
            driven.advance(None);
            driven.call_mut().outcome()
        })
    }

    /// Bytes the parent accepts for one result (one item, for a stream).
    #[cfg(feature = "alloc")]
    pub(crate) fn result_cap(&self) -> usize {
        self.max_result_size.unwrap_or(usize::MAX)
    }

    pub(crate) fn options(&self) -> call::Options {
        call::Options {
            timeout: self.timeout,
            memory_limit: self.memory_limit,
            kill_descendants: self.kill_descendants,
            #[cfg(feature = "sandbox")]
            sandbox: self
                .sandbox
                .as_ref()
                .map_or(Ok(None), crate::Sandbox::for_call)
                .map_err(crate::errors::CallableDidNotExecuteError::SandboxUnsupported),
            #[cfg(not(feature = "sandbox"))]
            sandbox: Ok(None),
        }
    }
}
