//! Calls keep working when the caller blocks signals, ignores `SIGCHLD`, or
//! has a `SIGCHLD` handler of its own: the parent watches the child through
//! a pidfd (Linux) or kqueue (macOS, FreeBSD), never through `SIGCHLD`.
//!
//! The child inherits the calling thread's signal mask, so a callable that
//! must not be interrupted by, say, `SIGINT` gets that protection for free.
//!
//! Run with `cargo run --example blocking-signals`.

use std::mem::MaybeUninit;

use mem_isolate::execute_in_isolated_process;

/// Blocks every blockable signal in this thread; returns the old mask.
fn block_all() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigfillset/pthread_sigmask.
    unsafe {
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigfillset(all.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr());
        old.assume_init()
    }
}

fn restore(old: &libc::sigset_t) {
    // SAFETY: restoring a mask obtained from pthread_sigmask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// True if `SIGINT` is blocked in the calling thread.
fn sigint_blocked() -> bool {
    // SAFETY: querying the current mask into a local set.
    unsafe {
        let mut now = MaybeUninit::<libc::sigset_t>::uninit();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), now.as_mut_ptr());
        libc::sigismember(now.as_ptr(), libc::SIGINT) == 1
    }
}

fn main() {
    let old = block_all();
    let (answer, blocked_in_child) = execute_in_isolated_process(|| (6 * 7, sigint_blocked()))
        .expect("the call works with every signal blocked");
    restore(&old);
    println!(
        "with all signals blocked: answer {answer}, SIGINT blocked in the child: {blocked_in_child}"
    );

    // SAFETY: changing this example process's SIGCHLD disposition.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let v = execute_in_isolated_process(|| vec![1u8; 100_000]).expect("the value still arrives");
    println!(
        "with SIGCHLD ignored (children reaped by the kernel): got {} bytes",
        v.len()
    );
    match execute_in_isolated_process(|| -> u8 { std::process::exit(1) }) {
        Ok(_) => unreachable!(),
        // Each level says only its own part: print the chain.
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            println!("...and a child that dies is reported, not waited for: {text}");
        }
    }
    // SAFETY: restoring the default disposition.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
}
