//! [`AsyncIsolatedStream`]: a stream's items through tokio's reactor.
//!
//! The blocking stream's [`Driven`] call, stepped without blocking
//! (`advance` with a zero budget), and woken by the call's readiness
//! descriptor (the one [`IsolatedStream`](super::IsolatedStream)'s
//! [`AsFd`](rustix::fd::AsFd) lends: an epoll instance over the pipe and
//! the pidfd on Linux, the call's kqueue on macOS and FreeBSD) registered
//! with the runtime, and by a tokio timer for the deadline (and for a
//! child nothing can wake for).

use alloc::boxed::Box;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use rustix::io::Errno;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, Sleep};

use super::{ItemQueue, Sender, StreamJob, decode_item};
use crate::call;
use crate::drive::Driven;
use crate::drive::tokio::{Registered, register};
use crate::errors::{CallableStatusUnknownError, MemIsolateError};
use crate::isolate::Isolate;
use crate::sink::Sink;
use crate::sys::{self, ChildWatch, WaitMode};

type Start = Box<dyn FnOnce() -> Result<Driven<'static, ItemQueue>, MemIsolateError> + Send>;

impl Isolate {
    /// [`stream`](Self::stream) for async code: the items as a
    /// [`futures_core::Stream`], waited for through tokio's reactor rather
    /// than by blocking a thread.
    ///
    /// The fork happens when the stream is first polled, and the
    /// [`timeout`](Self::timeout) counts from there. The stream owns a copy
    /// of the options and borrows nothing: it is `Send` and `'static`, so
    /// it can be handed to `tokio::spawn`. It yields what the blocking
    /// stream's iterator yields: the items, then at most one `Err`, then
    /// the end. Dropping it (a losing `select!` branch, an aborted task)
    /// kills the child and its process group and reaps them, as dropping a
    /// [`ChildFuture`](crate::ChildFuture) does. It needs a tokio runtime
    /// with I/O and time enabled, and the child must not use that runtime
    /// (see [`run_async`](Self::run_async)).
    ///
    /// # Example
    ///
    /// ```
    /// use mem_isolate::{Isolate, Sender};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::future::poll_fn;
    /// use std::pin::pin;
    /// use futures_core::Stream;
    ///
    /// let mut pages = pin!(Isolate::new().stream_async(|tx: &mut Sender<String>| {
    ///     for i in 1..=3 {
    ///         tx.send(&format!("page {i}")).unwrap();
    ///     }
    /// }));
    /// let mut got = Vec::new();
    /// while let Some(page) = poll_fn(|cx| pages.as_mut().poll_next(cx)).await {
    ///     got.push(page?);
    /// }
    /// assert_eq!(got, ["page 1", "page 2", "page 3"]);
    /// # Ok::<(), mem_isolate::MemIsolateError>(())
    /// # }).unwrap();
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn stream_async<F, T>(&self, producer: F) -> AsyncIsolatedStream<T>
    where
        F: FnOnce(&mut Sender<T>) + Send + 'static,
        T: Serialize + DeserializeOwned + 'static,
    {
        let isolate = self.clone();
        let start: Start = Box::new(move || {
            let sink = ItemQueue::new(isolate.result_cap());
            let (call, watch) = call::start(
                &isolate.options(),
                StreamJob::<F, T>::new(producer),
                sink,
                None,
                sys::getpid(),
                WaitMode::Queue,
            )?;
            Ok(Driven::new(call, watch))
        });
        AsyncIsolatedStream {
            start: Some(start),
            timeout: self.options().timeout,
            driven: None,
            ready: None,
            timer: None,
            deadline: None,
            finished: false,
            over: false,
            _item: PhantomData,
        }
    }
}

