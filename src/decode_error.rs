//! Why the parent rejected a stream: shared by the decoder
//! ([`crate::wire`]) and the sinks it fills ([`crate::sink`]). A leaf: it
//! imports nothing else of the crate.

/// Why the parent rejected a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The bytes do not follow the protocol, or fail its checks.
    Corrupt,
    /// The value's bytes exceed what the sink accepts.
    TooLarge,
}
