#!/usr/bin/env bash
# Every CI step in order: lint, test, msrv, docs, examples, cross, no_std, fuzz. Stops at the first
# failure; prints how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS="lint test msrv docs examples cross no_std fuzz"
summary=""
total_start=$(date +%s)

for step in ${STEPS}; do
    printf '\n######## ci/%s.sh ########\n' "${step}"
    start=$(date +%s)
    if bash "ci/${step}.sh"; then
        secs=$(($(date +%s) - start))
        line="step ${step}: ok in ${secs}s"
        echo "${line}"
        summary="${summary}${line}
"
    else
        status=$?
        secs=$(($(date +%s) - start))
        printf '%s' "${summary}"
        echo "step ${step}: FAILED (exit ${status}) after ${secs}s"
        exit "${status}"
    fi
done

printf '\n######## summary ########\n%s' "${summary}"
echo "all steps ok in $(($(date +%s) - total_start))s"
