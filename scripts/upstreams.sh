#!/usr/bin/env bash
# Install, when missing, the real third-party MCP servers that crates/mcpgate/tests/real_upstreams.rs federates,
# and print `export` lines naming them:
#
#   eval "$(scripts/upstreams.sh)"
#
#   MCPGATE_TEST_NODE        a Node >= 22 binary (the machine's, else node-linux-* under .cache/node22, as
#                            scripts/conformance.sh installs it)
#   MCPGATE_TEST_EVERYTHING  @modelcontextprotocol/server-everything's entry point (its package.json `bin`)
#   MCPGATE_TEST_FILESYSTEM  @modelcontextprotocol/server-filesystem's entry point (its package.json `bin`)
#   MCPGATE_TEST_TIME        the `mcp-server-time` console script of .venv (pinned in tests/interop/requirements.txt)
#   MCPGATE_TEST_UPSTREAM_TS tests/upstream-ts/server.mjs, a Streamable HTTP server on the official TypeScript SDK
#                            (pinned in tests/upstream-ts/package.json and its lock file; `node server.mjs PORT`)
#
# Versions are pinned here (tests/upstream-ts: in its package-lock.json); everything lands under .cache/ and .venv/
# at the repository root, and tests/upstream-ts/node_modules (all git-ignored).
# Progress goes to stderr; only the export lines go to stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=$ROOT/.cache
DIR=$CACHE/upstreams

EVERYTHING_PKG=@modelcontextprotocol/server-everything
EVERYTHING_VERSION=2026.8.31
FILESYSTEM_PKG=@modelcontextprotocol/server-filesystem
FILESYSTEM_VERSION=2026.8.31

log() { printf '[upstreams] %s\n' "$*" >&2; }

# shellcheck source=lib/node22.sh
source "$ROOT/scripts/lib/node22.sh"

installed_version() { # PKG -> its version under $DIR, or ""
    local pj=$DIR/node_modules/$1/package.json
    [[ -f $pj ]] || return 0
    "$NODE" -p "require(process.argv[1]).version" "$pj" 2>/dev/null || true
}

entry_point() { # PKG -> absolute path of its (only) bin
    local pj=$DIR/node_modules/$1/package.json
    "$NODE" -e '
        const path = require("path");
        const pj = require(process.argv[1]);
        const bin = typeof pj.bin === "string" ? pj.bin : Object.values(pj.bin)[0];
        console.log(path.resolve(path.dirname(process.argv[1]), bin));
    ' "$pj"
}

ensure_node
if [[ $(installed_version "$EVERYTHING_PKG") != "$EVERYTHING_VERSION" ]] ||
    [[ $(installed_version "$FILESYSTEM_PKG") != "$FILESYSTEM_VERSION" ]]; then
    log "installing $EVERYTHING_PKG@$EVERYTHING_VERSION and $FILESYSTEM_PKG@$FILESYSTEM_VERSION into $DIR"
    mkdir -p "$DIR"
    # The machine's npm may run on an older node; the servers run on Node 22, so engine warnings are harmless.
    PATH="$(dirname "$NODE"):$PATH" npm install --prefix "$DIR" --no-audit --no-fund --save-exact \
        "$EVERYTHING_PKG@$EVERYTHING_VERSION" "$FILESYSTEM_PKG@$FILESYSTEM_VERSION" >&2
    for pair in "$EVERYTHING_PKG:$EVERYTHING_VERSION" "$FILESYSTEM_PKG:$FILESYSTEM_VERSION"; do
        if [[ $(installed_version "${pair%%:*}") != "${pair#*:}" ]]; then
            echo "error: ${pair%%:*}@${pair#*:} not installed correctly in $DIR" >&2
            exit 1
        fi
    done
fi
# The TypeScript SDK server of tests/upstream-ts: exactly its lock file, from the registry (`npm ci`).
TS_DIR=$ROOT/tests/upstream-ts
TS_SDK=@modelcontextprotocol/sdk
ts_wanted=$("$NODE" -p "require(process.argv[1]).dependencies[process.argv[2]]" "$TS_DIR/package.json" "$TS_SDK")
ts_installed() {
    local pj=$TS_DIR/node_modules/$TS_SDK/package.json
    [[ -f $pj ]] || return 0
    "$NODE" -p "require(process.argv[1]).version" "$pj" 2>/dev/null || true
}
if [[ $(ts_installed) != "$ts_wanted" ]]; then
    log "installing $TS_DIR (npm ci: $TS_SDK@$ts_wanted)"
    PATH="$(dirname "$NODE"):$PATH" npm ci --prefix "$TS_DIR" --no-audit --no-fund >&2
    if [[ $(ts_installed) != "$ts_wanted" ]]; then
        echo "error: $TS_SDK@$ts_wanted not installed correctly in $TS_DIR" >&2
        exit 1
    fi
fi

EVERYTHING=$(entry_point "$EVERYTHING_PKG")
FILESYSTEM=$(entry_point "$FILESYSTEM_PKG")

# mcp-server-time: pinned in tests/interop/requirements.txt, installed with the interop venv.
TIME=$ROOT/.venv/bin/mcp-server-time
if [[ ! -x $TIME ]]; then
    log "installing tests/interop/requirements.txt into $ROOT/.venv"
    if [[ ! -x $ROOT/.venv/bin/python ]]; then
        python3 -m venv "$ROOT/.venv" >&2
    fi
    "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check \
        -r "$ROOT/tests/interop/requirements.txt" >&2
fi
if [[ ! -x $TIME ]]; then
    echo "error: $TIME missing after installing tests/interop/requirements.txt" >&2
    exit 1
fi

for file in "$EVERYTHING" "$FILESYSTEM" "$TS_DIR/server.mjs"; do
    [[ -f $file ]] || {
        echo "error: entry point $file does not exist" >&2
        exit 1
    }
done
printf 'export MCPGATE_TEST_NODE=%q\n' "$NODE"
printf 'export MCPGATE_TEST_EVERYTHING=%q\n' "$EVERYTHING"
printf 'export MCPGATE_TEST_FILESYSTEM=%q\n' "$FILESYSTEM"
printf 'export MCPGATE_TEST_TIME=%q\n' "$TIME"
printf 'export MCPGATE_TEST_UPSTREAM_TS=%q\n' "$TS_DIR/server.mjs"
