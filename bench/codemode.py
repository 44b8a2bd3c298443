#!/usr/bin/env python3
"""Code mode benchmark: context tokens (o200k_base) and `execute` latency.

Three parts, each against mcpgate processes this script starts on free loopback ports (and stops, with the stdio
upstreams they spawned, by PID):

  surface   A generated catalogue of 1,000 config-declared tools (50 fake services x 20 operations, `command`
            tools running /bin/echo, never called). Tokens of `tools/list` as the client receives it (every
            page's `result` JSON) in direct mode vs code mode (the three code-mode tools), and of a typical
            `search_tools` answer (limit 10) and a `describe_tools` answer for 3 tools.
  workflow  A 5-step task over the real upstreams (server-filesystem, mcp-server-time, server-everything, from
            scripts/upstreams.sh): list a directory of generated monthly sales CSVs (~3.3 KB each), read the two
            latest, get the UTC time, add the two EMEA totals with everything's get-sum. Direct: the tokens the
            model reads and writes (tools/list of the three upstreams once, every call's name+arguments JSON and
            every result). Code mode: tools/list (3 tools), the `execute` call and its result; and with one
            search_tools + one describe_tools round a model would do first.
  latency   mcpgate with the embedded default config's demo backend in code mode (hybrid, `echo` also offered
            directly, so both kinds of call reach one process); over one raw keep-alive HTTP connection
            (stateless 2026-07-28 requests), interleaved: execute(`return 1`), execute(3 sequential awaits of
            tools.demo.echo), execute(3 echo calls in Promise.all), and 3 direct tools/call echo made sequentially.
            p50/p99 of each, and execute(3 calls) - 3 direct echo calls. With SANDBOX_BACKEND=process as well
            when that build offers it (skipped, with the reason, otherwise).

Tokens are counted by `mcpgate-bench-tokens` (bench/ceiling, the `bpe-openai` crate, o200k_base compiled in) over
the exact JSON text: no chat template, no per-message overhead on either side.

Writes everything (configs, raw answers, samples, summary.json, summary.md) to bench/results/codemode-<UTC stamp>/
(git-ignored) and prints the summary as markdown tables. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from codemode_lib import catalogue
from codemode_lib.harness import Gateway, JsonObject, McpClient, Tokens, compact, text_of

SURFACE_TARGET = 1_500  # code-mode tools/list, tokens
WORKFLOW_TARGET = 0.02  # code-mode workflow / direct workflow
OVERHEAD_TARGET_MS = 1.0  # execute(3 calls) - 3 direct calls, p50


# ------------------------------------------------------------------ helpers ---

def log(msg: str) -> None:
    print(f"[codemode] {msg}", file=sys.stderr, flush=True)


def pct(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100.0 * len(s)) - 1))]


def list_all_tools(client: McpClient) -> tuple[list[JsonObject], list[str]]:
    """Every tool over all pages of tools/list, and each page's raw `result` text."""
    tools: list[JsonObject] = []
    pages: list[str] = []
    cursor: str | None = None
    while True:
        message, raw = client.request("tools/list", {"cursor": cursor} if cursor else {})
        pages.append(raw)
        tools += message["result"]["tools"]
        cursor = message["result"].get("nextCursor")
        if not cursor:
            return tools, pages


def wait_until(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - retried until the deadline, then reported
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}" + (f": {last}" if last else ""))


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def save_answers(out: Path, part: str, pages: list[str], cpages: list[str], search: str, describe: str) -> None:
    """Keep what the model would read, as received: both tools/list (every page) and the discovery answers."""
    (out / f"{part}-direct-tools-list.json").write_text("[" + ",".join(pages) + "]\n")
    (out / f"{part}-code-tools-list.json").write_text("[" + ",".join(cpages) + "]\n")
    (out / f"{part}-search.json").write_text(search + "\n")
    (out / f"{part}-describe.json").write_text(describe + "\n")


# ------------------------------------------------------------ 1. surface ---

SEARCH_QUERY = "create an invoice for a customer"


