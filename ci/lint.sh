#!/usr/bin/env bash
# Formatting and clippy, natively, in every feature set, and for the other
# Unix targets the crate supports (clippy only type-checks, so no linker or
# SDK for those targets is needed, only their rust-std).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/common.sh
. ci/common.sh

CROSS_TARGETS="x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd aarch64-linux-android"

say "setup: rustup components and targets"
ensure_rust_components clippy rustfmt
# shellcheck disable=SC2086 # word splitting of the target list is intended
ensure_rust_targets ${CROSS_TARGETS}

say "rustfmt"
run cargo fmt --all --check

# No import cycle among src/ files, no function over 80 lines, no
# platform cfg outside src/sys/ (ARCHITECTURE.md).
say "structure: ci/structure.py"
if command -v python3 >/dev/null 2>&1; then
    run python3 ci/structure.py src
else
    echo "python3 not found: structure checks skipped"
fi

say "clippy: native, the workspace (crate and benches), all targets, all features"
run cargo clippy --workspace --all-targets --all-features -- -D warnings

say "clippy: native, no_std (no default features)"
run cargo clippy --lib --no-default-features -- -D warnings

say "clippy: native, no_std + alloc"
run cargo clippy --lib --no-default-features --features alloc -- -D warnings

for target in ${CROSS_TARGETS}; do
    say "clippy: ${target}, all targets, all features"
    run cargo clippy --workspace --all-targets --target "${target}" --all-features -- -D warnings

    say "clippy: ${target}, no_std (no default features)"
    run cargo clippy --lib --target "${target}" --no-default-features -- -D warnings
done

# The no_std example is a separate package, outside the main crate's
# workspace, so `--all` above does not reach it.
if [ -f examples/no_std/Cargo.toml ]; then
    say "rustfmt + clippy: examples/no_std"
    run cargo fmt --manifest-path examples/no_std/Cargo.toml --check
    run cargo clippy --manifest-path examples/no_std/Cargo.toml \
        --target-dir target/no_std-example -- -D warnings
fi

say "lint: all passed"
