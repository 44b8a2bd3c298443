"""Plumbing for bench/codemode.py: starting mcpgate, a raw keep-alive MCP client, o200k token counts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
VERSION = "2026-07-28"
JsonObject = dict[str, Any]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def compact(value: Any) -> str:
    """JSON as a server sends it: no spaces, UTF-8 as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class HttpError(RuntimeError):
    pass


class McpClient:
    """One keep-alive HTTP/1.1 connection sending stateless 2026-07-28 requests (the shape of
    crates/mcpgate-server/tests/common/mod.rs `modern()`): each request written with one `sendall`, TCP_NODELAY,
    the response read by Content-Length or chunks. No SDK and no http.client: the least client time per call."""

    def __init__(self, port: int, timeout: float = 120.0) -> None:
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.reader: Any = None
        self.next_id = 1

    def close(self) -> None:
        if self.sock is not None:
            self.reader.close()
            self.sock.close()
            self.sock = None

    def _connect(self) -> None:
        sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.reader = sock, sock.makefile("rb", buffering=65536)

    def post(self, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, dict[str, str], bytes]:
        if self.sock is None:
            self._connect()
        assert self.sock is not None
        head = ["POST /mcp HTTP/1.1", f"Host: {HOST}:{self.port}", "Content-Type: application/json",
                "Accept: application/json, text/event-stream"]
        head += [f"{k}: {v}" for k, v in headers]
        head.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = self.reader.readline()
        if not status_line:
            self.close()
            raise HttpError("connection closed by the server")
        status = int(status_line.split()[1])
        got: dict[str, str] = {}
        while True:
            line = self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            got[k.strip().lower()] = v.strip()
        if "content-length" in got:
            data = self.reader.read(int(got["content-length"]))
        elif got.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.reader.readline().split(b";")[0], 16)
                if size == 0:
                    while self.reader.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.reader.read(size))
                self.reader.readline()
            data = b"".join(parts)
        else:
            data = self.reader.read()
            self.close()
        if got.get("connection", "").lower() == "close":
            self.close()
        return status, got, data

    def request(self, method: str, params: JsonObject, name: str | None = None) -> tuple[JsonObject, str]:
        """One request; the final JSON-RPC message and its `result` exactly as the body held it (raw text)."""
        rid = self.next_id
        self.next_id += 1
        params = dict(params)
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": VERSION,
                           "io.modelcontextprotocol/clientCapabilities": {}}
        body = compact({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()
        headers = [("MCP-Protocol-Version", VERSION), ("Mcp-Method", method)]
        if name is not None:
            headers.append(("Mcp-Name", name))
        status, got, data = self.post(body, headers)
        text = data.decode()
        if got.get("content-type", "").startswith("text/event-stream"):
            messages = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")
                        and line[5:].strip()]
            answers = [m for m in messages if m.get("id") == rid]
            if not answers:
                raise HttpError(f"{method}: no answer in the event stream (HTTP {status}): {text[:300]}")
            message = answers[-1]
            raw = compact(message.get("result"))
        else:
            if status != 200:
                raise HttpError(f"{method}: HTTP {status}: {text[:300]}")
            message = json.loads(text)
            raw = _raw_result(text, message)
        if "error" in message:
            raise HttpError(f"{method}: JSON-RPC error: {compact(message['error'])[:300]}")
        return message, raw

    def call(self, tool: str, arguments: JsonObject) -> tuple[JsonObject, str]:
        """tools/call; the `result` object and its raw text. A tool error (isError) raises."""
        message, raw = self.request("tools/call", {"name": tool, "arguments": arguments}, name=tool)
        result: JsonObject = message["result"]
        if result.get("isError"):
            raise HttpError(f"{tool}: tool error: {raw[:500]}")
        return result, raw


def _raw_result(text: str, message: JsonObject) -> str:
    """The `result` member of a JSON-RPC body as the server wrote it (the body is compact JSON; when it is not in
    the expected place, its compact re-serialization, which is the same text for a compact body)."""
    key = '"result":'
    start = text.find(key)
    if start >= 0 and text.rstrip().endswith("}"):
        candidate = text[start + len(key):text.rstrip().rfind("}")]
        try:
            if json.loads(candidate) == message.get("result"):
                return candidate
        except json.JSONDecodeError:
            pass
    return compact(message.get("result"))


def text_of(result: JsonObject) -> str:
    """The text content items of a tool result, joined."""
    return "\n".join(item.get("text", "") for item in result.get("content", []) if item.get("type") == "text")


class Gateway:
    """An mcpgate process we started on a free loopback port; stopped (with the stdio upstreams it spawned) by
    PID only."""

    def __init__(self, binary: Path, name: str, logdir: Path, config: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.binary, self.name, self.config = binary, name, config
        self.extra_env = env or {}
        self.log_path = logdir / f"{name}.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.children: list[tuple[int, str]] = []

    def start(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        argv = [str(self.binary), "serve", "--listen", f"{HOST}:{self.port}"]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        env = {k: v for k, v in os.environ.items()
               if k not in ("PORT", "MCP_PORT", "MCP_CONFIG_PATH", "LOG_LEVEL", "EXECUTION_MODE",
                            "SANDBOX_BACKEND", "SANDBOX_ENABLED")}
        env["LOG_LEVEL"] = "warn"
        env.update(self.extra_env)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not self._health():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name}: no 200 on /health within {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _health(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def adopt_children(self) -> None:
        """Remember the processes this gateway spawned (its stdio upstreams) with their start times, to stop them
        by PID if they outlive it."""
        if self.proc is None:
            return
        for pid in _descendants(self.proc.pid):
            start = _start_time(pid)
            if start and (pid, start) not in self.children:
                self.children.append((pid, start))

    def stop(self) -> None:
        if self.proc is None:
            return
        self.adopt_children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        for pid, start in self.children:
            if _start_time(pid) == start:  # still the process we saw, not a reused PID
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self.children = []


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


class Tokens:
    """o200k_base token counts from `mcpgate-bench-tokens` (bench/ceiling; bpe-openai, vocabulary compiled in)."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.cache: dict[str, int] = {}

    def count_many(self, texts: list[str]) -> list[int]:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            lines = "".join(json.dumps(t) + "\n" for t in todo)
            out = subprocess.run([str(self.binary), "--json-lines"], input=lines.encode(), capture_output=True,
                                 check=True).stdout.decode().split()
            if len(out) != len(todo):
                raise RuntimeError(f"mcpgate-bench-tokens: {len(out)} counts for {len(todo)} texts")
            self.cache.update(zip(todo, (int(n) for n in out)))
        return [self.cache[t] for t in texts]

    def count(self, text: str) -> int:
        return self.count_many([text])[0]