def part_surface(args: argparse.Namespace, tokens: Tokens, out: Path) -> JsonObject:
    config = out / "catalogue.json"
    write_json(config, catalogue.config(args.seed))
    result: JsonObject = {}
    direct = Gateway(args.mcpgate, "surface-direct", out, config)
    code = Gateway(args.mcpgate, "surface-code", out, config, {"EXECUTION_MODE": "code"})
    try:
        direct.start()
        code.start()
        dc, cc = McpClient(direct.port), McpClient(code.port)
        tools, pages = list_all_tools(dc)
        if len(tools) != 1000:
            raise RuntimeError(f"direct tools/list has {len(tools)} tools, expected 1000")
        ctools, cpages = list_all_tools(cc)
        names = sorted(t["name"] for t in ctools)
        if names != ["describe_tools", "execute", "search_tools"]:
            raise RuntimeError(f"code-mode tools/list: {names}")
        search_args = {"query": SEARCH_QUERY, "limit": 10}
        search, search_raw = cc.call("search_tools", search_args)
        hits = json.loads(text_of(search))["tools"]
        picked = [h["tool"] for h in hits[:3]]
        describe_args = {"names": picked}
        describe, describe_raw = cc.call("describe_tools", describe_args)
        dc.close()
        cc.close()
    finally:
        direct.stop()
        code.stop()
    save_answers(out, "surface", pages, cpages, search_raw, describe_raw)
    direct_tok = sum(tokens.count_many(pages))
    code_tok = sum(tokens.count_many(cpages))
    tools_only = tokens.count(compact(tools))
    result.update({
        "tools": len(tools),
        "direct_pages": len(pages),
        "direct_bytes": sum(len(p.encode()) for p in pages),
        "direct_tokens": direct_tok,
        "direct_tools_array_tokens": tools_only,
        "direct_tokens_per_tool": direct_tok / len(tools),
        "code_bytes": sum(len(p.encode()) for p in cpages),
        "code_tokens": code_tok,
        "cut": 1.0 - code_tok / direct_tok,
        "search_query": SEARCH_QUERY,
        "search_hits": [h["tool"] for h in hits],
        "search_call_tokens": tokens.count(compact({"name": "search_tools", "arguments": search_args})),
        "search_result_tokens": tokens.count(search_raw),
        "search_text_tokens": tokens.count(text_of(search)),
        "describe_names": picked,
        "describe_call_tokens": tokens.count(compact({"name": "describe_tools", "arguments": describe_args})),
        "describe_result_tokens": tokens.count(describe_raw),
        "describe_text_tokens": tokens.count(text_of(describe)),
        "target_code_tokens_max": SURFACE_TARGET,
        "met": code_tok <= SURFACE_TARGET,
    })
    return result


# ----------------------------------------------------------- 2. workflow ---

REGIONS = ["EMEA", "AMER", "APAC"]
PRODUCTS = ["widget-s", "widget-m", "widget-l", "gizmo", "gizmo-pro", "sprocket", "flange", "gear-kit",
            "valve", "bracket", "hinge", "coupler"]
