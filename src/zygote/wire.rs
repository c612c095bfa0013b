//! The records between a caller and its zygote, written down once.
//!
//! All are fixed-size and little-endian, and each is sent in one call, so
//! a record never interleaves with another thread's on the shared control
//! socket (see `sys::send_with_fds`).
//!
//! ```text
//! control socket, caller -> zygote: one Request per call
//!   magic u32 "MIZQ" | flags u32 | entry u64 | f u64 | nonce u64
//!   | memory_limit u64 | args_len u64          (REQUEST_LEN = 48 bytes)
//!   then, with INLINE, args_len bytes of arguments in the same send;
//!   descriptors: the result pipe's write end, the zygote's end of the
//!   call socket, and without INLINE the worker's end of the args socket
//!
//! call socket, zygote -> caller: Started, then Ended (or Refused alone)
//!   magic u32 "MIZR" | kind u32 | value i32 | 0 u32
//!   | max_rss u64 | user_ns u64 | system_ns u64 (REPLY_LEN = 40 bytes)
//!
//! call socket, caller -> zygote: any byte, or end-of-file: kill the worker
//! ```
//!
//! Both decoders take untrusted bytes: they never panic, and refuse
//! anything off-grammar (`fuzz/fuzz_targets/zygote_records.rs`).

use core::time::Duration;

use rustix::io::Errno;
use rustix::process::Pid;

use crate::sys::{Exit, ResourceUsage};

/// Bytes in a request, before its inline arguments.
pub(crate) const REQUEST_LEN: usize = 48;
/// Bytes in a reply.
pub(crate) const REPLY_LEN: usize = 40;
/// Arguments up to this size travel inside the request itself: the zygote
/// reads them into its buffer, and the worker finds them in its copy of
/// the zygote's memory. Larger ones take a socket of their own. Small
/// enough that the request goes out as one piece of a stream socket on
/// every platform.
pub(crate) const INLINE_ARGS_MAX: usize = 2048;

const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"MIZQ");
const REPLY_MAGIC: u32 = u32::from_le_bytes(*b"MIZR");

const OWN_GROUP: u32 = 1;
const MEMORY_LIMIT: u32 = 1 << 1;
const INLINE: u32 = 1 << 2;
const KNOWN: u32 = OWN_GROUP | MEMORY_LIMIT | INLINE;

/// One call, as the caller asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request {
    /// The worker's entry point (a `zygote::worker::entry::<A, T>`).
    pub(crate) entry: u64,
    /// The user's `fn(A) -> T`.
    pub(crate) f: u64,
    pub(crate) nonce: u64,
    pub(crate) own_group: bool,
    pub(crate) memory_limit: Option<u64>,
    /// The arguments' length.
    pub(crate) args_len: u64,
    /// The arguments follow the request (at most [`INLINE_ARGS_MAX`]).
    pub(crate) inline: bool,
}

impl Request {
    pub(crate) fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut flags = 0;
        if self.own_group {
            flags |= OWN_GROUP;
        }
        if self.memory_limit.is_some() {
            flags |= MEMORY_LIMIT;
        }
        if self.inline {
            flags |= INLINE;
        }
        let mut out = [0u8; REQUEST_LEN];
        out[0..4].copy_from_slice(&REQUEST_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&flags.to_le_bytes());
        let words = [
            self.entry,
            self.f,
            self.nonce,
            self.memory_limit.unwrap_or(0),
            self.args_len,
        ];
        for (i, w) in words.iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// The request in `bytes`, or `None` for anything a caller of this
    /// build could not have sent.
    pub(crate) fn decode(bytes: &[u8; REQUEST_LEN]) -> Option<Self> {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[8 + 8 * i..16 + 8 * i]);
            u64::from_le_bytes(w)
        };
        let magic = u32_at(bytes, 0);
        let flags = u32_at(bytes, 4);
        if magic != REQUEST_MAGIC || flags & !KNOWN != 0 {
            return None;
        }
        let (entry, f) = (word(0), word(1));
        let limit = word(3);
        let args_len = word(4);
        let inline = flags & INLINE != 0;
        if entry == 0
            || f == 0
            || (inline && args_len > INLINE_ARGS_MAX as u64)
            || (flags & MEMORY_LIMIT == 0 && limit != 0)
        {
            return None;
        }
        Some(Self {
            entry,
            f,
            nonce: word(2),
            own_group: flags & OWN_GROUP != 0,
            memory_limit: (flags & MEMORY_LIMIT != 0).then_some(limit),
            args_len,
            inline,
        })
    }

    /// How many descriptors come with it.
    pub(crate) fn descriptors(&self) -> usize {
        if self.inline { 2 } else { 3 }
    }
}

