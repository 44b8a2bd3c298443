# Sourced by scripts/conformance.sh and scripts/upstreams.sh: find Node >= 22, or install the pinned
# node-linux-<arch> package from npm into $CACHE/node22 (the machine's node may be older). Sets NODE.
# Needs CACHE set and a `log` function.

NODE22_VERSION=22.23.3

node_major() {
    "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

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
