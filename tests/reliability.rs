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
