#!/usr/bin/env bash
# Run the official MCP conformance suite (server side) against mcpgate.
#
# Usage: scripts/conformance.sh PATH_TO_MCPGATE_BINARY
#
# Runs, against http://127.0.0.1:$PORT/mcp:
#   1. @modelcontextprotocol/conformance@0.1.16          default server suite
#   2. @modelcontextprotocol/conformance@0.2.0-alpha.12  --requirements 2025-11-25
#   3. @modelcontextprotocol/conformance@0.2.0-alpha.12  --requirements 2026-07-28
#
# Exit status is non-zero if any run reports a failing *required* scenario.
# The suite's own exit code already means exactly that: 0.1.16 exits 1 when any
# check in the (active) suite fails; 0.2.0 with --requirements exits 1 only when
# a scored scenario of that revision fails (extension / pending /
# added-after-release scenarios are run and reported but not scored).
#
# Tooling (Node >= 22 and both suite versions) is installed idempotently under
# .cache/ at the repo root (git-ignored).
#
# Environment overrides:
#   CONFORMANCE_CONFIG   config passed to `serve` (default examples/conformance.yaml)
#   CONFORMANCE_PROXY    if 1, the suite talks to a front mcpgate whose one upstream (stdio, prefix off) is
#                        `mcpgate serve --stdio --config CONFORMANCE_CONFIG`: federation must pass the same
#                        scenarios as the backend served directly
#   CONFORMANCE_UPSTREAM if `typescript`, the suite talks to a front mcpgate whose one upstream (Streamable HTTP,
#                        prefix off) is tests/upstream-ts/server.mjs, a server on the official TypeScript SDK
#                        (installed by scripts/upstreams.sh) that negotiates 2026-07-28 with mcpgate and asks for
#                        sampling and elicitation on its tool calls' own streams. Only the 0.1.16 suite runs, and
#                        every scenario of TS_EXPECTED below must pass through mcpgate (the run fails otherwise)
#   CONFORMANCE_OUT      results directory (default: a new mktemp -d directory)
#   CONFORMANCE_VERBOSE  if 1, stream the full suite output to the terminal
set -euo pipefail

