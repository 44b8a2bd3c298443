"""The REST facade (`rest.enabled`) as a non-MCP client uses it: plain HTTP calls with keys, the OpenAPI document
per caller, the audit line naming the surface; then schemathesis (PyPI), generating requests from that document,
must get a documented answer for every one — never a 500 and never an answer the document does not list.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_python_sdk import _serve, _stop, mcpgate_bin  # noqa: F401

ADMIN, LIMITED = "rest-admin-key-0123456789", "rest-limited-key-0123456789"


def _sha(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


CONFIG = f"""\
server:
  request_timeout: 1s
  max_request_size: 16kb
rest:
  enabled: true
security:
  api_keys:
    - {{ name: admin, hash: "{_sha(ADMIN)}" }}
    - {{ name: limited, hash: "{_sha(LIMITED)}", tools: [echo], resources: [], prompts: [] }}
audit:
  file: AUDIT
backends:
  demo: {{ kind: builtin, builtin: demo }}
  conf: {{ kind: builtin, builtin: conformance }}
"""


def _request(base: str, method: str, path: str, body: bytes | None = None, key: str | None = ADMIN,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _json(base: str, method: str, path: str, value: object = None, **kw) -> tuple[int, object]:
    body = None if value is None else json.dumps(value).encode()
    status, _, raw = _request(base, method, path, body, **kw)
    return status, json.loads(raw) if raw else None


@pytest.fixture
def facade(mcpgate_bin: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    audit = tmp_path / "audit.log"
    config = tmp_path / "rest.yaml"
    config.write_text(CONFIG.replace("AUDIT", str(audit)))
    proc, base, _log = _serve(mcpgate_bin, config, tmp_path, {})
    try:
        yield base, audit
    finally:
        _stop(proc)


def test_rest_calls_pass_the_door_and_the_pipeline_as_the_caller(facade: tuple[str, Path]) -> None:
    base, audit = facade
    # The door: no key, a wrong Host; the docs page needs neither.
    assert _json(base, "POST", "/api/tools/echo", {"message": "x"}, key=None)[0] == 401
    assert _request(base, "GET", "/openapi.json", key=None)[0] == 401
    assert _request(base, "GET", "/api/tools", headers={"Host": "rebound.example"})[0] == 403
    status, headers, page = _request(base, "GET", "/docs", key=None)
    assert status == 200 and headers["content-type"].startswith("text/html") and b"openapi.json" in page

    # Results: text as it is, structured content as the body, images as their objects.
    assert _json(base, "POST", "/api/tools/echo", {"message": "hi"}) == (200, "hi")
    assert _json(base, "POST", "/api/tools/add", {"a": 2, "b": 3}) == (200, {"sum": 5})
    status, image = _json(base, "POST", "/api/tools/test_image_content")
    assert status == 200 and image["type"] == "image" and image["mimeType"] == "image/png", image
    # Failures, each with its status and an error object.
    status, refused = _json(base, "POST", "/api/tools/add", {"a": "two"})
    assert status == 422 and "invalid arguments" in refused["error"]["message"], refused
    status, missing = _json(base, "POST", "/api/tools/no_such_tool", {})
    assert status == 404 and missing["error"]["message"] == "Unknown tool: no_such_tool"
    assert _json(base, "POST", "/api/tools/echo", [1])[0] == 400
    assert _request(base, "POST", "/api/tools/echo", b'{"message": "' + b"x" * 20000 + b'"}')[0] == 413
    assert _json(base, "POST", "/api/tools/sleep", {"ms": 5000})[0] == 504
    assert _json(base, "POST", "/api/tools/test_missing_capability")[0] == 501

    # Resources and prompts.
    status, listed = _json(base, "GET", "/api/resources")
    uris = [r["uri"] for r in listed["resources"]]
    assert status == 200 and "test://static-text" in uris, uris
    status, read = _json(base, "GET", "/api/resources/read?uri=test%3A%2F%2Fstatic-text")
    assert status == 200 and read["contents"][0]["uri"] == "test://static-text", read
    assert _json(base, "GET", "/api/resources/read?uri=test%3A%2F%2Fnone")[0] == 404
    status, prompt = _json(base, "POST", "/api/prompts/test_prompt_with_arguments", {"arg1": "a", "arg2": "b"})
    assert status == 200 and prompt["messages"][0]["role"] == "user", prompt
    assert _json(base, "POST", "/api/prompts/test_prompt_with_arguments", {"arg1": 1})[0] == 400

    # Per caller: the limited key's document and calls hold only its tool.
    status, document = _json(base, "GET", "/openapi.json", key=LIMITED)
    tools = sorted(p for p in document["paths"] if p.startswith("/api/tools/"))
    assert status == 200 and tools == ["/api/tools/echo"], tools
    assert _json(base, "POST", "/api/tools/echo", {"message": "ok"}, key=LIMITED) == (200, "ok")
    assert _json(base, "POST", "/api/tools/add", {"a": 1, "b": 1}, key=LIMITED)[0] in (403, 404)
    status, everything = _json(base, "GET", "/openapi.json")
    assert "/api/tools/add" in everything["paths"] and everything["openapi"] == "3.1.0"

    # The audit log says who called, through which surface.
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    rest = [(line["principal"], line["target"], line["outcome"]) for line in lines if line["surface"] == "rest"]
    assert ("admin", "add", "ok") in rest and ("limited", "echo", "ok") in rest, rest
    assert ("admin", "add", "tool_error") in rest, rest


def test_schemathesis_gets_a_documented_answer_to_every_generated_request(
    facade: tuple[str, Path], tmp_path: Path
) -> None:
    base, _ = facade
    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists():
        pytest.fail("schemathesis is not installed in the venv (tests/interop/requirements.txt)", pytrace=False)
    hooks_dir = Path(__file__).resolve().parent
    checked = tmp_path / "checked"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "PYTHONPATH": str(hooks_dir),
           "MCPGATE_CHECKED_FILE": str(checked)}
    # Every check but two: a server error here is a documented 5xx (501 for a tool that needs the client, 504
    # past the 1 s timeout), judged by `not_a_500` instead; and a tool may refuse input its schema allows (422).
    run = subprocess.run(
        [str(cli), "run", f"{base}/openapi.json", "--checks", "all",
         "--exclude-checks", "not_a_server_error,positive_data_acceptance",
         "--header", f"Authorization: Bearer {ADMIN}", "--max-examples", "10", "--seed", "1",
         "--request-timeout", "10", "--no-color"],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,  # its replay files stay out of the tree
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # The hook was loaded and judged the answers: every operation, several cases each.
    statuses = checked.read_text().split() if checked.exists() else []
    assert len(statuses) >= 38, f"not_a_500 judged {len(statuses)} answers:\n{run.stdout[-2000:]}"
