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

# Features: std (default), alloc, tracing. --feature-powerset also covers
# --no-default-features (the bare no_std build).
say "check the library in every feature combination"
run cargo hack check --feature-powerset --lib

say "test in every feature combination (unit + integration tests)"
run cargo hack test --feature-powerset --lib --tests

say "test: all passed"