usage() {
    echo "usage: $0 PATH_TO_MCPGATE_BINARY" >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
BIN=$1
if [[ ! -x $BIN ]]; then
    echo "error: '$BIN' is not an executable file" >&2
    exit 2
fi
# Absolute path, since we cd to the repo root below.
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=$ROOT/.cache
CONFIG=${CONFORMANCE_CONFIG:-examples/conformance.yaml}
VERBOSE=${CONFORMANCE_VERBOSE:-0}

CONF_OLD_VERSION=0.1.16
CONF_NEW_VERSION=0.2.0-alpha.12
CONF_OLD_DIR=$CACHE/conformance-0.1.16
CONF_NEW_DIR=$CACHE/conformance-0.2.0
CONF_PKG=@modelcontextprotocol/conformance

log() { printf '[conformance] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- tooling ---

# shellcheck source=lib/node22.sh
source "$ROOT/scripts/lib/node22.sh"

installed_version() { # DIR -> version of the conformance package in DIR, or ""
    local pj=$1/node_modules/$CONF_PKG/package.json
    [[ -f $pj ]] || return 0
    "$NODE" -p "require(process.argv[1]).version" "$pj" 2>/dev/null || true
}

ensure_conformance() { # DIR VERSION
    local dir=$1 version=$2
    if [[ $(installed_version "$dir") == "$version" ]]; then
        return
    fi
    log "installing $CONF_PKG@$version into $dir"
    mkdir -p "$dir"
    # The machine's npm may run on an older node; the package only needs
    # Node 22 at run time, so engine warnings are harmless here.
    npm install --prefix "$dir" --no-audit --no-fund --save-exact \
        "$CONF_PKG@$version" >&2
    if [[ $(installed_version "$dir") != "$version" ]]; then
        echo "error: $CONF_PKG@$version not installed correctly in $dir" >&2
        exit 1
    fi
}

ensure_node
ensure_conformance "$CONF_OLD_DIR" "$CONF_OLD_VERSION"
ensure_conformance "$CONF_NEW_DIR" "$CONF_NEW_VERSION"
export PATH="$(dirname "$NODE"):$PATH"
log "node $("$NODE" --version) at $NODE"

# ----------------------------------------------------------------- server ---

OUT=${CONFORMANCE_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/mcpgate-conformance.XXXXXX")}
mkdir -p "$OUT"
UPSTREAM=${CONFORMANCE_UPSTREAM:-}
case $UPSTREAM in
    "" | typescript) ;;
    *)
        echo "error: CONFORMANCE_UPSTREAM=$UPSTREAM: the only upstream known here is 'typescript'" >&2
        exit 2
        ;;
esac
if [[ -n $UPSTREAM && ${CONFORMANCE_PROXY:-0} == 1 ]]; then
    echo "error: CONFORMANCE_PROXY and CONFORMANCE_UPSTREAM each choose the upstream: set one of them" >&2
    exit 2
fi
# The 0.1.16 scenarios that must pass through mcpgate fronting the TypeScript SDK server: all of its active
# (default) suite. The four that ask the client something (sampling, elicitation) are the ones that failed while
# mcpgate ignored the requests a 2026-07-28 upstream sends on a tool call's stream.
TS_EXPECTED=(
    server-initialize logging-set-level ping completion-complete tools-list tools-call-simple-text
    tools-call-image tools-call-audio tools-call-embedded-resource tools-call-mixed-content
    tools-call-with-logging tools-call-error tools-call-with-progress tools-call-sampling
    tools-call-elicitation elicitation-sep1034-defaults server-sse-multiple-streams elicitation-sep1330-enums
    resources-list resources-read-text resources-read-binary resources-templates-read resources-subscribe
    resources-unsubscribe prompts-list prompts-get-simple prompts-get-with-args prompts-get-embedded-resource
    prompts-get-with-image dns-rebinding-protection
)
UPSTREAM_PID=
if [[ $UPSTREAM == typescript ]]; then
    upstreams_env=$("$ROOT/scripts/upstreams.sh") # an assignment, so that a failure stops the run (set -e)
    eval "$upstreams_env"
    log "starting the TypeScript SDK upstream: $MCPGATE_TEST_UPSTREAM_TS (log: $OUT/upstream-ts.log)"
    # Port 0: the server takes a free port and names its URL on its first line of output.
    "$MCPGATE_TEST_NODE" "$MCPGATE_TEST_UPSTREAM_TS" 0 >"$OUT/upstream-ts.log" 2>&1 &
    UPSTREAM_PID=$!
    UPSTREAM_URL=
    for _ in $(seq 1 200); do
        UPSTREAM_URL=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$OUT/upstream-ts.log" | head -n 1)
        [[ -n $UPSTREAM_URL ]] && break
        if ! kill -0 "$UPSTREAM_PID" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    if [[ -z $UPSTREAM_URL ]]; then
        echo "error: the TypeScript SDK upstream did not start; its log follows:" >&2
        tail -n 30 "$OUT/upstream-ts.log" >&2 || true
        kill "$UPSTREAM_PID" 2>/dev/null || true
        exit 1
    fi
    cat >"$OUT/front-ts.yaml" <<YAML
server:
  request_timeout: 60s
upstreams:
  typescript:
    url: $UPSTREAM_URL
    prefix: false
    timeout: 60s
YAML
    CONFIG=$OUT/front-ts.yaml
elif [[ ${CONFORMANCE_PROXY:-0} == 1 ]]; then
    # JSON strings are YAML scalars: paths quoted safely.
    q() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }
    cat >"$OUT/proxy.yaml" <<YAML
server:
  request_timeout: 60s
