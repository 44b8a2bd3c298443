#!/usr/bin/env python3
"""The release binary's code layout: crates/mcpgate/link-order.txt, the functions LLD places first in `.text`
(crates/mcpgate/build.rs says why: idle RSS is mostly code pages the kernel maps 64 KB around each fault).

Generate: each scenario below runs a release mcpgate under callgrind; one dump is taken once `/health` answers
(start-up), one after the scenario's calls. The list is every function of the binary that ran: first the
start-ups' (default config, then config-declared tools, then a stdio and an HTTP federation), then the calls';
each once, in that order. Regenerate when dependencies or the compiler change, or when `--check` finds much of
the list gone:

  bench/layout.py [--mcpgate BIN] [--out FILE]     write the list from BIN (cargo build --release -p mcpgate)
  bench/layout.py --check [--mcpgate BIN]          how much of the list BIN holds, and BIN's idle RSS

The names are the binary's mangled symbols, which carry each crate's hash, so a list fits the compiler and the
dependency versions it was made with; names a build lacks are skipped. Needs valgrind.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import free_port, health_ok, stop
from instructions import run_calls, spawn, wait_listening

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "crates/mcpgate/link-order.txt"


def symbols(binary: str) -> set[str]:
    """The names of the functions defined in `binary`."""
    out = subprocess.run(["nm", "--defined-only", binary], check=True, capture_output=True, text=True).stdout
    return {fields[2] for fields in map(str.split, out.splitlines()) if len(fields) == 3 and fields[1] in "tTwW"}


def functions_run(dump: Path, binary: str) -> list[str]:
    """The functions of `binary` in a callgrind dump (written with --compress-strings=no), in dump order."""
    names, within, path = [], False, os.path.realpath(binary)
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("ob="):
            within = os.path.realpath(line[3:].strip()) == path
        elif line.startswith("fn=") and within:
            names.append(line[3:].strip())
    return names


def wait_healthy(port: int, proc: subprocess.Popen, what: str, within: float = 120.0) -> None:
    """Until `/health` on `port` answers 200 (a port nobody listens on yet answers nothing); exits if `proc` ends
    or `within` seconds pass first."""
    deadline = time.monotonic() + within
    while not health_ok(port):
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            sys.exit(f"{what}: /health never answered 200")
        time.sleep(0.1)


def first_call(port: int, legacy: bool, within: float = 60.0) -> None:
    """One call, retried while a front waits for its upstream to publish `echo`."""
    deadline = time.monotonic() + within
    while True:
        try:
            return run_calls(port, legacy, 1, connections=1)
        except (RuntimeError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def scenario(name: str, binary: str, config: Path | None, env: dict[str, str], calls: bool,
             tmp: Path) -> tuple[Path, Path | None]:
    """Run one scenario under callgrind; its start-up dump and (with `calls`) its calls' dump."""
    port = free_port()
    argv = [binary, "serve", "--listen", f"127.0.0.1:{port}", *(["--config", str(config)] if config else [])]
    out = tmp / f"{name}.callgrind"
    proc = spawn(["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no", "--demangle=no",
                  f"--callgrind-out-file={out}.%p", *argv], env, tmp / f"{name}.log")

    def dump() -> None:
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)

    try:
        wait_healthy(port, proc, f"{name} (see {tmp / (name + '.log')})")
        dump()
        if calls:
            for legacy in (False, True):
                first_call(port, legacy)
                run_calls(port, legacy, 40)
            dump()
    finally:
        stop(proc, timeout=120)  # callgrind writes its last dump on the way out
    dumps = sorted(tmp.glob(f"{name}.callgrind.{proc.pid}.*"), key=lambda p: int(p.suffix[1:]))
    if len(dumps) < (2 if calls else 1):
        sys.exit(f"{name}: callgrind wrote {len(dumps)} dumps (see {tmp / (name + '.log')})")
    return dumps[0], dumps[1] if calls else None


def generate(binary: str, out: Path) -> None:
    defined = symbols(binary)
    with tempfile.TemporaryDirectory(prefix="layout-") as scratch:
        tmp = Path(scratch)
        db = tmp / "bench.db"
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE greetings (id INTEGER PRIMARY KEY, message TEXT)")
        tools_env = {"BENCH_SQLITE_DB": str(db), "BENCH_CEILING_URL": f"http://127.0.0.1:{free_port()}/"}
        # The HTTP federation's upstream: the same binary, default config, not under callgrind.
        upstream_port = free_port()
        upstream = spawn([binary, "serve", "--listen", f"127.0.0.1:{upstream_port}"], log=tmp / "upstream.log")
        try:
            wait_listening(upstream_port, upstream, "upstream")
            runs = [
                scenario("default", binary, None, {}, True, tmp),
                scenario("tools", binary, ROOT / "bench/tools.yaml", tools_env, False, tmp),
                scenario("proxy-stdio", binary, ROOT / "bench/proxy-stdio.yaml", {"BENCH_MCPGATE_BIN": binary},
                         True, tmp),
                scenario("proxy-http", binary, ROOT / "bench/proxy-http.yaml",
                         {"BENCH_UPSTREAM_ADDR": f"127.0.0.1:{upstream_port}"}, True, tmp),
            ]
        finally:
            stop(upstream)
        ordered = [start for start, _ in runs] + [calls for _, calls in runs if calls]
        names: dict[str, None] = {}
        for dump in ordered:
            names.update((name, None) for name in functions_run(dump, binary) if name in defined)
    out.write_text("".join(f"{name}\n" for name in names))
    print(f"{out}: {len(names)} functions")


def check(binary: str) -> None:
    listed = LIST.read_text().split()
    held = len(set(listed) & symbols(binary))
    print(f"link order: {held} of {len(listed)} listed functions are in {binary} ({100 * held / len(listed):.0f} %)")
    port = free_port()
    proc = spawn([binary, "serve", "--listen", f"127.0.0.1:{port}"])
    try:
        wait_healthy(port, proc, "mcpgate")
        time.sleep(1)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        print(f"idle RSS (default config): {int(rss) / 1024:.1f} MB")
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mcpgate", default=str(ROOT / "target/release/mcpgate"))
    parser.add_argument("--out", type=Path, default=LIST)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if not os.access(args.mcpgate, os.X_OK):
        sys.exit(f"{args.mcpgate} is not built: cargo build --release -p mcpgate")
    if args.check:
        check(args.mcpgate)
    else:
        generate(args.mcpgate, args.out)


if __name__ == "__main__":
    main()
