#!/usr/bin/env bash
# Build and run the no_std example (a separate package under examples/no_std
# that uses the crate without its std feature) and check what it prints.
# Portable: works on Linux, macOS and FreeBSD.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/common.sh
. ci/common.sh

MANIFEST=examples/no_std/Cargo.toml
EXPECTED="isolated ok"

if [ ! -f "${MANIFEST}" ]; then
    echo "no_std.sh: ${MANIFEST} not found" >&2
    exit 1
fi

say "cargo run --release --manifest-path ${MANIFEST}"
# Build into the main target/ (ignored by git) rather than examples/no_std/target.
set +e
output="$(cargo run --release --manifest-path "${MANIFEST}" --target-dir target/no_std-example)"
status=$?
set -e
printf '%s\n' "${output}"

if [ "${status}" -ne 0 ]; then
    echo "no_std.sh: the example exited with status ${status}" >&2
    exit 1
fi
if ! printf '%s\n' "${output}" | grep -qF "${EXPECTED}"; then
    echo "no_std.sh: the example's output lacks '${EXPECTED}'" >&2
    exit 1
fi

say "no_std: example printed '${EXPECTED}'"
