#!/usr/bin/env bash
# Benchmark mcpgate's `tools/call` on the built-in `echo` tool against a
# minimal hyper server (the "ceiling", bench/ceiling), in one run; beside
# them, config-declared tools (bench/tools.yaml): a SQLite query and an HTTP
# call (to the ceiling), served by a second mcpgate; and proxied calls: the
# same echo straight to an upstream mcpgate (direct-upstream) and through a
# front mcpgate fronting it over Streamable HTTP (bench/proxy-http.yaml) or
# fronting an `mcpgate serve --stdio` child (bench/proxy-stdio.yaml), and,
# for comparison, supergateway (npm, --stateful) bridging the same
# `mcpgate serve --stdio` upstream to Streamable HTTP; and the floor of a
# proxy hop: the smallest honest relays (bench/ceiling) in front of a plain
# ceiling, over HTTP and over a stdio child, against that ceiling called directly.
#
# Usage:
#   bench/run.sh                  full run: ceiling, mcpgate-modern,
#                                 mcpgate-policies (every policy on, bench/policies.yaml),
#                                 mcpgate-legacy, mcpgate-sqlite, mcpgate-http, direct-upstream,
#                                 mcpgate-proxy-http, mcpgate-proxy-stdio,
#                                 floor-direct, floor-proxy-http, floor-proxy-stdio,
#                                 mcpgate-proxy-stdio-legacy, supergateway
#   bench/run.sh --ceiling-only   no mcpgate: ceiling with both request shapes
#                                 (self-test of the harness)
#
# Measures (see bench/README.md for what each number means):
#   * max throughput  wrk, ROUNDS interleaved rounds, medians (rps, p50, p99)
#   * fixed rate      open loop at a constant rate, coordinated-omission corrected
#                     (p50, p99, achieved rps): bench's own mcpgate-bench-rate
#                     (default) or oha --latency-correction. BENCH_RATE for most
#                     targets; BENCH_PROXY_RATE for direct-upstream and the
#                     proxies (mcpgate-proxy-*, supergateway, floor-*), the rate
#                     at which the proxy targets are stated
#   * RSS             VmRSS idle (after start, before any request) and after load
#   * cold start      spawn -> first 200 on GET /health, median of COLD_RUNS
#
# Environment overrides (defaults in brackets):
#   BENCH_DURATION [10s]  BENCH_ROUNDS [3]  BENCH_THREADS [2]  BENCH_CONNS [64]
#   BENCH_WARMUP [2s]     BENCH_RATE [20000]  BENCH_PROXY_RATE [5000]
#   BENCH_RATE_DURATION [10s]  BENCH_RATE_CONNS [64]  BENCH_RATE_ROUNDS [1]
#   BENCH_COLD_RUNS [20]  BENCH_RATE_TOOL [builtin|oha]
#   BENCH_SUPERGATEWAY_LOG [none|info|debug]  (supergateway's --logLevel)
#   BENCH_SKIP_BUILD [0]  BENCH_OUT [bench/results/<timestamp>]
#   MCPGATE_BIN [target/release/mcpgate]
#   CEILING_BIN [target/release/mcpgate-bench-ceiling]
#   RATE_BIN [target/release/mcpgate-bench-rate]
#
# Installs when missing (full run): wrk (apt), Node >= 22 (scripts/lib/node22.sh)
# and supergateway 4.0.0 into .cache/supergateway (npm).
#
# Every mcpgate and the ceiling listen on 127.0.0.1 only; supergateway has no
# host option and listens on all interfaces (on a free port, for the length
# of the run). Every process this script starts is killed by PID on exit, and
# so are the upstream children of mcpgate-proxy-stdio, floor-proxy-stdio and
# supergateway.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
CACHE=$ROOT/.cache

DURATION=${BENCH_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-64}
WARMUP=${BENCH_WARMUP:-2s}
RATE=${BENCH_RATE:-20000}
PROXY_RATE=${BENCH_PROXY_RATE:-5000}
RATE_DURATION=${BENCH_RATE_DURATION:-10s}
RATE_CONNS=${BENCH_RATE_CONNS:-64}
RATE_ROUNDS=${BENCH_RATE_ROUNDS:-1}
COLD_RUNS=${BENCH_COLD_RUNS:-20}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
MCPGATE_BIN=${MCPGATE_BIN:-$ROOT/target/release/mcpgate}
CEILING_BIN=${CEILING_BIN:-$ROOT/target/release/mcpgate-bench-ceiling}
RATE_BIN=${RATE_BIN:-$ROOT/target/release/mcpgate-bench-rate}
RATE_TOOL=${BENCH_RATE_TOOL:-builtin}

