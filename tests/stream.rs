//! `Isolate::stream`: each behaviour provoked for real in a forked child.

#![cfg(feature = "std")]

use std::time::Duration;

use mem_isolate::errors::{CallableExecutedError, CallableStatusUnknownError};
use mem_isolate::{Isolate, MemIsolateError, Sender};
use serde::{Deserialize, Serialize, Serializer};

/// Every item, then the one error (if any), then the check that the
/// stream stays ended.
fn drain<T: serde::de::DeserializeOwned>(
    mut s: mem_isolate::IsolatedStream<T>,
) -> (Vec<T>, Option<MemIsolateError>) {
    let mut items = Vec::new();
    let mut error = None;
    for r in s.by_ref() {
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
    assert!(s.next().is_none(), "the stream stays ended");
    (items, error)
}

fn signalled(sig: i32) -> MemIsolateError {
    CallableStatusUnknownError::ChildProcessKilledBySignal(sig).into()
}

#[test]
fn items_arrive_in_order_small_and_large() {
    let s = Isolate::new()
        .stream(|tx: &mut Sender<(u32, Vec<u8>)>| {
            for i in 0..20_000u32 {
                // Every 1000th item is far larger than the staging buffer.
                let len = if i % 1000 == 7 {
                    300_000
                } else {
                    (i % 50) as usize
                };
                tx.send(&(i, vec![(i % 251) as u8; len])).unwrap();
            }
        })
        .unwrap();
    let (items, error) = drain(s);
    assert_eq!(error, None);
    assert_eq!(items.len(), 20_000);
    for (i, (n, bytes)) in items.iter().enumerate() {
        assert_eq!(*n as usize, i);
        let len = if i % 1000 == 7 { 300_000 } else { i % 50 };
        assert_eq!(bytes.len(), len);
        assert!(bytes.iter().all(|&b| b as usize == i % 251));
    }
}

#[test]
fn unit_items_and_an_empty_stream() {
    let (items, error) = drain(
        Isolate::new()
            .stream(|tx: &mut Sender<()>| {
                for _ in 0..1000 {
                    tx.send(&()).unwrap();
                }
            })
            .unwrap(),
    );
    assert_eq!((items.len(), error), (1000, None));
    let (items, error) = drain(Isolate::new().stream(|_: &mut Sender<u8>| {}).unwrap());
    assert_eq!((items, error), (vec![], None));
}

/// A pipe for a handshake between the test (parent) and the producer:
/// `(read end, write end)` (plain `pipe`: macOS has no `pipe2`).
fn handshake_pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

fn write_byte(fd: i32) {
    // SAFETY: one byte from a valid buffer.
    assert_eq!(unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) }, 1);
}

/// Blocks until a byte arrives; false at end-of-file.
fn read_byte(fd: i32) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: one byte into a valid buffer.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) == 1 }
}

fn close(fd: i32) {
    // SAFETY: a descriptor this test made and owns.
    unsafe { libc::close(fd) };
}