/// What the zygote tells a caller about its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The worker was forked: its pid.
    Started(Pid),
    /// The zygote could not fork a worker: `fork`'s error.
    Refused(Errno),
    /// The worker ended and was reaped by the zygote.
    Ended(Exit, ResourceUsage),
}

const STARTED: u32 = 1;
const REFUSED: u32 = 2;
const EXITED: u32 = 3;
const SIGNALED: u32 = 4;

impl Reply {
    pub(crate) fn encode(&self) -> [u8; REPLY_LEN] {
        let (kind, value, usage) = match *self {
            Self::Started(pid) => (STARTED, pid.as_raw_nonzero().get(), None),
            Self::Refused(e) => (REFUSED, e.raw_os_error(), None),
            Self::Ended(Exit::Code(c), usage) => (EXITED, c, Some(usage)),
            Self::Ended(Exit::Signal(s), usage) => (SIGNALED, s, Some(usage)),
        };
        let usage = usage.unwrap_or_default();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut out = [0u8; REPLY_LEN];
        out[0..4].copy_from_slice(&REPLY_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&kind.to_le_bytes());
        out[8..12].copy_from_slice(&value.to_le_bytes());
        out[16..24].copy_from_slice(&usage.max_rss_bytes.to_le_bytes());
        out[24..32].copy_from_slice(&nanos(usage.user_time).to_le_bytes());
        out[32..40].copy_from_slice(&nanos(usage.system_time).to_le_bytes());
        out
    }

    /// The reply in `bytes`, or `None` for anything a zygote could not
    /// have sent.
    pub(crate) fn decode(bytes: &[u8; REPLY_LEN]) -> Option<Self> {
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        if u32_at(bytes, 0) != REPLY_MAGIC || u32_at(bytes, 12) != 0 {
            return None;
        }
        #[allow(clippy::cast_possible_wrap)] // the bits of an i32
        let value = u32_at(bytes, 8) as i32;
        let usage = ResourceUsage {
            max_rss_bytes: word(16),
            user_time: Duration::from_nanos(word(24)),
            system_time: Duration::from_nanos(word(32)),
        };
        let no_usage = usage == ResourceUsage::default();
        match u32_at(bytes, 4) {
            // `Pid::from_raw` insists on a non-negative number.
            STARTED if no_usage && value > 0 => Pid::from_raw(value).map(Self::Started),
            REFUSED if no_usage => crate::errno::errno_from_raw(value).map(Self::Refused),
            EXITED if (0..=255).contains(&value) => Some(Self::Ended(Exit::Code(value), usage)),
            SIGNALED if (1..=128).contains(&value) => Some(Self::Ended(Exit::Signal(value), usage)),
            _ => None,
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_off_grammar_ones_are_refused() {
        let request = Request {
            entry: 0x1000,
            f: 0x2000,
            nonce: 7,
            own_group: true,
            memory_limit: Some(1 << 20),
            args_len: 12,
            inline: true,
        };
        let bytes = request.encode();
        assert_eq!(Request::decode(&bytes), Some(request));
        let mut unknown_flag = bytes;
        unknown_flag[4] |= 0x80;
        assert_eq!(Request::decode(&unknown_flag), None);
        let mut too_long_inline = request;
        too_long_inline.args_len = INLINE_ARGS_MAX as u64 + 1;
        assert_eq!(Request::decode(&too_long_inline.encode()), None);
        let mut bad_magic = bytes;
        bad_magic[0] ^= 1;
        assert_eq!(Request::decode(&bad_magic), None);
    }

    #[test]
    fn replies_round_trip_and_off_grammar_ones_are_refused() {
        let usage = ResourceUsage {
            max_rss_bytes: 4096,
            user_time: Duration::from_micros(3),
            system_time: Duration::from_micros(5),
        };
        for reply in [
            Reply::Started(Pid::from_raw(42).unwrap()),
            Reply::Refused(Errno::AGAIN),
            Reply::Ended(Exit::Code(3), usage),
            Reply::Ended(Exit::Signal(9), usage),
        ] {
            assert_eq!(Reply::decode(&reply.encode()), Some(reply));
        }
        let mut negative_pid = Reply::Started(Pid::from_raw(42).unwrap()).encode();
        negative_pid[8..12].copy_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(Reply::decode(&negative_pid), None);
        let mut signal_zero = Reply::Ended(Exit::Signal(9), usage).encode();
        signal_zero[8..12].copy_from_slice(&0i32.to_le_bytes());
        assert_eq!(Reply::decode(&signal_zero), None);
    }
}
