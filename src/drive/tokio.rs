//! The `tokio` driver: runs a [`Call`] by waiting through tokio's reactor
//! instead of blocking a thread. The child's watcher (the pidfd on Linux
//! and Android, the call's kqueue on macOS and FreeBSD) and, where the
//! watcher does not cover it, the pipe's read end are registered with the
//! runtime as they are (`AsyncFd`): no thread, no `spawn_blocking` and no
//! epoll instance per child. The deadline is a tokio timer.
//!
//! The runtime's readiness is cleared as soon as it is seen, before the
//! call reads or reaps, so no edge is lost and no extra check is made: the
//! pipe wakes the reactor on every write, the pidfd when the child exits.
//! A kqueue is asked what it holds (a zero-timeout `kevent`) whenever it
//! wakes, and once at the start.

use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::boxed::Box;

use rustix::fd::{AsRawFd, BorrowedFd, RawFd};
use rustix::io::Errno;
use serde::de::DeserializeOwned;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, Sleep};

use super::{Driven, ExitSpin, Os};
use crate::call::Call;
use crate::call::verdict::Stopped;
use crate::errors::{CallableExecutedError, MemIsolateError};
use crate::sink::{Sink, VecSink};
use crate::sys::{self, ChildWatch, Ready, Watch};

/// A descriptor owned elsewhere (the watch, the call's route), by number,
/// for `AsyncFd`. Every `Registered` is dropped, which deregisters it,
/// before its descriptor is closed.
pub(crate) struct Registered(RawFd);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Registers `fd` with the current runtime's reactor, for readability.
///
/// # Safety
///
/// `fd` must stay open, naming the same file, until the returned
/// `AsyncFd` is dropped.
pub(crate) unsafe fn register(fd: BorrowedFd<'_>) -> Result<AsyncFd<Registered>, Errno> {
    // SAFETY: the caller keeps `fd` open until the registration is dropped.
    unsafe { AsyncFd::register_with_interest(Registered(fd.as_raw_fd()), Interest::READABLE) }
        .map_err(|e| Errno::from_io_error(&e.into_parts().1).unwrap_or(Errno::IO))
}

