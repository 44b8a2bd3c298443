#!/usr/bin/env python3
"""Write the seed corpus of every fuzz target (fuzz/corpus/<target>/seed-*) and the dictionaries (fuzz/dicts/).

The seeds are the inputs the tests use, in each target's input format (fuzz/README.md): request bodies and
headers from the server's tests, the example configs and the embedded default, the event streams of the SSE
transport's tests, multi-round states, the templates of the examples. Run it again after changing a format:
    python3 fuzz/seeds.py
It only writes files named seed-*; what the fuzzer found (named by hash, ignored by git) is left alone.
"""

import base64
import hashlib
import hmac
import json
import re
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def j(value):
    return json.dumps(value, separators=(",", ":"))


def call(tool="echo", arguments=None, meta=None, extra=None, id=7):
    params = {"name": tool, "arguments": {"message": "hi"} if arguments is None else arguments}
    if meta is not None:
        params["_meta"] = meta
    params.update(extra or {})
    return j({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})


def write(target, seeds):
    directory = FUZZ / "corpus" / target
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        (directory / f"seed-{name}").write_bytes(data)


def edge():
    json_type = "application/json"
    bodies = {
        "call": call(meta=META),
        "list": j({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        "initialize": j({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "fuzz", "version": "1"}}}),
        "initialized": j({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        "cancelled": j({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 3, "reason": "x"}}),
        "result": j({"jsonrpc": "2.0", "id": 1, "result": {}}),
        "error": j({"jsonrpc": "2.0", "id": "a", "error": {"code": -1, "message": "no"}}),
        "truncated": '{"jsonrpc":"2.0",',
        "not-rpc": '{"hello":"world"}',
        "array": "[1,2,3]",
        "no-method": '{"jsonrpc":"2.0","id":7}',
        "number": "42",
        "old-version": '{"jsonrpc":"1.0","id":1,"method":"ping"}',
        "method-number": '{"jsonrpc":"2.0","id":1,"method":5}',
        "escaped": '{"jsonrpc":"2\\u002e0","id":1,"method":"tools\\/list","x":"\\"[[{"}',
        "duplicate": '{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}',
        "deep": '{"jsonrpc":"2.0","id":1,"method":"ping","params":' + "[" * 101 + "]" * 101 + "}",
        "null-result": '{"jsonrpc":"2.0","id":1,"result":null}',
    }
    seeds = {name: f"{json_type}\n{body}" for name, body in bodies.items()}
    seeds["charset"] = "application/json; charset=utf-8\n" + bodies["list"]
    seeds["upper"] = "Application/JSON\n" + bodies["list"]
    seeds["text"] = "text/plain\n" + bodies["list"]
    seeds["none"] = "\n" + bodies["list"]
    seeds["latin1"] = b"application/json\n" + b'{"jsonrpc":"2.0","id":1,"method":"p\xe9"}'
    write("edge", seeds)


def classify():
    modern = {
        "host": "localhost:8000",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "quiet",
    }
    legacy = {
        "host": "127.0.0.1:8000",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25",
        "mcp-session-id": "s1",
    }

    def request(flags, headers, body, **changes):
        headers = {**headers, **changes}
        block = "".join(f"{k}: {v}\n" for k, v in headers.items() if v is not None)
        return f"{flags}\n{block}\n{body}"

    plain = call("quiet", {"x": 1}, META)
    legacy_body = call("quiet", {"x": 1}, {})
    seeds = {
        "stateless": request("", modern, plain),
        "retry": request("", modern, call("quiet", {"x": 1}, META,
                                          {"requestState": "s", "inputResponses": {"k": 1}})),
        "origin": request("", modern, plain, origin="http://localhost"),
        "foreign-host": request("", modern, plain, host="evil.example"),
        "any-host": request("anyhost", modern, plain, host="evil.example"),
        "bare-host": request("", modern, plain, host="LOCALHOST:1234"),
        "no-sse": request("", modern, plain, accept="application/json"),
        "q0": request("", modern, plain, accept="application/json, text/event-stream;q=0"),
        "param-header": request("", modern, plain, **{"mcp-param-x": "1"}),
        "declares-params": request("params", modern, plain),
        "unknown-tool": request("", modern, call("nope", {}, META), **{"mcp-name": "nope"}),
        "progress": request("talks", modern, call("quiet", {}, {**META, "progressToken": "p"})),
        "log-level": request("", modern, call("quiet", {}, {**META, "io.modelcontextprotocol/logLevel": "debug"})),
        "string-id": request("", modern, call("quiet", None, META, id="abc")),
        "legacy": request("legacy unasked", legacy, legacy_body),
        "legacy-talks": request("legacy unasked talks", legacy, legacy_body),
        "legacy-askable": request("legacy askable talks", legacy, legacy_body),
        "legacy-uninit": request("legacy uninit", legacy, legacy_body),
        "legacy-version": request("legacy unasked", legacy, legacy_body, **{"mcp-protocol-version": "2025-06-18"}),
        "legacy-state": request("legacy unasked", legacy, call("quiet", {}, {}, {"requestState": "s"})),
    }
    write("classify", seeds)


def config():
    seeds = {}
    default = (ROOT / "crates/mcpgate-config/src/default.yaml").read_text()
    seeds["default"] = "yaml\n" + default
    for path in sorted((ROOT / "examples").iterdir()):
        if path.suffix in (".yaml", ".yml") and path.stat().st_size < 8000:
            seeds[path.stem] = "yaml\n" + path.read_text()
        elif path.suffix == ".toml":
            seeds[path.stem + "-toml"] = "toml\n" + path.read_text()
    seeds["json"] = "json\n" + j({"server": {"listen": "127.0.0.1:8000"},
                                  "backends": {"demo": {"kind": "builtin", "builtin": "demo"}}})
    seeds["empty"] = "yaml\n"
    env = [
        "PORT=3001", "MCP_PORT=3002", "BIND_IP=::1", "LOG_LEVEL=DEBUG", "LOG_FORMAT=json",
        "MAX_REQUEST_SIZE=10mb", "REQUEST_TIMEOUT=30000", "CIRCUIT_BREAKER_FAILURE_THRESHOLD=3",
        "CIRCUIT_BREAKER_RESET_TIMEOUT=60s", "MCP_API_KEYS=prod-key-1, prod-key-2,,", "MCP_API_KEY=single",
        "API_KEY_SALT=pepper", "MCPGATE_SEAL_KEY=" + "k" * 32, "METRICS_ENABLED=false", "PROMETHEUS_PORT=9090",
        "RATE_LIMIT_MAX_REQUESTS=100", "RATE_LIMIT_WINDOW_MS=15m", "OTEL_EXPORTER_OTLP_ENDPOINT=http://x:4318",
        "CACHE_TTL_SECONDS=60", "MAX_TOKENS_PER_REQUEST=1000", "CONTEXT_SIZE_LIMIT_KB=64",
        "JWT_SECRET=" + "s" * 32, "JWT_ISSUER=me", "JWT_AUDIENCE=a,b", "COMPRESSION_ENABLED=true",
    ]
    seeds["env"] = "yaml\n" + default + "---env---\n" + "\n".join(env) + "\n"
    seeds["env-bad"] = "yaml\n" + default + "---env---\nPORT=eighty\nLOG_FORMAT=xml\nCIRCUIT_BREAKER_RESET_TIMEOUT=60\n"
    write("config", seeds)
    return seeds


def sse():
    def framed(body, cuts=(), bound=0xFFFF):
        prefix = bytes([len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts) + struct.pack("<H", bound)
        return prefix + body

    message = j({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    stream = (": keep-alive\n\n"
              "event: endpoint\ndata: /message?sessionId=s1\n\n"
              "event: message\ndata: {not json\n\n"
              f"event: message\ndata: {message}\n\n"
              'data: {"jsonrpc":"2.0","id":7,"result":{}}\n\n').encode()
    seeds = {
        "transport": framed(stream),
        "transport-cut": framed(stream, (5, 17, 40, 41)),
        "crlf": framed(stream.replace(b"\n", b"\r\n"), (3, 14, 15)),
        "cr": framed(stream.replace(b"\n", b"\r"), (1,)),
        "bom": framed(b"\xef\xbb\xbf" + stream, (1, 2)),
        "bounded": framed(stream, (), 20),
        "fields": framed(b"id: 1\nretry: 3000\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,"
                         b"\n" b"data: \"result\":{}}\n\n"),
        "bad-line": framed(b"data: 1\n\nnonsense\n\ndata: 2\n\n"),
        "foreign-endpoint": framed(b"event: endpoint\ndata: http://elsewhere.example/message\n\n"),
        "request": framed(("data: " + j({"jsonrpc": "2.0", "id": 3, "method": "sampling/createMessage",
                                          "params": {"messages": [], "maxTokens": 5}}) + "\n\n").encode()),
        "error": framed(("data: " + j({"jsonrpc": "2.0", "id": 4, "error": {"code": -32601,
                                                                           "message": "no"}}) + "\n\n").encode()),
    }
    write("sse", seeds)


def seal_rs1(key, associated, payload, expiry_ms=0):
    body = struct.pack(">q", expiry_ms) + payload
    mac = hmac.new(key, b"rmcp/mrtr/request-state/v1" + struct.pack(">Q", len(associated)) + associated + body,
                   hashlib.sha256).digest()
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    return f"rs1.{b64(body)}.{b64(mac)}"


def request_state():
    # Tokens in the right format, sealed with a key the target does not hold: a forgery must fail at the MAC.
    key = b"a-seed-key-the-target-never-holds!!"
    answers = {"k1": {"action": "accept", "content": {"name": "x"}}}
    arguments = {"message": "hi"}
    binding = ("tools/call\necho\n" + j(arguments)).encode()
    sealed = seal_rs1(key, binding, j(answers).encode(), 1 << 60)
    seeds = {
        "same-op": f"tool echo\n{j(arguments)}\ntool echo\n{j(arguments)}\n{j(answers)}\n{sealed}",
        "other-args": f"tool echo\n{j(arguments)}\ntool echo\n{j({'message': 'ho'})}\n{j(answers)}\n{sealed}",
        "prompt": f"prompt greet\n{j({'name': 'a'})}\ntool greet\n{j({'name': 'a'})}\n{j(answers)}\nrs1.AAAA.BBBB",
        "resource": "resource file:///a\n\nresource file:///a\n\n{}\nrs2.a2lk.AAAAAAAAAAA.BBBB",
        "newline-name": f"tool a\n{{}}\ntool a\n{{}}\n{{}}\n{seal_rs1(key, b'', b'{}')}",
        "garbage": "tool t\n[]\nresource r\nnull\nnot json\n...",
    }
    write("request_state", seeds)


def template():
    sources = [
        "hello {{ who }}", "{{ x }}", "{{- x -}}", "{{ 7 * 7 }}", "{% for i in range(3) %}{{ i }}{% endfor %}",
        "{{ response.full_name }}: {{ response.description or \"(no description)\" }}",
        "{% for r in response %}{{ r.full_name }} ★{{ r.stargazers_count }}\n{% endfor %}",
        "users/{{ username }}/repos", "{{ x | tojson }}", "{{ x | urlencode }}", "{% if flag %}-v{% endif %}",
        "${HOME}/x $${NOT}", "{{ true }}", "{{ x.y[0] }}", "{% raw %}{{ x }}{% endraw %}",
        "{% set a = x ~ x %}{{ a }}", "{{ range(100000) | join }}",
    ]
    seeds = {f"source-{i}": s + "\0" + j({"x": "v", "who": "w", "flag": True}) for i, s in enumerate(sources)}
    seeds["hostile-value"] = "[{{ x }}]\0" + j({"x": "{{ 7 * 7 }}{% for i in range(9) %}{% endfor %}"})
    seeds["raw-value"] = "{{ x }}\0not json at all {{ x }}"
    seeds["objects"] = "{{ x }}\0" + j({"x": {"a": [1, 2, {"b": None}]}, "response": [{"full_name": "a/b"}]})
    write("template", seeds)


def tool_args():
    seeds = {
        "plain": j({"name": "n", "files": ["a", "b"], "opt": "o", "a": "1", "b": "2", "flag": True, "body": "in",
                    "id": "42", "q": "rust", "page": 2, "trace": "t", "note": "n"}),
        "traversal": j({"name": "n", "a": "", "b": "", "id": "../../admin?x=1#f", "q": "a&b=c", "page": ".",
                        "trace": "x", "note": ""}),
        "dot": j({"name": "n", "a": 1, "b": 2, "id": ".", "page": "", "trace": "t"}),
        "crlf": j({"name": "n", "a": 1, "b": 2, "id": "1", "page": 1, "trace": "x\r\nSet-Cookie: y"}),
        "shell": j({"name": "; rm -rf /", "files": ["-rf", "/", 3, True], "opt": "$(id)", "a": "`x`", "b": "|",
                    "body": "{{ 7*7 }}", "id": "%2e%2e", "page": 1, "trace": "t"}),
        "nul": j({"name": "a\u0000b", "a": 1, "b": 2, "id": "a\u0000", "page": 1, "trace": "t"}),
        "objects": j({"name": {"nested": [1]}, "files": [{"x": 1}], "opt": [], "a": None, "b": [1],
                      "id": {"a": 1}, "page": [1], "trace": 5}),
        "raw": "just a string with / ? # & = and spaces",
        "empty": "{}",
    }
    write("tool_args", seeds)


def dictionaries(config_seeds):
    directory = FUZZ / "dicts"
    directory.mkdir(exist_ok=True)

    def escape(word):
        data = word if isinstance(word, bytes) else word.encode()
        return "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in data)

    def save(name, words):
        lines = sorted({f'"{escape(w)}"' for w in words})
        (directory / f"{name}.dict").write_text("\n".join(lines) + "\n")

    json_words = ['"jsonrpc"', '"2.0"', '"id"', '"method"', '"params"', '"result"', '"error"', '"code"',
                  '"message"', '"tools/call"', '"tools/list"', '"initialize"', '"notifications/cancelled"',
                  '"requestId"', "null", "true", "false", "{", "}", "[", "]", ":", ",", "\\u0000", "\\\""]
    save("edge", json_words + ["application/json", "; charset=utf-8", "text/plain"])
    headers = ["host: ", "accept: ", "origin: ", "mcp-session-id: ", "mcp-protocol-version: ", "mcp-method: ",
               "mcp-name: ", "mcp-param-x: ", "application/json", "text/event-stream", "q=0", "2026-07-28",
               "2025-11-25", "localhost", "127.0.0.1:8000", "legacy", "uninit", "askable", "unasked", "talks",
               "params", "anyhost", "nope"]
    meta = ['"_meta"', '"arguments"', '"name"', '"inputResponses"', '"requestState"', '"progressToken"',
            '"io.modelcontextprotocol/protocolVersion"', '"io.modelcontextprotocol/clientCapabilities"',
            '"io.modelcontextprotocol/logLevel"']
    save("classify", json_words + headers + meta)
    env_source = (ROOT / "crates/mcpgate-config/src/env.rs").read_text()
    env_names = set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", env_source))
    keys = set()
    for text in config_seeds.values():
        keys.update(re.findall(r"^\s*-?\s*([a-z_]+):", text, re.MULTILINE))
    save("config", [f"{n}=" for n in env_names] + [f"{k}: " for k in keys] + ["---env---", "yaml", "toml", "json"])
    save("sse", ["data: ", "event: ", "id: ", "retry: ", "endpoint", "message", "\r\n", b"\xef\xbb\xbf"]
         + json_words)
    save("template", ["{{", "}}", "{%", "%}", "{#", "#}", "for ", "in ", "endfor", "if ", "endif", "set ", "raw",
                      "endraw", "range(", "|", "x", "loop", "self", "none", "true", "${", "$${", "\x00"])


if __name__ == "__main__":
    edge()
    classify()
    config_seeds = config()
    sse()
    request_state()
    template()
    tool_args()
    dictionaries(config_seeds)
