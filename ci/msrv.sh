#!/usr/bin/env bash
# The minimum supported Rust version (Cargo.toml's rust-version): the
# library in every feature combination, and the test suite, built and run
# with that toolchain. Installs it (minimal profile) if it is missing.
# Portable: works on Linux, macOS and FreeBSD.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/common.sh
. ci/common.sh

msrv="$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)"
if [ -z "${msrv}" ]; then
    echo "msrv.sh: no rust-version in Cargo.toml" >&2
    exit 1
fi

say "setup: Rust ${msrv}"
if rustup run "${msrv}" rustc --version >/dev/null 2>&1; then
    echo "toolchain ${msrv}: already installed"
else
    run rustup toolchain install "${msrv}" --profile minimal
fi
run rustup run "${msrv}" rustc --version

say "Rust ${msrv}: check the library in every feature combination"
run cargo "+${msrv}" check --lib --no-default-features
run cargo "+${msrv}" check --lib --no-default-features --features alloc
run cargo "+${msrv}" check --lib
run cargo "+${msrv}" check --lib --all-features

say "Rust ${msrv}: cargo test (default features)"
run cargo "+${msrv}" test

say "msrv: Rust ${msrv} builds and passes"
