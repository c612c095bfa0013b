//! What a stream leaves behind and what it costs the parent: no descriptor,
//! no child (running or zombie), and a peak RSS that does not grow with
//! the number of items.
//!
//! One test in a binary of its own, so that no other test's descriptors,
//! children or memory show up in what it measures.

#![cfg(feature = "std")]

use std::time::Duration;

use mem_isolate::{Isolate, Sender};

#[cfg(target_os = "linux")]
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A field of `/proc/self/status`, in bytes.
#[cfg(target_os = "linux")]
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Starts a measurement of the peak resident set: returns what the peak is
/// measured against. On Linux the peak (`VmHWM`) is reset to the current
/// resident set, so a high peak from earlier work cannot hide growth.
fn start_peak() -> u64 {
    #[cfg(target_os = "linux")]
    {
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        status_bytes("VmRSS:")
    }
    #[cfg(not(target_os = "linux"))]
    peak_rss()
}

/// The process's peak resident set (since [`start_peak`] on Linux).
fn peak_rss() -> u64 {
    #[cfg(target_os = "linux")]
    {
        status_bytes("VmHWM:")
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: a zeroed rusage is valid, and getrusage fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to it.
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
        let raw = u64::try_from(usage.ru_maxrss).unwrap();
        // macOS counts bytes; FreeBSD counts KiB.
        if cfg!(target_vendor = "apple") {
            raw
        } else {
            raw * 1024
        }
    }
}

/// Every way a stream ends, once each.
fn streams_ending_every_way() {
    let counting = |tx: &mut Sender<u64>| {
        for i in 0..1000 {
            tx.send(&i).unwrap();
        }
    };
    // To the end.
    assert_eq!(Isolate::new().stream(counting).unwrap().count(), 1000);
    // Dropped part way.
    let mut s = Isolate::new().stream(counting).unwrap();
    assert_eq!(s.next(), Some(Ok(0)));
    drop(s);
    // Killed.
    let mut s = Isolate::new().stream(counting).unwrap();
    s.kill().unwrap();
    assert!(s.last().unwrap().is_err());
    // Panicked, timed out.
    let panics = Isolate::new()
        .stream(|_: &mut Sender<u8>| panic!("no"))
        .unwrap();
    assert!(panics.last().unwrap().is_err());
    let sleeps = Isolate::new()
        .timeout(Duration::from_millis(50))
        .stream(|_: &mut Sender<u8>| std::thread::sleep(Duration::from_secs(60)))
        .unwrap();
    assert!(sleeps.last().unwrap().is_err());
}

#[test]
fn streams_leave_nothing_behind_and_hold_about_one_item() {
    // Warm up: the first stream sets up what the process keeps for good
    // (the panic hook, the allocator's arenas).
    streams_ending_every_way();
    #[cfg(target_os = "linux")]
    let descriptors = open_descriptors();

    streams_ending_every_way();

    #[cfg(target_os = "linux")]
    assert_eq!(
        open_descriptors(),
        descriptors,
        "a descriptor was left open"
    );
    // No child of this process is left, not even a zombie.
    // SAFETY: a non-blocking wait for any child.
    let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
    assert_eq!(r, -1, "a child was left behind");
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ECHILD)
    );

    // 1 GiB in 1 MiB items: the parent's peak RSS grows by far less.
    let before = start_peak();
    let s = Isolate::new()
        .stream(|tx: &mut Sender<Vec<u8>>| {
            let mut item = vec![0u8; 1 << 20];
            for i in 0..1024u32 {
                item[0] = (i % 256) as u8;
                tx.send(&item).unwrap();
            }
        })
        .unwrap();
    let mut n = 0u32;
    for item in s {
        let item = item.unwrap();
        assert_eq!(item.len(), 1 << 20);
        assert_eq!(item[0], (n % 256) as u8);
        n += 1;
    }
    assert_eq!(n, 1024);
    let grown = peak_rss().saturating_sub(before);
    eprintln!(
        "peak RSS {} KiB before, grew by {} KiB over 1 GiB of items",
        before / 1024,
        grown / 1024
    );
    assert!(grown < 64 << 20, "peak RSS grew by {} MiB", grown >> 20);
}
