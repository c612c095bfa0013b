//! The one place that talks to the operating system, and the only place
//! with platform `cfg`s: everything above `sys` is the same on every
//! platform.
//!
//! `fork`, `_exit` and `wait4` come from `libc` (and, for one corner of the
//! spill file, `sigaction`): rustix deliberately leaves `fork` and `_exit`
//! to libc (libc must run its own fork handlers, or the child of a
//! threaded parent could not safely allocate), and rustix has no call that
//! reaps one child *and* returns its resource usage. Everything else goes
//! through rustix.
//!
//! One file per family of calls, the same on every platform:
//!
//! | file | what |
//! | --- | --- |
//! | `process.rs` | `fork`, `_exit`, process groups, reaping, [`ResourceUsage`] |
//! | `fd.rs` | descriptors kept off 0-2, identity checks, `read`/`pread`/`pwrite`, [`KeptFile`] |
//! | `pipe.rs` | the result pipe and the child's `write` to it |
//! | `memory.rs` | the shared page's mapping |
//! | `limits.rs` | `RLIMIT_AS` and `RLIMIT_FSIZE` |
//! | `watch.rs` | the [`ChildWatch`] contract, [`Ready`], the clock |
//! | `socket.rs` | Unix socket pairs and records with descriptors (a zygote's sockets) |
//! | `signal.rs` | `SIGCHLD` through a self-pipe (a zygote's loop) |
//! | `sandbox.rs` | feature `sandbox`, Linux kernels: seccomp and Landlock (`no_sandbox.rs` elsewhere) |
//!
//! And one file per platform family for what differs, each providing the
//! same items (so that the files above, and the crate above `sys`, carry
//! no `cfg`): a [`Watch`], `on_parent_death`, `spill_file`,
//! `pipe_capacity`, `widen_pipe`, `address_space_size`,
//! `MEMORY_LIMIT_SUPPORTED`, `WATCH_HOLDS_PIPE` and `last_errno` (rustix's
//! `Errno` has no "last error" accessor on its `linux_raw` backend, and
//! libc names errno's location differently on each platform):
//!
//! | platform | watch | the rest |
//! | --- | --- | --- |
//! | Linux, Android (`linux_kernel`) | `pidfd.rs` | `linux.rs`, and `android.rs` for what rustix lacks there |
//! | macOS, FreeBSD (`kqueue`) | `kqueue.rs` | `bsd.rs` (no spill file: `spill_file` refuses) |
//!
//! The short platform names come from `build.rs`.

mod fd;
mod limits;
mod memory;
mod pipe;
mod process;
#[cfg(feature = "alloc")]
mod signal;
#[cfg(feature = "alloc")]
mod socket;
mod watch;

#[cfg(feature = "alloc")]
pub(crate) use fd::close_all_but;
pub(crate) use fd::{
    CheckedFd, KeptFile, above_stdio, file_size, pread_into, pwrite_all, read_into, truncate,
};
pub(crate) use limits::{file_size_unlimited, lift_file_size_limit, limit_memory};
pub(crate) use memory::SharedMapping;
use pipe::ASSUMED_PIPE_CAPACITY;
pub(crate) use pipe::{result_pipe, write_all};
pub use process::ResourceUsage;
pub(crate) use process::{Exit, exit_now, fork, getpid, kill_group, lead_own_group, reap};
#[cfg(feature = "alloc")]
pub(crate) use signal::{default_child_signal, default_signal_handlers, drain, wake_on_child_exit};
#[cfg(feature = "alloc")]
pub(crate) use socket::{
    MAX_FDS, readable_within, recv_some, recv_with_fds, send_all, send_with_fds, socket_pair,
};
#[cfg(feature = "tokio")]
pub(crate) use watch::FALLBACK_TICK;
use watch::tick;
pub(crate) use watch::{ChildWatch, Ready, WaitMode, now, yield_now};

#[cfg(target_os = "android")]
mod android;
#[cfg(linux_kernel)]
mod linux;
#[cfg(linux_kernel)]
mod pidfd;
#[cfg(target_os = "android")]
use android::last_errno;
#[cfg(linux_kernel)]
use linux::address_space_size;
#[cfg(linux_kernel)]
#[cfg(all(feature = "alloc", linux_kernel))]
use linux::close_from;
#[cfg(target_os = "linux")]
use linux::last_errno;
#[cfg(linux_kernel)]
pub(crate) use linux::{
    MEMORY_LIMIT_SUPPORTED, on_parent_death, pipe_capacity, spill_file, widen_pipe,
};
#[cfg(all(feature = "tokio", linux_kernel))]
pub(crate) use pidfd::WATCH_HOLDS_PIPE;
#[cfg(linux_kernel)]
pub(crate) use pidfd::Watch;

#[cfg(kqueue)]
mod bsd;
#[cfg(kqueue)]
mod kqueue;
#[cfg(all(feature = "alloc", kqueue))]
use bsd::close_from;
#[cfg(kqueue)]
pub(crate) use bsd::{
    MEMORY_LIMIT_SUPPORTED, on_parent_death, pipe_capacity, spill_file, widen_pipe,
};
#[cfg(kqueue)]
use bsd::{address_space_size, last_errno};
#[cfg(all(feature = "tokio", kqueue))]
pub(crate) use kqueue::WATCH_HOLDS_PIPE;
#[cfg(kqueue)]
pub(crate) use kqueue::Watch;

#[cfg(feature = "sandbox")]
mod policy;
#[cfg(feature = "sandbox")]
pub(crate) use policy::SandboxPolicy;

// The sandbox (feature `sandbox`): seccomp and Landlock, on Linux kernels
// and the architectures seccompiler compiles for. Elsewhere a stub that
// refuses every sandbox.
#[cfg(seccomp_sandbox)]
pub(crate) mod sandbox;
#[cfg(not(seccomp_sandbox))]
#[path = "no_sandbox.rs"]
pub(crate) mod sandbox;

#[cfg(not(any(linux_kernel, kqueue)))]
compile_error!("mem-isolate supports Linux, Android, macOS and FreeBSD");
