//! Children that misbehave on purpose: grandchildren holding the pipe open,
//! forged and stray bytes on the result pipe.
//!
//! Every test holds `SERIAL`: the ones that write to the result pipe find
//! it through `/proc`, and no other call from this binary may have a pipe
//! open that they could hit by mistake.

// The integration tests use the std API (panics, spawn, threads).
#![cfg(feature = "std")]

mod common;

use std::sync::Mutex;
use std::time::Duration;

use mem_isolate::errors::CallableStatusUnknownError as Unknown;
use mem_isolate::{Isolate, MemIsolateError};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn kill_and_forget(pid: i32) {
    // SAFETY: signalling a process this test started; the grandchild was
    // reparented, so init reaps it.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[test]
fn a_grandchild_holding_the_pipe_does_not_delay_a_value() {
    // If the parent waited for end-of-file it would sit out the grandchild's
    // twenty seconds and hit the ten-second timeout instead.
    let _g = serial();
    let r = Isolate::new()
        .timeout(Duration::from_secs(10))
        .run(|| (common::grandchild_holding_the_pipe(20), vec![1u8; 300_000]));
    let (grandchild, bytes) = r.unwrap();
    kill_and_forget(grandchild);
    assert_eq!(bytes.len(), 300_000);
}

#[test]
fn a_grandchild_holding_the_pipe_does_not_delay_a_failure() {
    let _g = serial();
    let r = Isolate::new()
        .timeout(Duration::from_secs(10))
        .run(|| -> u8 {
            common::grandchild_holding_the_pipe(20);
            std::process::exit(12)
        });
    assert_eq!(
        r,
        Err(MemIsolateError::CallableStatusUnknown(
            Unknown::UnexpectedChildExitStatus(12)
        ))
    );
}

#[cfg(target_os = "linux")]
mod forged {
    use super::*;

    fn pipe_inode(link: &std::path::Path) -> Option<String> {
        let target = std::fs::read_link(link).ok()?;
        let t = target.to_string_lossy();
        t.strip_prefix("pipe:").map(str::to_owned)
    }

    /// True if the parent's descriptor `fd` is open read-only and
    /// non-blocking, as the crate's read end of a result pipe is.
    fn nonblocking_reader(parent: u32, fd: &std::ffi::OsStr) -> bool {
        let info =
            std::fs::read_to_string(format!("/proc/{parent}/fdinfo/{}", fd.to_string_lossy()))
                .unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
            .unwrap_or(0);
        flags & libc::O_ACCMODE == libc::O_RDONLY && flags & libc::O_NONBLOCK != 0
    }

    /// In the child: the write end of the result pipe, found as the pipe
    /// whose other end the parent holds as the crate does (read-only,
    /// non-blocking). Needs `SERIAL`.
    fn result_pipe_write_end() -> i32 {
        let parent = std::os::unix::process::parent_id();
        let parent_pipes: Vec<String> = std::fs::read_dir(format!("/proc/{parent}/fd"))
            .unwrap()
            .flatten()
            .filter(|e| nonblocking_reader(parent, &e.file_name()))
            .filter_map(|e| pipe_inode(&e.path()))
            .collect();
        let mut found = None;
        for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let Some(inode) = pipe_inode(&e.path()) else {
                continue;
            };
            let fd: i32 = e.file_name().to_str().unwrap().parse().unwrap();
            // SAFETY: querying flags of a descriptor that exists.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            let write_only = flags >= 0 && flags & libc::O_ACCMODE == libc::O_WRONLY;
            if fd > 2 && write_only && parent_pipes.contains(&inode) {
                assert!(found.is_none(), "more than one candidate result pipe");
                found = Some(fd);
            }
        }
        found.expect("the result pipe's write end")
    }

    fn write(fd: i32, bytes: &[u8]) {
        // SAFETY: writing a buffer to a descriptor that exists.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(n, isize::try_from(bytes.len()).unwrap());
    }

    #[test]
    fn stray_bytes_before_the_value_are_rejected() {
        let _g = serial();
        let r = mem_isolate::execute_in_isolated_process(|| {
            write(result_pipe_write_end(), b"this is not a frame");
            42u32
        });
        assert_eq!(
            r,
            Err(MemIsolateError::CallableStatusUnknown(
                Unknown::ResultStreamCorrupted
            ))
        );
    }

    #[test]
    fn a_well_formed_but_forged_stream_is_not_taken_for_a_value() {
        let _g = serial();
        // Frames that follow the grammar (magic, kinds, lengths) but whose
        // checksum cannot match: the forger does not know the call's nonce.
        let r = mem_isolate::execute_in_isolated_process(|| -> u32 {
            let fd = result_pipe_write_end();
            let mut data = vec![0xD4, b'M', b'I', 1, 1, 0, 0, 0, 42];
            data.extend_from_slice(&[0xE6, b'M', b'I', 1, 24, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
            data.extend_from_slice(&1u64.to_le_bytes());
            data.extend_from_slice(&0x1234_5678_u64.to_le_bytes());
            write(fd, &data);
            // SAFETY: leaving the child without returning a value.
            unsafe { libc::_exit(0) }
        });
        assert_eq!(
            r,
            Err(MemIsolateError::CallableStatusUnknown(
                Unknown::ResultStreamCorrupted
            ))
        );
    }

    #[test]
    fn stray_bytes_then_death_are_still_reported_as_corruption() {
        let _g = serial();
        let r = mem_isolate::execute_in_isolated_process(|| -> u32 {
            write(result_pipe_write_end(), &[0xFF; 64]);
            std::process::abort()
        });
        assert_eq!(
            r,
            Err(MemIsolateError::CallableStatusUnknown(
                Unknown::ResultStreamCorrupted
            ))
        );
    }
}

/// The callable cannot reach the parent's readiness queue (to add to it or
/// drain it): a spawned child closes its copy of the epoll instance before
/// the callable runs, and a blocking call makes none.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn the_callable_holds_no_readiness_queue_of_the_parent() {
    let _g = serial();
    let queues = || -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|link| link.to_string_lossy().contains("eventpoll"))
            .count()
    };
    let spawned = Isolate::new().spawn(queues).unwrap();
    assert_eq!(spawned.join(), Ok(0));
    assert_eq!(Isolate::new().run(queues), Ok(0));
}