OHA_VERSION=1.16.0
OHA_ROOT=$CACHE/oha
OHA=$OHA_ROOT/bin/oha

# The policy cost is this pair's: the baseline (all off) and every policy on, run back to back (full mode).
POLICY_PAIR=(mcpgate-modern mcpgate-policies)
# The API key of the mcpgate-policies target (bench/policies.yaml holds its sha256).
POLICY_BENCH_KEY=mcpgate-bench-key-not-a-secret

SUPERGATEWAY_VERSION=4.0.0
SUPERGATEWAY_PREFIX=$CACHE/supergateway
SUPERGATEWAY_MAIN=$SUPERGATEWAY_PREFIX/node_modules/supergateway/dist/index.js
SUPERGATEWAY_LOG=${BENCH_SUPERGATEWAY_LOG:-none}

HOST=127.0.0.1
MODERN_VERSION=2026-07-28
LEGACY_VERSION=2025-11-25

MODE=full
case "${1:-}" in
    "") ;;
    --ceiling-only) MODE=ceiling-only ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--ceiling-only]" >&2; exit 2 ;;
esac

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }
py() { python3 "$BENCH/benchlib.py" "$@"; }

# ------------------------------------------------------------ processes ---

PIDS=()
# Processes started by our children (the stdio upstreams): PID -> start time
# (field 22 of /proc/PID/stat), so a PID the kernel has reused since is left alone.
declare -A ADOPTED
TMP_DIR=
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    # After their parents: a front or supergateway stops its own children first.
    for pid in "${!ADOPTED[@]}"; do
        if [[ $(start_time "$pid") == "${ADOPTED[$pid]}" ]]; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    ADOPTED=()
    if [[ -n $TMP_DIR ]]; then rm -rf "$TMP_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tooling ---

ensure_wrk() {
    if command -v wrk >/dev/null 2>&1; then return; fi
    log "installing wrk (Debian package)"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq wrk >/dev/null
    command -v wrk >/dev/null 2>&1 || die "wrk installation failed"
}

ensure_oha() {
    if [[ -x $OHA ]] && "$OHA" --version 2>/dev/null | grep -qF "$OHA_VERSION"; then return; fi
    log "installing oha $OHA_VERSION into $OHA_ROOT (cargo install, takes a few minutes)"
    mkdir -p "$CACHE"
    # Own target dir: no contention with the workspace's build-dir lock.
    CARGO_TARGET_DIR=$CACHE/oha-build \
        cargo install oha --version "=$OHA_VERSION" --locked --root "$OHA_ROOT" >&2
    rm -rf "$CACHE/oha-build"
    [[ -x $OHA ]] || die "oha installation failed"
}

# supergateway runs under Node >= 22: ensure_node sets NODE (the machine's node,
# or Node 22 installed into .cache/node22 if that one is older).
# shellcheck source=scripts/lib/node22.sh disable=SC1091
source "$ROOT/scripts/lib/node22.sh"
NODE=

ensure_supergateway() {
    ensure_node
    local pkg=$SUPERGATEWAY_PREFIX/node_modules/supergateway/package.json
    if [[ -f $SUPERGATEWAY_MAIN ]] \
        && [[ $("$NODE" -p 'require(process.argv[1]).version' "$pkg" 2>/dev/null) == "$SUPERGATEWAY_VERSION" ]]; then
        return
    fi
    command -v npm >/dev/null 2>&1 || die "npm is required to install supergateway (apt-get install npm)"
    log "installing supergateway@$SUPERGATEWAY_VERSION into $SUPERGATEWAY_PREFIX (npm)"
    mkdir -p "$SUPERGATEWAY_PREFIX"
    npm install --prefix "$SUPERGATEWAY_PREFIX" --no-audit --no-fund --save-exact \
        "supergateway@$SUPERGATEWAY_VERSION" >&2
    [[ -f $SUPERGATEWAY_MAIN ]] || die "supergateway installation failed"
}

# ------------------------------------------------------------- servers ---

free_port() { py freeport; }