upstreams:
  conformance:
    command: $(q "$BIN")
    args: [serve, --stdio, --config, $(q "$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")")]
    env: { LOG_LEVEL: warn }
    prefix: false
    timeout: 60s
YAML
    CONFIG=$OUT/proxy.yaml
fi

PORT=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')
BASE=http://127.0.0.1:$PORT
URL=$BASE/mcp

SERVER_PID=
stop_process() { # PID: SIGTERM, then SIGKILL after 5 s
    local pid=$1
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}
cleanup() {
    stop_process "$SERVER_PID"
    stop_process "$UPSTREAM_PID"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cd "$ROOT"
log "starting: $BIN serve --config $CONFIG --listen 127.0.0.1:$PORT (log: $OUT/mcpgate.log)"
"$BIN" serve --config "$CONFIG" --listen "127.0.0.1:$PORT" >"$OUT/mcpgate.log" 2>&1 &
SERVER_PID=$!

health_ok() {
    if command -v curl >/dev/null 2>&1; then
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/health" || true) == 200 ]]
    else
        python3 - "$BASE/health" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
EOF
    fi
}

deadline=$((SECONDS + 20))
until health_ok; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "error: mcpgate exited before becoming healthy; log follows:" >&2
        tail -n 50 "$OUT/mcpgate.log" >&2 || true
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "error: $BASE/health did not return 200 within 20 s; log follows:" >&2
        tail -n 50 "$OUT/mcpgate.log" >&2 || true
        exit 1
    fi
    sleep 0.2
done
log "mcpgate healthy at $BASE (pid $SERVER_PID)"

# ------------------------------------------------------------------- runs ---

SUMMARY=()
OVERALL=0

run_suite() { # LABEL PKGDIR [extra args...]
    local label=$1 dir=$2
    shift 2
    local slug=${label//[^A-Za-z0-9._-]/_}
    local logf=$OUT/$slug.log
    local outdir=$OUT/$slug
    mkdir -p "$outdir"
    log "run $label -> $logf"
    local rc=0
    if [[ $VERBOSE == 1 ]]; then
        "$NODE" "$dir/node_modules/$CONF_PKG/dist/index.js" server \
            --url "$URL" -o "$outdir" "$@" 2>&1 | tee "$logf" || rc=${PIPESTATUS[0]}
    else
        "$NODE" "$dir/node_modules/$CONF_PKG/dist/index.js" server \
            --url "$URL" -o "$outdir" "$@" >"$logf" 2>&1 || rc=$?
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "WARNING: mcpgate died during run '$label'"
    fi

    # Scenario lines of the final summary look like
    #   "✓ tools-list: 2 passed, 0 failed"  (scored / suite scenarios, column 0)
    #   "  ✗ tasks-lifecycle (extension)"   (not scored, indented)
    local stats
    stats=$(python3 - "$logf" <<'EOF'
import sys
lines = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
try:
    start = max(i for i, l in enumerate(lines) if l.strip() == "=== SUMMARY ===")
except ValueError:
    print("0 0 0 0 -")
    sys.exit(0)
passed, failed, ns_pass, ns_fail = [], [], [], []
for l in lines[start + 1:]:
    if l.startswith("\u2713 "):
        passed.append(l[2:].split(":")[0])
    elif l.startswith("\u2717 "):
        failed.append(l[2:].split(":")[0])
    elif l.startswith("  \u2713 "):
        ns_pass.append(l[4:].split(" ")[0])
    elif l.startswith("  \u2717 "):
        ns_fail.append(l[4:].split(" ")[0])
# Scenarios listed as not scored also appear in the main list; count them once.
ns = set(ns_pass) | set(ns_fail)
p = [s for s in passed if s not in ns]
f = [s for s in failed if s not in ns]
print(len(p), len(f), len(ns_pass), len(ns_fail), ",".join(f) or "-")
EOF
)
    local np nf nsp nsf failed_list
    read -r np nf nsp nsf failed_list <<<"$stats"
    local verdict=PASS
    if ((rc != 0)); then
        verdict="FAIL (exit $rc)"
        OVERALL=1
    fi
    # With an expected list (EXPECTED: scenario names), each of them must be among the passed.
    local missing=()
    if ((${#EXPECTED[@]} > 0)); then
        # Scenario lines of the final summary: "✓ NAME: N passed, 0 failed".
        read -r -a missing <<<"$(python3 - "$logf" "${EXPECTED[@]}" <<'EOF'
import sys
lines = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
starts = [i for i, l in enumerate(lines) if l.strip() == "=== SUMMARY ==="]
summary = lines[starts[-1] + 1:] if starts else []
passed = {l[2:].split(":")[0] for l in summary if l.startswith("\u2713 ")}
print(" ".join(s for s in sys.argv[2:] if s not in passed))
EOF
)"
        if ((${#missing[@]} > 0)); then
            verdict="FAIL (${#missing[@]} expected scenarios did not pass)"
            OVERALL=1
        fi
    fi
    local line
    line=$(printf '%-40s %-14s scored: %3d passed, %3d failed' "$label" "$verdict" "$np" "$nf")
    if ((nsp + nsf > 0)); then
        line+=$(printf ' | not scored: %d passed, %d failed' "$nsp" "$nsf")
    fi
    SUMMARY+=("$line")
    if [[ $failed_list != - ]]; then
        SUMMARY+=("    failed: ${failed_list//,/, }")
    fi
    if ((${#missing[@]} > 0)); then
        SUMMARY+=("    expected to pass but did not: ${missing[*]}")
    fi
    if ((rc != 0)) && [[ $np == 0 && $nf == 0 ]]; then
        SUMMARY+=("    (no summary produced; see $logf)")
    fi
}

EXPECTED=()
if [[ $UPSTREAM == typescript ]]; then
    # The TypeScript SDK server has the 0.1.16 surface only (none of the 0.2.0 suites' 2026-07-28 tools).
    EXPECTED=("${TS_EXPECTED[@]}")
    run_suite "conformance-$CONF_OLD_VERSION-via-typescript-upstream" "$CONF_OLD_DIR"
else
    run_suite "conformance-$CONF_OLD_VERSION" "$CONF_OLD_DIR"
    run_suite "conformance-$CONF_NEW_VERSION@2025-11-25" "$CONF_NEW_DIR" --requirements 2025-11-25
    run_suite "conformance-$CONF_NEW_VERSION@2026-07-28" "$CONF_NEW_DIR" --requirements 2026-07-28
fi

echo
echo "=== MCP conformance summary (results: $OUT) ==="
for l in "${SUMMARY[@]}"; do
    echo "$l"
done
if ((OVERALL != 0)); then
    echo "RESULT: FAIL (a required scenario failed; see logs in $OUT)"
else
    echo "RESULT: PASS"
fi
exit "$OVERALL"
