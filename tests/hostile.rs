//! Children that misbehave on purpose: grandchildren holding the pipe open,
//! forged and stray bytes on the result pipe, and (Linux) in the shared
//! page and the spill file that blocking calls use instead.
//!
//! Every test holds `SERIAL`: the ones that write to the result pipe, the
//! page or the spill file find them through `/proc`, and no other call
//! from this binary may have one in use that they could hit by mistake.

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

    /// Runs `f` as a spawned child, whose result always takes a pipe.
    fn through_pipe<T>(f: impl FnOnce() -> T) -> Result<T, MemIsolateError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        Isolate::new()
            .spawn(f)
            .and_then(mem_isolate::IsolatedChild::join)
    }

    fn write(fd: i32, bytes: &[u8]) {
        // SAFETY: writing a buffer to a descriptor that exists.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(n, isize::try_from(bytes.len()).unwrap());
    }

    #[test]
    fn stray_bytes_before_the_value_are_rejected() {
        let _g = serial();
        let r = through_pipe(|| {
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
        let r = through_pipe(|| -> u32 {
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
        let r = through_pipe(|| -> u32 {
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

/// Blocking calls on Linux send no stream: a small result is left in the
/// thread's shared page, a larger one in its spill file (a memfd) with a
/// marker in the page. A callable can write to both; what it writes there
/// must never pass for a value, must not make the parent read or keep more
/// than the child really wrote, and stray bytes must not spoil a value the
/// crate then sends itself.
#[cfg(target_os = "linux")]
mod spilled {
    use super::*;

    const CORRUPTED: MemIsolateError =
        MemIsolateError::CallableStatusUnknown(Unknown::ResultStreamCorrupted);

    /// Spill files open in this process, by descriptor number.
    fn spill_files() -> Vec<i32> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:mem-isolate-spill"))
            })
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// Shared result pages mapped in this process: one-page shared
    /// writable mappings of `/dev/zero`, as `mmap(MAP_SHARED |
    /// MAP_ANONYMOUS)` shows them.
    fn shared_pages() -> Vec<*mut u8> {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.contains(" rw-s ") && l.ends_with("/dev/zero (deleted)"))
            .filter_map(|l| {
                let (start, end) = l.split_whitespace().next()?.split_once('-')?;
                let start = usize::from_str_radix(start, 16).ok()?;
                let end = usize::from_str_radix(end, 16).ok()?;
                (end - start == 4096).then_some(start as *mut u8)
            })
            .collect()
    }

    /// Frames that follow the protocol's grammar, with a checksum that
    /// cannot match: one DATA frame of `payload` and an END claiming a
    /// value.
    fn forged_frames(payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap();
        let mut bytes = vec![0xD4, b'M', b'I', 1];
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes.extend_from_slice(&[0xE6, b'M', b'I', 1, 24, 0, 0, 0]);
        bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&u64::from(len).to_le_bytes());
        bytes.extend_from_slice(&0x1234_5678_u64.to_le_bytes());
        bytes
    }

    /// Makes this thread's next blocking call use the spill file: after a
    /// result that outgrew the page, the next call streams through a pipe
    /// instead (large results move faster that way); a small one sets it
    /// back.
    fn spill_next() {
        assert_eq!(mem_isolate::execute_in_isolated_process(|| 0u8), Ok(0));
    }

    /// In a child: writes `head` at the start of every shared page.
    fn write_pages(head: &[u8]) {
        let pages = shared_pages();
        assert!(!pages.is_empty(), "no shared page found");
        for page in pages {
            // SAFETY: a live shared mapping of 4096 bytes; `head` fits.
            unsafe { std::ptr::copy_nonoverlapping(head.as_ptr(), page, head.len()) };
        }
    }

    /// In a child: writes `bytes` at offset 0 of every spill file.
    fn write_spill_files(bytes: &[u8]) {
        let files = spill_files();
        assert!(!files.is_empty(), "no spill file found");
        for fd in files {
            // SAFETY: writing a buffer to a descriptor that exists.
            let n = unsafe { libc::pwrite(fd, bytes.as_ptr().cast(), bytes.len(), 0) };
            assert_eq!(usize::try_from(n), Ok(bytes.len()));
        }
    }

    #[test]
    fn a_forged_small_result_in_the_page_is_not_taken_for_a_value() {
        let _g = serial();
        let r = mem_isolate::execute_in_isolated_process(|| -> u32 {
            let frames = forged_frames(&[42]);
            let mut head = u32::try_from(frames.len()).unwrap().to_le_bytes().to_vec();
            head.extend_from_slice(&frames);
            write_pages(&head);
            // SAFETY: leaving the child without returning a value.
            unsafe { libc::_exit(0) }
        });
        assert_eq!(r, Err(CORRUPTED));
    }

    #[test]
    fn a_forged_spill_is_not_taken_for_a_value_whatever_length_it_claims() {
        let _g = serial();
        let frames = forged_frames(&[7; 5000]);
        for claimed in [frames.len() as u64, u64::MAX] {
            let frames = frames.clone();
            spill_next();
            let r = mem_isolate::execute_in_isolated_process(move || -> Vec<u8> {
                write_spill_files(&frames);
                let mut head = vec![0xFF; 4];
                head.extend_from_slice(&claimed.to_le_bytes());
                write_pages(&head);
                // SAFETY: leaving the child without returning a value.
                unsafe { libc::_exit(0) }
            });
            assert_eq!(r, Err(CORRUPTED), "claiming {claimed} bytes");
        }
    }

    #[test]
    fn a_forged_sparse_gigabyte_of_spill_is_read_no_further_than_it_was_written() {
        let _g = serial();
        // A gigabyte of spill file, sparse: a DATA header claiming a full
        // frame every 128 KiB, zeros (holes) between them, and a marker
        // claiming more still. Read in full it would take seconds and a
        // gigabyte of the parent's memory. The child has ended, so what it
        // left is read, deadline or not, as from a pipe, but no more than
        // it really stored (one page per header: 32 MiB), nor past the cap.
        // With a cap above that, the stream simply ends incomplete.
        spill_next();
        let r = Isolate::new()
            .timeout(Duration::from_secs(30))
            .max_result_size(64 << 20)
            .run(|| -> Vec<u8> {
                const FRAME: u64 = 128 * 1024;
                let fd = spill_files()[0];
                // SAFETY: growing a file this child holds.
                assert_eq!(unsafe { libc::ftruncate(fd, 1 << 30) }, 0);
                let body = u32::try_from(FRAME - 8).unwrap().to_le_bytes();
                let header = [0xD4, b'M', b'I', 1, body[0], body[1], body[2], body[3]];
                let mut at = 0;
                while at < 1 << 30 {
                    // SAFETY: writing a buffer to a descriptor that exists.
                    let n = unsafe {
                        libc::pwrite(
                            fd,
                            header.as_ptr().cast(),
                            8,
                            libc::off_t::try_from(at).unwrap(),
                        )
                    };
                    assert_eq!(n, 8);
                    at += FRAME;
                }
                let mut head = vec![0xFF; 4];
                head.extend_from_slice(&u64::MAX.to_le_bytes());
                write_pages(&head);
                // SAFETY: leaving the child without returning a value.
                unsafe { libc::_exit(0) }
            });
        assert_eq!(
            r,
            Err(MemIsolateError::CallableStatusUnknown(
                Unknown::CallableProcessDiedDuringExecution
            ))
        );
    }

    #[test]
    fn stray_bytes_in_the_spill_file_do_not_touch_a_value_sent_after_them() {
        let _g = serial();
        let stray = vec![0xFF; 1 << 20];
        let small = mem_isolate::execute_in_isolated_process({
            let stray = stray.clone();
            move || {
                write_spill_files(&stray);
                42u32
            }
        });
        assert_eq!(small, Ok(42));
        // Shorter than the stray bytes: the parent reads only what the
        // child says it wrote.
        spill_next();
        let large = mem_isolate::execute_in_isolated_process(move || {
            write_spill_files(&stray);
            vec![3u8; 300_000]
        });
        assert_eq!(large, Ok(vec![3u8; 300_000]));
    }

    #[test]
    fn a_call_made_inside_a_child_leaves_its_parents_page_alone() {
        let _g = serial();
        // The callable sees its parent's page (and pages of other threads
        // of the test binary, which it must leave alone too). A call it
        // makes itself, small or spilled, must use a page and a spill file
        // of its own.
        let r = mem_isolate::execute_in_isolated_process(|| {
            // The inherited pages and spill files, as they are now; the
            // child's own, made by its first call, are not among them.
            let pages: Vec<(usize, Vec<u8>)> = shared_pages()
                .into_iter()
                // SAFETY: reading live shared mappings of 4096 bytes.
                .map(|p| {
                    (
                        p as usize,
                        unsafe { std::slice::from_raw_parts(p, 4096) }.to_vec(),
                    )
                })
                .collect();
            let size = |fd: i32| {
                std::fs::metadata(format!("/proc/self/fd/{fd}"))
                    .unwrap()
                    .len()
            };
            let files: Vec<(i32, u64)> =
                spill_files().into_iter().map(|fd| (fd, size(fd))).collect();
            assert!(!pages.is_empty() && !files.is_empty());
            let small = mem_isolate::execute_in_isolated_process(|| 5u8);
            let large = mem_isolate::execute_in_isolated_process(|| vec![6u8; 300_000]);
            let untouched = pages.iter().all(|(at, bytes)| {
                // SAFETY: as above; the inherited mappings stay mapped.
                let now = unsafe { std::slice::from_raw_parts(*at as *const u8, 4096) };
                now == bytes.as_slice()
            }) && files.iter().all(|&(fd, len)| size(fd) == len);
            (small, large.map(|v| v.len()), untouched)
        });
        assert_eq!(r, Ok((Ok(5), Ok(300_000), true)));
    }

    /// In a child: how many pipes into the parent it may write to.
    fn writable_pipes_into_parent() -> usize {
        let parent = std::os::unix::process::parent_id();
        let read_by_parent: Vec<String> = std::fs::read_dir(format!("/proc/{parent}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|l| l.to_string_lossy().into_owned())
            .filter(|l| l.starts_with("pipe:"))
            .collect();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| {
                let fd: i32 = e.file_name().to_str().unwrap().parse().unwrap();
                // SAFETY: querying the flags of a descriptor that exists
                // (or is gone, which reports -1).
                let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
                fd > 2
                    && flags >= 0
                    && flags & libc::O_ACCMODE == libc::O_WRONLY
                    && std::fs::read_link(e.path())
                        .is_ok_and(|l| read_by_parent.contains(&l.to_string_lossy().into_owned()))
            })
            .count()
    }

    #[test]
    fn after_a_large_result_the_next_call_streams_through_a_pipe() {
        let _g = serial();
        spill_next();
        let through_page_or_spill = mem_isolate::execute_in_isolated_process(|| {
            (writable_pipes_into_parent(), vec![1u8; 300_000])
        });
        let after_large =
            mem_isolate::execute_in_isolated_process(|| (writable_pipes_into_parent(), 0u8));
        let after_small =
            mem_isolate::execute_in_isolated_process(|| (writable_pipes_into_parent(), 0u8));
        // Counted against the first call: the child may inherit other
        // pipes into this process (cargo's jobserver, say).
        let (base, v) = through_page_or_spill.unwrap();
        assert_eq!(v.len(), 300_000);
        assert_eq!(after_large, Ok((base + 1, 0)), "the result pipe");
        assert_eq!(after_small, Ok((base, 0)));
    }

    #[test]
    fn a_forked_process_makes_one_page_of_its_own_and_keeps_it() {
        let _g = serial();
        // Inside a child, as in a pre-forked worker: the first call makes
        // the process's own page and spill file, later calls reuse them
        // rather than making one each.
        let r = mem_isolate::execute_in_isolated_process(|| {
            let inherited = spill_files().len();
            let mut counts = Vec::new();
            for i in 0..3u8 {
                let small = mem_isolate::execute_in_isolated_process(move || i);
                let large = mem_isolate::execute_in_isolated_process(|| vec![i; 100_000]);
                assert_eq!((small, large.map(|v| v.len())), (Ok(i), Ok(100_000)));
                counts.push(spill_files().len() - inherited);
            }
            counts
        });
        assert_eq!(r, Ok(vec![1, 1, 1]));
    }

    /// Numbers whose serialization scribbles over the shared pages after
    /// the first ten, while its own first bytes are still there, then
    /// goes on long enough to outgrow the page.
    struct Scribbler;

    impl serde::Serialize for Scribbler {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(10_000))?;
            for i in 0..10_000u32 {
                if i == 10 {
                    for page in shared_pages() {
                        // SAFETY: a live shared mapping of 4096 bytes.
                        unsafe { std::ptr::write_bytes(page.add(12), 0x77, 8) };
                    }
                }
                seq.serialize_element(&i)?;
            }
            seq.end()
        }
    }

    impl<'de> serde::Deserialize<'de> for Scribbler {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Vec::<u32>::deserialize(d).map(|_| Scribbler)
        }
    }

    #[test]
    fn bytes_changed_in_the_page_under_the_child_are_not_carried_along() {
        let _g = serial();
        // The child's first bytes go to the shared page; when the value
        // outgrows it they move to the staging buffer, read back from the
        // page. Anything that changed them meanwhile must not become part
        // of the value: the child refuses to send it.
        spill_next();
        let r = mem_isolate::execute_in_isolated_process(|| Scribbler).map(|_| ());
        assert_eq!(
            r,
            Err(MemIsolateError::CallableExecuted(
                mem_isolate::errors::CallableExecutedError::ChildPipeWriteFailed(
                    mem_isolate::errors::Errno::BADMSG
                )
            ))
        );
    }

    /// The file behind descriptor `fd` (its inode), if `fd` is open.
    fn inode(fd: i32) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .ok()
            .map(|m| m.ino())
    }

    /// In a new thread: makes the thread's first call and returns the
    /// descriptor of the spill file that call made, or `None` when that
    /// cannot be told apart (another test's thread made one at the same
    /// moment). Files are told apart by inode, not number: a number
    /// another test's thread closed meanwhile may be reused.
    fn new_threads_spill_file() -> Option<i32> {
        let before: Vec<u64> = spill_files().into_iter().filter_map(inode).collect();
        spill_next();
        let new: Vec<i32> = spill_files()
            .into_iter()
            .filter(|&fd| inode(fd).is_some_and(|i| !before.contains(&i)))
            .collect();
        match new[..] {
            [fd] => Some(fd),
            _ => None,
        }
    }

    #[test]
    fn the_spill_file_is_emptied_after_every_call() {
        let _g = serial();
        // A thread of its own, so that its spill file is new and known;
        // another thread, should another test's make one at the same time.
        let checked = (0..20).any(|_| {
            std::thread::spawn(spill_file_is_emptied_in_this_thread)
                .join()
                .unwrap()
        });
        assert!(checked, "the thread's spill file was never told apart");
    }

    /// The body of [`the_spill_file_is_emptied_after_every_call`]: false
    /// if this thread's spill file could not be found.
    fn spill_file_is_emptied_in_this_thread() -> bool {
        let Some(fd) = new_threads_spill_file() else {
            return false;
        };
        let size = || {
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .len()
        };
        let r = mem_isolate::execute_in_isolated_process(|| vec![1u8; 1 << 20]);
        assert_eq!(r.map(|v| v.len()), Ok(1 << 20));
        assert_eq!(size(), 0, "after a value");
        spill_next();
        let r = Isolate::new()
            .max_result_size(100_000)
            .run(|| vec![1u8; 1 << 20]);
        assert!(r.is_err());
        assert_eq!(size(), 0, "after a result too large");
        spill_next();
        let r = mem_isolate::execute_in_isolated_process(|| -> Vec<u8> {
            write_spill_files(&[9; 300_000]);
            std::process::abort()
        });
        assert!(r.is_err());
        assert_eq!(size(), 0, "after a child that died writing");
        spill_next();
        let r = Isolate::new()
            .timeout(Duration::from_millis(300))
            .run(|| -> Vec<u8> {
                write_spill_files(&[9; 300_000]);
                loop {
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        assert!(r.is_err());
        assert_eq!(size(), 0, "after a child killed at its deadline");
        true
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