wait_health() { # URL_BASE PID NAME
    local base=$1 pid=$2 name=$3 i
    for ((i = 0; i < 500; i++)); do
        if curl -fsS -o /dev/null --max-time 1 "$base/health" 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || die "$name exited before answering /health (see $OUT/$name.log)"
        sleep 0.02
    done
    die "$name: no 200 on $base/health within 10 s"
}

# start_time PID: field 22 of /proc/PID/stat (after the parenthesised name, which may hold spaces).
start_time() { { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null || true; } | awk '{print $20}'; }

# adopt_descendants PID: every live descendant of PID is killed by PID on exit.
adopt_descendants() {
    local c st
    for c in $(pgrep -P "$1" || true); do
        st=$(start_time "$c")
        [[ -n $st ]] || continue
        if [[ -z ${ADOPTED[$c]:-} ]]; then ADOPTED[$c]=$st; fi
        adopt_descendants "$c"
    done
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

meta() { printf '%s=%s\n' "$1" "$2" >>"$OUT/meta.txt"; }

# start_server NAME CMD... (in CMD, ADDR is replaced by host:port and @PORT@ by
# the port alone); sets SRV_PORT[NAME] and SRV_PID[NAME]
declare -A SRV_PORT SRV_PID
start_server() {
    local name=$1; shift
    local port; port=$(free_port)
    local argv=() a
    for a in "$@"; do
        a=${a//ADDR/$HOST:$port}
        argv+=("${a//@PORT@/$port}")
    done
    LOG_LEVEL=warn "${argv[@]}" >"$OUT/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_health "http://$HOST:$port" "$pid" "$name"
    SRV_PORT[$name]=$port
    SRV_PID[$name]=$pid
    log "$name: pid $pid on $HOST:$port"
}

# -------------------------------------------------------------- requests ---

modern_body() { # TOOL ARGUMENTS_JSON
    printf '%s' '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"'"$1"'","arguments":'"$2"',"_meta":{"io.modelcontextprotocol/protocolVersion":"'$MODERN_VERSION'","io.modelcontextprotocol/clientCapabilities":{}}}}'
}
LEGACY_BODY='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}'
INIT_BODY='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"'$LEGACY_VERSION'","capabilities":{},"clientInfo":{"name":"mcpgate-bench","version":"0.1.0"}}}'
INITIALIZED_BODY='{"jsonrpc":"2.0","method":"notifications/initialized"}'

# Targets: name -> server, request shape, whether a session id is mandatory,
# and for the modern shape the tool and its arguments (default: echo "hello");
# T_RATE is the target's fixed rate (RATE unless set after add_target).
# Every target's answer must carry "hello".
# T_HEADER is one extra request header for the target (an API key), when set.
declare -A T_SERVER T_SHAPE T_NEED_SESSION T_TOOL T_ARGS T_RATE T_HEADER
TARGETS=()
add_target() {
    TARGETS+=("$1"); T_SERVER[$1]=$2; T_SHAPE[$1]=$3; T_NEED_SESSION[$1]=$4
    T_TOOL[$1]=${5:-echo}; T_ARGS[$1]=${6:-'{"message":"hello"}'}; T_RATE[$1]=$RATE
}

# prepare_target NAME: writes $OUT/req/NAME.{body,headers} (opening a fresh
# session for the legacy shape), then verifies one request gets a correct echo.
# supergateway (--stateful) spawns an upstream child per session: adopt it.
prepare_target() {
    local t=$1
    local url="http://$HOST:${SRV_PORT[${T_SERVER[$t]}]}/mcp"
    local body=$OUT/req/$t.body hdr=$OUT/req/$t.headers
    mkdir -p "$OUT/req"
    {
        echo "Content-Type: application/json"
        echo "Accept: application/json, text/event-stream"
        if [[ -n ${T_HEADER[$t]:-} ]]; then echo "${T_HEADER[$t]}"; fi
    } >"$hdr"
    case ${T_SHAPE[$t]} in
    modern)
        modern_body "${T_TOOL[$t]}" "${T_ARGS[$t]}" >"$body"
        {
            echo "MCP-Protocol-Version: $MODERN_VERSION"
            echo "Mcp-Method: tools/call"
            echo "Mcp-Name: ${T_TOOL[$t]}"
        } >>"$hdr"
        ;;
    legacy)
        printf '%s' "$LEGACY_BODY" >"$body"
        local ih=$OUT/req/$t.init.headers ib=$OUT/req/$t.init.body code sid
        code=$(curl -sS --max-time 5 -o "$ib" -D "$ih" -w '%{http_code}' -X POST "$url" \
            -H "Content-Type: application/json" -H "Accept: application/json, text/event-stream" \
            --data-binary "$INIT_BODY") || die "$t: initialize request failed"
        [[ $code == 2* ]] || die "$t: initialize answered HTTP $code: $(head -c 500 "$ib")"
        grep -q '"result"' "$ib" || die "$t: initialize has no result: $(head -c 500 "$ib")"
        sid=$(awk 'tolower($1) == "mcp-session-id:" {sub(/\r$/, "", $2); print $2}' "$ih" | tail -n1)
        if [[ -z $sid ]]; then
            if [[ ${T_NEED_SESSION[$t]} == 1 ]]; then
                die "$t: initialize answered without an Mcp-Session-Id header"
            fi
            log "$t: no Mcp-Session-Id from initialize (tolerated: stateless ceiling)"
        else
            echo "Mcp-Session-Id: $sid" >>"$hdr"
        fi
        echo "MCP-Protocol-Version: $LEGACY_VERSION" >>"$hdr"
        code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -X POST "$url" \
            -H @"$hdr" --data-binary "$INITIALIZED_BODY") || die "$t: notifications/initialized failed"
        [[ $code == 2* ]] || die "$t: notifications/initialized answered HTTP $code"
        ;;
    *) die "unknown shape ${T_SHAPE[$t]}" ;;
    esac
    if [[ ${T_SERVER[$t]} == supergateway ]]; then adopt_descendants "${SRV_PID[supergateway]}"; fi
    verify_target "$t"
}

