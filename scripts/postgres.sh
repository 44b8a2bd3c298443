#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the test run: trust auth, listening on 127.0.0.1 on a free port, its data
# and socket in a fresh temporary directory. Installs the Debian `postgresql` package when the server is missing.
#
# Usage:
#   eval "$(scripts/postgres.sh start)"     # sets MCPGATE_TEST_POSTGRES_URL and MCPGATE_TEST_POSTGRES_DIR
#   cargo test -p mcpgate-backends --test sql_tools
#   scripts/postgres.sh stop "$MCPGATE_TEST_POSTGRES_DIR"
#
# Only the `export` lines go to standard output; progress goes to standard error. PostgreSQL refuses to run as
# root, so the server runs as the `postgres` user the package creates.
set -euo pipefail

log() { printf 'postgres.sh: %s\n' "$*" >&2; }

as_postgres() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

server_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

install_server() {
    [[ $(id -u) == 0 ]] || { log "PostgreSQL is not installed and we are not root to install it"; exit 1; }
    log "installing postgresql"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    local bin dir port
    bin=$(server_bin) || { install_server; bin=$(server_bin); }
    dir=$(mktemp -d /tmp/mcpgate-pg.XXXXXX)
    chmod 755 "$dir"
    if [[ $(id -u) == 0 ]]; then
        chown postgres: "$dir"
    fi
    as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    # A port can be taken between choosing and binding it: try a few.
    local attempt
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        if as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off" >&2; then
            echo "export MCPGATE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres"
            echo "export MCPGATE_TEST_POSTGRES_DIR=$dir"
            log "PostgreSQL running on 127.0.0.1:$port (data in $dir)"
            return 0
        fi
        log "start on port $port failed (attempt $attempt)"
    done
    cat "$dir/server.log" >&2 || true
    rm -rf "$dir"
    exit 1
}

stop() {
    local dir=${1:-}
    [[ -n $dir && -d $dir/data ]] || { log "usage: $0 stop DIR (the MCPGATE_TEST_POSTGRES_DIR start printed)"; exit 2; }
    local bin
    bin=$(server_bin) || { log "pg_ctl not found"; exit 1; }
    as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || log "pg_ctl stop failed"
    rm -rf "$dir"
}

case ${1:-} in
start) start ;;
stop) stop "${2:-}" ;;
*)
    log "usage: $0 start | stop DIR"
    exit 2
    ;;
esac
