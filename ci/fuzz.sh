#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a fixed time (FUZZ_SECONDS,
# default 60 per target) with debug assertions, starting from the committed
# seeds in fuzz/corpus/<target>/. New inputs go to a temporary directory,
# so the run leaves the repository as it found it (crashes are written to
# fuzz/artifacts/<target>/, which git ignores). Fails on the first crash.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/common.sh
. ci/common.sh

seconds="${FUZZ_SECONDS:-60}"

say "setup: nightly toolchain and cargo-fuzz"
rustup toolchain list | grep -q nightly || run rustup toolchain install nightly --profile minimal
have cargo-fuzz || run cargo install cargo-fuzz --locked

work="$(mktemp -d "${TMPDIR:-/tmp}/mem-isolate-fuzz.XXXXXX")"
trap 'rm -rf "${work}"' EXIT

summary=""
for target in $(cargo +nightly fuzz list); do
    say "fuzz ${target} for ${seconds}s"
    mkdir -p "${work}/${target}"
    # The first corpus directory receives new inputs; the seeds are only read.
    run cargo +nightly fuzz run --debug-assertions "${target}" \
        "${work}/${target}" "fuzz/corpus/${target}" \
        -- -max_total_time="${seconds}" -rss_limit_mb=2048 -print_final_stats=1 \
        2>&1 | tee "${work}/${target}.log"
    done_line="$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "${work}/${target}.log" | tail -n 1 || true)"
    summary="${summary}${target}: ${done_line:-no final count (see log above)}"$'\n'
done

say "fuzz: all targets ran without a crash"
printf '%s' "${summary}"
