#!/usr/bin/env bash
# Compare mcpgate servers on the built-in echo, on a noisy machine: every round runs each server once for the
# same time (wrk -t2 -c64, the modern request shape), in an order rotated every round, and reads each server's CPU
# time from /proc. Prints each round's rps and CPU µs per call, then medians and, for every server after the first,
# the median of its per-round cost against the first (1 - its rps / the first's).
#
# Usage: bench/ab.sh [-r ROUNDS] [-d DURATION] SPEC SPEC...
#   SPEC   NAME=BINARY[,config=FILE][,key=API_KEY][,env=VAR=VALUE]...   (no commas inside the values)
# Example, the policy cost split three ways (bench/README.md):
#   bench/ab.sh -r 12 -d 3s default=target/release/mcpgate \
#     policies=target/release/mcpgate,config=bench/policies.yaml,key=mcpgate-bench-key-not-a-secret \
#     audit=target/release/mcpgate,config=bench/policies.yaml,key=mcpgate-bench-key-not-a-secret,env=AUDIT_LOG_FILE=/tmp/ab-audit.log
#
# Needs wrk and the release binaries (bench/run.sh builds them). Servers listen on free 127.0.0.1 ports.
set -euo pipefail

ROUNDS=6
DURATION=3s
while getopts "r:d:" opt; do
    case $opt in
    r) ROUNDS=$OPTARG ;;
    d) DURATION=$OPTARG ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
(($# >= 2)) || { sed -n '2,13p' "$0" >&2; exit 2; }
command -v wrk >/dev/null || { echo "ab.sh: wrk is required" >&2; exit 1; }

BENCH=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
printf '%s' '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}' >"$TMP/body"

NAMES=()
PIDS=()
PORTS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

for spec in "$@"; do
    IFS=, read -r -a parts <<<"$spec"
    name=${parts[0]%%=*}
    bin=${parts[0]#*=}
    port=$(python3 "$BENCH/benchlib.py" freeport)
    args=(serve --listen "127.0.0.1:$port")
    envs=(LOG_LEVEL=warn)
    printf '%s\n' "Content-Type: application/json" "Accept: application/json, text/event-stream" \
        "MCP-Protocol-Version: 2026-07-28" "Mcp-Method: tools/call" "Mcp-Name: echo" >"$TMP/$name.headers"
    for part in "${parts[@]:1}"; do
        case $part in
        config=*) args+=(--config "${part#config=}") ;;
        key=*) echo "x-api-key: ${part#key=}" >>"$TMP/$name.headers" ;;
        env=*) envs+=("${part#env=}") ;;
        *) echo "ab.sh: $spec: unknown part $part" >&2; exit 2 ;;
        esac
    done
    env "${envs[@]}" "$bin" "${args[@]}" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
    PORTS+=("$port")
done

for i in "${!NAMES[@]}"; do
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:${PORTS[$i]}/health" && break
        sleep 0.05
    done
    curl -sf -o /dev/null "http://127.0.0.1:${PORTS[$i]}/health" ||
        { echo "ab.sh: ${NAMES[$i]} did not start: $(tail -n 3 "$TMP/${NAMES[$i]}.log")" >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One wrk run against server I for DURATION (read with benchlib's parse_wrk, as bench/run.sh's are):
# "rps cpu_us_per_call"; non-2xx answers fail the comparison.
run() {
    local i=$1 dur=$2 before after
    before=$(cpu_ticks "${PIDS[$i]}")
    BENCH_BODY_FILE=$TMP/body BENCH_HEADERS_FILE=$TMP/${NAMES[$i]}.headers \
        wrk -t2 -c64 -d"$dur" -s "$BENCH/wrk/mcp.lua" "http://127.0.0.1:${PORTS[$i]}/mcp" >"$TMP/wrk.txt"
    after=$(cpu_ticks "${PIDS[$i]}")
    python3 - "$BENCH" "$TMP/wrk.txt" "$((after - before))" "${NAMES[$i]}" <<'PY'
import os, sys
sys.path.insert(0, sys.argv[1])
from benchlib import parse_wrk
d = parse_wrk(sys.argv[2])
if d is None:
    sys.exit(f"ab.sh: {sys.argv[4]}: wrk printed no summary")
if d["err_status"]:
    sys.exit(f"ab.sh: {sys.argv[4]} answered {d['err_status']} non-2xx (a wrong key?)")
cpu_us = int(sys.argv[3]) * 1e6 / os.sysconf("SC_CLK_TCK")
print(f"{d['rps']:.0f} {cpu_us / d['requests']:.2f}")
PY
}

for i in "${!NAMES[@]}"; do run "$i" 1s >/dev/null; done
n=${#NAMES[@]}
echo "${NAMES[*]}" >"$TMP/rounds"
echo "round, then each server's rps and CPU µs per call: ${NAMES[*]}"
for ((r = 0; r < ROUNDS; r++)); do
    declare -A result=()
    for ((k = 0; k < n; k++)); do
        i=$(((k + r) % n))
        result[$i]=$(run "$i" "$DURATION")
    done
    line="$((r + 1))"
    for ((i = 0; i < n; i++)); do line+=" ${result[$i]}"; done
    echo "$line" | tee -a "$TMP/rounds"
    unset result
done
python3 - "$TMP/rounds" <<'EOF'
import statistics as st, sys
lines = open(sys.argv[1]).read().split("\n")
names = lines[0].split()
rows = [list(map(float, l.split()[1:])) for l in lines[1:] if l.strip()]
rps = [[r[2 * i] for r in rows] for i in range(len(names))]
cpu = [[r[2 * i + 1] for r in rows] for i in range(len(names))]
for i, name in enumerate(names):
    text = f"{name}: median {st.median(rps[i]):.0f} rps, {st.median(cpu[i]):.2f} CPU µs/call"
    if i:
        costs = [1 - b / a for a, b in zip(rps[0], rps[i])]
        text += (f"; cost vs {names[0]}: median of rounds {100 * st.median(costs):.1f}% "
                 f"({' '.join(f'{100 * c:.0f}' for c in costs)})")
    print(text)
EOF