# verify_target NAME: one request (with a never-used id) must be 2xx and carry
# the echoed "hello", with no JSON-RPC error and no isError:true. Aborts otherwise.
VERIFY_SEQ=0
verify_target() {
    local t=$1
    local url="http://$HOST:${SRV_PORT[${T_SERVER[$t]}]}/mcp"
    local resp=$OUT/req/$t.verify code body
    VERIFY_SEQ=$((VERIFY_SEQ + 1))
    body=$(sed 's/^{"jsonrpc":"2.0","id":1,/{"jsonrpc":"2.0","id":'"$VERIFY_SEQ"',/' "$OUT/req/$t.body")
    code=$(curl -sS --max-time 5 -o "$resp" -w '%{http_code}' -X POST "$url" \
        -H @"$OUT/req/$t.headers" --data-binary "$body") || die "$t: verify request failed"
    if [[ $code != 2* ]] || ! grep -q 'hello' "$resp" \
        || grep -q '"error"[[:space:]]*:' "$resp" || grep -q '"isError"[[:space:]]*:[[:space:]]*true' "$resp"; then
        die "$t: verify failed (HTTP $code): $(head -c 500 "$resp")"
    fi
}

# wait_tool NAME: a front mcpgate answers /health before its upstream is connected
# and its tools are published; retry the target's verify request (for up to 10 s)
# until it succeeds, then verify once more through verify_target (which aborts).
wait_tool() {
    local t=$1 i
    local url="http://$HOST:${SRV_PORT[${T_SERVER[$t]}]}/mcp"
    for ((i = 0; i < 200; i++)); do
        if curl -fsS --max-time 2 -X POST "$url" -H @"$OUT/req/$t.headers" \
            --data-binary "$(modern_body "${T_TOOL[$t]}" "${T_ARGS[$t]}")" 2>/dev/null \
            | grep -q hello; then
            return 0
        fi
        kill -0 "${SRV_PID[${T_SERVER[$t]}]}" 2>/dev/null || die "${T_SERVER[$t]} exited (see $OUT/${T_SERVER[$t]}.log)"
        sleep 0.05
    done
    log "$t: the proxied tool did not answer within 10 s"
}

secs() { # 10s / 2m / 500ms / 10 -> whole seconds (rounded up), for outer timeouts
    local d=$1
    case $d in
        *ms) echo $(((${d%ms} + 999) / 1000)) ;;
        *s) echo "${d%s}" ;;
        *m) echo $((${d%m} * 60)) ;;
        *h) echo $((${d%h} * 3600)) ;;
        *) echo "$d" ;;
    esac
}