/// The items a child's producer sends, as a [`futures_core::Stream`] of
/// `Result<T, MemIsolateError>`: what [`Isolate::stream_async`] returns.
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[must_use = "streams do nothing unless polled"]
pub struct AsyncIsolatedStream<T> {
    /// The fork, until the first poll.
    start: Option<Start>,
    timeout: Option<Duration>,
    /// The registration, dropped before `driven`, whose watch owns the
    /// descriptor.
    ready: Option<AsyncFd<Registered>>,
    driven: Option<Driven<'static, ItemQueue>>,
    timer: Option<Pin<Box<Sleep>>>,
    /// The deadline, on the monotonic clock.
    deadline: Option<Duration>,
    finished: bool,
    over: bool,
    _item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> AsyncIsolatedStream<T> {
    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, MemIsolateError>>> {
        if let Some(start) = self.start.take() {
            match start() {
                Ok(driven) => {
                    self.deadline = self.timeout.map(|t| sys::now().saturating_add(t));
                    self.driven = Some(driven);
                }
                Err(e) => {
                    self.over = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
        loop {
            if self.over {
                return Poll::Ready(None);
            }
            let Some(driven) = self.driven.as_mut() else {
                self.over = true;
                return Poll::Ready(None);
            };
            if let Some(bytes) = driven.call_mut().sink_mut().pop() {
                let item = decode_item::<T>(bytes);
                if item.is_err() {
                    self.over = true;
                    self.end();
                }
                return Poll::Ready(Some(item));
            }
            if self.finished {
                self.over = true;
                let end = driven.call_mut().outcome::<()>().err();
                self.end();
                return Poll::Ready(end.map(Err));
            }
            // One pass that does not block: reads, reaps, keeps the
            // deadline.
            if driven.advance(Some(Duration::ZERO)) {
                self.finished = true;
                continue;
            }
            if driven.call_mut().sink_mut().paused() {
                continue;
            }
            match self.park(cx) {
                Ok(true) => {}
                Ok(false) => return Poll::Pending,
                Err(e) => return self.fail(e),
            }
        }
    }

    /// Nothing to give without waiting: registers the readiness
    /// descriptor and arms the timer (the deadline, and the fallback tick
    /// of a child nothing can wake for). `Ok(true)`: something is ready
    /// already, look again; `Ok(false)`: wakers are set.
    fn park(&mut self, cx: &mut Context<'_>) -> Result<bool, Errno> {
        let Some(driven) = self.driven.as_mut() else {
            return Ok(true);
        };
        if self.ready.is_none() {
            // A stream's watch has its queue from before the fork.
            let fd = driven.ready_fd().ok_or(Errno::BADF)?;
            // SAFETY: the descriptor is the watch's, which lives in
            // `driven`; the registration is dropped first (see `end` and
            // `Drop`).
            self.ready = Some(unsafe { register(fd) }?);
        }
        if let Some(ready) = &self.ready {
            match ready.poll_read_ready(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    guard.clear_ready();
                    return Ok(true);
                }
                Poll::Ready(Err(e)) => return Err(Errno::from_io_error(&e).unwrap_or(Errno::IO)),
                Poll::Pending => {}
            }
        }
        let now = sys::now();
        let unwatched = driven.parts().1.needs_tick();
        let tick = unwatched.then(|| now + sys::FALLBACK_TICK);
        let wake_at = match (self.deadline, tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(wake_at) = wake_at else {
            return Ok(false);
        };
        if wake_at <= now {
            return Ok(true);
        }
        let at = Instant::now() + wake_at.saturating_sub(now);
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(at),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        Ok(self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready()))
    }

    /// The reactor failed (the runtime is shutting down): the stream ends
    /// with that, and the child is killed and reaped.
    fn fail(&mut self, errno: Errno) -> Poll<Option<Result<T, MemIsolateError>>> {
        self.over = true;
        self.end();
        Poll::Ready(Some(Err(
            CallableStatusUnknownError::WaitFailed(errno).into()
        )))
    }

    /// Done with the child: deregister, then kill (if still running) and
    /// reap without blocking the runtime's thread.
    fn end(&mut self) {
        self.ready = None;
        self.timer = None;
        if let Some(driven) = self.driven.take() {
            crate::drive::tokio::cancel(driven);
        }
    }
}

impl<T: DeserializeOwned> futures_core::Stream for AsyncIsolatedStream<T> {
    type Item = Result<T, MemIsolateError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().step(cx)
    }
}

impl<T: DeserializeOwned> futures_core::FusedStream for AsyncIsolatedStream<T> {
    fn is_terminated(&self) -> bool {
        self.over
    }
}

impl<T> Drop for AsyncIsolatedStream<T> {
    fn drop(&mut self) {
        self.ready = None;
        if let Some(driven) = self.driven.take() {
            crate::drive::tokio::cancel(driven);
        }
    }
}

impl<T> core::fmt::Debug for AsyncIsolatedStream<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("AsyncIsolatedStream");
        if let Some(driven) = &self.driven {
            d.field("pid", &driven.call().pid());
        }
        d.finish_non_exhaustive()
    }
}
