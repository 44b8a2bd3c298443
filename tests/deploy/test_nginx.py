"""deploy/nginx/mcpgate.conf, tested as shipped: `nginx -t`, then a real nginx with it in front of two real
mcpgate nodes (one redis-server, one MCPGATE_SEAL_KEY) on loopback, reached over HTTPS.

The shipped file is included by a throw-away nginx.conf (pid, logs and temp paths under the test's directory),
at http level as /etc/nginx/conf.d/ would. Only what cannot be the same here is rewritten, each rewrite asserted
to happen exactly once: the two node names become loopback ports, the listen ports become free loopback ports,
and the certificate paths point at a self-signed pair made by `openssl req -x509`. Everything else — upstream,
TLS settings, headers, buffering, timeouts, allow lists, error pages — is the shipped text.

"Outside" is simulated on loopback: a client bound to 127.0.0.2 is not in the shipped allow list
(127.0.0.1, ::1), while 127.0.0.1 is the proxy's own host.

Not tested live: a stream kept open past nginx's default 60 s read timeout (mcpgate writes a keep-alive comment
every 15 s; waiting for them would take minutes, so the shipped proxy_read_timeout is checked instead), HTTP/2 to
clients, and IPv6.
"""

from __future__ import annotations

import difflib
import json
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from conftest import DEPLOY, Gateway, free_port, gateway, program, stop, tail, wait_until
from live import json_rpc_answer, port_answers, redis_server, started, tool_call

SHIPPED = DEPLOY / "nginx" / "mcpgate.conf"
SEAL_KEY = "a-seal-key-shared-by-both-nodes-0123456789abcdef"
LEGACY = "2025-11-25"
OUTSIDE = "127.0.0.2"
INSIDE = "127.0.0.1"
MAX_BODY = 1024 * 1024  # mcpgate's default server.max_request_size, and the shipped client_max_body_size
# An event must cross mcpgate and nginx within this (a buffering proxy holds a small event until its buffer
# fills or the stream ends: never, for a quiet stream).
PROMPT_S = 5.0
NODE_CONFIG = """\
backends:
  demo: {{ kind: builtin, builtin: demo }}
{extra}security:
  trusted_proxies: [127.0.0.1]
audit:
  file: {audit}
"""
# What a reload adds, and the next takes away again: one tool, so the catalogue changes.
EXTRA_BACKEND = """\
  extra:
    kind: command
    tools:
      hello:
        description: says hello
        input_schema: { type: object }
        call: { program: echo, args: [hello] }
"""


# ------------------------------------------------------------------------------------------ the config


def render(shipped: str, nodes: list[int], http_port: int, https_port: int, cert: Path, key: Path) -> str:
    """The shipped file with the rewrites this machine needs, and nothing else."""
    rewrites = [
        ("server mcpgate-1:8000 ", f"server 127.0.0.1:{nodes[0]} "),
        ("server mcpgate-2:8000 ", f"server 127.0.0.1:{nodes[1]} "),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("/etc/nginx/tls/tls.crt;", f"{cert};"),
        ("/etc/nginx/tls/tls.key;", f"{key};"),
    ]
    text = shipped
    for old, new in rewrites:
        assert text.count(old) == 1, f"expected {old!r} exactly once in {SHIPPED.name}"
        text = text.replace(old, new)
    diff = difflib.unified_diff(shipped.splitlines(), text.splitlines(), lineterm="", n=0)
    changed = [line for line in diff if line.startswith("+") and not line.startswith("+++")]
    assert len(changed) == len(rewrites), changed
    return text


