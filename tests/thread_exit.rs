//! A spawned child lives as long as its handle, not as long as the thread
//! that spawned it: thread pools and runtimes retire their threads.

#![cfg(feature = "std")]

use std::time::Duration;

use mem_isolate::{Isolate, IsolatedChild};

/// Spawns a child from a thread that exits `linger` after the spawn, and
/// hands the handle out; the child outlives the thread by a good margin.
fn spawn_from_a_thread_that_exits(linger: Duration) -> IsolatedChild<u32> {
    std::thread::spawn(move || {
        let child = Isolate::new()
            .timeout(Duration::from_secs(30))
            .spawn(|| {
                std::thread::sleep(Duration::from_millis(400));
                std::process::id()
            })
            .unwrap();
        std::thread::sleep(linger);
        child
    })
    .join()
    .unwrap()
}

#[test]
fn a_child_outlives_the_thread_that_spawned_it_at_once() {
    let child = spawn_from_a_thread_that_exits(Duration::ZERO);
    let pid = child.pid().as_raw_nonzero().get().unsigned_abs();
    // Joined from yet another thread.
    let got = std::thread::spawn(move || child.join()).join().unwrap();
    assert_eq!(got, Ok(pid));
}

#[test]
fn a_child_outlives_the_thread_that_spawned_it_100_ms_later() {
    // By then the child has long armed its parent-death signal.
    let child = spawn_from_a_thread_that_exits(Duration::from_millis(100));
    let pid = child.pid().as_raw_nonzero().get().unsigned_abs();
    let got = std::thread::spawn(move || child.join()).join().unwrap();
    assert_eq!(got, Ok(pid));
}

#[test]
fn a_child_that_spawns_in_turn_still_outlives_the_thread_that_spawned_it() {
    // The spawned child makes a spawned call of its own before its
    // spawning thread exits: arming its grandchild must not change what
    // the child's own parent-death handler compares with.
    let child = std::thread::spawn(|| {
        let child = Isolate::new()
            .timeout(Duration::from_secs(30))
            .spawn(|| {
                let inner = Isolate::new().spawn(|| 7u32).unwrap().join().unwrap();
                std::thread::sleep(Duration::from_millis(400));
                inner
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        child
    })
    .join()
    .unwrap();
    let got = std::thread::spawn(move || child.join()).join().unwrap();
    assert_eq!(got, Ok(7));
}