run_wrk() { # NAME DURATION OUTFILE
    local t=$1 dur=$2 outf=$3
    local url="http://$HOST:${SRV_PORT[${T_SERVER[$t]}]}/mcp"
    BENCH_BODY_FILE=$OUT/req/$t.body BENCH_HEADERS_FILE=$OUT/req/$t.headers \
        timeout -k 5 $(($(secs "$dur") + 30)) wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency -s "$BENCH/wrk/mcp.lua" "$url" >"$outf" 2>&1 \
        || die "$t: wrk failed: $(tail -n 5 "$outf")"
    grep -q '^WRKJSON ' "$outf" || die "$t: wrk printed no summary: $(tail -n 5 "$outf")"
}

# oha cannot number requests; it picks each body at random from the lines of a
# file (-Z). So give it RATE_ID_POOL bodies with distinct ids (1000001...).
# Random picks can still put two requests with the same id in flight in one
# legacy session (rare; the server may cancel one) — the builtin tool is exact.
RATE_ID_POOL=${BENCH_RATE_ID_POOL:-200000}
oha_bodies() { # NAME -> prints the path of the lines file
    local t=$1
    local lines=$TMP_DIR/$t.lines
    if [[ ! -s $lines ]]; then
        awk -v n="$RATE_ID_POOL" '{
            for (i = 1; i <= n; i++) {
                s = $0
                if (!sub(/^\{"jsonrpc":"2\.0","id":1,/, "{\"jsonrpc\":\"2.0\",\"id\":" (1000000 + i) ",", s)) exit 1
                print s
            }
        }' "$OUT/req/$t.body" >"$lines" || die "$t: cannot template the request body"
    fi
    echo "$lines"
}

run_oha() { # NAME OUTFILE
    local t=$1 outf=$2
    local url="http://$HOST:${SRV_PORT[${T_SERVER[$t]}]}/mcp"
    local hargs=() line lines
    lines=$(oha_bodies "$t")
    while IFS= read -r line; do [[ -n $line ]] && hargs+=(-H "$line"); done <"$OUT/req/$t.headers"
    # -w: wait for in-flight requests at the deadline (else they count as errors);
    # -t 5s per request, and an outer timeout, so a hung response cannot hang the run.
    timeout -k 5 $(($(secs "$RATE_DURATION") + 60)) \
        "$OHA" -z "$RATE_DURATION" -q "${T_RATE[$t]}" -c "$RATE_CONNS" --latency-correction -w -t 5s --no-tui \
        --output-format json -m POST "${hargs[@]}" -Z "$lines" "$url" >"$outf" 2>"$outf.stderr" \
        || die "$t: oha failed (exit $?): $(tail -n 5 "$outf.stderr")"
}

run_rate() { # NAME OUTFILE
    local t=$1 outf=$2
    if [[ $RATE_TOOL == oha ]]; then run_oha "$t" "$outf"; return; fi
    local url="http://$HOST:${SRV_PORT[${T_SERVER[$t]}]}/mcp"
    timeout -k 5 $(($(secs "$RATE_DURATION") + 60)) \
        "$RATE_BIN" --url "$url" --rate "${T_RATE[$t]}" --duration "$(secs "$RATE_DURATION")" --conns "$RATE_CONNS" \
        --body "$OUT/req/$t.body" --headers "$OUT/req/$t.headers" --expect hello --timeout 5 \
        >"$outf" 2>"$outf.stderr" \
        || die "$t: mcpgate-bench-rate failed (exit $?): $(tail -n 5 "$outf.stderr")"
}

# ------------------------------------------------------------------ main ---

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${BENCH_OUT:-$BENCH/results/$STAMP}
mkdir -p "$OUT/wrk" "$OUT/rate" "$OUT/cold"
TMP_DIR=$(mktemp -d)
: >"$OUT/meta.txt"
log "results -> $OUT"

command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

if [[ $SKIP_BUILD != 1 ]]; then
    pkgs=(-p mcpgate-bench-ceiling)
    [[ $MODE == full ]] && pkgs=(-p mcpgate "${pkgs[@]}")
    log "cargo build --release ${pkgs[*]}"
    (cd "$ROOT" && cargo build --release "${pkgs[@]}" >&2)
fi
[[ -x $CEILING_BIN ]] || die "ceiling binary not found: $CEILING_BIN"
case $RATE_TOOL in
    builtin) [[ -x $RATE_BIN ]] || die "rate tool not found: $RATE_BIN" ;;
    oha) ;;
    *) die "BENCH_RATE_TOOL must be builtin or oha" ;;
