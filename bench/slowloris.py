#!/usr/bin/env python3
"""Slow-loris check of mcpgate's connection hygiene (standard library only).

Opens N connections that each send half a request line ("GET /mcp HT") and then nothing, and reports how many
the gateway still holds open after WAIT seconds (with server.header_read_timeout at its default of 10 s, none
should be left after 12 s), when they were closed, whether /health kept answering meanwhile, the gateway's open
descriptors, and its connection metrics.

    bench/slowloris.py                         # start target/release/mcpgate (else target/debug) with the
                                               # embedded default config on a free port, and attack it
    bench/slowloris.py --binary PATH -- ARGS   # another build; ARGS go to `mcpgate serve` (e.g. --config F)
    bench/slowloris.py --addr 127.0.0.1:8000   # a gateway already running (descriptors are then not reported)
    bench/slowloris.py -n 500 --wait 12        # the defaults

Needs `ulimit -n` above N plus a few for the client side.
"""

import argparse
import os
import re
import selectors
import socket
import subprocess
import sys
import time

HALF_REQUEST_LINE = b"GET /mcp HT"
HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(host, port, request, timeout=2.0):
    """Send one request; the raw response, or None if there was none in time."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(request)
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
    except OSError:
        return None


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def metrics(host, port):
    text = get(host, port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    if not text:
        return {}
    wanted = ("mcp_open_connections", "mcp_connections_closed_total", "mcp_connection_limit_reached_total")
    found = {}
    for line in text.decode(errors="replace").splitlines():
        if line.startswith(wanted):
            name, _, value = line.rpartition(" ")
            found[name] = value
    return found


def start(binary, extra):
    port = free_port()
    argv = [binary, "serve", "--listen", f"127.0.0.1:{port}", *extra]
    env = dict(os.environ, LOG_LEVEL=os.environ.get("LOG_LEVEL", "warn"))
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = get("127.0.0.1", port, HEALTH, timeout=0.5)
        if answer and answer.startswith(b"HTTP/1.1 200"):
            return proc, port
        if proc.poll() is not None:
            sys.exit(f"{binary} exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    sys.exit(f"{binary} did not answer /health within 30 s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--connections", type=int, default=500)
    parser.add_argument("--wait", type=float, default=12.0, help="seconds before counting (default 12)")
    parser.add_argument("--addr", help="attack a gateway already listening here (HOST:PORT)")
    parser.add_argument("--binary", help="mcpgate to start (default: target/release, else target/debug)")
    parser.add_argument("serve_args", nargs="*", help="more arguments for `mcpgate serve`, after --")
    args = parser.parse_args()

    proc = None
    if args.addr:
        host, _, port = args.addr.rpartition(":")
        port = int(port)
    else:
        binary = args.binary
        if not binary:
            target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
            candidates = [os.path.join(target, p, "mcpgate") for p in ("release", "debug")]
            binary = next((c for c in candidates if os.access(c, os.X_OK)), None)
            if not binary:
                sys.exit("no mcpgate binary: cargo build --release -p mcpgate, or pass --binary")
        proc, port = start(binary, args.serve_args)
        host = "127.0.0.1"
        print(f"gateway: {binary} on {host}:{port} (pid {proc.pid})")

    try:
        fds_before = open_fds(proc.pid) if proc else None
        selector = selectors.DefaultSelector()
        started = time.monotonic()
        opened = 0
        for _ in range(args.connections):
            try:
                s = socket.create_connection((host, port), timeout=5)
                s.sendall(HALF_REQUEST_LINE)
                s.setblocking(False)
                selector.register(s, selectors.EVENT_READ)
                opened += 1
            except OSError as e:
                print(f"connection {opened + 1} failed: {e}")
                break
        sent_in = time.monotonic() - started
        fds_attacked = open_fds(proc.pid) if proc else None
        print(f"opened {opened} connections, each sent {HALF_REQUEST_LINE!r}, in {sent_in:.2f} s")

        closed_at = []
        health = []
        next_probe = started
        deadline = started + args.wait
        while selector.get_map() and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_probe:
                t0 = time.monotonic()
                answer = get(host, port, HEALTH)
                ok = bool(answer) and answer.startswith(b"HTTP/1.1 200")
                health.append((ok, time.monotonic() - t0))
                next_probe = now + 1.0
            for key, _ in selector.select(timeout=min(0.1, max(0.0, deadline - time.monotonic()))):
                try:
                    data = key.fileobj.recv(4096)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                except BlockingIOError:
                    continue
                if not data:
                    closed_at.append(time.monotonic() - started)
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
        still_open = len(selector.get_map())
        waited = time.monotonic() - started

        print(f"after {waited:.1f} s: {still_open} of {opened} still open, {len(closed_at)} closed by the gateway")
        if closed_at:
            closed_at.sort()
            median = closed_at[len(closed_at) // 2]
            print(f"closed after: first {closed_at[0]:.2f} s, median {median:.2f} s, last {closed_at[-1]:.2f} s")
        if health:
            worst = max(latency for _, latency in health)
            print(f"/health during the attack: {sum(ok for ok, _ in health)}/{len(health)} answered 200, "
                  f"slowest {worst * 1000:.1f} ms")
        if proc:
            fds_after = open_fds(proc.pid)
            print(f"gateway descriptors: {fds_before} before, {fds_attacked} with the connections open, "
                  f"{fds_after} after")
        for name, value in metrics(host, port).items():
            print(f"{name} {value}")
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        return 0 if still_open == 0 else 1
    finally:
        if proc:
            proc.terminate()
            try:
                proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