def wrapper(directory: Path, include: Path) -> str:
    """A main nginx.conf like a distribution's, including the site file at http level."""
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""\
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    # As Debian's nginx.conf has it: the site must not depend on gzip being off.
    gzip on;
    include {include};
}}
"""


@dataclass
class Nginx:
    conf: Path
    directory: Path
    http_port: int
    https_port: int
    cert: Path

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"


@pytest.fixture(scope="module")
def nginx_bin() -> str:
    return program("nginx", "apt-get install nginx-light")


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = program("openssl", "apt-get install openssl")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def configure(directory: Path, tls: tuple[Path, Path], nodes: list[int]) -> Nginx:
    directory.mkdir(parents=True, exist_ok=True)
    http_port, https_port = free_port(), free_port()
    site = directory / "conf.d" / "mcpgate.conf"
    site.parent.mkdir()
    site.write_text(render(SHIPPED.read_text(), nodes, http_port, https_port, *tls))
    conf = directory / "nginx.conf"
    conf.write_text(wrapper(directory, site))
    return Nginx(conf, directory, http_port, https_port, tls[0])


@contextmanager
def running(nginx_bin: str, nginx: Nginx) -> Iterator[Nginx]:
    log = nginx.directory / "nginx.out"
    proc = started([nginx_bin, "-c", str(nginx.conf), "-p", str(nginx.directory), "-g", "daemon off;"], log)
    try:
        wait_until(
            "nginx listening",
            lambda: proc.poll() is not None or (port_answers(nginx.http_port) and port_answers(nginx.https_port)),
            log=log,
        )
        if proc.poll() is not None:
            pytest.fail(f"nginx exited with {proc.returncode}:\n{tail(log)}\n{tail(nginx.directory / 'error.log')}", pytrace=False)
        yield nginx
    finally:
        stop(proc)


def client(nginx: Nginx, source: str = OUTSIDE, **kwargs: Any) -> httpx2.Client:
    """An HTTPS client trusting the test's certificate, connecting from `source`."""
    context = ssl.create_default_context(cafile=str(nginx.cert))
    transport = httpx2.HTTPTransport(verify=context, local_address=source)
    return httpx2.Client(transport=transport, trust_env=False, timeout=httpx2.Timeout(30), **kwargs)


# ------------------------------------------------------------------------------------------- the cluster


@dataclass
class Cluster:
    nginx: Nginx
    nodes: list[Gateway]
    configs: list[Path]
    audits: list[Path]


def node_config(audit: Path, extra: bool) -> str:
    return NODE_CONFIG.format(audit=audit, extra=EXTRA_BACKEND if extra else "")


