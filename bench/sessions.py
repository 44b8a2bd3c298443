#!/usr/bin/env python3
"""Memory per idle legacy session: open N sessions on a running-from-here mcpgate and read its RSS.

Starts BINARY (`mcpgate serve`) on a free loopback port with the embedded default config and the session caps
raised to N, opens N legacy sessions — `initialize` then `notifications/initialized`, nothing else, over a few
keep-alive connections — and reports RSS before and after, and the growth per session. With --list, each session
also sends one `tools/list` (which needs the protocol layer: a worker is restored for it), and the script then
waits past `session_park_after` and reports RSS again, and the gauges `mcp_active_sessions` and
`mcp_session_workers`.

With --rounds R (and --list), it does that R times, each round opening N more sessions after the last one's were
parked: RSS that stops growing after the first round is memory the allocator kept for reuse, not a leak.

Usage: bench/sessions.py BINARY [-n 10000] [--list] [--park-after 2s] [--rounds 1]
Standard library only. Kills the server it started on exit.
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, stop  # noqa: E402

VERSION = "2025-11-25"
INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
INITIALIZED = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
LIST = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def gauges(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("mcp_active_sessions", "mcp_session_workers"):
            found[parts[0]] = int(float(parts[1]))
    return found


def opener(port, count, with_list, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(count):
        conn.request("POST", "/mcp", INIT, HEADERS)
        response = conn.getresponse()
        body = response.read()
        session = response.getheader("mcp-session-id")
        if response.status != 200 or not session:
            errors.append(f"initialize: {response.status} {body[:200]!r}")
            return
        headers = dict(HEADERS, **{"mcp-session-id": session, "mcp-protocol-version": VERSION})
        conn.request("POST", "/mcp", INITIALIZED, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 202:
            errors.append(f"initialized: {response.status}")
            return
        if with_list:
            conn.request("POST", "/mcp", LIST, headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or b'"tools"' not in body:
                errors.append(f"tools/list: {response.status} {body[:200]!r}")
                return
    conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("-n", type=int, default=10000, help="sessions to open (default 10000)")
    parser.add_argument("--list", action="store_true", help="each session also sends tools/list")
    parser.add_argument("--park-after", default="2s", help="server.session_park_after (default 2s)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="with --list: open N sessions this many times")
    args = parser.parse_args()

    port = free_port()
    config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    config.write(f"server:\n  listen: 127.0.0.1:{port}\n  max_sessions: {args.n * args.rounds + 10}\n"
                 f"  max_sessions_per_client: {args.n * args.rounds + 10}\n  session_park_after: {args.park_after}\n"
                 "backends:\n  demo: {kind: builtin, builtin: demo}\n")
    config.close()
    env = dict(os.environ, LOG_LEVEL="warn")
    server = subprocess.Popen([args.binary, "serve", "--config", config.name], env=env)
    try:
        deadline = time.time() + 30
        while True:
            try:
                gauges(port)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        time.sleep(0.5)
        before = rss_kib(server.pid)
        for index in range(args.rounds):
            if args.rounds > 1:
                print(f"round {index + 1}:")
            one_round(args, port, server, before, index)
    finally:
        stop(server)
        os.unlink(config.name)


def seconds(duration):
    """A duration as the config writes it (`500ms`, `2s`, `1m`), in seconds."""
    number, unit = re.fullmatch(r"([0-9.]+)\s*(ms|s|m|h)?", duration.strip()).groups()
    return float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[unit]


def one_round(args, port, server, before, index):
    errors = []
    per = args.n // args.connections
    threads = [threading.Thread(target=opener, args=(port, per, args.list, errors))
               for _ in range(args.connections)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - started
    if errors:
        print("errors:", errors[:5], file=sys.stderr)
        sys.exit(1)
    opened = per * args.connections
    time.sleep(0.5)
    after = rss_kib(server.pid)
    g = gauges(port)
    total = opened * (index + 1)
    print(f"sessions opened: {opened} in {took:.1f} s ({opened / took:.0f}/s), gauges {g}")
    print(f"RSS before: {before / 1024:.1f} MiB, after: {after / 1024:.1f} MiB, "
          f"growth per session open: {(after - before) * 1024 / total:.0f} bytes")
    if args.list:
        park = seconds(args.park_after)
        time.sleep(park * 2 + 6)
        parked = rss_kib(server.pid)
        print(f"after parking ({gauges(port)}): RSS {parked / 1024:.1f} MiB, "
              f"per session open {(parked - before) * 1024 / total:.0f} bytes")


if __name__ == "__main__":
    main()