/// The future of a spawned child's result: what `child.await` runs
/// ([`IsolatedChild`](crate::IsolatedChild)'s `IntoFuture`), and what
/// [`Isolate::run_async`](crate::Isolate::run_async) awaits after its fork.
///
/// It resolves to the same `Result<T, MemIsolateError>` as
/// [`IsolatedChild::join`](crate::IsolatedChild::join). It must be polled
/// inside a tokio runtime with I/O and time enabled (tokio's `enable_all`,
/// or what `#[tokio::main]` builds): besides a
/// [`timeout`](crate::Isolate::timeout), the timer checks on a child that
/// nothing else can wake for (no pidfd; on macOS and FreeBSD after its
/// pipe ended) and paces the reap of a dropped one.
///
/// Dropping it before it resolved (a `tokio::time::timeout`, a losing
/// `select!` branch, an aborted task) kills the child, and its process
/// group with [`kill_descendants`](crate::Isolate::kill_descendants), and
/// reaps it without leaving a zombie: at once if it is already gone,
/// otherwise in a small task on the current runtime that waits for its
/// exit, so the dropping thread does not wait for a large child's teardown.
/// Dropped outside any runtime, it reaps the child there and then.
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[must_use = "futures do nothing unless polled; dropping this one kills the child"]
pub struct ChildFuture<T> {
    /// The runtime registrations, dropped before `driven`, whose watch and
    /// route own the descriptors.
    pipe: Option<AsyncFd<Registered>>,
    child: Option<AsyncFd<Registered>>,
    registered: bool,
    /// The watch was asked once what it holds, before registering (and,
    /// for a kqueue, before its first wake).
    checked: bool,
    timer: Option<Pin<Box<Sleep>>>,
    /// When a child nobody watches is next checked: kept across polls, so
    /// that each wake (the timer's own included) does not push it back.
    tick_at: Option<Duration>,
    /// `None` once resolved or handed to the reaper.
    driven: Option<Driven<'static, VecSink>>,
    /// What the call saw last, for its next step.
    ready: Ready,
    /// The value was already taken through `try_join`.
    taken: bool,
    _value: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> ChildFuture<T> {
    pub(crate) fn new(driven: Driven<'static, VecSink>, taken: bool) -> Self {
        Self {
            pipe: None,
            child: None,
            registered: false,
            checked: false,
            timer: None,
            tick_at: None,
            driven: Some(driven),
            ready: Ready::default(),
            taken,
            _value: PhantomData,
        }
    }

    /// Registers the pipe and the watcher with the runtime, once.
    fn register(&mut self, call: &Call<'static, VecSink>, watch: &Watch) -> Result<(), Errno> {
        self.registered = true;
        if !sys::WATCH_HOLDS_PIPE {
            if let Some(pipe) = call.pipe_fd() {
                // SAFETY: the call closes its pipe only after `forget_pipe`
                // (see `Os`), which drops this registration first.
                self.pipe = Some(unsafe { register(pipe) }?);
            }
        }
        if let Some(child) = watch.child_fd() {
            // SAFETY: the watch lives in `driven`, which outlives this
            // registration (see `step` and `Drop`).
            self.child = Some(unsafe { register(child) }?);
        }
        Ok(())
    }

    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, MemIsolateError>> {
        let Some(mut driven) = self.driven.take() else {
            return Poll::Ready(Err(CallableExecutedError::ResultAlreadyTaken.into()));
        };
        if self.taken {
            // `try_join` returned the value already; the child is reaped.
            return Poll::Ready(Err(CallableExecutedError::ResultAlreadyTaken.into()));
        }
        let polled = self.drive(&mut driven, cx);
        match polled {
            Poll::Ready(()) => {
                // Deregister before the watch closes the descriptors.
                self.pipe = None;
                self.child = None;
                let result = driven.call_mut().outcome();
                drop(driven);
                Poll::Ready(result)
            }
            Poll::Pending => {
                self.driven = Some(driven);
                Poll::Pending
            }
        }
    }

    /// Feeds the call until it is finished (`Ready`) or waits on
    /// something that is not ready yet (`Pending`, with wakers set): each
    /// pass asks the call what to wait for, then looks in turn at the
    /// exit spin, the first look before registering, the reactor, and the
    /// timer.
    fn drive(&mut self, driven: &mut Driven<'static, VecSink>, cx: &mut Context<'_>) -> Poll<()> {
        let mut spin = ExitSpin::default();
        loop {
            let (call, watch) = driven.parts();
            let ready = core::mem::take(&mut self.ready);
            let os = &mut Os {
                watch,
                reactor: Some(&mut self.pipe),
            };
            let Some(wait) = call.on(os, ready) else {
                return Poll::Ready(());
            };
            let now = sys::now();
            if spin.again(&wait, now, None) {
                self.ready = Ready::CHILD;
                continue;
            }
            let until = wait.until;
            let pipe = wait.pipe.map(|p| p.as_raw_fd());
            if !self.registered {
                if let Some(seen) = self.first_look(call, watch, pipe) {
                    self.ready = seen;
                    continue;
                }
            }
            if let Some(seen) = self.reactor_readiness(call, watch, pipe, cx) {
                self.ready = seen;
                continue;
            }
            match self.timer(now, until, watch, cx) {
                Poll::Ready(seen) => self.ready = seen,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Before the first registration: a child that is already done (the
    /// future was polled late) needs no registration and no trip through
    /// the reactor, so the watch is asked once, without waiting, what it
    /// holds (without a pidfd every look reports the child, to be looked
    /// at). Then the pipe and the watcher are registered. `Some` when the
    /// call has something to look at now.
    fn first_look(
        &mut self,
        call: &mut Call<'static, VecSink>,
        watch: &mut Watch,
        pipe: Option<RawFd>,
    ) -> Option<Ready> {
        if !self.checked {
            self.checked = true;
            // SAFETY: `pipe` is the call's read end, open until the call
            // closes it, which it does only inside `on`.
            let pipe_fd = pipe.map(|p| unsafe { BorrowedFd::borrow_raw(p) });
            if let Ok(seen) = watch.wait(pipe_fd, Some(Duration::ZERO)) {
                if seen.pipe || seen.child {
                    return Some(seen);
                }
            }
        }
        if let Err(e) = self.register(call, watch) {
            let os = &mut Os {
                watch,
                reactor: Some(&mut self.pipe),
            };
            call.wait_failed(os, e);
            return Some(Ready::default());
        }
        None
    }

    /// The runtime's readiness, cleared as soon as it is seen and before
    /// the call reads or reaps: what arrives after the clear sets it again
    /// (each write to the pipe and the child's exit wake the reactor anew),
    /// what arrived before is what the call now reads, so nothing is lost
    /// and no check costs a syscall. `Some` when the call has something to
    /// look at now; wakers are set otherwise.
    fn reactor_readiness(
        &mut self,
        call: &mut Call<'static, VecSink>,
        watch: &mut Watch,
        pipe: Option<RawFd>,
        cx: &mut Context<'_>,
    ) -> Option<Ready> {
        let mut seen = Ready::default();
        let mut failed = None;
        let pipe_fd = self.pipe.as_ref().filter(|_| pipe.is_some());
        seen.pipe = take_readiness(pipe_fd, cx, &mut failed);
        seen.child = take_readiness(self.child.as_ref(), cx, &mut failed);
        let os = &mut Os {
            watch,
            reactor: Some(&mut self.pipe),
        };
        if let Some(e) = failed {
            // The reactor is gone (the runtime is shutting down): the
            // child is killed, and reaped here, which is brief.
            call.wait_failed(os, Errno::from_io_error(&e).unwrap_or(Errno::IO));
            return Some(Ready::EXITING);
        }
        // A kqueue says what it holds only when asked (and once asked, no
        // more), and may have something from before it was registered (a
        // child that exited before it was watched).
        if sys::WATCH_HOLDS_PIPE && (seen.child || !self.checked) {
            self.checked = true;
            // SAFETY: `pipe` is the call's read end, open until the call
            // closes it, which it does only inside `on`.
            let pipe_fd = pipe.map(|p| unsafe { BorrowedFd::borrow_raw(p) });
            seen = match os.watch.wait(pipe_fd, Some(Duration::ZERO)) {
                Ok(seen) => seen,
                Err(e) => {
                    call.wait_failed(os, e);
                    Ready::default()
                }
            };
        }
        (seen.pipe || seen.child).then_some(seen)
    }

    /// Nothing ready: the timer, for the deadline `until` or the fallback
    /// tick of a child nobody watches. `Ready` with what to look at when
    /// it is due (the deadline the call judges by the clock), `Pending`
    /// with the timer's waker set.
    fn timer(
        &mut self,
        now: Duration,
        until: Option<Duration>,
        watch: &Watch,
        cx: &mut Context<'_>,
    ) -> Poll<Ready> {
        let unwatched = watch.needs_tick() || self.child.is_none();
        let tick = if unwatched {
            Some(*self.tick_at.get_or_insert(now + sys::FALLBACK_TICK))
        } else {
            self.tick_at = None;
            None
        };
        let wake_at = match (until, tick) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(at) => at,
                None => return Poll::Pending,
            },
        };
        let due = |ticked: bool| Ready {
            pipe: false,
            child: ticked,
            exiting: false,
        };
        if wake_at <= now {
            let ticked = tick.is_some_and(|t| t <= now);
            if ticked {
                self.tick_at = None;
            }
            return Poll::Ready(due(ticked));
        }
        let at = Instant::now() + wake_at.saturating_sub(now);
        let timer = match &mut self.timer {
            Some(timer) => {
                timer.as_mut().reset(at);
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Woken at `wake_at`: the deadline or the tick, due now.
        if tick.is_some() {
            self.tick_at = None;
        }
        Poll::Ready(due(tick.is_some()))
    }
}

/// Whether the runtime says `fd` is readable, clearing that as it is seen
/// (see [`ChildFuture::reactor_readiness`]); a reactor error goes to
/// `failed`. The waker is set when it is not ready.
fn take_readiness(
    fd: Option<&AsyncFd<Registered>>,
    cx: &mut Context<'_>,
    failed: &mut Option<std::io::Error>,
) -> bool {
    match fd.map(|fd| fd.poll_read_ready(cx)) {
        Some(Poll::Ready(Ok(mut guard))) => {
            guard.clear_ready();
            true
        }
        Some(Poll::Ready(Err(e))) => {
            *failed = Some(e);
            false
        }
        Some(Poll::Pending) | None => false,
    }
}

impl<T: DeserializeOwned> Future for ChildFuture<T> {
    type Output = Result<T, MemIsolateError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().step(cx)
    }
}

impl<T> Drop for ChildFuture<T> {
    fn drop(&mut self) {
        self.pipe = None;
        self.child = None;
        if let Some(driven) = self.driven.take() {
            cancel(driven);
        }
    }
}

impl<T> core::fmt::Debug for ChildFuture<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("ChildFuture");
        if let Some(driven) = &self.driven {
            d.field("pid", &driven.call().pid());
        }
        d.finish_non_exhaustive()
    }
}

/// Ends an unfinished call without waiting: the call's one kill, then a
/// reap that does not block; a child not gone yet is reaped by a task on
/// the current runtime once its watcher says it has ended, or here, with
/// no runtime to hand it to.
pub(crate) fn cancel<S: Sink + Send + 'static>(mut driven: Driven<'static, S>) {
    let (call, watch) = driven.parts();
    if call.is_finished() {
        return;
    }
    let os = &mut Os::blocking(watch);
    call.stop(os, Stopped::ByCaller);
    let gone = call.on(os, Ready::CHILD).is_none();
    if gone {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            drop(runtime.spawn(reap_later(driven)));
        }
        // Dropping the call reaps its child, which was killed: brief.
        Err(_) => drop(driven),
    }
}

/// The reaper task: waits through the reactor for a killed child's exit,
/// then reaps it. Should the runtime shut down first, dropping the task
/// drops the call, which reaps the child there.
async fn reap_later<S: Sink + Send + 'static>(mut driven: Driven<'static, S>) {
    // SAFETY: the watch lives in `driven`, dropped after the registration.
    let child = driven
        .parts()
        .1
        .child_fd()
        .and_then(|fd| unsafe { register(fd) }.ok());
    loop {
        let (call, watch) = driven.parts();
        if call.on(&mut Os::blocking(watch), Ready::CHILD).is_none() {
            break;
        }
        let watched = !driven.parts().1.needs_tick();
        match &child {
            Some(fd) if watched => match fd.readable().await {
                Ok(mut guard) => {
                    // Consume what the watcher holds (kqueue), and look again.
                    let seen = driven.parts().1.wait(None, Some(Duration::ZERO));
                    if !matches!(seen, Ok(Ready { child: true, .. })) {
                        guard.clear_ready();
                    }
                }
                Err(_) => break,
            },
            _ => tokio::time::sleep(sys::FALLBACK_TICK).await,
        }
    }
    drop(child);
    drop(driven);
}