MONTHS = [(2024 + (6 + i) // 12, (6 + i) % 12 + 1) for i in range(24)]  # 2024-07 .. 2026-06


def make_reports(root: Path, seed: int, rows: int) -> Path:
    """24 monthly sales CSVs of `rows` rows each (80 rows: ~3.5 KB), a README and an archive folder, in
    root/reports-<rows>; deterministic."""
    rng = random.Random(seed)
    reports = root / f"reports-{rows}"
    (reports / "archive").mkdir(parents=True)
    for year, month in MONTHS:
        lines = ["date,region,product,units,unit_price,amount"]
        for _ in range(rows):
            units = rng.randint(1, 40)
            price = rng.randint(500, 25000) / 100
            lines.append(f"{year}-{month:02d}-{rng.randint(1, 28):02d},{rng.choice(REGIONS)},"
                         f"{rng.choice(PRODUCTS)},{units},{price:.2f},{units * price:.2f}")
        (reports / f"sales-{year}-{month:02d}.csv").write_text("\n".join(lines) + "\n")
    (reports / "README.md").write_text("Monthly sales exports, one CSV per month (UTC dates). Amounts in EUR.\n")
    (reports / "archive" / "sales-2023.csv").write_text("date,region,product,units,unit_price,amount\n")
    return reports


def emea_total(csv: str) -> float:
    total = 0.0
    for row in csv.strip().splitlines()[1:]:
        cells = row.split(",")
        if cells[1] == "EMEA":
            total += float(cells[5])
    return round(total, 2)


def program(reports: Path) -> str:
    """The `execute` program a model would write for the workflow (after describe_tools showed the shapes)."""
    return f"""const dir = {json.dumps(str(reports))};
const listing = await tools.fs.list_directory({{ path: dir }});
const files = listing.content.split("\\n").filter(l => /^\\[FILE\\] sales-.*\\.csv$/.test(l)).map(l => l.slice(7)).sort();
const latest = files.slice(-2);
const totals = [];
for (const f of latest) {{
  const csv = (await tools.fs.read_text_file({{ path: dir + "/" + f }})).content;
  let sum = 0;
  for (const row of csv.trim().split("\\n").slice(1)) {{
    const c = row.split(",");
    if (c[1] === "EMEA") sum += Number(c[5]);
  }}
  totals.push(Math.round(sum * 100) / 100);
}}
const now = await tools.time.get_current_time({{ timezone: "UTC" }});
const added = await tools.everything.get_sum({{ a: totals[0], b: totals[1] }});
const text = typeof added === "string" ? added : JSON.stringify(added);
return {{ files: latest, emea: totals, sum: Number(text.match(/is (-?[0-9]+(?:\\.[0-9]+)?)/)[1]), at: now.datetime }};"""


def upstream_env() -> dict[str, str]:
    names = ["MCPGATE_TEST_NODE", "MCPGATE_TEST_EVERYTHING", "MCPGATE_TEST_FILESYSTEM", "MCPGATE_TEST_TIME"]
    if all(os.environ.get(n) for n in names):
        return {n: os.environ[n] for n in names}
    log("installing / locating the real upstreams (scripts/upstreams.sh)")
    text = subprocess.run([str(ROOT / "scripts" / "upstreams.sh")], capture_output=True, check=True,
                          text=True).stdout
    found = dict(re.findall(r"^export (\w+)=['\"]?(.*?)['\"]?$", text, flags=re.MULTILINE))
    missing = [n for n in names if not found.get(n)]
    if missing:
        raise RuntimeError(f"scripts/upstreams.sh did not name {missing}")
    return {n: found[n] for n in names}


def upstream_config(up: dict[str, str], allowed: Path) -> JsonObject:
    node = up["MCPGATE_TEST_NODE"]
    return {"server": {"listen": "127.0.0.1:8000", "name": "mcpgate-bench-workflow"}, "upstreams": {
        "fs": {"command": node, "args": [up["MCPGATE_TEST_FILESYSTEM"], str(allowed)], "timeout": "20s"},
        "time": {"command": up["MCPGATE_TEST_TIME"], "timeout": "20s"},
        "everything": {"command": node, "args": [up["MCPGATE_TEST_EVERYTHING"], "stdio"], "timeout": "20s"},
    }}


UPSTREAM_PREFIXES = ("fs__", "time__", "everything__")
WORKFLOW_TOOLS = ["fs__list_directory", "fs__read_text_file", "time__get_current_time", "everything__get-sum"]


def part_workflow(args: argparse.Namespace, tokens: Tokens, out: Path) -> JsonObject:
    up = upstream_env()
    work = Path(tempfile.mkdtemp(prefix="mcpgate-codemode-")).resolve()
    sizes = [make_reports(work, args.seed, rows) for rows in args.rows]
    config = out / "workflow.json"
    write_json(config, upstream_config(up, work))
    direct = Gateway(args.mcpgate, "workflow-direct", out, config)
    code = Gateway(args.mcpgate, "workflow-code", out, config, {"EXECUTION_MODE": "code"})
    runs: list[JsonObject] = []
    try:
        direct.start()
        code.start()
        dc, cc = McpClient(direct.port), McpClient(code.port)

        def all_listed() -> bool:
            names = [t["name"] for t in list_all_tools(dc)[0]]
            return all(any(n.startswith(p) for n in names) for p in UPSTREAM_PREFIXES)

        def all_described() -> bool:
            _, raw = cc.call("describe_tools", {"names": WORKFLOW_TOOLS})
            return "Not found" not in raw

        wait_until("the three upstreams' tools (direct)", all_listed)
        wait_until("the three upstreams' tools (code mode)", all_described)
        direct.adopt_children()
        code.adopt_children()
        tools, pages = list_all_tools(dc)
        _, cpages = list_all_tools(cc)
        # What a model would do once before writing the program (not counted in the code total).
        search_args = {"query": "list directory read text file current time sum numbers", "limit": 10}
        _, search_raw = cc.call("search_tools", search_args)
        describe_args = {"names": WORKFLOW_TOOLS}
        _, describe_raw = cc.call("describe_tools", describe_args)

        for rows, reports in zip(args.rows, sizes):
            # Direct: the calls a model makes, one by one; it reads each result and computes the totals itself.
            steps: list[JsonObject] = []

            def step(tool: str, arguments: JsonObject, steps: list[JsonObject] = steps) -> JsonObject:
                result, raw = dc.call(tool, arguments)
                steps.append({"tool": tool, "call": compact({"name": tool, "arguments": arguments}),
                              "result": raw, "text": text_of(result)})
                return result

            listing = text_of(step("fs__list_directory", {"path": str(reports)}))
            files = sorted(line[7:] for line in listing.splitlines()
                           if re.match(r"^\[FILE\] sales-.*\.csv$", line))
            latest = files[-2:]
            totals = [emea_total(text_of(step("fs__read_text_file", {"path": f"{reports}/{f}"}))) for f in latest]
            step("time__get_current_time", {"timezone": "UTC"})
            summed = text_of(step("everything__get-sum", {"a": totals[0], "b": totals[1]}))
            direct_sum = float(re.search(r"is (-?[0-9]+(?:\.[0-9]+)?)", summed).group(1))  # type: ignore[union-attr]
            # Code mode: the same task as one program.
            code_text = program(reports)
            exec_result, exec_raw = cc.call("execute", {"code": code_text})
            answer = json.loads(text_of(exec_result))["result"]
            if answer["files"] != latest or answer["emea"] != totals or abs(answer["sum"] - direct_sum) > 0.005:
                raise RuntimeError(f"code mode answered {answer}, direct: {latest} {totals} {direct_sum}")
            write_json(out / f"workflow-{rows}-direct-steps.json", steps)
            (out / f"workflow-{rows}-program.js").write_text(code_text + "\n")
            (out / f"workflow-{rows}-execute-result.json").write_text(exec_raw + "\n")
            runs.append({"rows": rows, "steps": steps, "code": code_text, "exec_raw": exec_raw, "answer": answer,
                         "file_bytes": (reports / latest[-1]).stat().st_size})
        dc.close()
        cc.close()
    finally:
        direct.stop()
        code.stop()
        shutil_rmtree(work)
    save_answers(out, "workflow", pages, cpages, search_raw, describe_raw)

    list_tok = sum(tokens.count_many(pages))
    clist_tok = sum(tokens.count_many(cpages))
    search_tok = tokens.count(compact({"name": "search_tools", "arguments": search_args})) + tokens.count(search_raw)
    describe_tok = (tokens.count(compact({"name": "describe_tools", "arguments": describe_args}))
                    + tokens.count(describe_raw))
    sized: list[JsonObject] = []
    for run in runs:
        steps = run["steps"]
        call_tok = tokens.count_many([s["call"] for s in steps])
        result_tok = tokens.count_many([s["result"] for s in steps])
        text_tok = tokens.count_many([s["text"] for s in steps])
        direct_full = list_tok + sum(call_tok) + sum(result_tok)
        direct_text = list_tok + sum(call_tok) + sum(text_tok)
        exec_call_tok = tokens.count(compact({"name": "execute", "arguments": {"code": run["code"]}}))
        exec_result_tok = tokens.count(run["exec_raw"])
        calls_log = json.loads(text_of(json.loads(run["exec_raw"])))["calls"]
        code_min = clist_tok + exec_call_tok + exec_result_tok
        code_disc = code_min + search_tok + describe_tok
        sized.append({
            "rows": run["rows"],
            "file_bytes": run["file_bytes"],
            "answer": run["answer"],
            "steps": [{"tool": s["tool"], "call_tokens": c, "result_tokens": r, "text_tokens": t,
                       "result_bytes": len(s["result"].encode())}
                      for s, c, r, t in zip(steps, call_tok, result_tok, text_tok)],
            "direct_tokens": direct_full,
            "direct_text_only_tokens": direct_text,
            "execute_call_tokens": exec_call_tok,
            "execute_result_tokens": exec_result_tok,
            "execute_calls_log_tokens": tokens.count(compact(calls_log)),
            "code_tokens": code_min,
            "code_with_discovery_tokens": code_disc,
            "ratio": code_min / direct_full,
            "ratio_with_discovery": code_disc / direct_full,
            "ratio_vs_text_only": code_min / direct_text,
            "ratio_with_discovery_vs_text_only": code_disc / direct_text,
        })
    return {
        "upstream_tools": len(tools),
        "direct_tools_list_tokens": list_tok,
        "code_tools_list_tokens": clist_tok,
        "search_round_tokens": search_tok,
        "describe_round_tokens": describe_tok,
        "sizes": sized,
        "target_ratio_max": WORKFLOW_TARGET,
        "met": sized[0]["ratio"] <= WORKFLOW_TARGET,
    }


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------ 3. latency ---

TRIVIAL = "return 1;"
THREE_SEQ = ('const a = await tools.demo.echo({ message: "hello" });\n'
             'const b = await tools.demo.echo({ message: "hello" });\n'
             'const c = await tools.demo.echo({ message: "hello" });\nreturn [a, b, c];')
# The embedded default config (crates/mcpgate-config/src/default.yaml) plus code mode, `echo` also direct.
LATENCY_CONFIG: JsonObject = {
    "server": {"listen": "127.0.0.1:8000"},
    "backends": {"demo": {"kind": "builtin", "builtin": "demo"}},
    "code_mode": {"mode": "hybrid", "direct_tools": ["echo"]},
}
THREE_PAR = ('return await Promise.all([1, 2, 3].map(() => tools.demo.echo({ message: "hello" })));')


def thread_start_ms() -> float:
    """How long a fresh OS thread of this process waits before it runs, now: the machine's state. (The quickjs
    sandbox once started a thread per program and met this wait on every execute; it now reuses its threads.)"""
    ran: list[int] = []
    thread = threading.Thread(target=lambda: ran.append(time.perf_counter_ns()))
    t0 = time.perf_counter_ns()
    thread.start()
    thread.join()
    return (ran[0] - t0) / 1e6


def measure_backend(args: argparse.Namespace, out: Path, backend: str | None, pool: int | None = None,
                    iterations: int | None = None) -> JsonObject:
    """Interleaved samples on one gateway: the embedded default config's demo backend, in hybrid mode with
    `echo` offered directly too (in pure code mode a direct `tools/call echo` is "Unknown tool"), so execute and
    the direct calls share one process and one connection."""
    name = f"{backend or 'default'}" + (f"-pool{pool}" if pool is not None else "")
    config = out / f"latency-{name}.json"
    settings = json.loads(json.dumps(LATENCY_CONFIG))
    if pool is not None:
        settings["code_mode"]["sandbox"] = {"pool_size": pool}
    write_json(config, settings)
    env = {"SANDBOX_BACKEND": backend} if backend else {}
    label = (backend or "quickjs (default)") + (f", pool_size {pool}" if pool is not None else "")
    gw = Gateway(args.mcpgate, f"latency-{name}", out, config, env)
    try:
        gw.start(timeout=30)
    except RuntimeError as e:
        return {"backend": label, "skipped": str(e).splitlines()[-1].strip()[:300]}
    try:
        client = McpClient(gw.port)
        try:
            probe, _ = client.call("execute", {"code": THREE_SEQ})
            if json.loads(text_of(probe))["result"] != ["hello"] * 3:
                raise RuntimeError(f"unexpected execute answer: {text_of(probe)[:300]}")
            echo, _ = client.call("echo", {"message": "hello"})
            if text_of(echo) != "hello":
                raise RuntimeError(f"unexpected echo answer: {text_of(echo)[:300]}")
        except Exception as e:  # noqa: BLE001 - an unusable backend is reported, not fatal
            return {"backend": label, "skipped": f"{type(e).__name__}: {e}"[:300]}

        samples: dict[str, list[float]] = {k: [] for k in ("exec_trivial", "exec_3seq", "exec_3par", "direct_3seq",
                                                           "direct_1", "thread_start")}
        inner: list[float] = []  # execute(3 seq): the gateway's own timing of its three inner calls, summed

        def execute(code: str) -> tuple[float, JsonObject]:
            t0 = time.perf_counter_ns()
            result, _ = client.call("execute", {"code": code})
            return (time.perf_counter_ns() - t0) / 1e6, result

        kinds = ["exec_trivial", "exec_3seq", "exec_3par", "direct_3seq", "thread_start"]
        total = args.warmup + (iterations or args.iterations)
        for i in range(total):
            keep = i >= args.warmup
            order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]  # rotate: no kind always first
            for kind in order:
                if kind == "thread_start":
                    ms = thread_start_ms()
                elif kind == "direct_3seq":
                    ones = []
                    t0 = time.perf_counter_ns()
                    for _ in range(3):
                        t1 = time.perf_counter_ns()
                        client.call("echo", {"message": "hello"})
                        ones.append((time.perf_counter_ns() - t1) / 1e6)
                    ms = (time.perf_counter_ns() - t0) / 1e6
                    if keep:
                        samples["direct_1"] += ones
                else:
                    code = {"exec_trivial": TRIVIAL, "exec_3seq": THREE_SEQ, "exec_3par": THREE_PAR}[kind]
                    ms, result = execute(code)
                    if keep and kind == "exec_3seq":
                        inner.append(sum(c["ms"] for c in json.loads(text_of(result))["calls"]))
                if keep:
                    samples[kind].append(ms)
            if i + 1 == args.warmup:
                log(f"{label}: warm-up done ({args.warmup}), measuring {args.iterations} iterations")
        client.close()
    finally:
        gw.stop()
    (out / f"latency-{backend or 'default'}-samples.json").write_text(json.dumps(samples) + "\n")
    stats = {k: {"p50": statistics.median(v), "p99": pct(v, 99), "mean": statistics.fmean(v), "n": len(v),
                 "over_2ms": sum(x > 2.0 for x in v) / len(v)}
             for k, v in samples.items()}
    paired = [e - d for e, d in zip(samples["exec_3seq"], samples["direct_3seq"], strict=True)]
    overhead = stats["exec_3seq"]["p50"] - stats["direct_3seq"]["p50"]
    return {
        "backend": label,
        "iterations": iterations or args.iterations,
        "warmup": args.warmup,
        "stats": stats,
        "inner_calls_ms_p50": statistics.median(inner),
        "overhead_p50_ms": overhead,
        "overhead_paired_median_ms": statistics.median(paired),
        "overhead_par_p50_ms": stats["exec_3par"]["p50"] - stats["direct_3seq"]["p50"],
        "trivial_minus_echo_p50_ms": stats["exec_trivial"]["p50"] - stats["direct_1"]["p50"],
        "target_overhead_ms_max": OVERHEAD_TARGET_MS,
        "met": overhead <= OVERHEAD_TARGET_MS,
    }


def part_latency(args: argparse.Namespace, out: Path) -> JsonObject:
    runs = [measure_backend(args, out, None)]
    if not args.no_process:
        # The OS sandboxes with their warm pool (the default, 2) and without (every program starts its worker);
        # cold runs are slow, so fewer of them.
        cold = max(20, (args.iterations) // 10)
        for backend in ("process", "gvisor"):
            runs.append(measure_backend(args, out, backend, pool=2))
            runs.append(measure_backend(args, out, backend, pool=0, iterations=cold))
    return {"runs": runs}


# ------------------------------------------------------------- report ---

def fmt_pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def report(summary: JsonObject) -> str:
    L: list[str] = [f"# Code mode benchmark ({summary['date']})", ""]
    L.append(f"Machine: {summary['machine']}; load average at start {summary['loadavg_start']}, "
             f"at end {summary.get('loadavg_end', 'n/a')}. mcpgate: `{summary['mcpgate']}`. "
             "Tokens: o200k_base (bpe-openai) of the exact JSON text.")
    L.append("")
    s = summary.get("surface")
    if s:
        L += ["## 1. Tool surface: 1,000 config-declared tools", "",
              "| what the model reads | bytes | o200k tokens |", "|---|---:|---:|"]
        L.append(f"| direct `tools/list` ({s['tools']} tools, {s['direct_pages']} pages, every page's `result`) | "
                 f"{s['direct_bytes']:,} | {s['direct_tokens']:,} |")
        L.append(f"| code mode `tools/list` (search_tools, describe_tools, execute) | {s['code_bytes']:,} | "
                 f"{s['code_tokens']:,} |")
        L.append(f"| `search_tools` answer, limit 10 (`{s['search_query']}`) | | {s['search_result_tokens']:,} "
                 f"(call {s['search_call_tokens']}) |")
        L.append(f"| `describe_tools` answer, 3 tools ({', '.join(s['describe_names'])}) | | "
                 f"{s['describe_result_tokens']:,} (call {s['describe_call_tokens']}) |")
        L.append("")
        L.append(f"Cut: **{fmt_pct(s['cut'])}** ({s['direct_tokens_per_tool']:.0f} tokens per tool in direct "
                 f"mode). Target: code surface ≤ {s['target_code_tokens_max']:,} tokens — "
                 f"**{'met' if s['met'] else 'MISSED'}**.")
        L.append("")
    w = summary.get("workflow")
    if w:
        first = w["sizes"][0]
        L += ["## 2. Five-step workflow over the real upstreams (fs + time + everything)", ""]
        L.append(f"Files of {first['rows']} rows ({first['file_bytes']:,} bytes). Answer (both modes agree): "
                 f"`{compact(first['answer'])}`")
        L += ["", "| direct step | call tokens | result tokens (full `result`) | text content only | result bytes |",
              "|---|---:|---:|---:|---:|"]
        for st in first["steps"]:
            L.append(f"| {st['tool']} | {st['call_tokens']} | {st['result_tokens']:,} | {st['text_tokens']:,} | "
                     f"{st['result_bytes']:,} |")
        rows = [
            (f"direct: `tools/list` of the 3 upstreams ({w['upstream_tools']} tools)",
             f"{w['direct_tools_list_tokens']:,}"),
            ("**direct total** (list + calls + full results)", f"**{first['direct_tokens']:,}**"),
            ("direct total, results' text content only", f"{first['direct_text_only_tokens']:,}"),
            ("code: `tools/list` (3 tools)", f"{w['code_tools_list_tokens']:,}"),
            ("code: `execute` call (the program)", f"{first['execute_call_tokens']:,}"),
            (f"code: `execute` result (of which the `calls` log: {first['execute_calls_log_tokens']})",
             f"{first['execute_result_tokens']:,}"),
            ("**code total**", f"**{first['code_tokens']:,}**"),
            ("code: + one search_tools round", f"{w['search_round_tokens']:,}"),
            ("code: + one describe_tools round (4 tools)", f"{w['describe_round_tokens']:,}"),
            ("code total with discovery", f"{first['code_with_discovery_tokens']:,}"),
        ]
        L += ["", "| | tokens |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows]
        L += ["", "Code / direct, by size of the two files read (same task, same program):", ""]
        L.append("| rows per file | file bytes | direct (full results) | direct (text only) | code | "
                 "code + discovery | code / direct | code / direct, text only | with discovery / direct |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for z in w["sizes"]:
            L.append(f"| {z['rows']:,} | {z['file_bytes']:,} | {z['direct_tokens']:,} | "
                     f"{z['direct_text_only_tokens']:,} | {z['code_tokens']:,} | {z['code_with_discovery_tokens']:,} | "
                     f"**{fmt_pct(z['ratio'])}** | {fmt_pct(z['ratio_vs_text_only'])} | "
                     f"{fmt_pct(z['ratio_with_discovery'])} |")
        L.append("")
        L.append(f"Target: code ≤ {fmt_pct(w['target_ratio_max'])} of direct (files of a few KB: first row) — "
                 f"**{'met' if w['met'] else 'MISSED'}**.")
        L.append("")
    lat = summary.get("latency")
    if lat:
        L += ["## 3. `execute` latency (default config's demo backend, code mode: hybrid with `echo` direct)", ""]
        names = {"exec_trivial": "execute `return 1`", "exec_3seq": "execute, 3 echo calls (sequential awaits)",
                 "exec_3par": "execute, 3 echo calls (Promise.all)",
                 "direct_3seq": "3 direct `tools/call` echo, sequential", "direct_1": "1 direct `tools/call` echo",
                 "thread_start": "(machine) start of a fresh thread in the client, same iterations"}
        for r in lat["runs"]:
            if "skipped" in r:
                L += [f"Backend {r['backend']}: skipped — {r['skipped']}", ""]
                continue
            st = r["stats"]
            L.append(f"Backend **{r['backend']}**, {r['iterations']} interleaved iterations after {r['warmup']} "
                     "warm-up, one keep-alive connection:")
            L += ["", "| request | p50 ms | p99 ms | mean ms | samples > 2 ms |", "|---|---:|---:|---:|---:|"]
            for k, n in names.items():
                L.append(f"| {n} | {st[k]['p50']:.3f} | {st[k]['p99']:.3f} | {st[k]['mean']:.3f} | "
                         f"{st[k]['over_2ms'] * 100:.1f}% |")
            L.append("")
            L.append(f"execute(3 calls) − 3 direct calls, p50: **{r['overhead_p50_ms']:+.3f} ms** (median of per-"
                     f"iteration differences {r['overhead_paired_median_ms']:+.3f} ms; Promise.all "
                     f"{r['overhead_par_p50_ms']:+.3f} ms). execute(`return 1`) − one direct echo, p50: "
                     f"{r['trivial_minus_echo_p50_ms']:+.3f} ms. The gateway's own timing of the three inner calls "
                     f"(sum of `calls[].ms`, each rounded to 0.1 ms), p50: {r['inner_calls_ms_p50']:.2f} ms. "
                     f"Target ≤ {r['target_overhead_ms_max']:.0f} ms p50 — **{'met' if r['met'] else 'MISSED'}**.")
            L.append("")
            L.append(f"The last row is the machine, not mcpgate: how long a new OS thread of the client waited to "
                     f"run, sampled in the same iterations ({st['thread_start']['over_2ms'] * 100:.1f}% over 2 ms "
                     f"here, against {st['exec_3seq']['over_2ms'] * 100:.1f}% of the 3-call executes). It showed "
                     f"why executes were slow when the quickjs sandbox started a thread per program; its engine "
                     f"threads are now kept. The ≤ 1 ms target is the in-process sandbox's; the OS sandboxes "
                     f"add a worker per program (from the warm pool, or started for it).")
            L.append("")
    return "\n".join(L)


# --------------------------------------------------------------- main ---

def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: bench/codemode.py --build      (then: bench/codemode.py --only latency -n 1000)")
    parser.add_argument("--mcpgate", type=Path,
                        default=Path(os.environ.get("MCPGATE_BIN", ROOT / "target" / "release" / "mcpgate")),
                        help="mcpgate binary (default: $MCPGATE_BIN or target/release/mcpgate)")
    parser.add_argument("--tokens-bin", type=Path,
                        default=Path(os.environ.get("TOKENS_BIN",
                                                    ROOT / "target" / "release" / "mcpgate-bench-tokens")),
                        help="token counter (default: $TOKENS_BIN or target/release/mcpgate-bench-tokens)")
    parser.add_argument("--build", action="store_true",
                        help="first run cargo build --release -p mcpgate -p mcpgate-bench-ceiling")
    parser.add_argument("--only", action="append", choices=["surface", "workflow", "latency"],
                        help="run only this part (repeatable; default: all three)")
    parser.add_argument("-n", "--iterations", type=int, default=500, help="latency iterations (default 500)")
    parser.add_argument("--warmup", type=int, default=50, help="latency warm-up iterations (default 50)")
    parser.add_argument("--no-process", action="store_true",
                        help="do not measure SANDBOX_BACKEND=process and gvisor (with and without the warm pool)")
    parser.add_argument("--rows", type=lambda v: [int(x) for x in v.split(",")], default=[80, 800, 4000],
                        help="workflow: rows per CSV file, comma-separated, one workflow run each; the first is the "
                             "headline (default 80,800,4000: ~3.5 KB, ~35 KB, ~175 KB)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated catalogue and files")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/codemode-<stamp>)")
    args = parser.parse_args()
    parts = args.only or ["surface", "workflow", "latency"]

    if args.build:
        log("cargo build --release -p mcpgate -p mcpgate-bench-ceiling")
        subprocess.run(["cargo", "build", "--release", "-p", "mcpgate", "-p", "mcpgate-bench-ceiling"],
                       cwd=ROOT, check=True)
    if not os.access(args.mcpgate, os.X_OK):
        sys.exit(f"mcpgate binary not found: {args.mcpgate} (build it, or --build)")
    needs_tokens = any(p in parts for p in ("surface", "workflow"))
    if needs_tokens and not os.access(args.tokens_bin, os.X_OK):
        sys.exit(f"token counter not found: {args.tokens_bin} "
                 "(cargo build --release -p mcpgate-bench-ceiling, or --build)")
    tokens = Tokens(args.tokens_bin)

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or BENCH / "results" / f"codemode-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    log(f"results -> {out}")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    summary: JsonObject = {
        "date": stamp,
        "machine": f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, {cpu}",
        "loadavg_start": loadavg(),
        "mcpgate": str(args.mcpgate),
    }
    if "surface" in parts:
        log("1/3 surface: 1,000-tool catalogue, direct vs code mode")
        summary["surface"] = part_surface(args, tokens, out)
    if "workflow" in parts:
        log("2/3 workflow: 5 steps over fs + time + everything")
        summary["workflow"] = part_workflow(args, tokens, out)
    if "latency" in parts:
        log(f"3/3 latency: {args.iterations} iterations after {args.warmup} warm-up")
        summary["latency"] = part_latency(args, out)
    summary["loadavg_end"] = loadavg()
    write_json(out / "summary.json", summary)
    md = report(summary)
    (out / "summary.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