esac
[[ $MODE == ceiling-only || -x $MCPGATE_BIN ]] || die "mcpgate binary not found: $MCPGATE_BIN"
ensure_wrk
[[ $RATE_TOOL == oha ]] && ensure_oha
[[ $MODE == full ]] && ensure_supergateway

meta started "$STAMP"
meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
if awk '{exit !($1 > 0.5)}' /proc/loadavg; then
    log "WARNING: load average is $(cut -d' ' -f1-3 /proc/loadavg) before starting: other processes compete for CPU; expect noisy numbers"
fi
meta mode "$MODE"
meta host "$(uname -srm), $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
meta git_rev "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty')"
meta wrk_version "$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')"
if [[ $RATE_TOOL == oha ]]; then
    meta rate_tool "$("$OHA" --version | head -n1) -q RATE --latency-correction"
else
    meta rate_tool "mcpgate-bench-rate (bench/ceiling/src/bin), latency-corrected"
fi
meta threads "$THREADS"; meta conns "$CONNS"; meta duration "$DURATION"; meta rounds "$ROUNDS"
meta rate "$RATE"; meta proxy_rate "$PROXY_RATE"; meta rate_conns "$RATE_CONNS"; meta rate_duration "$RATE_DURATION"; meta rate_rounds "$RATE_ROUNDS"
meta baseline ceiling
if [[ $MODE == full ]]; then
    meta mcpgate_bin "$MCPGATE_BIN"
    meta supergateway "supergateway@$SUPERGATEWAY_VERSION (npm) on Node $("$NODE" --version), --stateful, --logLevel $SUPERGATEWAY_LOG"
fi

# 1. Cold start (before anything else runs).
log "cold start: ceiling x$COLD_RUNS"
py coldstart --runs "$COLD_RUNS" --out "$OUT/cold/ceiling.json" --log "$OUT/cold/ceiling.log" \
    -- "$CEILING_BIN" '{addr}' >/dev/null || die "ceiling cold start failed (see $OUT/cold/ceiling.json)"
if [[ $MODE == full ]]; then
    log "cold start: mcpgate x$COLD_RUNS"
    py coldstart --runs "$COLD_RUNS" --env LOG_LEVEL=warn --out "$OUT/cold/mcpgate.json" --log "$OUT/cold/mcpgate.log" \
        -- "$MCPGATE_BIN" serve --listen '{addr}' >/dev/null || die "mcpgate cold start failed (see $OUT/cold/mcpgate.json)"
fi

# 2. Long-running servers; idle RSS right after /health is 200.
start_server ceiling "$CEILING_BIN" ADDR
if [[ $MODE == full ]]; then
    start_server mcpgate "$MCPGATE_BIN" serve --listen ADDR
    # Config-declared tools, in their own process so the echo targets' RSS stays the default config's.
    python3 -c 'import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute("CREATE TABLE greetings (id INTEGER PRIMARY KEY, message TEXT)"); db.execute("INSERT INTO greetings VALUES (1, ?)", ("hello",)); db.commit()' "$TMP_DIR/bench.db"
    BENCH_CEILING_URL="http://$HOST:${SRV_PORT[ceiling]}/" BENCH_SQLITE_DB="$TMP_DIR/bench.db" \
        start_server mcpgate-tools "$MCPGATE_BIN" serve --config "$BENCH/tools.yaml" --listen ADDR
    # Every policy on (bench/policies.yaml; the audit log in the run's temporary directory).
    AUDIT_LOG_FILE="$TMP_DIR/audit.log" \
        start_server mcpgate-policies "$MCPGATE_BIN" serve --config "$BENCH/policies.yaml" --listen ADDR
    # Proxied calls: an upstream mcpgate (default config) called directly, and two front mcpgates.
    start_server mcpgate-upstream "$MCPGATE_BIN" serve --listen ADDR
    BENCH_UPSTREAM_ADDR="$HOST:${SRV_PORT[mcpgate-upstream]}" \
        start_server mcpgate-proxy-http "$MCPGATE_BIN" serve --config "$BENCH/proxy-http.yaml" --listen ADDR
    BENCH_MCPGATE_BIN="$MCPGATE_BIN" \
        start_server mcpgate-proxy-stdio "$MCPGATE_BIN" serve --config "$BENCH/proxy-stdio.yaml" --listen ADDR
    # The same stdio upstream behind supergateway: one `mcpgate serve --stdio` child (through `sh -c`) per
    # session, spawned at `initialize`; it listens on all interfaces (no host option).
    start_server supergateway "$NODE" "$SUPERGATEWAY_MAIN" --stdio "$MCPGATE_BIN serve --stdio" \
        --outputTransport streamableHttp --stateful --port @PORT@ --healthEndpoint /health \
        --logLevel "$SUPERGATEWAY_LOG"
    # The floor of a proxy hop: the ceiling's relays (parse, re-id, forward, restore the id; tokio + hyper)
    # in front of a second plain ceiling over HTTP, and in front of a `--stdio` ceiling child (spawned
    # before the relay listens; killed by PID on exit, after the relay).
    start_server ceiling-upstream "$CEILING_BIN" ADDR
    start_server floor-proxy-http "$CEILING_BIN" ADDR --http-upstream "http://$HOST:${SRV_PORT[ceiling-upstream]}/mcp"
    start_server floor-proxy-stdio "$CEILING_BIN" ADDR --stdio-upstream "$CEILING_BIN" --stdio
    adopt_descendants "${SRV_PID[floor-proxy-stdio]}"
