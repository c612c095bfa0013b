//! Descriptors the crate keeps between calls (the per-thread spill file)
//! against a program that closes every descriptor it does not own and then
//! opens files of its own, which take the freed numbers.
//!
//! Without a test harness (`harness = false`): the test closes every
//! descriptor of its process above 2, which must not happen under other
//! tests' feet, and it needs a thread to exit so that the crate's
//! thread-local state is destroyed.

#[cfg(all(target_os = "linux", feature = "std"))]
fn main() {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;

    use mem_isolate::Isolate;

    let dir = std::env::temp_dir().join(format!("mem-isolate-kept-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let content = |i: usize| format!("precious data of file {i}\n").repeat(100);

    let files = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            // The thread's first call makes its shared page and spill file.
            assert_eq!(Isolate::new().run(|| 1u32), Ok(1));
            close_every_descriptor_above_stdio();
            // The program's own files take the freed numbers, the spill
            // file's among them.
            let files: Vec<std::fs::File> = (0..8)
                .map(|i| {
                    let mut f = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(dir.join(format!("{i}")))
                        .unwrap();
                    f.write_all(content(i).as_bytes()).unwrap();
                    f
                })
                .collect();
            // Results larger than the page go to the spill file, which must
            // be a fresh one now.
            let large = || vec![7u8; 200_000];
            assert_eq!(Isolate::new().run(large).map(|v| v.len()), Ok(200_000));
            assert_eq!(Isolate::new().run(|| 2u32), Ok(2));
            let child = Isolate::new().spawn(large).unwrap();
            assert_eq!(child.join().map(|v| v.len()), Ok(200_000));
            // A small result in between moves the next large one back to
            // the spill file.
            assert_eq!(Isolate::new().run(|| 3u32), Ok(3));
            assert_eq!(Isolate::new().run(large).map(|v| v.len()), Ok(200_000));
            // The thread exits: the crate's thread-local page and spill
            // file are destroyed, and must close nothing of the program's.
            files
        })
        .join()
        .expect("the thread failed")
    };

    for (i, mut f) in files.into_iter().enumerate() {
        // SAFETY: F_GETFD only asks about the descriptor.
        let open = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFD) } != -1;
        assert!(open, "file {i}'s descriptor was closed by the crate");
        let mut text = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, content(i), "file {i} was changed by the crate");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    println!("kept_descriptors: 1 passed, 0 failed");
}

/// `close_range(3, ~0)`, or a loop over the numbers where the kernel has
/// no `close_range` (before 5.9).
#[cfg(all(target_os = "linux", feature = "std"))]
fn close_every_descriptor_above_stdio() {
    // SAFETY: closes descriptors; nothing in this process uses them after.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..4096 {
                libc::close(fd);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", feature = "std")))]
fn main() {
    // The spill file exists on Linux only (elsewhere the crate keeps no
    // descriptor between calls), and with `std` (thread-local pages).
    println!("kept_descriptors: 0 passed, 0 failed (Linux with std only)");
}
