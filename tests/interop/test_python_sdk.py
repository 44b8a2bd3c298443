"""Interop tests: mcpgate vs. the official MCP Python SDK client (mcp==2.3.0).

Run (from the repo root):

    python3 -m venv .venv
    .venv/bin/pip install -r tests/interop/requirements.txt
    cargo build --release
    MCPGATE_BIN=$PWD/target/release/mcpgate .venv/bin/pytest -v -p no:cacheprovider tests/interop

The gateway is started once per session with its embedded default config
(`mcpgate serve --listen 127.0.0.1:PORT`, LOG_LEVEL=warn) and stopped with
SIGTERM at the end; the teardown asserts a clean exit (code 0 within 10 s).
stdio tests spawn `mcpgate serve --stdio` per test through the SDK's own
stdio transport.

Demo-tool contract of the embedded default config:
  echo {"message": str}       -> one text item, text == message
  add  {"a": num, "b": num}   -> text "5" for 2+3, structuredContent {"sum": 5}
  now  {}                     -> text, an RFC 3339 UTC timestamp

Client modes (mcp.Client(mode=...)):
  "legacy"      initialize handshake (client offers 2025-11-25)
  "2026-07-28"  no handshake/probe: every request carries the 2026 `_meta`
                envelope (+ MCP-Protocol-Version/Mcp-Method/Mcp-Name headers on HTTP)
  "auto"        probes `server/discover` at 2026-07-28, falls back to initialize
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import (
    CallToolResult,
    CreateMessageRequestParams,
    CreateMessageResult,
    DiscoverResult,
    ElicitRequestParams,
    ElicitResult,
    TextContent,
)

MODES = ["auto", "legacy", "2026-07-28"]
MODERN_VERSION = "2026-07-28"
LEGACY_VERSIONS = {"2025-11-25", "2025-06-18", "2025-03-26"}
EXPECTED_TOOLS = {"echo", "add", "now"}
UNKNOWN_TOOL = "no_such_tool_f00d"

HEALTH_TIMEOUT_S = 20.0
SHUTDOWN_TIMEOUT_S = 10.0
# Per-request read timeout for the SDK client, so a hung gateway fails a test instead of the run.
READ_TIMEOUT_S = 15.0
# Whole-test guard (connect + handshake + calls).
TEST_TIMEOUT_S = 60.0

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|\+00:00)$")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def mcpgate_bin() -> str:
    path = os.environ.get("MCPGATE_BIN")
    if not path:
        pytest.fail(
            "MCPGATE_BIN is not set: point it at the mcpgate binary, e.g. "
            "MCPGATE_BIN=$PWD/target/release/mcpgate .venv/bin/pytest tests/interop",
            pytrace=False,
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"MCPGATE_BIN={path!r} is not an executable file", pytrace=False)
    return os.path.abspath(path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "<no log>"


@dataclass(frozen=True)
class Gateway:
    base_url: str
    mcp_url: str
    log: Path
    pid: int


@pytest.fixture(scope="session")
def gateway(mcpgate_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = _free_port()
    log = tmp_path_factory.mktemp("mcpgate") / "serve.log"
    env = {**os.environ, "LOG_LEVEL": "warn"}
    base = f"http://127.0.0.1:{port}"
    # Never route loopback health checks through an HTTP proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [mcpgate_bin, "serve", "--listen", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        last_err: object = None
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"mcpgate exited early with code {proc.returncode} before /health was ready; log:\n{_tail(log)}",
                    pytrace=False,
                )
            try:
                with opener.open(f"{base}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
                    last_err = f"HTTP {resp.status}"
            except urllib.error.HTTPError as e:
                last_err = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                last_err = e
            if time.monotonic() > deadline:
                pytest.fail(
                    f"GET {base}/health did not return 200 within {HEALTH_TIMEOUT_S}s (last: {last_err}); "
                    f"log:\n{_tail(log)}",
                    pytrace=False,
                )
            time.sleep(0.1)

        yield Gateway(base_url=base, mcp_url=f"{base}/mcp", log=log, pid=proc.pid)
    finally:
        # Graceful shutdown: SIGTERM by PID, then the process must exit 0 within the timeout.
        exit_code: int | None = None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                exit_code = proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(
                    f"mcpgate did not exit within {SHUTDOWN_TIMEOUT_S}s of SIGTERM (killed); log:\n{_tail(log)}",
                    pytrace=False,
                )
        else:
            pytest.fail(
                f"mcpgate died during the test session (code {proc.returncode}); log:\n{_tail(log)}",
                pytrace=False,
            )
        assert exit_code == 0, f"mcpgate exited with code {exit_code} after SIGTERM; log:\n{_tail(log)}"


# --------------------------------------------------------------------------- helpers


def run_client(server: str | StdioServerParameters, mode: str, body: Callable[[Client], Awaitable[Any]]) -> Any:
    """Open an SDK Client in `mode`, run `body(client)` under a timeout, close it."""

    async def main() -> Any:
        with anyio.fail_after(TEST_TIMEOUT_S):
            async with Client(server, mode=mode, read_timeout_seconds=READ_TIMEOUT_S) as client:
                return await body(client)

    return anyio.run(main)


def texts(result: CallToolResult) -> list[str]:
    return [c.text for c in result.content if isinstance(c, TextContent)]


def single_text(result: CallToolResult) -> str:
    assert not result.is_error, f"tool call failed: {result.model_dump(by_alias=True, exclude_none=True)}"
    assert len(result.content) == 1, f"expected exactly one content item, got {result.content!r}"
    item = result.content[0]
    assert isinstance(item, TextContent), f"expected a text content item, got {item!r}"
    return item.text


async def check_list_tools(client: Client) -> None:
    listed = await client.list_tools()
    names = {t.name for t in listed.tools}
    missing = EXPECTED_TOOLS - names
    assert not missing, f"tools/list is missing {sorted(missing)}; got {sorted(names)}"


async def check_echo(client: Client) -> None:
    message = "hello from python"
    result = await client.call_tool("echo", {"message": message})
    assert single_text(result) == message


async def check_add(client: Client) -> None:
    result = await client.call_tool("add", {"a": 2, "b": 3})
    assert single_text(result) == "5"
    assert result.structured_content is not None, "add returned no structuredContent"
    assert result.structured_content.get("sum") == 5, f"structuredContent={result.structured_content!r}"


async def check_now(client: Client) -> None:
    result = await client.call_tool("now", {})
    text = single_text(result)
    assert RFC3339_UTC.match(text), f"now returned {text!r}, not an RFC 3339 UTC timestamp"
    datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


async def check_unknown_tool(client: Client) -> None:
    try:
        result = await client.call_tool(UNKNOWN_TOOL, {})
    except MCPError as e:
        # JSON-RPC error response (the SDK raises it as MCPError).
        detail = f"{e.error.message} {e.error.data!r}"
        assert UNKNOWN_TOOL in detail, f"JSON-RPC error does not name the tool: code={e.code} {detail}"
        return
    # ...or a tool-level error result.
    assert result.is_error, f"calling an unknown tool succeeded: {result!r}"
    joined = " ".join(texts(result))
    assert UNKNOWN_TOOL in joined, f"isError result does not name the tool: {joined!r}"


def check_protocol_version(client: Client, mode: str) -> None:
    version = client.protocol_version
    if mode == "legacy":
        assert version in LEGACY_VERSIONS, f"legacy handshake negotiated {version!r}"
        assert client.session.initialize_result is not None
    elif mode == MODERN_VERSION:
        # A version-pinned client adopts the version locally (no probe), so this is by construction;
        # the real check is that every subsequent 2026-envelope request succeeds.
        assert version == MODERN_VERSION
    else:  # auto: the gateway speaks 2026-07-28, so server/discover must win over the legacy fallback.
        assert version == MODERN_VERSION, (
            f"mode='auto' fell back to the initialize handshake (negotiated {version!r}): "
            "server/discover was rejected or its result did not validate"
        )
        assert client.session.discover_result is not None


# --------------------------------------------------------------------------- HTTP tests


@pytest.mark.parametrize("mode", MODES)
def test_http_list_tools(gateway: Gateway, mode: str) -> None:
    run_client(gateway.mcp_url, mode, check_list_tools)


@pytest.mark.parametrize("mode", MODES)
def test_http_call_echo(gateway: Gateway, mode: str) -> None:
    run_client(gateway.mcp_url, mode, check_echo)


@pytest.mark.parametrize("mode", MODES)
def test_http_call_add(gateway: Gateway, mode: str) -> None:
    run_client(gateway.mcp_url, mode, check_add)


@pytest.mark.parametrize("mode", MODES)
def test_http_call_now(gateway: Gateway, mode: str) -> None:
    run_client(gateway.mcp_url, mode, check_now)


@pytest.mark.parametrize("mode", MODES)
def test_http_unknown_tool_errors(gateway: Gateway, mode: str) -> None:
    run_client(gateway.mcp_url, mode, check_unknown_tool)


@pytest.mark.parametrize("mode", MODES)
def test_http_negotiated_protocol_version(gateway: Gateway, mode: str) -> None:
    async def body(client: Client) -> None:
        check_protocol_version(client, mode)
        # The version must also be usable, not just negotiated.
        await check_list_tools(client)

    run_client(gateway.mcp_url, mode, body)


def test_http_server_discover(gateway: Gateway) -> None:
    """An explicit server/discover probe (what mode='auto' sends first) yields a valid 2026 DiscoverResult."""

    async def body(client: Client) -> None:
        raw = await client.session.send_discover(MODERN_VERSION)
        result = DiscoverResult.model_validate(raw)
        assert MODERN_VERSION in result.supported_versions, f"supportedVersions={result.supported_versions}"
        assert result.capabilities.tools is not None, "discover result does not advertise the tools capability"

    run_client(gateway.mcp_url, MODERN_VERSION, body)


# --------------------------------------------------------------------------- stdio tests


@pytest.mark.parametrize("mode", MODES)
def test_stdio_tools(mcpgate_bin: str, mode: str, tmp_path: Path) -> None:
    stderr_log = tmp_path / "stdio-stderr.log"
    params = StdioServerParameters(command=mcpgate_bin, args=["serve", "--stdio"], env={"LOG_LEVEL": "warn"})

    async def body(client: Client) -> None:
        check_protocol_version(client, mode)
        await check_list_tools(client)
        await check_echo(client)
        await check_add(client)

    async def main() -> None:
        with open(stderr_log, "w") as errlog:
            with anyio.fail_after(TEST_TIMEOUT_S):
                async with Client(
                    stdio_client(params, errlog=errlog), mode=mode, read_timeout_seconds=READ_TIMEOUT_S
                ) as client:
                    await body(client)

    try:
        anyio.run(main)
    except BaseException:
        print(f"--- mcpgate --stdio stderr ---\n{_tail(stderr_log)}")
        raise


# --------------------------------------------------------------------------- federation


def _wait_ok(proc: subprocess.Popen[bytes], base: str, path: str, log: Path, within: float = HEALTH_TIMEOUT_S) -> None:
    """Until GET `path` answers 200 (`/health`: serving; `/ready`: every upstream connected and listed)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + within
    while True:
        if proc.poll() is not None:
            pytest.fail(f"mcpgate exited early with code {proc.returncode}; log:\n{_tail(log)}", pytrace=False)
        try:
            with opener.open(f"{base}{path}", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{base}{path} not 200 within {within}s; log:\n{_tail(log)}", pytrace=False)
        time.sleep(0.1)


def _serve(mcpgate_bin: str, config: Path, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`mcpgate serve --config CONFIG` on a free port with `env` over ours, once `/health` answers: the process,
    its base URL and its log."""
    port = _free_port()
    log = tmp_path / "gateway.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [mcpgate_bin, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "info", **env},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ok(proc, base, "/health", log)
    except BaseException:
        _stop(proc)
        raise
    return proc, base, log


def _required_env(names: list[str]) -> dict[str, str]:
    """The variables `scripts/upstreams.sh` exports; skipped (failed with MCPGATE_REQUIRE_UPSTREAMS=1) without them."""
    found = {name: os.environ.get(name, "") for name in names}
    if not all(found.values()):
        missing = ", ".join(n for n, v in found.items() if not v)
        message = f'{missing} unset: run `eval "$(scripts/upstreams.sh)"` first'
        if os.environ.get("MCPGATE_REQUIRE_UPSTREAMS") == "1":
            pytest.fail(f"MCPGATE_REQUIRE_UPSTREAMS=1 but {message}", pytrace=False)
        pytest.skip(message)
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def typescript_federation(mcpgate_bin: str, tmp_path: Path) -> Iterator[str]:
    """mcpgate fronting tests/upstream-ts/server.mjs (the official TypeScript SDK) over Streamable HTTP, prefix
    off; the gateway's /mcp URL. The server and node come from `eval "$(scripts/upstreams.sh)"`."""
    up = _required_env(["MCPGATE_TEST_NODE", "MCPGATE_TEST_UPSTREAM_TS"])
    node, server = up["MCPGATE_TEST_NODE"], up["MCPGATE_TEST_UPSTREAM_TS"]
    upstream_log = tmp_path / "upstream-ts.log"
    with open(upstream_log, "wb") as logf:
        # Port 0: the server takes a free port and names its URL on its first line.
        upstream = subprocess.Popen([node, server, "0"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf)
    gateway: subprocess.Popen[bytes] | None = None
    try:
        assert upstream.stdout is not None
        line = upstream.stdout.readline().decode()
        match = re.match(r"listening on (http://\S+)", line)
        if not match:
            pytest.fail(f"the TypeScript upstream did not start ({line!r}); log:\n{_tail(upstream_log)}", pytrace=False)
        config = tmp_path / "gateway.yaml"
        config.write_text(f"upstreams:\n  typescript:\n    url: {match.group(1)}\n    prefix: false\n    timeout: 30s\n")
        gateway, base, log = _serve(mcpgate_bin, config, tmp_path, {})
        yield f"{base}/mcp"
        assert 'protocol="2026-07-28"' in _tail(log, 1_000_000), (
            f"the gateway did not speak 2026-07-28 to the TypeScript upstream; log:\n{_tail(log)}"
        )
    finally:
        if gateway is not None:
            _stop(gateway)
        _stop(upstream)


def test_sampling_and_elicitation_of_a_2026_typescript_upstream_reach_a_legacy_client(
    typescript_federation: str,
) -> None:
    """Issue 13, item 5: an upstream that speaks 2026-07-28 with mcpgate asks for sampling and elicitation on its
    tool calls' own event streams (the TypeScript SDK's `extra.sendRequest`); mcpgate relays each request to the
    calling client's callbacks and each answer back, instead of leaving the upstream waiting."""
    asked: list[tuple[str, str]] = []

    async def sampling(_context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        content = params.messages[0].content
        asked.append(("sampling", content.text if isinstance(content, TextContent) else repr(content)))
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text="sampled by python"), model="python-test"
        )

    async def elicitation(_context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(("elicitation", params.message))
        return ElicitResult(action="accept", content={"response": "elicited by python"})

    async def main() -> None:
        with anyio.fail_after(TEST_TIMEOUT_S):
            async with Client(
                typescript_federation,
                mode="legacy",
                read_timeout_seconds=READ_TIMEOUT_S,
                sampling_callback=sampling,
                elicitation_callback=elicitation,
            ) as client:
                sampled = await client.call_tool("test_sampling", {"prompt": "What is 2+2?"})
                assert single_text(sampled) == "LLM response: sampled by python"
                elicited = await client.call_tool("test_elicitation", {"message": "Your name?"})
                assert single_text(elicited) == (
                    'User response: action=accept, content={"response":"elicited by python"}'
                )

    anyio.run(main)
    assert asked == [("sampling", "What is 2+2?"), ("elicitation", "Your name?")]


# --------------------------------------------------------------------------- code mode


@pytest.fixture
def code_mode_gateway(mcpgate_bin: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """mcpgate in code mode (EXECUTION_MODE=code) fronting the real server-everything, server-filesystem (over
    a directory holding `notes.txt`) and mcp-server-time, over stdio; the /mcp URL and the allowed directory."""
    up = _required_env(["MCPGATE_TEST_NODE", "MCPGATE_TEST_EVERYTHING", "MCPGATE_TEST_FILESYSTEM", "MCPGATE_TEST_TIME"])
    allowed = tmp_path / "files"
    allowed.mkdir()
    (allowed / "notes.txt").write_text("alpha\nbeta\ngamma\n")
    q = lambda s: json.dumps(str(s))  # noqa: E731 — a YAML-safe string literal
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "upstreams:\n"
        f"  everything:\n    command: {q(up['MCPGATE_TEST_NODE'])}\n    args: [{q(up['MCPGATE_TEST_EVERYTHING'])}, stdio]\n"
        f"  fs:\n    command: {q(up['MCPGATE_TEST_NODE'])}\n    args: [{q(up['MCPGATE_TEST_FILESYSTEM'])}, {q(allowed)}]\n"
        f"  time:\n    command: {q(up['MCPGATE_TEST_TIME'])}\n"
    )
    proc, base, log = _serve(mcpgate_bin, config, tmp_path, {"EXECUTION_MODE": "code"})
    try:
        _wait_ok(proc, base, "/ready", log, within=30)
        yield f"{base}/mcp", allowed
    finally:
        _stop(proc)


@pytest.mark.parametrize("mode", MODES)
def test_code_mode_searches_describes_and_chains_tools_across_real_upstreams(
    code_mode_gateway: tuple[str, Path], mode: str
) -> None:
    url, allowed = code_mode_gateway

    async def body(client: Client) -> None:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert listed == {"search_tools", "describe_tools", "execute"}, listed

        found = json.loads(single_text(await client.call_tool("search_tools", {"query": "read a text file"})))
        paths = [hit["path"] for hit in found["tools"]]
        assert "tools.fs.read_text_file" in paths[:3], found

        declared = single_text(await client.call_tool("describe_tools", {"names": ["tools.time.get_current_time"]}))
        assert "declare namespace tools.time" in declared and "function get_current_time(" in declared, declared

        # Four calls over three upstreams; only a small summary comes back.
        program = f"""
            const [file, now] = await Promise.all([
              tools.fs.read_text_file({{ path: {json.dumps(str(allowed / "notes.txt"))} }}),
              tools.time.get_current_time({{ timezone: "UTC" }}),
            ]);
            const text = typeof file === "string" ? file : file.content;
            const lines = text.split("\\n").filter(Boolean);
            const echoed = await tools.everything.echo({{ message: lines[1] }});
            // server-everything names it `get-sum`: in programs, `get_sum`.
            const sum = await tools.everything.get_sum({{ a: lines.length, b: 10 }});
            console.log("lines", lines.length);
            return {{ second: echoed, lines: lines.length, sum, utc: typeof now === "object" && now.timezone }};
        """
        result = await client.call_tool("execute", {"code": program})
        out = json.loads(single_text(result))
        assert out["logs"] == ["lines 3"], out
        assert [call["tool"] for call in out["calls"]][2:] == ["everything__echo", "everything__get-sum"], out
        assert all(call["ok"] for call in out["calls"]), out
        value = out["result"]
        assert value["lines"] == 3 and value["utc"] == "UTC", value
        assert "beta" in json.dumps(value["second"]) and "13" in json.dumps(value["sum"]), value

        failed = await client.call_tool("execute", {"code": "await tools.fs.read_text_file({path: '/etc/passwd'});"})
        assert failed.is_error, failed
        assert "outside allowed directories" in texts(failed)[0] or "denied" in texts(failed)[0].lower(), failed

    run_client(url, mode, body)
