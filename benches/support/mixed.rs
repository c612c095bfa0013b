//! Mixed workloads: what a real caller does between isolated calls. Each
//! is a "third side" timed beside the small call and a bare fork, to see
//! whether what ran just before a call changes what the call costs.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// A pipe round trip through a forked child: `pipe`, `fork`, the child
/// writes 8 bytes and leaves, the parent reads them and reaps it. What a
/// program that runs subprocesses or talks to helpers does.
pub fn pipe_round_trip() {
    // SAFETY: plain system calls; the child only writes and `_exit`s.
    unsafe {
        let mut fds = [0; 2];
        // `pipe`, not `pipe2`: macOS has no `pipe2`, and nothing here execs.
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let word = 42u64.to_ne_bytes();
            libc::write(fds[1], word.as_ptr().cast(), word.len());
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut word = [0u8; 8];
        let mut got = 0;
        while got < word.len() {
            let n = libc::read(fds[0], word[got..].as_mut_ptr().cast(), word.len() - got);
            assert!(n > 0, "the child's 8 bytes");
            got += n as usize;
        }
        libc::close(fds[0]);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
        assert_eq!(u64::from_ne_bytes(word), 42);
    }
}

/// A tokio `current_thread` runtime and a loopback TCP connection whose
/// far end an echo task serves; [`Self::round_trip`] sends 8 bytes and
/// awaits them back, through the runtime's reactor.
pub struct TokioEcho {
    rt: tokio::runtime::Runtime,
    near: tokio::net::TcpStream,
}

impl TokioEcho {
    pub fn new() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let near = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let near = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut far, _) = listener.accept().await.unwrap();
            near.set_nodelay(true).unwrap();
            far.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut word = [0u8; 8];
                while far.read_exact(&mut word).await.is_ok() {
                    if far.write_all(&word).await.is_err() {
                        break;
                    }
                }
            });
            near
        });
        Self { rt, near }
    }

    pub fn round_trip(&mut self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let near = &mut self.near;
        self.rt.block_on(async {
            near.write_all(&42u64.to_ne_bytes()).await.unwrap();
            let mut word = [0u8; 8];
            near.read_exact(&mut word).await.unwrap();
            assert_eq!(u64::from_ne_bytes(black_box(word)), 42);
        });
    }
}

/// `std::process::Command` running `true`, waited for.
pub fn command_true() {
    let status = std::process::Command::new("true").status().unwrap();
    assert!(status.success());
}

/// Each round runs `before` untimed, then times one of `sides` (every
/// side once per round, the order rotated each round, after one warm-up
/// each): each side's median time when it runs straight after `before`.
pub fn each_after(
    rounds: usize,
    before: &mut dyn FnMut(),
    sides: &mut [&mut dyn FnMut()],
) -> Vec<Duration> {
    let n = sides.len();
    for side in sides.iter_mut() {
        before();
        side();
    }
    let mut times: Vec<Vec<Duration>> = (0..n).map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            before();
            let t = Instant::now();
            sides[i]();
            times[i].push(t.elapsed());
        }
    }
    times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect()
}
