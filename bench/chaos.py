#!/usr/bin/env python3
"""Chaos under load, with figures: what callers see when an upstream crashes, and when the gateway is stopped.

  bench/chaos.py BINARY kill  [--callers 32] [--duration 15] [--first 3] [--every 0]
      mcpgate (BINARY, defaults) fronting `BINARY serve --stdio` as upstream `up`; CALLERS threads call
      `up__echo` with their own messages over keep-alive connections; the upstream's child is SIGKILLed at
      FIRST seconds (and every EVERY seconds after, when > 0). Reports calls answered and failed, crossed answers
      (an answer carrying another caller's message: must be 0), and for each kill the failure window: from the
      kill to the last failed call before calls succeed again. Ends with the breaker's state from /status.
  bench/chaos.py BINARY drain [--callers 64] [--sleep-ms 1500]
      CALLERS calls of the built-in `sleep` are put in flight, then the gateway gets SIGTERM: reports how many
      of them failed (must be 0), how long the drain took, and whether a new connection was refused.

Standard library only; kills what it started on exit. Exit status 1 when a must-be-0 figure is not 0.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, stop as stop_server  # noqa: E402

HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream",
           "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call"}
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def call_body(n, tool, arguments):
    return json.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                       "params": {"name": tool, "arguments": arguments, "_meta": META}})


def start(binary, config_text):
    port = free_port()
    config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    config.write(f"server:\n  listen: 127.0.0.1:{port}\n" + config_text)
    config.close()
    env = dict(os.environ, LOG_LEVEL="warn")
    server = subprocess.Popen([binary, "serve", "--config", config.name], env=env)
    deadline = time.time() + 30
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            server.kill()
            raise RuntimeError("the gateway did not become ready")
        time.sleep(0.05)
    return server, port, config.name


def stdio_child(pid):
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    with open(f"/proc/{child}/cmdline", "rb") as c:
                        if b"--stdio" in c.read():
                            return int(child)
        except OSError:
            continue
    return None


def status(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/status")
    return json.loads(conn.getresponse().read())


def kill_scenario(args):
    server, port, config = start(args.binary, "upstreams:\n  up:\n"
                                 f"    command: {args.binary}\n    args: [serve, --stdio]\n")
    stop = threading.Event()
    results = []  # (time, ok, crossed)
    lock = threading.Lock()

    def caller(index):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while not stop.is_set():
            n += 1
            message = f"caller {index} call {n}"
            headers = dict(HEADERS, **{"mcp-name": "up__echo"})
            try:
                conn.request("POST", "/mcp", call_body(n, "up__echo", {"message": message}), headers)
                answer = json.loads(conn.getresponse().read())
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                answer = {}
            text = (((answer.get("result") or {}).get("content") or [{}])[0]).get("text")
            ok = text == message
            crossed = text is not None and not ok
            with lock:
                results.append((time.monotonic(), ok, crossed))

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(args.callers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    kills = []
    try:
        next_kill = t0 + args.first
        while time.monotonic() < t0 + args.duration:
            if next_kill and time.monotonic() >= next_kill:
                child = stdio_child(server.pid)
                if child:
                    os.kill(child, signal.SIGKILL)
                    kills.append(time.monotonic())
                next_kill = next_kill + args.every if args.every > 0 else None
            time.sleep(0.005)
        stop.set()
        for t in threads:
            t.join(timeout=35)
        breaker = [b["breaker"] for b in status(port)["backends"] if b["name"] == "up"][0]
    finally:
        stop_server(server)
        os.unlink(config)
    ok = sum(1 for r in results if r[1])
    failed = sum(1 for r in results if not r[1])
    crossed = sum(1 for r in results if r[2])
    windows = []
    for i, killed in enumerate(kills):
        until = kills[i + 1] if i + 1 < len(kills) else float("inf")
        failures = [r[0] for r in results if not r[1] and killed <= r[0] < until]
        windows.append(max(failures) - killed if failures else 0.0)
    print(f"kill: {args.callers} callers, {args.duration:.0f} s, {len(kills)} kill(s) of the stdio upstream")
    print(f"  calls answered: {ok}, failed: {failed} ({100.0 * failed / max(1, ok + failed):.2f} %), "
          f"crossed answers: {crossed}")
    for i, w in enumerate(windows):
        print(f"  kill {i + 1}: calls failed for {w * 1000:.0f} ms after it")
    print(f"  breaker at the end: {breaker['state']} ({breaker['consecutive_failures']} consecutive failures)")
    return crossed == 0


def drain_scenario(args):
    server, port, config = start(args.binary, "backends:\n  demo: {kind: builtin, builtin: demo}\n")
    outcomes = []
    lock = threading.Lock()
    started = threading.Barrier(args.callers + 1)

    def caller(index):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = dict(HEADERS, **{"mcp-name": "sleep"})
        conn.request("POST", "/mcp", call_body(index, "sleep", {"ms": args.sleep_ms}), headers)
        started.wait()
        try:
            answer = json.loads(conn.getresponse().read())
            ok = "result" in answer and not answer["result"].get("isError")
        except (OSError, http.client.HTTPException, ValueError):
            ok = False
        with lock:
            outcomes.append(ok)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(args.callers)]
    try:
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.2)  # the requests are written; let the gateway read them all
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            refused = False
        except OSError:
            refused = True
        for t in threads:
            t.join()
        server.wait(timeout=60)
        took = time.monotonic() - signalled
    finally:
        if server.poll() is None:
            server.kill()
        os.unlink(config)
    failed = outcomes.count(False)
    print(f"drain: {args.callers} calls of {args.sleep_ms} ms in flight at SIGTERM: {failed} failed; "
          f"exit after {took:.2f} s (status {server.returncode}); new connection refused: {refused}")
    return failed == 0 and server.returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("scenario", choices=["kill", "drain"])
    parser.add_argument("--callers", type=int)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--first", type=float, default=3)
    parser.add_argument("--every", type=float, default=0)
    parser.add_argument("--sleep-ms", type=int, default=1500)
    args = parser.parse_args()
    if args.scenario == "kill":
        args.callers = args.callers or 32
        good = kill_scenario(args)
    else:
        args.callers = args.callers or 64
        good = drain_scenario(args)
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
