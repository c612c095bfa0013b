//! The zygote itself: a single-threaded loop that forks a worker per
//! request, tells each caller how its worker ended, and never runs user
//! code.
//!
//! It waits in one `poll` over its control socket, its wake pipe
//! (`SIGCHLD`, see `sys::wake_on_child_exit`) and the socket of every call
//! in flight. Because the zygote alone reaps its children, and only in
//! this loop, a worker it has not reaped yet still owns its pid: the
//! zygote's `kill(pid)` (and `kill(-pid)` for the worker's group) cannot
//! reach a stranger on any platform, and callers, who learn how a worker
//! ended from a reply on their own call's socket, never act on a pid at
//! all.

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Pid, Signal};

use super::wire::{INLINE_ARGS_MAX, REPLY_LEN, REQUEST_LEN, Reply, Request};
use super::worker::{Args, Entry, Job};
use crate::sys;

/// The byte the zygote sends once it is ready to serve.
pub(crate) const READY: u8 = b'R';

/// A worker in flight, until reaped.
struct Worker {
    pid: Pid,
    /// The zygote's end of the call's socket.
    socket: OwnedFd,
    /// It leads a process group of its own, killed with it.
    group: bool,
    /// Killed already (the caller asked, or left).
    killed: bool,
}

/// Runs in the freshly forked zygote; never returns. `control` is its end
/// of the control socket, `parent` the process that started it.
pub(crate) fn serve(control: OwnedFd, parent: Pid) -> ! {
    // Nothing of the caller's stays open here: its descriptors reach
    // end-of-file when the caller closes them, whatever the zygote lives.
    sys::close_all_but(control.as_fd());
    // And none of its signal handlers, which would write to descriptors
    // whose numbers the zygote reuses.
    sys::default_signal_handlers();
    // Its own process group: a Ctrl-C at the terminal is the caller's to
    // handle, and the zygote goes when the caller does.
    sys::lead_own_group();
    match sys::on_parent_death(parent, true) {
        Ok(true) => {}
        _ => sys::exit_now(0),
    }
    let Ok((wake, wake_write)) = sys::wake_on_child_exit() else {
        sys::exit_now(1)
    };
    if sys::send_all(control.as_fd(), &[READY]).is_err() {
        sys::exit_now(0);
    }
    let mut zygote = Zygote {
        me: sys::getpid(),
        control,
        wake,
        wake_write,
        workers: Vec::new(),
        inline: vec![0u8; INLINE_ARGS_MAX],
    };
    zygote.run()
}

struct Zygote {
    me: Pid,
    control: OwnedFd,
    wake: OwnedFd,
    /// The wake pipe's write end, which the `SIGCHLD` handler writes to.
    wake_write: OwnedFd,
    workers: Vec<Worker>,
    /// Where a request's inline arguments are read (the worker finds them
    /// in its copy).
    inline: Vec<u8>,
}

impl Zygote {
    fn run(&mut self) -> ! {
        loop {
            let (control, wake, callers) = self.wait();
            // Kills first: the indices are the poll's, and reaping moves
            // workers around.
            for i in callers {
                self.caller_spoke(i);
            }
            if wake {
                sys::drain(self.wake.as_fd());
                self.reap_ended();
            }
            if control {
                self.take_request();
            }
        }
    }

    /// Waits until the control socket, the wake pipe or a call's socket
    /// is readable; says which (the calls by index).
    fn wait(&self) -> (bool, bool, Vec<usize>) {
        let mut fds = Vec::with_capacity(2 + self.workers.len());
        fds.push(PollFd::new(&self.control, PollFlags::IN));
        fds.push(PollFd::new(&self.wake, PollFlags::IN));
        let mut listened = Vec::with_capacity(self.workers.len());
        for (i, w) in self.workers.iter().enumerate() {
            if !w.killed {
                fds.push(PollFd::new(&w.socket, PollFlags::IN));
                listened.push(i);
            }
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => return (false, true, Vec::new()),
            // Nothing sensible is left to do: end every call.
            Err(_) => self.shut_down_now(),
        }
        let ready = |fd: &PollFd<'_>| !fd.revents().is_empty();
        let callers = listened
            .iter()
            .zip(&fds[2..])
            .filter(|(_, fd)| ready(fd))
            .map(|(&i, _)| i)
            .collect();
        (ready(&fds[0]), ready(&fds[1]), callers)
    }

    /// A caller wrote to its call's socket (a kill) or closed it (it gave
    /// up the call): either way the worker is killed. Its reply, once
    /// reaped, goes to whoever still listens.
    fn caller_spoke(&mut self, i: usize) {
        let Some(w) = self.workers.get_mut(i) else {
            return;
        };
        let mut byte = [0u8; 1];
        let _ = sys::recv_some(w.socket.as_fd(), &mut byte, false);
        kill(w);
    }

