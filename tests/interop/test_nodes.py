"""Two mcpgate nodes on one redis-server behind a real nginx (plain round robin, no stickiness), driven by the
official Python SDK client: a legacy session whose requests alternate between the nodes, one of them killed
mid-session; and a 2026-07-28 multi-round call whose retry lands on the other node.

Needs `redis-server` and `nginx` (Debian packages; scripts/test.sh installs them). Without them the tests skip,
unless MCPGATE_REQUIRE_REDIS=1, when they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.types import CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult, TextContent

from test_python_sdk import READ_TIMEOUT_S, _free_port, _serve, _stop, _tail, mcpgate_bin  # noqa: F401

SEAL_KEY = "a-seal-key-shared-by-every-node-0123456789"
CONFIG = """\
backends:
  demo: { kind: builtin, builtin: demo }
  conf: { kind: builtin, builtin: conformance }
"""


@dataclass
class Cluster:
    url: str
    nodes: list[tuple[subprocess.Popen[bytes], str, Path]]
    nginx_log: Path


def _programs() -> dict[str, str]:
    found = {name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin") for name in ("redis-server", "nginx")}
    missing = [name for name, path in found.items() if not path]
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install redis-server nginx-light)"
        if os.environ.get("MCPGATE_REQUIRE_REDIS") == "1":
            pytest.fail(f"MCPGATE_REQUIRE_REDIS=1 but {message}", pytrace=False)
        pytest.skip(message)
    return {name: path for name, path in found.items() if path}


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    import socket

    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode}:\n{_tail(log)}", pytrace=False)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"nothing listens on {port} after 10 s:\n{_tail(log)}", pytrace=False)
        time.sleep(0.05)


@pytest.fixture
def cluster(mcpgate_bin: str, tmp_path: Path) -> Iterator[Cluster]:
    programs = _programs()
    redis_port, nginx_port = _free_port(), _free_port()
    redis_log = tmp_path / "redis.log"
    redis = subprocess.Popen(
        [programs["redis-server"], "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=open(redis_log, "wb"),
        stderr=subprocess.STDOUT,
    )
    procs: list[subprocess.Popen[bytes]] = [redis]
    try:
        _wait_port(redis_port, redis, redis_log)
        config = tmp_path / "node.yaml"
        config.write_text(CONFIG)
        env = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}", "MCPGATE_SEAL_KEY": SEAL_KEY, "LOG_LEVEL": "info"}
        nodes = []
        for name in ("a", "b"):
            node_dir = tmp_path / name
            node_dir.mkdir()
            proc, base, log = _serve(mcpgate_bin, config, node_dir, env)
            procs.append(proc)
            nodes.append((proc, base, log))
        upstreams = "\n".join(f"        server {base.removeprefix('http://')} max_fails=1 fail_timeout=30s;" for _, base, _ in nodes)
        user = "user root;" if os.geteuid() == 0 else ""
        nginx_conf = tmp_path / "nginx.conf"
        nginx_conf.write_text(
            f"""
{user}
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {tmp_path}/nginx-access.log;
    client_body_temp_path {tmp_path}/client_body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    upstream mcpgate {{
{upstreams}
    }}
    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{
            proxy_pass http://mcpgate;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""
        )
        nginx_log = tmp_path / "nginx-error.log"
        nginx = subprocess.Popen(
            [programs["nginx"], "-c", str(nginx_conf), "-p", str(tmp_path), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "nginx.out", "wb"),
        )
        procs.append(nginx)
        _wait_port(nginx_port, nginx, tmp_path / "nginx.out")
        yield Cluster(url=f"http://127.0.0.1:{nginx_port}/mcp", nodes=nodes, nginx_log=nginx_log)
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _tool_calls(base: str) -> float:
    """`tools/call` requests a node has answered, from its /metrics."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    pattern = re.compile(r'^mcp_requests_total\{[^}]*method="tools/call"[^}]*\} (\S+)$', re.M)
    return sum(float(m.group(1)) for m in pattern.finditer(text))


def _text(result) -> str:
    assert not result.is_error, result
    item = result.content[0]
    assert isinstance(item, TextContent), item
    return item.text


def test_a_legacy_session_alternates_between_nodes_and_survives_one_of_them(cluster: Cluster) -> None:
    """Every request of the session may land on either node; a request the server sends the client (elicitation,
    sampling) is answered by a POST that may land on the other node than the call waiting for it."""
    progress: list[float] = []
    logs: list[str] = []
    asked: list[str] = []

    async def on_log(params) -> None:
        logs.append(str(params.data))

    async def on_elicit(context, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"response": f"answer {len(asked)}"})

    async def on_sample(context, params: CreateMessageRequestParams) -> CreateMessageResult:
        asked.append("sampling")
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="sampled"), model="test")

    async def main() -> None:
        with anyio.fail_after(60):
            async with Client(
                cluster.url,
                mode="legacy",
                read_timeout_seconds=READ_TIMEOUT_S,
                logging_callback=on_log,
                elicitation_callback=on_elicit,
                sampling_callback=on_sample,
            ) as client:
                assert client.session.initialize_result is not None
                names = {t.name for t in (await client.list_tools()).tools}
                assert {"echo", "test_tool_with_progress"} <= names
                for i in range(6):
                    assert _text(await client.call_tool("echo", {"message": f"m{i}"})) == f"m{i}"

                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    progress.append(value)

                await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
                await client.call_tool("test_tool_with_logging", {})
                for i in range(4):
                    elicited = _text(await client.call_tool("test_elicitation", {"message": f"question {i}"}))
                    assert f"answer {i + 1}" in elicited, elicited
                assert "sampled" in _text(await client.call_tool("test_sampling", {"prompt": "2+2?"}))
                # Both nodes have answered this session's calls.
                served = [_tool_calls(base) for _, base, _ in cluster.nodes]
                assert all(n >= 3 for n in served), f"tools/call answered per node: {served}"
                # Node A dies mid-session: the balancer sends the next requests to B, which serves the session.
                cluster.nodes[0][0].kill()
                cluster.nodes[0][0].wait()
                for i in range(4):
                    assert _text(await client.call_tool("echo", {"message": f"after {i}"})) == f"after {i}"
                assert _text(await client.call_tool("add", {"a": 2, "b": 3})) == "5"

    anyio.run(main)
    assert progress == [0.0, 50.0, 100.0], progress
    assert len(logs) == 3, logs
    assert asked == ["question 0", "question 1", "question 2", "question 3", "sampling"], asked


def test_a_multi_round_call_retried_on_the_other_node_succeeds(cluster: Cluster) -> None:
    asked: list[str] = []

    async def on_elicit(context, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"response": "from the client"})

    async def main() -> str:
        with anyio.fail_after(60):
            async with Client(cluster.url, mode="2026-07-28", read_timeout_seconds=READ_TIMEOUT_S, elicitation_callback=on_elicit) as client:
                before = [_tool_calls(base) for _, base, _ in cluster.nodes]
                result = await client.call_tool("test_elicitation", {"message": "across nodes?"})
                after = [_tool_calls(base) for _, base, _ in cluster.nodes]
                # The first round and its retry went one to each node.
                assert [b - a for a, b in zip(before, after)] == [1.0, 1.0], (before, after)
                return " ".join(c.text for c in result.content if isinstance(c, TextContent))

    text = anyio.run(main)
    assert asked == ["across nodes?"]
    assert "from the client" in text, text
