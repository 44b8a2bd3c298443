"""Live processes that test_nginx.py, test_prometheus_live.py and test_grafana.py share: a throw-away
redis-server, a real Prometheus loading the shipped scrape config and alert rules, and MCP traffic.

Every process is started here on loopback and free ports, in the test's own directory, and stopped (by its own
pid) when its context manager exits.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import DEPLOY, free_port, program, stop, tail, wait_until

PROMETHEUS_DIR = DEPLOY / "prometheus"
# Never send loopback requests through a proxy named in the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PROTOCOL = "2026-07-28"


def port_answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def started(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )


def alive_or_fail(proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    if proc.poll() is not None:
        pytest.fail(f"{what} exited with {proc.returncode}:\n{tail(log)}", pytrace=False)


# --------------------------------------------------------------------------------------------------- redis


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A redis-server of its own (no persistence) on a free loopback port; yields its URL."""
    binary = program("redis-server", "apt-get install redis-server")
    port = free_port()
    log = directory / "redis.log"
    proc = started(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(directory)],
        log,
    )
    try:
        wait_until("redis-server answering PING", lambda: proc.poll() is not None or _redis_pong(port), log=log)
        alive_or_fail(proc, "redis-server", log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------------- Prometheus


def prometheus_config(targets: list[str], interval: str) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with only what a test must change: the scrape targets, the scrape and
    evaluation intervals, and the rule file's path (absolute: the shipped alerts.yml, unchanged)."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"], config["rule_files"]
    [job] = config["scrape_configs"]
    assert job["job_name"] == "mcpgate" and len(job["static_configs"]) == 1, job
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
    job["static_configs"][0]["targets"] = targets
    return config


@dataclass
class Prometheus:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with OPENER.open(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        assert body["status"] == "success", f"{url}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (a vector's series); a query that does not parse fails the test."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return data["result"]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """The active (pending or firing) alerts called `name`."""
        return [a for a in self.api("alerts")["alerts"] if a["labels"].get("alertname") == name]

    def rule(self, name: str) -> dict[str, Any]:
        for group in self.api("rules", type="alert")["groups"]:
            for rule in group["rules"]:
                if rule["name"] == name:
                    return rule
        raise AssertionError(f"no alert rule {name} loaded")


@contextmanager
def prometheus(directory: Path, targets: list[str], interval: str = "1s") -> Iterator[Prometheus]:
    """A real Prometheus scraping `targets` with the shipped config and rules, once every target is up."""
    binary = program("prometheus", "apt-get install prometheus")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(targets, interval), sort_keys=False))
    port = free_port()
    log = directory / "prometheus.log"
    proc = started(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        log,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:

        def all_up() -> bool:
            alive_or_fail(proc, "prometheus", log)
            try:
                up = prom.query('up{job="mcpgate"} == 1')
            except (OSError, urllib.error.URLError, json.JSONDecodeError):
                return False
            return {s["metric"]["instance"] for s in up} == set(targets)

        wait_until(f"Prometheus scraping {targets}", all_up, within=30, log=log, every=0.1)
        yield prom
    finally:
        stop(proc)


# -------------------------------------------------------------------------------------------- MCP traffic


def tool_call(name: str, arguments: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """The headers and body of one stateless (2026-07-28) tools/call."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": PROTOCOL,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": PROTOCOL,
        "mcp-method": "tools/call",
        "mcp-name": name,
    }
    return headers, json.dumps(body).encode()


def call_tool(base: str, name: str, arguments: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One stateless tools/call on `base`/mcp; returns the JSON-RPC response."""
    call_headers, body = tool_call(name, arguments)
    request = urllib.request.Request(f"{base}/mcp", data=body, method="POST", headers={**call_headers, **(headers or {})})
    with OPENER.open(request, timeout=30) as r:
        return json_rpc_answer(r.headers.get("content-type", ""), r.read().decode())


def json_rpc_answer(content_type: str, text: str) -> dict[str, Any]:
    """The JSON-RPC response in a body that is JSON, or an event stream whose last message is the response."""
    if content_type.startswith("text/event-stream"):
        messages = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]
        answers = [m for m in messages if "result" in m or "error" in m]
        assert answers, text
        return answers[-1]
    return json.loads(text)