fi
sleep 1
for s in "${!SRV_PID[@]}"; do meta "idle_rss_kb.$s" "$(rss_kb "${SRV_PID[$s]}")"; done

add_target ceiling ceiling modern 0
if [[ $MODE == full ]]; then
    add_target mcpgate-modern mcpgate modern 0
    # Right after its baseline (the policy cost is a pair's ratio; the pair swaps order every other round).
    add_target mcpgate-policies mcpgate-policies modern 0
    T_HEADER[mcpgate-policies]="x-api-key: $POLICY_BENCH_KEY"
    add_target mcpgate-legacy mcpgate legacy 1
    add_target mcpgate-sqlite mcpgate-tools modern 0 greeting '{"id":1}'
    add_target mcpgate-http mcpgate-tools modern 0 http_echo '{"message":"hello"}'
    add_target direct-upstream mcpgate-upstream modern 0
    add_target mcpgate-proxy-http mcpgate-proxy-http modern 0
    add_target mcpgate-proxy-stdio mcpgate-proxy-stdio modern 0
    add_target floor-direct ceiling-upstream modern 0
    add_target floor-proxy-http floor-proxy-http modern 0
    add_target floor-proxy-stdio floor-proxy-stdio modern 0
    # Like for like with supergateway: both as one 2025-11-25 session over the same stdio upstream.
    add_target mcpgate-proxy-stdio-legacy mcpgate-proxy-stdio legacy 1
    add_target supergateway supergateway legacy 1
    # The proxy targets are stated at PROXY_RATE; their baseline is measured at the same rate.
    for t in direct-upstream mcpgate-proxy-http mcpgate-proxy-stdio mcpgate-proxy-stdio-legacy supergateway \
        floor-direct floor-proxy-http floor-proxy-stdio; do
        T_RATE[$t]=$PROXY_RATE
    done
else
    add_target ceiling-legacy ceiling legacy 0
fi
meta targets "$(IFS=,; echo "${TARGETS[*]}")"
for t in "${TARGETS[@]}"; do meta "rate.$t" "${T_RATE[$t]}"; done
if [[ $MODE == full ]]; then
    meta policy_baseline "${POLICY_PAIR[0]}"
    meta policy_target "${POLICY_PAIR[1]}"
    meta proxy_baseline direct-upstream
    meta proxy_targets mcpgate-proxy-http,mcpgate-proxy-stdio
    meta floor_baseline floor-direct
    meta floor_targets floor-proxy-http,floor-proxy-stdio
    meta stdio_vs_baseline supergateway
    meta stdio_vs_targets mcpgate-proxy-stdio-legacy,mcpgate-proxy-stdio
    mkdir -p "$OUT/req"
    for t in mcpgate-proxy-http mcpgate-proxy-stdio; do
        printf '%s\n' "Content-Type: application/json" "Accept: application/json, text/event-stream" \
            "MCP-Protocol-Version: $MODERN_VERSION" "Mcp-Method: tools/call" "Mcp-Name: echo" >"$OUT/req/$t.headers"
        wait_tool "$t"
    done
    # The stdio upstream is the front's child: its RSS too, and kill it by PID on exit (after the front).
    STDIO_CHILD=$(pgrep -P "${SRV_PID[mcpgate-proxy-stdio]}" | head -n1 || true)
    adopt_descendants "${SRV_PID[mcpgate-proxy-stdio]}"
    if [[ -n $STDIO_CHILD ]]; then
        meta "idle_rss_kb.mcpgate-proxy-stdio-child" "$(rss_kb "$STDIO_CHILD")"
    fi
