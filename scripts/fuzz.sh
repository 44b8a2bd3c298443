#!/usr/bin/env bash
# Run the fuzz targets (fuzz/, cargo fuzz on the nightly toolchain; both installed when missing), one after the
# other, each for SECONDS; stop at the first crash with a non-zero exit, naming the input that crashed.
#
# Usage: scripts/fuzz.sh SECONDS [TARGET...]      (every target when none is named)
#   scripts/fuzz.sh 3600               an hour per target
#   scripts/fuzz.sh 60 classify        one target for a minute
#
# Each target starts from its corpus, fuzz/corpus/<target>/: the committed seeds (seed-*, written by
# fuzz/seeds.py from the tests' inputs) and whatever earlier runs found (ignored by git); new finds are added
# there. A crash is saved under fuzz/artifacts/<target>/; reproduce it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
# A line per run (target, seconds, executions, result) is appended to fuzz/runs.log (ignored by git).
#
# Environment:
#   FUZZ_SCRATCH=1   start from the seeds only, in a temporary corpus that is thrown away (scripts/test.sh)
#   FUZZ_RSS_MB      memory bound of one fuzzing process (default 2048; over it counts as a crash)
#   FUZZ_NICE        niceness of the fuzzing processes (default 19: the machine is shared)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

usage() { sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 1 && $1 =~ ^[0-9]+$ ]] || usage
seconds=$1
shift
all=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^mcpgate-fuzz$')
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || mapfile -t targets <<<"$all"
for target in "${targets[@]}"; do
    grep -qx "$target" <<<"$all" || { echo "unknown target $target; one of: $(echo $all)" >&2; exit 2; }
done
rss_mb=${FUZZ_RSS_MB:-2048}
# The C code of dependencies (SQLite, QuickJS) is built with AddressSanitizer too (cc inherits the sanitizer from
# RUSTFLAGS); SQLite's amalgamation has two function-local statics named `aiOff`, which ASan's one-definition
# check reports at start. They are distinct by the C rules: keep the memory checks, drop that one.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"
niceness=${FUZZ_NICE:-19}

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked

# cargo fuzz's defaults (optimized, debug assertions and overflow checks, AddressSanitizer for the unsafe code
# of dependencies), so that `cargo +nightly fuzz run <target> <input>` reproduces a crash with the same build.
fuzz=(nice -n "$niceness" cargo +nightly fuzz)
echo "building the fuzz targets"
build_log=$(mktemp)
if ! "${fuzz[@]}" build >"$build_log" 2>&1; then
    tail -n 40 "$build_log"
    echo "the fuzz targets do not build" >&2
    exit 1
fi
rm -f "$build_log"

scratch=
trap '[[ -n $scratch ]] && rm -rf "$scratch"' EXIT
summary=()
for target in "${targets[@]}"; do
    corpus=fuzz/corpus/$target
    if [[ ${FUZZ_SCRATCH:-0} == 1 ]]; then
        scratch=$(mktemp -d)
        cp fuzz/corpus/"$target"/seed-* "$scratch"/
        corpus=$scratch
    fi
    dict=()
    [[ -f fuzz/dicts/$target.dict ]] && dict=(-dict="fuzz/dicts/$target.dict")
    log=$(mktemp)
    printf '\n=== fuzz %s for %ss ===\n' "$target" "$seconds"
    start=$SECONDS
    status=0
    "${fuzz[@]}" run "$target" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=10 -print_final_stats=1 "${dict[@]}" \
        >"$log" 2>&1 || status=$?
    took=$((SECONDS - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
    if [[ -n $scratch ]]; then
        rm -rf "$scratch"
        scratch=
    fi
    if [[ $status != 0 ]]; then
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        tail -n 60 "$log"
        rm -f "$log"
        printf '%s\t%s\t%ss\t%s execs\tCRASH %s\n' "$(date -u +%FT%TZ)" "$target" "$took" "${execs:-?}" \
            "${artifact:-?}" >>fuzz/runs.log
        echo
        echo "fuzz target $target failed after ${took}s: ${artifact:-no artifact written (see the log above)}" >&2
        exit 1
    fi
    rm -f "$log"
    printf '%s\t%s\t%ss\t%s execs\tok\n' "$(date -u +%FT%TZ)" "$target" "$took" "${execs:-?}" >>fuzz/runs.log
    summary+=("$(printf '%-14s %6ss %12s execs %8s execs/s' "$target" "$took" "${execs:-?}" "${rate:-?}")")
done

printf '\n=== fuzzing done, no crash ===\n'
printf '%s\n' "${summary[@]}"
