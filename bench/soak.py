#!/usr/bin/env python3
"""Soak: a steady mix for a long time, then what grew and what leaked.

  bench/soak.py BINARY [--minutes 30] [--restart-every 180] [--warmup 60] [--callers 6] [--sessions 2]

mcpgate (BINARY) serves the built-in demo tools and federates `BINARY serve --stdio` as upstream `up`. For the whole
run: CALLERS threads make stateless calls (the built-in `echo` and the upstream's `up__echo`, alternately), SESSIONS
threads open legacy sessions (initialize, initialized, tools/list, a call, DELETE) one after the other, and the
upstream's child is SIGKILLed every RESTART_EVERY seconds (the gateway restarts it). Every 10 s it samples the
gateway's RSS, open descriptors, child processes and the gauges mcp_active_sessions / mcp_session_workers. It
compares the sample at the end of the warm-up with the one taken after the load stops (and a 5 s settle): RSS
growth (must stay under 5 %), descriptors, children and sessions (must be back where they were: nothing leaked);
and every failed call must fall within 5 s after a kill (the restart's). Prints a markdown table; exit status 1
when a bound is broken. Standard library only.
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, stop  # noqa: E402
from chaos import HEADERS, call_body, stdio_child  # noqa: E402

VERSION = "2025-11-25"
RESTART_WINDOW = 5
LEGACY = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def sample(pid, port):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    children = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as c:
                children += len(c.read().split())
        except OSError:
            pass
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    gauges = {}
    for line in conn.getresponse().read().decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("mcp_active_sessions", "mcp_session_workers"):
            gauges[parts[0]] = int(float(parts[1]))
    conn.close()
    return {"rss_kib": rss, "fds": fds, "children": children,
            "sessions": gauges.get("mcp_active_sessions", -1), "workers": gauges.get("mcp_session_workers", -1)}


def post(conn, body, headers):
    conn.request("POST", "/mcp", body, headers)
    response = conn.getresponse()
    return response, response.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--restart-every", type=float, default=180)
    parser.add_argument("--warmup", type=float, default=60)
    parser.add_argument("--callers", type=int, default=6)
    parser.add_argument("--sessions", type=int, default=2)
    args = parser.parse_args()

    port = free_port()
    config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    config.write(f"server:\n  listen: 127.0.0.1:{port}\n  session_park_after: 5s\n"
                 "backends:\n  demo: {kind: builtin, builtin: demo}\n"
                 f"upstreams:\n  up:\n    command: {args.binary}\n    args: [serve, --stdio]\n")
    config.close()
    # The gateway's log (warnings and errors) goes to a file, counted at the end, so the table stays readable.
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", prefix="soak-", delete=False)
    server = subprocess.Popen([args.binary, "serve", "--config", config.name], env=dict(os.environ, LOG_LEVEL="warn"),
                              stderr=log)
    done = threading.Event()
    counts = {"calls": 0, "failed": 0, "sessions": 0, "session_failures": 0, "restarts": 0}
    lock = threading.Lock()
    # When calls failed and when the upstream was killed (monotonic), to tell restart failures from others.
    failed_at, killed_at = [], []

    def count(key, n=1):
        with lock:
            counts[key] += n
            if key == "failed":
                failed_at.append(time.monotonic())

    def repeat(attempt, done_key, failed_key):
        """Run `attempt(conn, n)` (true when its answers were right) until the load stops, on one keep-alive
        connection, opened again after an error; count each attempt and each failed one."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while not done.is_set():
            n += 1
            try:
                ok = attempt(conn, n)
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok = False
            count(done_key)
            if not ok:
                count(failed_key)

    def call(index, conn, n):
        tool = "echo" if n % 2 else "up__echo"
        message = f"{index}-{n}"
        _, body = post(conn, call_body(n, tool, {"message": message}), dict(HEADERS, **{"mcp-name": tool}))
        return json.loads(body).get("result", {}).get("content", [{}])[0].get("text") == message

    def session(conn, _n):
        init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "soak", "version": "1"}}})
        response, _ = post(conn, init, LEGACY)
        headers = dict(LEGACY, **{"mcp-session-id": response.getheader("mcp-session-id"),
                                  "mcp-protocol-version": VERSION})
        post(conn, json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), headers)
        _, listed = post(conn, json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}), headers)
        called_body = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                  "params": {"name": "echo", "arguments": {"message": "s"}}})
        _, called = post(conn, called_body, headers)
        conn.request("DELETE", "/mcp", headers=headers)
        conn.getresponse().read()
        return b'"tools"' in listed and b'"text":"s"' in called

    samples = []
    try:
        deadline = time.time() + 30
        while True:
            try:
                samples.append((0.0, sample(server.pid, port)))
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        threads = [threading.Thread(target=repeat, args=(lambda c, n, i=i: call(i, c, n), "calls", "failed"),
                                    daemon=True) for i in range(args.callers)]
        threads += [threading.Thread(target=repeat, args=(session, "sessions", "session_failures"), daemon=True)
                    for _ in range(args.sessions)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        end = t0 + args.minutes * 60
        next_restart = t0 + args.restart_every
        next_sample = t0 + 10
        warm = None
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_restart:
                child = stdio_child(server.pid)
                if child:
                    os.kill(child, signal.SIGKILL)
                    killed_at.append(time.monotonic())
                    count("restarts")
                next_restart += args.restart_every
            if now >= next_sample:
                s = sample(server.pid, port)
                samples.append((now - t0, s))
                if warm is None and now - t0 >= args.warmup:
                    warm = s
                next_sample += 10
            time.sleep(0.05)
        done.set()
        for t in threads:
            t.join(timeout=35)
        time.sleep(5)
        final = sample(server.pid, port)
    finally:
        stop(server)
        os.unlink(config.name)
    warm = warm or samples[-1][1]
    growth = 100.0 * (final["rss_kib"] - warm["rss_kib"]) / warm["rss_kib"]
    peak = max([s["rss_kib"] for _, s in samples] + [final["rss_kib"]])
    print(f"soak: {args.minutes:g} min, {args.callers} callers + {args.sessions} session loops, "
          f"upstream killed every {args.restart_every:g} s")
    print(f"calls: {counts['calls']} ({counts['failed']} failed), sessions opened and closed: {counts['sessions']} "
          f"({counts['session_failures']} failed), upstream restarts: {counts['restarts']}, exit {server.returncode}")
    # A failure within RESTART_WINDOW seconds after a kill is the restart's; any other is unexplained.
    unexplained = sum(1 for t in failed_at if not any(0 <= t - k <= RESTART_WINDOW for k in killed_at))
    print(f"failed calls not within {RESTART_WINDOW} s after a kill: {unexplained}")
    log.seek(0)
    lines = log.read().splitlines()
    print(f"gateway log: {log.name}: {sum(' WARN ' in line for line in lines)} warnings, "
          f"{sum(' ERROR ' in line for line in lines)} errors")
    print()
    print("| | start | after warm-up | end (load stopped) |")
    print("|---|---|---|---|")
    start = samples[0][1]
    print(f"| RSS (MiB) | {start['rss_kib'] / 1024:.1f} | {warm['rss_kib'] / 1024:.1f} | "
          f"{final['rss_kib'] / 1024:.1f} (peak {peak / 1024:.1f}; {growth:+.1f} % since warm-up) |")
    for key, name in (("fds", "open descriptors"), ("children", "child processes"), ("sessions", "sessions"),
                      ("workers", "session workers")):
        print(f"| {name} | {start[key]} | {warm[key]} | {final[key]} |")
    leaked = final["fds"] > warm["fds"] or final["children"] != start["children"] or final["sessions"] != 0 \
        or final["workers"] != 0
    sys.exit(1 if growth >= 5.0 or leaked or unexplained else 0)


if __name__ == "__main__":
    main()