fi

# 3. Max throughput: warm-up, then ROUNDS interleaved rounds.
for t in "${TARGETS[@]}"; do
    prepare_target "$t"
    log "warm-up $t ($WARMUP)"
    run_wrk "$t" "$WARMUP" "$OUT/wrk/$t.warmup.txt"
done
# In even rounds the policy pair (added back to back) goes in the other order: on this machine whichever of two
# runs goes first tends to lead, and alternating cancels that from the pair's median ratio.
round_order() { # ROUND -> the targets in that round's order
    local r=$1 t
    for t in "${TARGETS[@]}"; do
        if ((r % 2 == 0)); then
            case $t in
            "${POLICY_PAIR[0]}") t=${POLICY_PAIR[1]} ;;
            "${POLICY_PAIR[1]}") t=${POLICY_PAIR[0]} ;;
            esac
        fi
        echo "$t"
    done
}
for ((r = 1; r <= ROUNDS; r++)); do
    mapfile -t order < <(round_order "$r")
    for t in "${order[@]}"; do
        prepare_target "$t"
        log "round $r/$ROUNDS: wrk $t ($DURATION)"
        run_wrk "$t" "$DURATION" "$OUT/wrk/$t.r$r.txt"
        awk '/Requests\/sec|Non-2xx|Socket errors/ {print "[bench]   " $0}' "$OUT/wrk/$t.r$r.txt" >&2
    done
done

# 4. Fixed rate.
for ((r = 1; r <= RATE_ROUNDS; r++)); do
    for t in "${TARGETS[@]}"; do
        prepare_target "$t"
        log "fixed rate $r/$RATE_ROUNDS: $RATE_TOOL at ${T_RATE[$t]} req/s, $t ($RATE_DURATION)"
        run_rate "$t" "$OUT/rate/$t.r$r.json"
    done
done

# 5. Still answering correctly after all the load? RSS after load.
for t in "${TARGETS[@]}"; do verify_target "$t"; done
meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
for s in "${!SRV_PID[@]}"; do
    meta "after_rss_kb.$s" "$(rss_kb "${SRV_PID[$s]}")"
    meta "hwm_kb.$s" "$(hwm_kb "${SRV_PID[$s]}")"
done
if [[ -n ${STDIO_CHILD:-} ]] && kill -0 "$STDIO_CHILD" 2>/dev/null; then
    meta "after_rss_kb.mcpgate-proxy-stdio-child" "$(rss_kb "$STDIO_CHILD")"
    meta "hwm_kb.mcpgate-proxy-stdio-child" "$(hwm_kb "$STDIO_CHILD")"
fi

cleanup
py summarize "$OUT"
# 6. How much of the code layout list (crates/mcpgate/link-order.txt) the binary holds (a stale list shows as idle
# RSS), then instructions per call under callgrind (bench/instructions.py): the figure the machine's noise cannot
# move. Both need the mcpgate binary, which --ceiling-only does not build.
if [[ $MODE == full ]]; then
    python3 "$BENCH/layout.py" --check --mcpgate "$MCPGATE_BIN" >"$OUT/layout.txt" ||
        die "bench/layout.py --check failed"
    cat "$OUT/layout.txt" >&2
    if command -v valgrind >/dev/null; then
        log "instructions per call (callgrind): every target"
        python3 "$BENCH/instructions.py" --mcpgate "$MCPGATE_BIN" --ceiling "$CEILING_BIN" >"$OUT/instructions.txt" ||
            die "bench/instructions.py failed"
        cat "$OUT/instructions.txt" >&2
    else
        log "valgrind not installed: no instruction counts (apt-get install valgrind)"
    fi
fi
log "saved: $OUT/summary.md, $OUT/summary.json, $OUT/layout.txt, $OUT/instructions.txt (raw outputs alongside)"
