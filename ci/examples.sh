#!/usr/bin/env bash
# Runs every example with the command its header (and the README) gives,
# as a newcomer would, and fails if any of them does. Each example is built
# once: all but four in one debug build with default features; `tracing`,
# `async-jobs` and `sandbox` need their features, and `soak` runs in release.
# Portable: works on Linux, macOS and FreeBSD.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/common.sh
. ci/common.sh

say "build the examples (debug, default features)"
run cargo build --examples

for file in examples/*.rs; do
    name="$(basename "${file}" .rs)"
    case "${name}" in
        tracing)
            say "cargo run --example tracing --features tracing"
            run cargo run --example tracing --features tracing
            ;;
        sandbox)
            say "cargo run --example sandbox --features sandbox"
            run cargo run --example sandbox --features sandbox
            ;;
        async-jobs)
            say "cargo run --example async-jobs --features tokio"
            run cargo run --example async-jobs --features tokio
            ;;
        error-handling-migrated)
            # As a 0.1 user would build it: with 0.1's `full` feature.
            say "cargo run --example error-handling-migrated --features full"
            run cargo run --example error-handling-migrated --features full
            ;;
        soak)
            say "cargo run --release --example soak"
            run cargo run --release --example soak
            ;;
        *)
            say "cargo run --example ${name}"
            run cargo run --example "${name}"
            ;;
    esac
done

say "examples: all ran"
