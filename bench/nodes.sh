#!/usr/bin/env bash
# Shared state, measured: the built-in echo with edge rate limits and the cache (bench/state.yaml)
#   1. with its state in memory vs in Redis, one node each (bench/ab.sh: alternating rounds, medians, CPU µs per
#      call), and the Redis commands one call costs (INFO commandstats over a run of known length);
#   2. one node vs two nodes sharing Redis, each behind the same nginx (round robin), in alternating rounds.
# Everything (redis-server, nginx, the nodes, wrk) runs on this machine and on its cores: say so with the numbers.
#
# Usage: bench/nodes.sh [-r ROUNDS] [-d DURATION]      (release binary: target/release/mcpgate, built if missing)
# Needs redis-server, nginx and wrk (Debian: redis-server nginx-light wrk).
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
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
BIN=$ROOT/target/release/mcpgate
KEY=mcpgate-bench-key-not-a-secret
[[ -x $BIN ]] || cargo build --release -p mcpgate --manifest-path "$ROOT/Cargo.toml"
for tool in redis-server wrk; do command -v "$tool" >/dev/null || { echo "nodes.sh: $tool is required" >&2; exit 1; }; done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { echo "nodes.sh: nginx is required" >&2; exit 1; }

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
freeport() { python3 "$BENCH/benchlib.py" freeport; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "nothing on $1" >&2; exit 1; }

REDIS_PORT=$(freeport)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
redis() { redis-cli -p "$REDIS_PORT" "$@"; }

echo "== 1. state in memory vs in Redis (one node each; rate limits: global, per_ip, tier; echo cached)"
"$BENCH/ab.sh" -r "$ROUNDS" -d "$DURATION" \
    "memory=$BIN,config=$BENCH/state.yaml,key=$KEY" \
    "redis=$BIN,config=$BENCH/state.yaml,key=$KEY,env=REDIS_URL=$REDIS_URL"

# Redis commands per call: one node on Redis, its command counts over one wrk run.
printf '%s' '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}' >"$TMP/body"
printf '%s\n' "Content-Type: application/json" "Accept: application/json, text/event-stream" \
    "MCP-Protocol-Version: 2026-07-28" "Mcp-Method: tools/call" "Mcp-Name: echo" "x-api-key: $KEY" >"$TMP/headers"
node() { # node PORT LOG: one node on Redis
    REDIS_URL=$REDIS_URL MCPGATE_SEAL_KEY=bench-seal-key-shared-by-the-nodes-0123456789 LOG_LEVEL=warn \
        "$BIN" serve --config "$BENCH/state.yaml" --listen "127.0.0.1:$1" >"$2" 2>&1 &
    PIDS+=($!)
    wait_port "$1"
}
wrk_run() { # wrk_run URL DURATION -> "rps requests"
    BENCH_BODY_FILE=$TMP/body BENCH_HEADERS_FILE=$TMP/headers \
        wrk -t2 -c64 -d"$2" -s "$BENCH/wrk/mcp.lua" "$1" >"$TMP/wrk.txt"
    python3 - "$BENCH" "$TMP/wrk.txt" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from benchlib import parse_wrk
d = parse_wrk(sys.argv[2])
if d is None or d["err_status"]:
    sys.exit(f"nodes.sh: wrk failed or saw non-2xx answers: {d}")
print(f"{d['rps']:.0f} {d['requests']}")
PY
}
A_PORT=$(freeport)
node "$A_PORT" "$TMP/a.log"
wrk_run "http://127.0.0.1:$A_PORT/mcp" 1s >/dev/null
redis CONFIG RESETSTAT >/dev/null
read -r _ requests < <(wrk_run "http://127.0.0.1:$A_PORT/mcp" "$DURATION")
redis INFO commandstats | tr -d '\r' >"$TMP/stats"
python3 - "$TMP/stats" "$requests" <<'PY'
import re, sys
calls = {m.group(1): int(m.group(2)) for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", open(sys.argv[1]).read())}
calls.pop("config", None); calls.pop("info", None)
requests = int(sys.argv[2])
# Commands a script runs are counted too; the bench config's rate-limit script reads TIME and, per bucket (3),
# GETs and SETs once: what is left is what the node sent.
scripts = calls.get("evalsha", 0) + calls.get("eval", 0)
inside = {"time": scripts, "get": 3 * scripts, "set": 3 * scripts}
sent = {name: n - inside.get(name, 0) for name, n in calls.items()}
detail = ", ".join(f"{name} {n / requests:.3f}" for name, n in sorted(sent.items()) if n)
print(f"Redis round trips per call: {sum(sent.values()) / requests:.3f} ({detail}) over {requests} calls;"
      f" all commands, those run by scripts included: {sum(calls.values()) / requests:.3f}")
PY

echo "== 2. one node vs two nodes on one Redis, behind nginx (round robin)"
B_PORT=$(freeport)
node "$B_PORT" "$TMP/b.log"
nginx_conf() { # nginx_conf NAME PORT UPSTREAM_PORT...
    local name=$1 port=$2
    shift 2
    local servers="" user=""
    for p in "$@"; do servers+="server 127.0.0.1:$p;"; done
    [[ $(id -u) == 0 ]] && user="user root;"
    mkdir -p "$TMP/$name"
    cat >"$TMP/$name/nginx.conf" <<EOF
$user
worker_processes 1;
pid $TMP/$name/nginx.pid;
error_log $TMP/$name/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TMP/$name/body; proxy_temp_path $TMP/$name/proxy; fastcgi_temp_path $TMP/$name/fcgi;
    uwsgi_temp_path $TMP/$name/uwsgi; scgi_temp_path $TMP/$name/scgi;
    upstream mcpgate { $servers keepalive 64; }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://mcpgate;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_buffering off;
        }
    }
}
EOF
    "$NGINX" -c "$TMP/$name/nginx.conf" -p "$TMP/$name" -g "daemon off;" >"$TMP/$name/out.log" 2>&1 &
    PIDS+=($!)
    wait_port "$port"
}
ONE_PORT=$(freeport)
TWO_PORT=$(freeport)
nginx_conf one "$ONE_PORT" "$A_PORT"
nginx_conf two "$TWO_PORT" "$A_PORT" "$B_PORT"
for url in "http://127.0.0.1:$ONE_PORT/mcp" "http://127.0.0.1:$TWO_PORT/mcp"; do wrk_run "$url" 1s >/dev/null; done
: >"$TMP/rounds"
for ((r = 0; r < ROUNDS; r++)); do
    if ((r % 2 == 0)); then order=(one two); else order=(two one); fi
    declare -A got=()
    for which in "${order[@]}"; do
        port=$ONE_PORT
        [[ $which == two ]] && port=$TWO_PORT
        read -r rps _ < <(wrk_run "http://127.0.0.1:$port/mcp" "$DURATION")
        got[$which]=$rps
    done
    echo "round $((r + 1)): one node ${got[one]} rps, two nodes ${got[two]} rps" | tee -a "$TMP/rounds"
    unset got
done
python3 - "$TMP/rounds" <<'PY'
import re, statistics as st, sys
rows = [tuple(map(int, re.findall(r"(\d+) rps", line))) for line in open(sys.argv[1]) if "rps" in line]
one, two = [r[0] for r in rows], [r[1] for r in rows]
ratios = [b / a for a, b in rows]
print(f"median: one node {st.median(one):.0f} rps, two nodes {st.median(two):.0f} rps; "
      f"two / one: median of rounds {st.median(ratios):.2f} ({' '.join(f'{x:.2f}' for x in ratios)})")
PY