    /// Reaps every worker that has ended (without blocking), and tells its
    /// caller how.
    fn reap_ended(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            let w = &self.workers[i];
            match sys::reap(w.pid, false, w.group) {
                Ok(None) => i += 1,
                Ok(Some((exit, usage))) => {
                    let w = self.workers.swap_remove(i);
                    let _ = sys::send_all(w.socket.as_fd(), &Reply::Ended(exit, usage).encode());
                }
                // Reaped behind the zygote's back (only possible for a
                // process that is not its child): the caller sees its
                // socket close without a reply.
                Err(_) => drop(self.workers.swap_remove(i)),
            }
        }
    }

    /// Takes one request off the control socket and starts its worker.
    /// A request that is off-grammar or comes with the wrong descriptors
    /// is dropped, and its caller sees its socket close without a reply.
    fn take_request(&mut self) {
        let mut header = [0u8; REQUEST_LEN];
        let mut fds: [Option<OwnedFd>; sys::MAX_FDS] = Default::default();
        // `None`: descriptors came with the record but were lost.
        let count = match sys::recv_with_fds(self.control.as_fd(), &mut header, &mut fds) {
            Ok((0, _)) => self.shut_down(),
            Ok((n, count)) => {
                if n < REQUEST_LEN && !read_exact(self.control.as_fd(), &mut header[n..]) {
                    self.shut_down();
                }
                count
            }
            Err(_) => return,
        };
        let Some(request) = Request::decode(&header) else {
            return;
        };
        #[allow(clippy::cast_possible_truncation)] // at most INLINE_ARGS_MAX
        let inline_len = if request.inline {
            request.args_len as usize
        } else {
            0
        };
        if !read_exact(self.control.as_fd(), &mut self.inline[..inline_len]) {
            self.shut_down();
        }
        if count != Some(request.descriptors()) {
            return;
        }
        let [Some(write), Some(socket), args] = fds else {
            return;
        };
        self.start(&request, write, socket, args);
    }

    /// Forks the worker for `request`, and tells its caller.
    fn start(
        &mut self,
        request: &Request,
        write: OwnedFd,
        socket: OwnedFd,
        args_socket: Option<OwnedFd>,
    ) {
        // SAFETY: this process is single-threaded: the worker may do
        // anything a program may.
        match unsafe { sys::fork() } {
            Ok(Some(pid)) => {
                if sys::send_all(socket.as_fd(), &Reply::Started(pid).encode()).is_err() {
                    // The caller is gone already: the worker goes too.
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
                self.workers.push(Worker {
                    pid,
                    socket,
                    group: request.own_group,
                    killed: false,
                });
            }
            Ok(None) => self.become_worker(request, write, &socket, args_socket),
            Err(e) => {
                let _ = sys::send_all(socket.as_fd(), &Reply::Refused(e).encode());
            }
        }
    }

    /// In the worker: gives up the zygote's descriptors, then enters the
    /// caller's code.
    fn become_worker(
        &self,
        request: &Request,
        write: OwnedFd,
        socket: &OwnedFd,
        args_socket: Option<OwnedFd>,
    ) -> ! {
        sys::default_child_signal();
        let theirs = [&self.control, &self.wake, &self.wake_write, socket];
        for fd in theirs
            .into_iter()
            .chain(self.workers.iter().map(|w| &w.socket))
        {
            close_raw(fd.as_fd());
        }
        let args = match args_socket {
            Some(s) => Args::Socket(s, request.args_len),
            #[allow(clippy::cast_possible_truncation)] // at most INLINE_ARGS_MAX
            None => Args::Inline(&self.inline[..request.args_len as usize]),
        };
        let job = Job {
            f: request.f,
            zygote: self.me,
            nonce: request.nonce,
            own_group: request.own_group,
            memory_limit: request.memory_limit,
            write,
            args,
        };
        // SAFETY: the address of a `worker::entry::<A, T>` of this same
        // program image, sent by the caller (see `worker::entry`).
        #[allow(clippy::cast_possible_truncation)] // an address of this process
        let entry = unsafe { core::mem::transmute::<usize, Entry>(request.entry as usize) };
        entry(job)
    }

    /// The control socket reached end-of-file (the `Zygote` was dropped,
    /// or the caller's process is gone): every worker is killed and
    /// reaped, then the zygote leaves.
    fn shut_down(&mut self) -> ! {
        for w in &mut self.workers {
            kill(w);
        }
        for w in self.workers.drain(..) {
            if let Ok(Some((exit, usage))) = sys::reap(w.pid, true, w.group) {
                let _ = sys::send_all(w.socket.as_fd(), &Reply::Ended(exit, usage).encode());
            }
        }
        sys::exit_now(0)
    }

    fn shut_down_now(&self) -> ! {
        for w in &self.workers {
            let _ = rustix::process::kill_process(w.pid, Signal::KILL);
        }
        sys::exit_now(1)
    }
}

/// `SIGKILL` to an unreaped worker, and its group with `group`.
fn kill(w: &mut Worker) {
    if w.killed {
        return;
    }
    w.killed = true;
    if w.group {
        sys::kill_group(w.pid);
    }
    let _ = rustix::process::kill_process(w.pid, Signal::KILL);
}

/// Reads exactly `buf.len()` bytes (the rest of a record already sent);
/// false at end-of-file.
fn read_exact(fd: BorrowedFd<'_>, buf: &mut [u8]) -> bool {
    let mut filled = 0;
    while filled < buf.len() {
        match sys::recv_some(fd, &mut buf[filled..], true) {
            Ok(Some(n)) if n > 0 => filled += n,
            _ => return false,
        }
    }
    true
}

/// In the worker: closes a descriptor of the zygote's, which the worker
/// never returns to drop.
fn close_raw(fd: BorrowedFd<'_>) {
    // SAFETY: a descriptor of the zygote's that the worker gives up;
    // nothing in the worker uses it afterwards, and its `OwnedFd` is never
    // dropped (the worker never returns).
    unsafe { libc::close(fd.as_raw_fd()) };
}

const _: () = assert!(REPLY_LEN <= 64);
