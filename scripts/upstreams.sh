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
#
# Versions are pinned here; everything lands under .cache/ and .venv/ at the repository root (git-ignored).
# Progress goes to stderr; only the export lines go to stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=$ROOT/.cache
DIR=$CACHE/upstreams

# Same Node as scripts/conformance.sh (kept in step with its NODE22_VERSION).
NODE22_VERSION=22.23.3
EVERYTHING_PKG=@modelcontextprotocol/server-everything
EVERYTHING_VERSION=2026.8.31
FILESYSTEM_PKG=@modelcontextprotocol/server-filesystem
FILESYSTEM_VERSION=2026.8.31

log() { printf '[upstreams] %s\n' "$*" >&2; }

node_major() {
    "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

# The lines of scripts/conformance.sh that find or install Node 22, into the same .cache/node22.
ensure_node() {
    if command -v node >/dev/null 2>&1 && (($(node_major node) >= 22)); then
        NODE=$(command -v node)
        return
    fi
    local arch pkg
    case $(uname -m) in
        x86_64 | amd64) arch=x64 ;;
        aarch64 | arm64) arch=arm64 ;;
        *)
            echo "error: unsupported architecture $(uname -m) for node-linux-* packages" >&2
            exit 1
            ;;
    esac
    pkg=node-linux-$arch
    NODE=$CACHE/node22/node_modules/$pkg/bin/node
    if [[ -x $NODE ]] && (($(node_major "$NODE") >= 22)); then
        return
    fi
    command -v npm >/dev/null || {
        echo "error: npm is required to install Node 22 (apt-get install npm)" >&2
        exit 1
    }
    log "installing $pkg@$NODE22_VERSION into $CACHE/node22"
    mkdir -p "$CACHE/node22"
    npm install --prefix "$CACHE/node22" --no-audit --no-fund --save-exact \
        "$pkg@$NODE22_VERSION" >&2
    if ! [[ -x $NODE ]] || (($(node_major "$NODE") < 22)); then
        echo "error: Node >= 22 not available at $NODE after install" >&2
        exit 1
    fi
}

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

for file in "$EVERYTHING" "$FILESYSTEM"; do
    [[ -f $file ]] || {
        echo "error: entry point $file does not exist" >&2
        exit 1
    }
done
printf 'export MCPGATE_TEST_NODE=%q\n' "$NODE"
printf 'export MCPGATE_TEST_EVERYTHING=%q\n' "$EVERYTHING"
printf 'export MCPGATE_TEST_FILESYSTEM=%q\n' "$FILESYSTEM"
printf 'export MCPGATE_TEST_TIME=%q\n' "$TIME"
