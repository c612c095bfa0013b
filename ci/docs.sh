#!/usr/bin/env bash
# The documentation: rustdoc with warnings as errors (broken intra-doc
# links among them) and every doctest, in every feature combination, for
# each target docs.rs builds; then the docs.rs build itself (nightly, all
# features, `--cfg docsrs` for the feature badges).
# Portable: works on Linux, macOS and FreeBSD.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/common.sh
. ci/common.sh

# The targets of [package.metadata.docs.rs] other than the host's.
DOC_TARGETS="aarch64-apple-darwin x86_64-unknown-freebsd aarch64-linux-android"

say "setup: cargo-hack, targets, nightly"
ensure_cargo_hack
# shellcheck disable=SC2086 # word splitting of the target list is intended
ensure_rust_targets ${DOC_TARGETS}
if rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "nightly: already installed"
else
    run rustup toolchain install nightly --profile minimal
fi

export RUSTDOCFLAGS="-D warnings"

say "rustdoc in every feature combination"
run cargo hack doc --feature-powerset --no-deps --lib

# `tokio` and `sandbox` only add items of their own (run_async,
# ChildFuture, IntoFuture; Sandbox, Isolate::sandbox): their doctests run
# once, with every feature.
say "doctests in every feature combination but tokio's and sandbox's"
run cargo hack test --feature-powerset --exclude-features tokio,sandbox --doc

say "doctests with all features"
run cargo test --all-features --doc

for target in ${DOC_TARGETS}; do
    say "rustdoc for ${target}, all features and none"
    run cargo doc --no-deps --lib --target "${target}" --all-features
    run cargo doc --no-deps --lib --target "${target}" --no-default-features
done

say "the docs.rs build: nightly, all features, --cfg docsrs"
run env RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo +nightly doc --no-deps --lib --all-features

say "docs: all passed"
