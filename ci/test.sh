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

# Features: std (default), alloc, tracing, full, tokio. --feature-powerset
# also covers --no-default-features (the bare no_std build).
say "check the library in every feature combination"
run cargo hack check --feature-powerset --lib

# `tokio` implies `std` and changes nothing else the other features touch:
# its tests (tests/async_tokio.rs) run once, with every feature, rather
# than in each combination, which would double the powerset's time.
say "test in every feature combination but tokio's (unit + integration tests)"
run cargo hack test --feature-powerset --exclude-features tokio --lib --tests

say "test with all features (tokio's tests, with tracing)"
run cargo test --all-features --lib --tests

say "test: all passed"
