"""A small local LLM API for the chat tests: no real LLM is reachable from the test machine, so this server speaks
each provider's streamed wire format as their API references publish it — the Anthropic Messages API
(`POST /v1/messages`: `message_start`, `content_block_*`, `message_delta`, `message_stop` events) and OpenAI chat
completions (`POST /v1/chat/completions`: `chat.completion.chunk` data lines, a usage chunk, `[DONE]`) — and
scripts a tool-use conversation: asked anything, it calls `echo` with the word after "echo"; given the tool's
result, it answers "The tool said: RESULT". With `always_call`, it never stops calling (for the step limit).

Every request is kept (headers and body) for the test to check what mcpgate sent.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "sk-fake-test-key-0123456789"


class FakeLlm:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.always_call = False
        self.tool = "echo"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path == "/v1/messages":
                    fake._anthropic(self, body)
                elif self.path == "/v1/chat/completions":
                    fake._openai(self, body)
                else:
                    self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()

    def _plan(self, last_user_text: str, tool_result: str | None) -> tuple[str, dict[str, Any] | None]:
        """(text, tool call or None) for the next reply."""
        if tool_result is not None and not self.always_call:
            return f"The tool said: {tool_result}", None
        word = last_user_text.split("echo", 1)[-1].strip() or "nothing"
        return "Let me call the tool.", {"name": self.tool, "arguments": {"message": word}}

    @staticmethod
    def _events(handler: BaseHTTPRequestHandler, events: list[tuple[str | None, Any]]) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.end_headers()
        for name, data in events:
            payload = data if isinstance(data, str) else json.dumps(data)
            line = (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"
            handler.wfile.write(line.encode())
            handler.wfile.flush()

    def _anthropic(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if handler.headers.get("x-api-key") != API_KEY or handler.headers.get("anthropic-version") != "2023-06-01":
            handler.send_response(401)
            handler.send_header("content-type", "application/json")
            handler.end_headers()
            handler.wfile.write(b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}')
            return
        last = body["messages"][-1]
        result = None
        if isinstance(last["content"], list):
            result = next((b["content"] for b in last["content"] if b.get("type") == "tool_result"), None)
        user_text = next(m["content"] for m in body["messages"] if m["role"] == "user" and isinstance(m["content"], str))
        text, call = self._plan(user_text, result)
        n = len(self.requests)
        events: list[tuple[str | None, Any]] = [
            ("message_start", {"type": "message_start", "message": {"id": f"msg_{n}", "type": "message", "role": "assistant",
              "model": body["model"], "content": [], "stop_reason": None, "usage": {"input_tokens": 20 + n, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
        ]
        half = len(text) // 2
        for piece in (text[:half], text[half:]):
            events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "text_delta", "text": piece}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        if call:
            raw = json.dumps(call["arguments"])
            events += [
                ("content_block_start", {"type": "content_block_start", "index": 1, "content_block":
                  {"type": "tool_use", "id": f"toolu_{n:02d}", "name": call["name"], "input": {}}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": raw[:5]}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": raw[5:]}}),
                ("content_block_stop", {"type": "content_block_stop", "index": 1}),
            ]
        events += [
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use" if call else "end_turn",
              "stop_sequence": None}, "usage": {"output_tokens": 10 + n}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        self._events(handler, events)

    def _openai(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if handler.headers.get("authorization") != f"Bearer {API_KEY}":
            handler.send_response(401)
            handler.send_header("content-type", "application/json")
            handler.end_headers()
            handler.wfile.write(b'{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}')
            return
        last = body["messages"][-1]
        result = last["content"] if last["role"] == "tool" else None
        user_text = next(m["content"] for m in body["messages"] if m["role"] == "user")
        text, call = self._plan(user_text, result)
        n = len(self.requests)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        events: list[tuple[str | None, Any]] = [(None, chunk({"role": "assistant", "content": ""}))]
        half = len(text) // 2
        events += [(None, chunk({"content": text[:half]})), (None, chunk({"content": text[half:]}))]
        if call:
            raw = json.dumps(call["arguments"])
            events += [
                (None, chunk({"tool_calls": [{"index": 0, "id": f"call_{n}", "type": "function",
                                               "function": {"name": call["name"], "arguments": ""}}]})),
                (None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": raw[:5]}}]})),
                (None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": raw[5:]}}]})),
            ]
        events.append((None, chunk({}, "tool_calls" if call else "stop")))
        events.append((None, {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                              "choices": [], "usage": {"prompt_tokens": 30 + n, "completion_tokens": 5 + n, "total_tokens": 35 + 2 * n}}))
        events.append((None, "[DONE]"))
        self._events(handler, events)
