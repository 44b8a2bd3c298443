"""What every test of the deploy kit (deploy/, Dockerfile, compose.yaml) shares: the binary under test, free
ports, a gateway started on a config, and the skip-or-fail rule for an external program.

Each external tool (podman, nginx, prometheus, the PyPI checkers) is installed by scripts/test.sh, which sets
MCPGATE_REQUIRE_DEPLOY=1: then a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def program(name: str, hint: str) -> str:
    """The path of `name` (PATH, then /usr/sbin), or skip — fail under MCPGATE_REQUIRE_DEPLOY=1."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if found:
        return found
    message = f"{name} not installed ({hint})"
    if os.environ.get("MCPGATE_REQUIRE_DEPLOY") == "1":
        pytest.fail(f"MCPGATE_REQUIRE_DEPLOY=1 but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mcpgate_bin() -> str:
    path = os.environ.get("MCPGATE_BIN")
    if not path:
        pytest.fail("MCPGATE_BIN is not set: point it at the mcpgate binary (target/debug/mcpgate)", pytrace=False)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"MCPGATE_BIN={path!r} is not an executable file", pytrace=False)
    return os.path.abspath(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "<no log>"


def wait_until(what: str, check, within: float = 15.0, log: Path | None = None, every: float = 0.05):
    """Poll `check()` until it returns something truthy (returned), failing after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            extra = f"\nlog:\n{tail(log)}" if log else ""
            pytest.fail(f"{what}: not within {within}s{extra}", pytrace=False)
        time.sleep(every)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of GET `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    base: str
    port: int
    log: Path


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def gateway(
    mcpgate_bin: str, tmp_path: Path, config: str | None = None, env: dict[str, str] | None = None, name: str = "gateway"
) -> Iterator[Gateway]:
    """`mcpgate serve` on a free loopback port (the embedded default when `config` is None), once `/health` is 200."""
    port = free_port()
    log = tmp_path / f"{name}.log"
    args = [mcpgate_bin, "serve", "--listen", f"127.0.0.1:{port}"]
    if config is not None:
        path = tmp_path / f"{name}.yaml"
        path.write_text(config)
        args += ["--config", str(path)]
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(f"{base}/health answering 200", lambda: proc.poll() is not None or http_status(base + "/health") == 200, log=log)
        if proc.poll() is not None:
            pytest.fail(f"mcpgate exited with {proc.returncode}:\n{tail(log)}", pytrace=False)
        yield Gateway(proc, base, port, log)
    finally:
        stop(proc)