#[test]
fn each_item_reaches_the_parent_before_the_producer_goes_on() {
    // The producer sends item i, then waits for the parent's word that it
    // has item i. Were an item held back in a buffer until the next send
    // (or the end), neither side would move: the timeout turns that hang
    // into an error.
    let (ack_read, ack_write) = handshake_pipe();
    let s = Isolate::new()
        .timeout(Duration::from_secs(60))
        .stream(move |tx: &mut Sender<u32>| {
            for i in 0..50 {
                tx.send(&i).unwrap();
                assert!(read_byte(ack_read), "the parent went away");
            }
        })
        .unwrap();
    close(ack_read);
    let mut got = Vec::new();
    for item in s {
        got.push(item.unwrap());
        write_byte(ack_write);
    }
    close(ack_write);
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

#[test]
fn a_crash_after_k_items_keeps_the_k_items_then_reports_the_signal() {
    let s = Isolate::new()
        .stream(|tx: &mut Sender<String>| {
            for i in 0..7 {
                tx.send(&format!("item {i}")).unwrap();
            }
            std::process::abort();
        })
        .unwrap();
    let (items, error) = drain(s);
    assert_eq!(
        items,
        (0..7).map(|i| format!("item {i}")).collect::<Vec<_>>()
    );
    assert_eq!(error, Some(signalled(libc::SIGABRT)));
}

#[test]
fn a_panic_ends_the_stream_with_its_message() {
    let s = Isolate::new()
        .stream(|tx: &mut Sender<u64>| {
            tx.send(&1).unwrap();
            tx.send(&2).unwrap();
            panic!("parser gave up at row {}", 3);
        })
        .unwrap();
    let (items, error) = drain(s);
    assert_eq!(items, [1, 2]);
    match error {
        Some(MemIsolateError::CallableExecuted(CallableExecutedError::CallablePanicked(msg))) => {
            assert_eq!(msg, "parser gave up at row 3");
        }
        other => panic!("expected the panic, got {other:?}"),
    }
}

#[test]
fn a_signal_from_outside_ends_the_stream_after_the_items_sent() {
    let (ack_read, ack_write) = handshake_pipe();
    let mut s = Isolate::new()
        .stream(move |tx: &mut Sender<u8>| {
            tx.send(&1).unwrap();
            tx.send(&2).unwrap();
            // Parked until the parent kills it.
            while read_byte(ack_read) {}
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    close(ack_read);
    assert_eq!(s.next(), Some(Ok(1)));
    assert_eq!(s.next(), Some(Ok(2)));
    let pid = s.pid().as_raw_nonzero().get();
    // SAFETY: the stream's own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let (items, error) = drain(s);
    assert!(items.is_empty());
    assert_eq!(error, Some(signalled(libc::SIGTERM)));
    close(ack_write);
}

#[test]
fn the_timeout_bounds_the_whole_stream() {
    let s = Isolate::new()
        .timeout(Duration::from_millis(300))
        .stream(|tx: &mut Sender<u8>| {
            tx.send(&1).unwrap();
            tx.send(&2).unwrap();
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    let (items, error) = drain(s);
    assert_eq!(items, [1, 2]);
    assert_eq!(
        error,
        Some(CallableStatusUnknownError::TimedOut(Duration::from_millis(300)).into())
    );
}

#[test]
fn an_oversized_item_ends_the_stream_and_the_child() {
    let s = Isolate::new()
        .max_result_size(1000)
        .stream(|tx: &mut Sender<Vec<u8>>| {
            tx.send(&vec![1; 990]).unwrap();
            // Larger than the cap, and than the staging buffer: the parent
            // refuses it part way and kills the child, so this send never
            // returns Ok.
            let refused = tx.send(&vec![2; 1 << 20]);
            // Reached only if the kill came late; nothing more may arrive.
            assert!(refused.is_err());
            tx.send(&vec![3; 10]).ok();
        })
        .unwrap();
    let (items, error) = drain(s);
    assert_eq!(items, [vec![1; 990]]);
    assert_eq!(
        error,
        Some(CallableExecutedError::ResultTooLarge { limit: 1000 }.into())
    );
}

/// Serializes `len` bytes, then fails with a message of its own.
#[derive(Debug, PartialEq, Deserialize)]
enum Msg {
    Num(u64),
    Refused(usize),
    Report(String),
}

impl Serialize for Msg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeTupleVariant};
        match self {
            Msg::Num(n) => s.serialize_newtype_variant("Msg", 0, "Num", n),
            Msg::Report(r) => s.serialize_newtype_variant("Msg", 2, "Report", r),
            Msg::Refused(len) => {
                let mut t = s.serialize_tuple_variant("Msg", 1, "Refused", 2)?;
                for _ in 0..*len {
                    t.serialize_field(&0xABu8)?;
                }
                Err(S::Error::custom(format_args!("refused after {len} bytes")))
            }
        }
    }
}

#[test]
fn a_send_that_cannot_serialize_fails_alone_and_the_stream_goes_on() {
    let s = Isolate::new()
        .stream(|tx: &mut Sender<Msg>| {
            tx.send(&Msg::Num(1)).unwrap();
            // Fails inside the staging buffer: nothing left the child.
            let small = tx.send(&Msg::Refused(10)).unwrap_err();
            tx.send(&Msg::Report(small.to_string())).unwrap();
            // Fails after 600 KiB were flushed: the parent drops them.
            let large = tx.send(&Msg::Refused(600 << 10)).unwrap_err();
            tx.send(&Msg::Report(large.to_string())).unwrap();
            tx.send(&Msg::Num(2)).unwrap();
        })
        .unwrap();
    let (items, error) = drain(s);
    assert_eq!(error, None);
    assert_eq!(
        items,
        [
            Msg::Num(1),
            Msg::Report("the item could not be serialized: refused after 10 bytes".into()),
            Msg::Report(format!(
                "the item could not be serialized: refused after {} bytes",
                600 << 10
            )),
            Msg::Num(2),
        ]
    );
}

/// Whether `pid` names no process at all (reaped: no zombie left).
fn gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[test]
fn dropping_the_stream_kills_and_reaps_the_child() {
    let mut s = Isolate::new()
        .stream(|tx: &mut Sender<u64>| {
            for i in 0.. {
                tx.send(&i).unwrap();
            }
        })
        .unwrap();
    assert_eq!(s.next(), Some(Ok(0)));
    let pid = s.pid().as_raw_nonzero().get();
    assert!(!gone(pid));
    drop(s);
    assert!(gone(pid), "the child is neither running nor a zombie");
}

#[test]
fn kill_ends_the_stream_with_the_signal() {
    let mut s = Isolate::new()
        .stream(|tx: &mut Sender<u64>| {
            tx.send(&7).unwrap();
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    assert_eq!(s.next(), Some(Ok(7)));
    let pid = s.pid().as_raw_nonzero().get();
    s.kill().unwrap();
    assert!(gone(pid), "killed and reaped at once");
    let (items, error) = drain(s);
    assert!(items.is_empty());
    assert_eq!(error, Some(signalled(libc::SIGKILL)));
}

#[test]
fn a_grandchild_holding_the_pipe_cannot_delay_the_end() {
    // The grandchild leaves the child's process group, so nothing kills it
    // for us, and holds the pipe's write end until it is killed: were the
    // end taken from end-of-file, the stream would never end.
    let s = Isolate::new()
        .stream(|tx: &mut Sender<i32>| {
            // SAFETY: the grandchild only calls async-signal-safe functions.
            let grandchild = unsafe { libc::fork() };
            if grandchild == 0 {
                // SAFETY: as above.
                unsafe {
                    libc::setsid();
                    loop {
                        libc::pause();
                    }
                }
            }
            tx.send(&grandchild).unwrap();
            tx.send(&-1).unwrap();
        })
        .unwrap();
    let (items, error) = drain(s);
    assert_eq!(error, None);
    assert_eq!(items.len(), 2);
    assert_eq!(items[1], -1);
    let grandchild = items[0];
    assert!(grandchild > 0);
    assert!(!gone(grandchild), "still holding the pipe");
    // SAFETY: the grandchild this test made; init reaps it.
    unsafe { libc::kill(grandchild, libc::SIGKILL) };
}

#[test]
fn the_producer_blocks_while_the_parent_does_not_read() {
    // The producer counts its sends in a page it shares with the parent.
    // SAFETY: a fresh anonymous shared mapping of one page.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    let counter = page.cast::<std::sync::atomic::AtomicU64>();
    // SAFETY: the mapping is live, aligned, and zeroed.
    let sent = unsafe { &*counter };
    const TOTAL: u64 = 20_000; // 1 KiB each: 20 MiB in all
    let mut s = Isolate::new()
        .stream(move |tx: &mut Sender<Vec<u8>>| {
            let item = vec![5u8; 1024];
            for _ in 0..TOTAL {
                tx.send(&item).unwrap();
                // SAFETY: the shared page outlives the child.
                unsafe { &*counter }.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
        .unwrap();
    assert_eq!(s.next().map(|r| r.unwrap().len()), Some(1024));
    // Wait until the producer stops making progress: it is blocked in
    // `send`, not finished.
    let mut last = u64::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = sent.load(std::sync::atomic::Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    // What the pipe (at most 1 MiB) and the parent's queue (about one
    // read's worth) can hold, far below the whole stream.
    assert!(last < 4096, "the producer ran ahead by {last} KiB");
    let mut rest = 0u64;
    for item in s.by_ref() {
        assert_eq!(item.unwrap().len(), 1024);
        rest += 1;
    }
    assert_eq!(rest, TOTAL - 1);
    assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), TOTAL);
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(page, 4096) };
}
