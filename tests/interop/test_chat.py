"""The chat loop end to end — `POST /chat` (JSON and streamed) and `mcpgate chat` — against a local server speaking
the Anthropic Messages API and OpenAI chat completions exactly (fake_llm.py: no real LLM is reachable here). The
LLM's tool calls must run through the gateway as the caller: the tools offered are the caller's, a call outside
them fails, and the audit log says `surface: chat`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_llm import API_KEY, FakeLlm
from test_python_sdk import _serve, _stop, mcpgate_bin  # noqa: F401

USER, LIMITED = "chat-user-key-0123456789", "chat-limited-key-0123456789"


def _sha(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _config(provider: str, base_url: str, audit: Path, max_steps: int = 4, token_budget: int = 50000) -> str:
    return f"""\
chat:
  enabled: true
  provider: {provider}
  model: test-model
  base_url: {base_url}
  api_key_env: FAKE_LLM_KEY
  max_steps: {max_steps}
  token_budget: {token_budget}
security:
  api_keys:
    - {{ name: user, hash: "{_sha(USER)}" }}
    - {{ name: limited, hash: "{_sha(LIMITED)}", tools: [add] }}
audit:
  file: {audit}
backends:
  demo: {{ kind: builtin, builtin: demo }}
"""


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    llm = FakeLlm()
    yield llm
    llm.close()


def _post(base: str, body: dict, key: str, stream: bool = False) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if stream:
        headers["Accept"] = "text/event-stream"
    request = urllib.request.Request(f"{base}/chat", data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_chat_turn_calls_a_tool_through_the_gateway_and_answers(
    provider: str, fake: FakeLlm, mcpgate_bin: str, tmp_path: Path
) -> None:
    base_url = fake.url if provider == "anthropic" else f"{fake.url}/v1"
    audit = tmp_path / "audit.log"
    config = tmp_path / "chat.yaml"
    config.write_text(_config(provider, base_url, audit))
    proc, base, _ = _serve(mcpgate_bin, config, tmp_path, {"FAKE_LLM_KEY": API_KEY})
    try:
        assert _post(base, {"message": "echo ping"}, "not-a-key")[0] == 401
        status, text = _post(base, {"message": "please echo ping"}, USER)
        assert status == 200, text
        turn = json.loads(text)
        assert turn["answer"] == "The tool said: ping" and turn["stop"] == "answered" and turn["steps"] == 2, turn
        assert turn["tool_calls"] == [{"name": "echo", "arguments": {"message": "ping"}, "is_error": False}]
        assert turn["usage"]["input_tokens"] > 0 and turn["usage"]["output_tokens"] > 0

        # What the LLM was sent: the caller's tools with their schemas, then the tool's result under its id.
        first, second = fake.requests[-2]["body"], fake.requests[-1]["body"]
        if provider == "anthropic":
            tools = {t["name"]: t["input_schema"] for t in first["tools"]}
            results = [b for b in second["messages"][-1]["content"] if b["type"] == "tool_result"]
            used = [b for b in second["messages"][-2]["content"] if b["type"] == "tool_use"]
            assert results[0]["tool_use_id"] == used[0]["id"] and results[0]["content"] == "ping", second
        else:
            tools = {t["function"]["name"]: t["function"]["parameters"] for t in first["tools"]}
            assert second["messages"][-1]["role"] == "tool" and second["messages"][-1]["content"] == "ping", second
            assert second["messages"][-2]["tool_calls"][0]["id"] == second["messages"][-1]["tool_call_id"]
        assert set(tools) == {"echo", "add", "now", "sleep"} and tools["echo"]["properties"]["message"]["type"] == "string"
        assert first["model"] == "test-model" and first["stream"] is True

        # Streamed: the text as it comes, the call and its result, then the same summary.
        status, stream = _post(base, {"message": "echo pong"}, USER, stream=True)
        assert status == 200
        events = [line.split(":", 1)[1].strip() for line in stream.splitlines() if line.startswith("event:")]
        assert events[0] == "text" and "tool_call" in events and "tool_result" in events and events[-1] == "done", events
        done = json.loads([line for line in stream.splitlines() if line.startswith("data:")][-1][5:])
        assert done["answer"] == "The tool said: pong", done

        # The caller's view: a key that may call only `add` is offered only `add`, and a call of `echo` fails.
        status, text = _post(base, {"message": "echo secret"}, LIMITED)
        turn = json.loads(text)
        offered = fake.requests[-2]["body"]["tools"]
        names = [t.get("name") or t["function"]["name"] for t in offered]
        assert names == ["add"], names
        assert turn["tool_calls"][0]["is_error"] is True, turn
        assert turn["answer"].startswith("The tool said: ") and "echo" in turn["answer"], turn
    finally:
        _stop(proc)
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    chat = [(line["principal"], line["target"], line["outcome"]) for line in lines if line["surface"] == "chat"]
    assert ("user", "echo", "ok") in chat and ("limited", "echo", "error") in chat, chat


def test_the_step_limit_ends_a_turn_that_never_answers(fake: FakeLlm, mcpgate_bin: str, tmp_path: Path) -> None:
    fake.always_call = True
    config = tmp_path / "chat.yaml"
    config.write_text(_config("openai", f"{fake.url}/v1", tmp_path / "audit.log", max_steps=3))
    proc, base, _ = _serve(mcpgate_bin, config, tmp_path, {"FAKE_LLM_KEY": API_KEY})
    try:
        status, text = _post(base, {"message": "echo forever"}, USER)
        turn = json.loads(text)
        assert status == 200 and turn["stop"] == "max_steps" and turn["steps"] == 3, turn
        assert len(fake.requests) == 3 and len(turn["tool_calls"]) == 3
    finally:
        _stop(proc)


def test_the_token_budget_ends_a_turn_once_spent(fake: FakeLlm, mcpgate_bin: str, tmp_path: Path) -> None:
    # Each fake reply counts 30+n input and 5+n output tokens: 37 after the first request, 76 after the second.
    fake.always_call = True
    config = tmp_path / "chat.yaml"
    config.write_text(_config("openai", f"{fake.url}/v1", tmp_path / "audit.log", max_steps=8, token_budget=60))
    proc, base, _ = _serve(mcpgate_bin, config, tmp_path, {"FAKE_LLM_KEY": API_KEY})
    try:
        status, text = _post(base, {"message": "echo forever"}, USER)
        turn = json.loads(text)
        assert status == 200 and turn["stop"] == "token_budget" and turn["steps"] == 2, turn
        assert turn["usage"] == {"input_tokens": 63, "output_tokens": 13}, turn
    finally:
        _stop(proc)


def test_mcpgate_chat_in_a_terminal(fake: FakeLlm, mcpgate_bin: str, tmp_path: Path) -> None:
    config = tmp_path / "chat.yaml"
    config.write_text(_config("anthropic", fake.url, tmp_path / "audit.log"))
    env = {**os.environ, "FAKE_LLM_KEY": API_KEY}
    run = subprocess.run(
        [mcpgate_bin, "chat", "--config", str(config)],
        input="/tools\necho hello\n/usage\n/exit\n", capture_output=True, text=True, env=env, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "echo  Return the message unchanged." in out, out
    assert '→ echo {"message":"hello"}' in out and "← hello" in out and "The tool said: hello" in out, out
    assert "tokens this session:" in out and "[answered · 2 step(s) · 1 tool call(s)" in run.stderr, run.stderr
    # Without the key the LLM cannot be asked, and it says why.
    env.pop("FAKE_LLM_KEY")
    missing = subprocess.run([mcpgate_bin, "chat", "--config", str(config), "-m", "hi"], capture_output=True,
                             text=True, env=env, timeout=60)
    assert missing.returncode != 0 and "FAKE_LLM_KEY is not set" in missing.stderr, missing.stderr
