#!/usr/bin/env bash
# Runs every example, as a newcomer would, and fails if any of them does.
# Portable: works on Linux, macOS and FreeBSD.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/common.sh
. ci/common.sh

say "build the examples (release: some of them time things)"
run cargo build --release --examples --all-features

for file in examples/*.rs; do
    name="$(basename "${file}" .rs)"
    say "cargo run --release --example ${name}"
    if [ "${name}" = tracing ]; then
        run cargo run --release --example "${name}" --features tracing
    elif [ "${name}" = error-handling-migrated ]; then
        # As a 0.1 user would build it: with 0.1's `full` feature.
        run cargo run --release --example "${name}" --features full
    else
        run cargo run --release --example "${name}"
    fi
done

say "examples: all ran"
