#!/usr/bin/env python3
"""Instructions per call, counted by callgrind: a figure this shared, noisy machine cannot shake (the same binary
and the same requests give the same count, whatever else runs). Issue 19's repeatable measure.

For each target one server process runs under `valgrind --tool=callgrind` (its children — a stdio upstream — and
the upstream servers do not: only the hop under test is counted). After a warm-up, `callgrind_control --zero`
starts the count, CALLS calls go through on 4 keep-alive connections, and `callgrind_control --dump` ends it; the
total over CALLS is one call's cost, start-up and warm-up excluded.

Targets (the same echo call everywhere, the 2026-07-28 shape unless said):
  ceiling            the minimal tokio + hyper server (bench/ceiling): the floor of serving a call at all
  mcpgate-modern     mcpgate's built-in echo
  mcpgate-legacy     the same, in a 2025-11-25 session
  mcpgate-policies   mcpgate-modern with every policy on (bench/policies.yaml: a key, four rate-limit buckets,
                     the audit log to a file): its count over mcpgate-modern's is the policies' cost
  floor-proxy-http   the ceiling's relay in front of a ceiling over HTTP: the floor of a proxy hop
  mcpgate-proxy-http mcpgate in front of another mcpgate over HTTP
  floor-proxy-stdio  the ceiling's relay in front of a ceiling child over stdio
  mcpgate-proxy-stdio mcpgate in front of an `mcpgate serve --stdio` child

Usage: bench/instructions.py [--calls N] [--targets a,b,...] [--mcpgate BIN] [--ceiling BIN] [--keep DIR]
(--keep DIR keeps each dump as DIR/TARGET.callgrind: `callgrind_annotate --inclusive=yes` shows where it goes)
Defaults: target/release/mcpgate and target/release/mcpgate-bench-ceiling (cargo build --release -p mcpgate
-p mcpgate-bench-ceiling). Needs valgrind (Debian: valgrind).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import free_port, stop

ROOT = Path(__file__).resolve().parents[1]
MODERN = "2026-07-28"
# The key bench/policies.yaml holds the sha256 of (bench/run.sh sends the same).
POLICY_KEY = "mcpgate-bench-key-not-a-secret"
LEGACY = "2025-11-25"


def wait_listening(port: int, proc: subprocess.Popen, what: str, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what}: nothing listens on {port}")


class Client:
    """One keep-alive connection speaking either shape of an echo call."""

    def __init__(self, port: int, legacy: bool, headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                        **(headers or {})}
        if legacy:
            init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": LEGACY,
                    "capabilities": {}, "clientInfo": {"name": "instructions", "version": "1"}}}
            response = self._post(init)
            session = response.getheader("mcp-session-id")
            response.read()
            if session:
                self.headers["Mcp-Session-Id"] = session
            self.headers["MCP-Protocol-Version"] = LEGACY
            self._post({"jsonrpc": "2.0", "method": "notifications/initialized"}).read()
            self.body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                    "params": {"name": "echo", "arguments": {"message": "hello"}}})
        else:
            self.headers.update({"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "echo"})
            self.body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "echo", "arguments": {"message": "hello"},
                "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                          "io.modelcontextprotocol/clientCapabilities": {}}}})

    def _post(self, message: dict) -> http.client.HTTPResponse:
        self.conn.request("POST", "/mcp", json.dumps(message), self.headers)
        return self.conn.getresponse()

    def call(self) -> None:
        self.conn.request("POST", "/mcp", self.body, self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200 or b"hello" not in data:
            raise RuntimeError(f"{response.status}: {data[:300]!r}")


def run_calls(port: int, legacy: bool, total: int, connections: int = 4,
              headers: dict[str, str] | None = None) -> None:
    clients = [Client(port, legacy, headers) for _ in range(connections)]
    errors: list[BaseException] = []

    def work(client: Client, n: int) -> None:
        try:
            for _ in range(n):
                client.call()
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c, total // connections)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def spawn(argv: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "LOG_LEVEL": "warn", **(env or {})})


def measure(name: str, argv: list[str], port: int, legacy: bool, calls: int, env: dict[str, str],
            tmp: Path, headers: dict[str, str] | None = None) -> float:
    """Instructions per call of the process `argv` starts (under callgrind), serving on `port`."""
    out = tmp / f"{name}.callgrind"
    proc = spawn(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", *argv], env,
                 tmp / f"{name}.log")
    try:
        wait_listening(port, proc, name)
        run_calls(port, legacy, 200, headers=headers)  # warm-up: connections, caches, the catalogue
        subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, capture_output=True)
        run_calls(port, legacy, calls, headers=headers)
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
    finally:
        stop(proc, timeout=120)  # callgrind writes its last dump on the way out
    # The dump made by --dump is the file numbered 1 (the final one, at exit, has no number).
    dumps = sorted(tmp.glob(f"{name}.callgrind.{proc.pid}.*"))
    if not dumps:
        sys.exit(f"{name}: no callgrind dump (see {tmp / (name + '.log')})")
    text = dumps[0].read_text()
    total = int(re.search(r"^summary:\s+(\d+)", text, re.M).group(1))
    return total / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--targets", default="")
    parser.add_argument("--mcpgate", default=str(ROOT / "target/release/mcpgate"))
    parser.add_argument("--ceiling", default=str(ROOT / "target/release/mcpgate-bench-ceiling"))
    parser.add_argument("--keep", help="copy each target's callgrind dump here (for callgrind_annotate)")
    args = parser.parse_args()
    mcpgate, ceiling = args.mcpgate, args.ceiling
    for binary in (mcpgate, ceiling):
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary} is not built: cargo build --release -p mcpgate -p mcpgate-bench-ceiling")
    wanted = [t for t in args.targets.split(",") if t]
    results: dict[str, float] = {}
    helpers: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="instructions-") as scratch:
        tmp = Path(scratch)

        def upstream(argv: list[str], what: str) -> int:
            port = free_port()
            proc = spawn([a.replace("ADDR", f"127.0.0.1:{port}") for a in argv], log=tmp / f"{what}.log")
            helpers.append(proc)
            wait_listening(port, proc, what)
            return port

        def target(name: str, make: "callable", headers: dict[str, str] | None = None) -> None:
            if wanted and name not in wanted:
                return
            port = free_port()
            argv, legacy, env = make(port)
            results[name] = measure(name, argv, port, legacy, args.calls, env, tmp, headers)
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                dump = sorted(tmp.glob(f"{name}.callgrind.*.*"))[0]
                (Path(args.keep) / f"{name}.callgrind").write_bytes(dump.read_bytes())
            print(f"{name:22} {results[name]:>10,.0f} instructions per call", flush=True)

        try:
            target("ceiling", lambda p: ([ceiling, f"127.0.0.1:{p}"], False, {}))
            target("mcpgate-modern", lambda p: ([mcpgate, "serve", "--listen", f"127.0.0.1:{p}"], False, {}))
            target("mcpgate-legacy", lambda p: ([mcpgate, "serve", "--listen", f"127.0.0.1:{p}"], True, {}))
            target("mcpgate-policies", lambda p: (
                [mcpgate, "serve", "--config", str(ROOT / "bench/policies.yaml"), "--listen", f"127.0.0.1:{p}"],
                False, {"AUDIT_LOG_FILE": str(tmp / "audit.log")}), {"x-api-key": POLICY_KEY})
            if not wanted or {"floor-proxy-http", "mcpgate-proxy-http"} & set(wanted):
                plain = upstream([ceiling, "ADDR"], "ceiling-upstream")
                gateway = upstream([mcpgate, "serve", "--listen", "ADDR"], "mcpgate-upstream")
                target("floor-proxy-http", lambda p: (
                    [ceiling, f"127.0.0.1:{p}", "--http-upstream", f"http://127.0.0.1:{plain}/mcp"], False, {}))
                target("mcpgate-proxy-http", lambda p: (
                    [mcpgate, "serve", "--config", str(ROOT / "bench/proxy-http.yaml"), "--listen", f"127.0.0.1:{p}"],
                    False, {"BENCH_UPSTREAM_ADDR": f"127.0.0.1:{gateway}"}))
            target("floor-proxy-stdio", lambda p: (
                [ceiling, f"127.0.0.1:{p}", "--stdio-upstream", ceiling, "--stdio"], False, {}))
            target("mcpgate-proxy-stdio", lambda p: (
                [mcpgate, "serve", "--config", str(ROOT / "bench/proxy-stdio.yaml"), "--listen", f"127.0.0.1:{p}"],
                False, {"BENCH_MCPGATE_BIN": mcpgate}))
        finally:
            for proc in helpers:
                stop(proc)
    pairs = [("mcpgate-modern", "ceiling"), ("mcpgate-legacy", "ceiling"), ("mcpgate-policies", "mcpgate-modern"),
             ("mcpgate-proxy-http", "floor-proxy-http"), ("mcpgate-proxy-stdio", "floor-proxy-stdio")]
    for ours, floor in pairs:
        if ours in results and floor in results:
            print(f"{ours} / {floor}: {results[ours] / results[floor]:.2f}x")


if __name__ == "__main__":
    main()