@pytest.fixture(scope="module")
def cluster(
    mcpgate_bin: str, nginx_bin: str, tls_pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("nginx-live")
    with redis_server(tmp) as redis:
        env = {"REDIS_URL": redis, "MCPGATE_SEAL_KEY": SEAL_KEY, "LOG_LEVEL": "info"}
        audits = [tmp / "audit-a.log", tmp / "audit-b.log"]
        with (
            gateway(mcpgate_bin, tmp, node_config(audits[0], False), env, name="node-a") as a,
            gateway(mcpgate_bin, tmp, node_config(audits[1], False), env, name="node-b") as b,
        ):
            # conftest.gateway wrote each node's config here; a reload rewrites it.
            configs = [tmp / "node-a.yaml", tmp / "node-b.yaml"]
            assert all(c.is_file() for c in configs), configs
            nginx = configure(tmp / "nginx", tls_pair, [a.port, b.port])
            with running(nginx_bin, nginx):
                yield Cluster(nginx, [a, b], configs, audits)


# ----------------------------------------------------------------------------------------------- tests


def test_nginx_t_accepts_the_shipped_file(nginx_bin: str, tls_pair: tuple[Path, Path], tmp_path: Path) -> None:
    nginx = configure(tmp_path, tls_pair, [free_port(), free_port()])
    run = subprocess.run(
        [nginx_bin, "-t", "-c", str(nginx.conf), "-p", str(tmp_path), "-g", "daemon off;"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "syntax is ok" in run.stderr and "test is successful" in run.stderr, run.stderr
    assert "[warn]" not in run.stderr and "[emerg]" not in run.stderr, run.stderr


def test_the_event_stream_location_is_unbuffered_with_a_long_read_timeout() -> None:
    """What the live test does not wait for: streams and long calls are not cut by the read timeout (it must stay
    above mcpgate's request_timeout, 30 s by default, and its 15 s stream keep-alive)."""
    block = re.search(r"location = /mcp \{(.*?)\n    \}", SHIPPED.read_text(), re.S)
    assert block, "no `location = /mcp` block"
    settings = dict(re.findall(r"^\s*(\w+)\s+([^;]+);", block.group(1), re.M))
    assert settings["proxy_buffering"] == "off" and settings["gzip"] == "off", settings
    timeout = re.fullmatch(r"(\d+)([smhd])", settings["proxy_read_timeout"])
    assert timeout, settings["proxy_read_timeout"]
    seconds = int(timeout.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[timeout.group(2)]
    assert seconds >= 600, f"proxy_read_timeout {settings['proxy_read_timeout']} would cut long calls"


def test_tls_redirect_and_security_headers(cluster: Cluster) -> None:
    nginx = cluster.nginx
    with client(nginx) as c:
        health = c.get(f"{nginx.base}/health")
        assert health.status_code == 200, health.text
        assert health.headers["strict-transport-security"] == "max-age=63072000"
        assert health.headers["x-content-type-options"] == "nosniff"
        assert health.headers["x-accel-buffering"] == "no"
        assert health.headers["server"] == "nginx", "server_tokens off: no version"
        assert c.get(f"{nginx.base}/no/such/path").status_code == 404
        assert c.get(f"{nginx.base}/").status_code == 404

    # Plain HTTP: a redirect that keeps the method, but /health answers there too.
    with httpx2.Client(trust_env=False, transport=httpx2.HTTPTransport(local_address=OUTSIDE)) as plain:
        moved = plain.post(f"http://127.0.0.1:{nginx.http_port}/mcp?x=1", content=b"{}")
        assert moved.status_code == 308, moved.text
        assert moved.headers["location"] == "https://127.0.0.1/mcp?x=1"
        assert plain.get(f"http://127.0.0.1:{nginx.http_port}/health").status_code == 200

    def handshake(context: ssl.SSLContext) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", nginx.https_port), timeout=10)
        return context.wrap_socket(raw, server_hostname="localhost")

    def context(version: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(nginx.cert))
        ctx.minimum_version = ctx.maximum_version = version
        if ciphers:
            ctx.set_ciphers(ciphers)
        return ctx

    with handshake(context(ssl.TLSVersion.TLSv1_3)) as tls:
        assert tls.version() == "TLSv1.3"
    with handshake(context(ssl.TLSVersion.TLSv1_2)) as tls:
        assert tls.version() == "TLSv1.2"
        assert re.fullmatch(r"ECDHE-ECDSA-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)", tls.cipher()[0]), tls.cipher()
    # A TLS 1.2 suite without forward secrecy (allowed by nginx's default ssl_ciphers) is not offered.
    weak = context(ssl.TLSVersion.TLSv1_2, "AES128-SHA:AES128-GCM-SHA256")
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE|handshake failure"):
        handshake(weak).close()


class EventStream:
    """A legacy session's GET stream, read on a thread: each JSON-RPC message with the time it arrived; None
    when the stream ends."""

    def __init__(self, c: httpx2.Client, url: str, headers: dict[str, str]) -> None:
        self.messages: queue.Queue[tuple[float, Any]] = queue.Queue()
        self.opened = threading.Event()
        self.status: int | None = None
        self.headers: httpx2.Headers | None = None
        self.thread = threading.Thread(target=self._read, args=(c, url, headers), daemon=True)
        self.thread.start()

    def _read(self, c: httpx2.Client, url: str, headers: dict[str, str]) -> None:
        try:
            with c.stream("GET", url, headers=headers, timeout=httpx2.Timeout(30, read=None)) as response:
                self.status, self.headers = response.status_code, response.headers
                self.opened.set()
                data: list[str] = []
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        text = "\n".join(data).strip()
                        data = []
                        if text:
                            self.messages.put((time.monotonic(), json.loads(text)))
        except Exception as e:  # noqa: BLE001 - reported to the test through the queue
            self.messages.put((time.monotonic(), e))
        finally:
            self.opened.set()
            self.messages.put((time.monotonic(), None))

    def next_message(self, method: str, after: float, within: float) -> tuple[float, dict[str, Any]]:
        """The first message `method` that arrived after `after`, waiting at most `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            try:
                at, message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {method} on the event stream within {within}s", pytrace=False)
            if message is None or isinstance(message, Exception):
                pytest.fail(f"the event stream ended while waiting for {method}: {message!r}", pytrace=False)
            if message.get("method") == method and at > after:
                return at, message


def _reload(cluster: Cluster, extra: bool) -> float:
    """Rewrite both nodes' config and send each SIGHUP; returns when the signals were sent."""
    for config, audit in zip(cluster.configs, cluster.audits):
        config.write_text(node_config(audit, extra))
    sent = time.monotonic()
    for node in cluster.nodes:
        os.kill(node.proc.pid, signal.SIGHUP)
    return sent


def test_a_legacy_session_event_stream_passes_through_unbuffered(cluster: Cluster) -> None:
    """A legacy session over nginx: initialize, then a GET stream that stays open while both nodes reload twice;
    each reload's notifications/tools/list_changed reaches the client promptly on that same stream."""
    nginx = cluster.nginx
    url = f"{nginx.base}/mcp"
    accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    with client(nginx) as c:
        init = c.post(url, headers=accept, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "nginx-test", "version": "1"}},
        })  # fmt: skip
        assert init.status_code == 200, init.text
        session = init.headers["mcp-session-id"]
        assert json_rpc_answer(init.headers["content-type"], init.text)["result"]["protocolVersion"] == LEGACY
        in_session = {**accept, "mcp-session-id": session, "mcp-protocol-version": LEGACY}
        ready = c.post(url, headers=in_session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert ready.status_code == 202, ready.text

        def tool_names(request_id: int) -> set[str]:
            listed = c.post(url, headers=in_session, json={"jsonrpc": "2.0", "id": request_id, "method": "tools/list"})
            assert listed.status_code == 200, listed.text
            return {t["name"] for t in json_rpc_answer(listed.headers["content-type"], listed.text)["result"]["tools"]}

        assert "hello" not in tool_names(2)
        streaming = client(nginx)
        stream = EventStream(streaming, url, {"accept": "text/event-stream", "mcp-session-id": session, "mcp-protocol-version": LEGACY})
        try:
            assert stream.opened.wait(15), "the GET stream did not open"
            assert stream.status == 200, stream.status
            assert stream.headers["content-type"].startswith("text/event-stream"), stream.headers
            assert stream.headers["x-accel-buffering"] == "no" and "strict-transport-security" in stream.headers
            assert "content-encoding" not in stream.headers, "an event stream must not be compressed"
            opened = time.monotonic()

            sent = _reload(cluster, extra=True)
            at, _ = stream.next_message("notifications/tools/list_changed", after=sent, within=30)
            first = at - sent
            assert first < PROMPT_S, f"list_changed took {first:.2f}s to arrive"
            assert "hello" in tool_names(3)

            sent = _reload(cluster, extra=False)
            at, _ = stream.next_message("notifications/tools/list_changed", after=sent, within=30)
            second = at - sent
            assert second < PROMPT_S, f"list_changed took {second:.2f}s to arrive"
            assert "hello" not in tool_names(4)
            assert stream.thread.is_alive(), "the stream ended"
            print(f"stream open {time.monotonic() - opened:.1f}s; list_changed after {first:.2f}s and {second:.2f}s")
        finally:
            # Ending the session ends its stream, through nginx.
            c.delete(url, headers={"mcp-session-id": session, "mcp-protocol-version": LEGACY})
            stream.thread.join(15)
            streaming.close()
        assert not stream.thread.is_alive(), "the event stream did not end when the session was deleted"


@pytest.mark.parametrize("path", ["/metrics", "/status", "/ready"])
def test_internal_endpoints_are_refused_from_outside(cluster: Cluster, path: str) -> None:
    nginx = cluster.nginx
    with client(nginx, OUTSIDE) as outside, client(nginx, INSIDE) as inside:
        refused = outside.get(nginx.base + path)
        assert refused.status_code == 403, refused.text
        assert "mcp_" not in refused.text and "version" not in refused.text
        allowed = inside.get(nginx.base + path)
        assert allowed.status_code == 200, allowed.text
        expected = {"/metrics": "mcp_requests_total", "/status": '"reloads"', "/ready": '"checks"'}[path]
        assert expected in allowed.text, allowed.text[:500]
        # Liveness stays open to everyone.
        assert outside.get(f"{nginx.base}/health").status_code == 200


def _audit_line(cluster: Cluster, request_id: str) -> dict[str, Any] | None:
    for audit in cluster.audits:
        if audit.exists():
            for line in audit.read_text().splitlines():
                entry = json.loads(line)
                if entry["request_id"] == request_id:
                    return entry
    return None


def test_mcpgate_sees_the_clients_address_not_nginxs_nor_a_forged_one(cluster: Cluster) -> None:
    """nginx appends the client's address to X-Forwarded-For; mcpgate (trusted_proxies: [127.0.0.1]) takes it,
    and not the addresses a client forged in X-Forwarded-For / X-Real-IP."""
    nginx = cluster.nginx
    request_id = uuid.uuid4().hex
    headers, body = tool_call("echo", {"message": "who am i"})
    forged = {"x-forwarded-for": "203.0.113.9", "x-real-ip": "198.51.100.1", "x-request-id": request_id}
    with client(nginx, OUTSIDE) as c:
        answer = c.post(f"{nginx.base}/mcp", headers={**headers, **forged}, content=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == request_id
    assert json_rpc_answer(answer.headers["content-type"], answer.text)["result"]["content"][0]["text"] == "who am i"
    # The audit line is written before the answer leaves: it is there now.
    entry = _audit_line(cluster, request_id)
    assert entry is not None, "no audit line for the call"
    assert entry["client_ip"] == OUTSIDE, entry

    # A refusal is logged with the address too.
    refused_id = uuid.uuid4().hex
    with client(nginx, OUTSIDE) as c:
        refused = c.post(f"{nginx.base}/mcp", headers={**headers, **forged, "x-request-id": refused_id, "x-api-key": "wrong"}, content=body)
    assert refused.status_code == 401, refused.text

    def logged() -> str | None:
        for node in cluster.nodes:
            for line in node.log.read_text(errors="replace").splitlines():
                if "request refused" in line and "invalid_key" in line and refused_id in line:
                    return line
        return None

    line = wait_until("the refusal in a node's log", logged, within=10)
    assert f"client_ip={OUTSIDE}" in line, line


def test_the_body_limit_matches_mcpgates(cluster: Cluster) -> None:
    """A body of exactly max_request_size reaches mcpgate and is served; one byte more is refused by nginx with
    a JSON-RPC error."""
    nginx = cluster.nginx
    headers, body = tool_call("add", {"a": 2, "b": 3})
    padded = body + b" " * (MAX_BODY - len(body))
    assert len(padded) == MAX_BODY
    with client(nginx) as c:
        served = c.post(f"{nginx.base}/mcp", headers=headers, content=padded)
        assert served.status_code == 200, served.text[:300]
        assert json_rpc_answer(served.headers["content-type"], served.text)["result"]["content"][0]["text"] == "5"
        refused = c.post(f"{nginx.base}/mcp", headers=headers, content=padded + b" ")
    assert refused.status_code == 413, refused.text
    assert refused.headers["content-type"] == "application/json"
    assert refused.headers["strict-transport-security"] == "max-age=63072000"
    error = refused.json()["error"]
    assert error["code"] == -32600 and "1048576" in error["message"], error


def test_no_node_answering_gives_a_json_rpc_error(nginx_bin: str, tls_pair: tuple[Path, Path], tmp_path: Path) -> None:
    nginx = configure(tmp_path, tls_pair, [free_port(), free_port()])  # nothing listens on these
    headers, body = tool_call("echo", {"message": "anyone?"})
    with running(nginx_bin, nginx), client(nginx, INSIDE) as c:
        answer = c.post(f"{nginx.base}/mcp", headers=headers, content=body)
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/json"
        error = answer.json()["error"]
        assert error["code"] == -32002 and error["data"]["kind"] == "unavailable", error
        assert c.get(f"{nginx.base}/health").status_code == 502
