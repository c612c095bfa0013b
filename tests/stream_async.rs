//! `Isolate::stream_async` on both tokio runtime flavours: items in order
//! and the error that ends them, the deadline, cancellation by drop, and
//! several streams at once.

#![cfg(feature = "tokio")]

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use mem_isolate::errors::{CallableExecutedError, CallableStatusUnknownError};
use mem_isolate::{AsyncIsolatedStream, Isolate, MemIsolateError, Sender};

fn runtimes() -> [(&'static str, tokio::runtime::Runtime); 2] {
    [
        (
            "current_thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
        (
            "multi_thread",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ),
    ]
}

async fn next<T: serde::de::DeserializeOwned>(
    s: &mut AsyncIsolatedStream<T>,
) -> Option<Result<T, MemIsolateError>> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// Every item, then the one error, then the check that the stream stays
/// ended.
async fn drain<T: serde::de::DeserializeOwned>(
    mut s: AsyncIsolatedStream<T>,
) -> (Vec<T>, Option<MemIsolateError>) {
    let mut items = Vec::new();
    let mut error = None;
    while let Some(r) = next(&mut s).await {
        match r {
            Ok(item) => {
                assert!(error.is_none(), "an item after the error");
                items.push(item);
            }
            Err(e) => {
                assert!(error.is_none(), "a second error");
                error = Some(e);
            }
        }
    }
    assert!(next(&mut s).await.is_none(), "the stream stays ended");
    (items, error)
}

fn gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[test]
fn the_stream_is_send_and_static() {
    fn send_static<S: Send + 'static>(_: &S) {}
    let s = Isolate::new().stream_async(|tx: &mut Sender<u8>| tx.send(&1).unwrap());
    send_static(&s);
}

#[test]
fn items_in_order_then_the_panic_on_both_flavours() {
    for (flavour, rt) in runtimes() {
        let (items, error) = rt.block_on(async {
            let s = Isolate::new().stream_async(|tx: &mut Sender<(u32, String)>| {
                for i in 0..5000u32 {
                    tx.send(&(i, "x".repeat((i % 300) as usize))).unwrap();
                }
                panic!("done at {}", 5000);
            });
            // Handed to another task: `Send` and `'static`.
            tokio::spawn(drain(s)).await.unwrap()
        });
        assert_eq!(items.len(), 5000, "{flavour}");
        for (i, (n, text)) in items.iter().enumerate() {
            assert_eq!(*n as usize, i, "{flavour}");
            assert_eq!(text.len(), i % 300, "{flavour}");
        }
        assert_eq!(
            error,
            Some(CallableExecutedError::CallablePanicked("done at 5000".into()).into()),
            "{flavour}"
        );
    }
}

#[test]
fn the_deadline_ends_an_async_stream_on_both_flavours() {
    for (flavour, rt) in runtimes() {
        let (items, error) = rt.block_on(drain(
            Isolate::new()
                .timeout(Duration::from_millis(200))
                .stream_async(|tx: &mut Sender<u8>| {
                    tx.send(&9).unwrap();
                    loop {
                        std::thread::park();
                    }
                }),
        ));
        assert_eq!(items, [9], "{flavour}");
        assert_eq!(
            error,
            Some(CallableStatusUnknownError::TimedOut(Duration::from_millis(200)).into()),
            "{flavour}"
        );
    }
}

#[test]
fn dropping_an_async_stream_kills_and_reaps_the_child_on_both_flavours() {
    for (flavour, rt) in runtimes() {
        let pid = rt.block_on(async {
            let mut s = Isolate::new().stream_async(|tx: &mut Sender<i32>| {
                // SAFETY: getpid is always safe.
                tx.send(&unsafe { libc::getpid() }).unwrap();
                loop {
                    tx.send(&0).unwrap();
                }
            });
            let pid = next(&mut s).await.unwrap().unwrap();
            assert!(!gone(pid), "{flavour}");
            drop(s);
            // The reap may be handed to a task on the runtime: give it
            // the time it needs, bounded.
            for _ in 0..1000 {
                if gone(pid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            pid
        });
        assert!(
            gone(pid),
            "{flavour}: the child is neither running nor a zombie"
        );
    }
}

#[test]
fn several_streams_at_once_on_both_flavours() {
    for (flavour, rt) in runtimes() {
        let totals = rt.block_on(async {
            let tasks: Vec<_> = (0..4u64)
                .map(|k| {
                    tokio::spawn(drain(Isolate::new().stream_async(
                        move |tx: &mut Sender<u64>| {
                            for i in 0..2000 {
                                tx.send(&(k * i)).unwrap();
                            }
                        },
                    )))
                })
                .collect();
            let mut totals = Vec::new();
            for t in tasks {
                let (items, error) = t.await.unwrap();
                assert_eq!(error, None);
                totals.push(items.iter().sum::<u64>());
            }
            totals
        });
        let want: Vec<u64> = (0..4u64).map(|k| k * (0..2000).sum::<u64>()).collect();
        assert_eq!(totals, want, "{flavour}");
    }
}
