//! What a sandbox refuses (feature `sandbox`): the switches of
//! [`Sandbox`](crate::Sandbox)'s builder, as `sandbox::prepare` reads
//! them. Here, not beside `Sandbox`, so that `sys` imports nothing from
//! above it.

/// The policy: each switch of [`Sandbox`](crate::Sandbox).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // six independent switches
pub(crate) struct SandboxPolicy {
    pub(crate) deny_network: bool,
    pub(crate) deny_exec: bool,
    pub(crate) read_only_filesystem: bool,
    pub(crate) compute_only: bool,
    pub(crate) kill_on_violation: bool,
    pub(crate) best_effort: bool,
}
