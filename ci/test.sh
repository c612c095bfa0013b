#!/usr/bin/env bash
# The test suite with default features, then every feature combination:
# each one type-checked, and each one's unit and integration tests run.
# Portable: works on Linux, macOS and FreeBSD.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/common.sh
. ci/common.sh

say "cargo test (default features)"
run cargo test

say "setup: cargo-hack"
ensure_cargo_hack

# Features: std (default), alloc, tracing, full, tokio, sandbox.
# --feature-powerset also covers --no-default-features (the bare no_std
# build).
say "check the library in every feature combination"
run cargo hack check --feature-powerset --lib

# `tokio` and `sandbox` imply `std` and change nothing else the other
# features touch: their tests (tests/async_tokio.rs, tests/sandbox.rs) run
# once, with every feature, rather than in each combination, which would
# double the powerset's time for each.
say "test in every feature combination but tokio's and sandbox's (unit + integration tests)"
run cargo hack test --feature-powerset --exclude-features tokio,sandbox --lib --tests

# On Linux the sandbox's tests must not skip: this kernel is expected to
# enforce every policy (seccomp, Landlock ABI 4 or later). Elsewhere, and
# under emulation (ci/cross.sh), they say why they skip.
say "test with all features (tokio's and sandbox's tests, with tracing)"
if [ "$(uname -s)" = Linux ]; then
    run env MEM_ISOLATE_REQUIRE_SANDBOX=1 cargo test --all-features --lib --tests
else
    run cargo test --all-features --lib --tests
fi

say "test: all passed"
