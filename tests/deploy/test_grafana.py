"""deploy/grafana/: the dashboard and its provisioning.

- The dashboard's shape: unique panel ids, a grid without overlaps, every panel and query on `${datasource}`,
  every variable defined and used, the guides' key metrics present.
- Against Grafana's own published types (@grafana/schema, pinned in tests/deploy/npm/package.json):
  the dashboard, each panel with its plugin's options and field config, and each variable are type-checked by
  the TypeScript compiler, excess (misspelled) keys included; a deliberately broken copy must fail the check.
- Live: every panel query, with the variables substituted as Grafana would (All, and one node and one upstream),
  runs against a real Prometheus scraping a real mcpgate that has served traffic driven to reach every panel
  (tool calls, a cache hit, a rate-limit refusal, an auth failure, a code-mode program stopped by its time limit,
  a resource read, an upstream, Redis as the state backend, an audit log), and returns at least one series; the
  panels that show what was driven show it.

Grafana itself does not run here: how it renders the panels is not tested.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from mcp import Client

from conftest import DEPLOY, ROOT, Gateway, gateway, program, wait_until
from live import OPENER, Prometheus, call_tool, prometheus, redis_server

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "mcpgate.json"
SCHEMA_DIR = ROOT / "tests" / "deploy" / "npm"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's own variables a query may use; `$__rate_interval` is at least four scrape intervals (1 s here).
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
UPSTREAM = "up"


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def leaf_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return dashboard["panels"] + [p for r in dashboard["panels"] if r["type"] == "row" for p in r.get("panels", [])]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel."""
    return [(p["title"], t["expr"]) for p in leaf_panels(dashboard) for t in p["targets"]]


# ------------------------------------------------------------------------------------------ provisioning


def test_provisioning_points_grafana_at_prometheus_and_the_dashboard() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert sources["apiVersion"] == 1
    [source] = sources["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy", source
    assert source["url"] == "http://prometheus:9090", source
    # The dashboard's data-source variable defaults to the provisioned uid.
    dashboard = load_dashboard()
    assert variables(dashboard)["datasource"]["current"]["value"] == source["uid"]
    # timeInterval is the shipped scrape interval, so $__rate_interval spans at least four scrapes.
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape

    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mcpgate.yaml").read_text())
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file", provider
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards", provider
    assert [p.name for p in DASHBOARD.parent.glob("*.json")] == ["mcpgate.json"]


# ---------------------------------------------------------------------------------------------- structure


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "mcpgate" and dashboard["title"] and dashboard["id"] is None
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"

    # The grid: 24 columns, no two panels on the same cell.
    taken: dict[tuple[int, int], str] = {}
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, (panel["title"], g)
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r} at {(x, y)}"
                taken[(x, y)] = panel["title"]

    names = set(variables(dashboard))
    assert names == {"datasource", "instance", "upstream"}, names
    assert variables(dashboard)["datasource"]["type"] == "datasource"
    assert variables(dashboard)["datasource"]["query"] == "prometheus"
    used: set[str] = set()
    for panel in leaf_panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']!r} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), (panel["title"], refs)
        for t in panel["targets"]:
            assert t["datasource"] == DATASOURCE, (panel["title"], t)
            found = set(re.findall(r"\$\{?(\w+)", t["expr"]))
            assert found <= names | set(BUILTINS), (panel["title"], found - names - set(BUILTINS))
            used |= found
            if "instance" not in found and not t["expr"].startswith("vector("):
                pytest.fail(f"{panel['title']!r}: {t['expr']} ignores the instance variable", pytrace=False)
        assert panel.get("description"), f"{panel['title']!r} has no description"
    for name in ("instance", "upstream"):
        variable = variables(dashboard)[name]
        assert variable["datasource"] == DATASOURCE, name
        assert variable["includeAll"] and variable["multi"] and variable["allValue"] == ".*", variable
        assert name in used, f"${name} is defined but no panel uses it"
    assert "$instance" in variables(dashboard)["upstream"]["query"]["query"], "upstream values should follow the node"


# The guides' key metrics (token usage, p50/p95/p99, cache hit rate, error rate, active sessions, sandbox
# timeouts, resources) and what else an operator of the gateway needs: one query at least for each.
REQUIRED = {
    "token usage": r"mcp_tokens_used",
    "latency p50": r"histogram_quantile\(0\.5, .*mcp_request_duration_seconds_bucket",
    "latency p95": r"histogram_quantile\(0\.95, .*mcp_request_duration_seconds_bucket",
    "latency p99": r"histogram_quantile\(0\.99, .*mcp_request_duration_seconds_bucket",
    "cache hit rate": r"mcp_cache_hits_total.*/.*mcp_cache_misses_total",
    "error rate": r'mcp_tool_executions_total\{[^}]*status!="success".*/',
    "active sessions": r"mcp_active_sessions",
    "sandbox timeouts": r"mcp_sandbox_timeouts_total",
    "resources": r"mcp_open_connections",
    "upstream health": r"mcp_upstream_up",
    "breaker states": r"mcp_circuit_breaker_state",
    "rate limiting": r"mcp_rate_limited_total",
    "auth failures": r"mcp_auth_failures_total",
    "audit lines": r"mcp_audit_lines_total",
    "audit failures": r"mcp_audit_failures_total",
    "state backend": r"mcp_state_backend_up",
    "node up": r'up\{job="mcpgate"',
}


@pytest.mark.parametrize("what", REQUIRED)
def test_dashboard_shows(what: str) -> None:
    assert any(re.search(REQUIRED[what], e) for _, e in exprs(load_dashboard())), f"no panel shows {what}"


# ------------------------------------------------------------------------------------ Grafana's own types

PANEL_TYPES = {
    # panel type: (its options type, its custom field config type or None), from @grafana/schema's panelcfg
    "timeseries": ("TimeSeries", True),
    "stat": ("Stat", False),
    "state-timeline": ("StateTimeline", True),
}
CHECK_PRELUDE = """\
import type * as schema from "@grafana/schema";
import type * as TimeSeries from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";
import type * as Stat from "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as StateTimeline from "@grafana/schema/dist/esm/raw/composable/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen";

// A dashboard file is JSON: it spells each enum member by its value ("palette-classic", not
// FieldColorModeId.PaletteClassic). Json<T> is T with every string enum replaced by the union of its values.
type Json<T> = unknown extends T ? T
  : T extends string ? `${T}`
  : T extends number | boolean | null | undefined ? T
  : T extends Array<infer U> ? Array<Json<U>>
  : { [K in keyof T]: Json<T[K]> };

// @grafana/schema does not ship the Prometheus query model (it lives in Grafana's Prometheus plugin): these are
// the fields of it this dashboard uses, on top of the DataQuery every query has.
interface PrometheusQuery extends Json<schema.DataQuery> {
  expr: string;
  legendFormat?: string;
  range?: boolean;
  instant?: boolean;
  editorMode?: "code" | "builder";
}

type FieldConfigOf<Custom> = Omit<Json<schema.FieldConfigSource>, "defaults"> & {
  defaults: Omit<Json<schema.FieldConfig>, "custom"> & ([Custom] extends [never] ? {} : { custom?: Json<Custom> });
};
type PanelOf<Options, Custom> = Omit<Json<schema.Panel>, "options" | "fieldConfig" | "targets"> & {
  options: Json<Options>;
  fieldConfig: FieldConfigOf<Custom>;
  targets: PrometheusQuery[];
};
type Dashboard = Omit<Json<schema.Dashboard>, "panels" | "templating"> & {
  panels: Array<Json<schema.Panel> | Json<schema.RowPanel>>;
  templating: { list: Array<Json<schema.VariableModel>> };
};
"""


def typescript_check(dashboard: dict[str, Any]) -> str:
    """A TypeScript module that compiles only if `dashboard` fits Grafana's types."""

    def typed(panel: dict[str, Any]) -> str:
        if panel["type"] == "row":
            inner = ", ".join(typed(p) for p in panel.get("panels", []))
            rest = {k: v for k, v in panel.items() if k != "panels"}
            return f"({{...({json.dumps(rest)} satisfies Omit<Json<schema.RowPanel>, 'panels'>), panels: [{inner}]}})"
        if panel["type"] not in PANEL_TYPES:
            pytest.fail(f"panel type {panel['type']!r} has no type to check against here", pytrace=False)
        ns, custom = PANEL_TYPES[panel["type"]]
        return f"({json.dumps(panel)} satisfies PanelOf<{ns}.Options, {f'{ns}.FieldConfig' if custom else 'never'}>)"

    top = {k: v for k, v in dashboard.items() if k != "panels"}
    panels = ",\n  ".join(typed(p) for p in dashboard["panels"])
    return f"{CHECK_PRELUDE}\nexport const dashboard: Dashboard = {{\n  ...({json.dumps(top)}),\n  panels: [\n  {panels}\n  ],\n}};\n"


@pytest.fixture(scope="module")
def tsc() -> list[str]:
    node = program("node", "apt-get install nodejs, or Node 22 under .cache (scripts/lib/node22.sh)")
    compiler = SCHEMA_DIR / "node_modules" / "typescript" / "bin" / "tsc"
    if not (compiler.is_file() and (SCHEMA_DIR / "node_modules" / "@grafana" / "schema" / "package.json").is_file()):
        message = f"Grafana's schema packages are not installed (npm ci --prefix {SCHEMA_DIR.relative_to(ROOT)})"
        if os.environ.get("MCPGATE_REQUIRE_DEPLOY") == "1":
            pytest.fail(f"MCPGATE_REQUIRE_DEPLOY=1 but {message}", pytrace=False)
        pytest.skip(message)
    return [node, str(compiler)]


def test_dashboard_fits_grafanas_published_types(tsc: list[str], tmp_path: Path) -> None:
    dashboard = load_dashboard()
    installed = json.loads((SCHEMA_DIR / "node_modules" / "@grafana" / "schema" / "package.json").read_text())
    pinned = json.loads((SCHEMA_DIR / "package.json").read_text())["dependencies"]["@grafana/schema"]
    assert installed["version"] == pinned, f"@grafana/schema {installed['version']} installed, {pinned} pinned"

    # A copy with two mistakes the types must catch: a misspelled panel key and an unknown enum value.
    broken = json.loads(json.dumps(dashboard))
    victim = leaf_panels(broken)[0]
    victim["gridPoss"] = victim["gridPos"]
    broken_ts = leaf_panels(broken)[1]
    assert broken_ts["type"] == "stat", broken_ts["type"]
    broken_ts["options"]["colorMode"] = "rainbow"

    (tmp_path / "node_modules").symlink_to(SCHEMA_DIR / "node_modules")
    (tmp_path / "dashboard.ts").write_text(typescript_check(dashboard))
    (tmp_path / "broken.ts").write_text(typescript_check(broken))
    run = subprocess.run(
        [*tsc, "--noEmit", "--strict", "--skipLibCheck", "--target", "es2022", "--module", "esnext",
         "--moduleResolution", "bundler", "--pretty", "false", "dashboard.ts", "broken.ts"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    errors = [line for line in run.stdout.splitlines() if ": error TS" in line]
    assert not [e for e in errors if not e.startswith("broken.ts")], "\n".join(errors)
    assert any("gridPoss" in e for e in errors), "a misspelled key was not caught:\n" + "\n".join(errors)
    assert any('"rainbow"' in e for e in errors), "an unknown enum value was not caught:\n" + "\n".join(errors)
    assert run.returncode != 0


# ------------------------------------------------------------------------------------------------- live

FRONT_CONFIG = """\
server:
  request_timeout: 10s
backends:
  demo: {{ kind: builtin, builtin: demo }}
  conf: {{ kind: builtin, builtin: conformance }}
upstreams:
  {upstream}:
    url: {upstream_url}
    health_check_interval: 500ms
state:
  backend: redis
  url: {redis}
cache:
  tools:
    add: {{ ttl: 5m }}
budget:
  count_tokens: true
code_mode:
  mode: hybrid
  direct_tools: ["*"]
  sandbox:
    backend: quickjs
    max_execution_time: 300ms
rate_limits:
  tools:
    now: {{ requests: 1, per: 1h }}
audit:
  file: {audit}
"""


@dataclass
class Observed:
    prom: Prometheus
    front: Gateway
    instance: str


def _drive(front: Gateway) -> None:
    """Traffic that makes every panel's series exist, each step checked to have done what it is for."""
    base = front.base
    for i in range(3):
        assert call_tool(base, "echo", {"message": f"m{i}"})["result"]["content"][0]["text"] == f"m{i}"
    # The cache: one miss, then a hit.
    assert not call_tool(base, "add", {"a": 1, "b": 2})["result"].get("isError")
    assert not call_tool(base, "add", {"a": 1, "b": 2})["result"].get("isError")
    # Through the upstream.
    assert call_tool(base, f"{UPSTREAM}__echo", {"message": "up"})["result"]["content"][0]["text"] == "up"
    # A tool error (arguments that fail the schema) and a protocol error (an unknown tool).
    assert call_tool(base, "add", {"a": "one"})["result"]["isError"] is True
    assert "error" in call_tool(base, "no_such_tool", {})
    # The tool's rate limit: the second call is refused.
    assert "result" in call_tool(base, "now", {})
    assert call_tool(base, "now", {})["error"]["data"]["scope"] == "tool"
    # An authentication failure: a key that is no key.
    request = urllib.request.Request(
        f"{base}/mcp", data=b"{}", method="POST", headers={"x-api-key": "wrong", "content-type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        OPENER.open(request, timeout=10)
    assert refused.value.code == 401
    _drive_lazy(front)


def _drive_lazy(front: Gateway) -> None:
    """The calls whose series mcpgate creates only when first used (operations, sandbox executions)."""
    base = front.base
    # Code mode: a program that ends, and one stopped by max_execution_time.
    assert not call_tool(base, "execute", {"code": "return 1 + 1;"})["result"].get("isError")
    stopped = call_tool(base, "execute", {"code": "while (true) {}"})["result"]
    assert stopped["isError"] is True, stopped

    # A resource read, with the official SDK.
    async def sdk() -> None:
        with anyio.fail_after(30):
            async with Client(f"{base}/mcp", mode="2026-07-28", read_timeout_seconds=15) as client:
                read = await client.read_resource("test://static-text")
                assert read.contents, read

    anyio.run(sdk)


# Series that do not exist before their first use: a rate over them is 0 until a later increase is scraped.
LAZY = ['mcp_operations_total{operation="resources/read"}', 'mcp_sandbox_executions_total{outcome="timeout"}']


@pytest.fixture(scope="module")
def observed(mcpgate_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("grafana-live")
    with (
        redis_server(tmp) as redis,
        gateway(mcpgate_bin, tmp, name="upstream") as upstream,
    ):
        config = FRONT_CONFIG.format(upstream=UPSTREAM, upstream_url=f"{upstream.base}/mcp", redis=redis, audit=tmp / "audit.log")
        with gateway(mcpgate_bin, tmp, config, name="front") as front:
            instance = front.base.removeprefix("http://")
            with prometheus(tmp / "prom", [instance]) as prom:
                # Prometheus has scraped every counter mcpgate creates at start at 0 by now, so what follows
                # shows as an increase. Those created on first use are driven again once it has seen them.
                _drive(front)
                for series in LAZY:
                    wait_until(f"{series} scraped", lambda series=series: prom.query(series), log=prom.log)
                _drive_lazy(front)
                yield Observed(prom, front, instance)


def _regex_value(value: str) -> str:
    """A variable's value as Grafana puts it in a Prometheus regex: metacharacters escaped, in PromQL's string
    syntax (each backslash doubled)."""
    return re.sub(r"([\\.^$*+?()\[\]{}|])", r"\\\\\1", value)


def substitute(expr: str, values: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return {**BUILTINS, **values}[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


# What the driven traffic must make some panels show (title: check of the result's series).
def _value(series: list[dict[str, Any]], **labels: str) -> float:
    for s in series:
        if all(s["metric"].get(k) == v for k, v in labels.items()):
            return float(s["value"][1])
    return float("nan")


SHOWS: dict[tuple[str, str], Callable[[list[dict[str, Any]]], bool]] = {
    ("Cache hit rate", "A"): lambda r: _value(r) > 0,
    ("Sandbox timeouts", "A"): lambda r: _value(r, backend="quickjs") > 0,
    ("Sandbox executions", "A"): lambda r: _value(r, backend="quickjs", outcome="timeout") > 0,
    ("Token usage", "A"): lambda r: _value(r, direction="output") > 0,
    ("Upstream health", "A"): lambda r: _value(r, upstream=UPSTREAM) == 1,
    ("Upstreams down", "A"): lambda r: _value(r) == 0,
    ("Shared state backend", "A"): lambda r: _value(r, backend="redis") == 1,
    ("Audit log", "A"): lambda r: all(float(s["value"][1]) > 0 for s in r),
    ("Rate-limit refusals", "A"): lambda r: _value(r, scope="tool") > 0,
    ("Authentication failures", "A"): lambda r: _value(r, reason="invalid_key") > 0,
    ("Resources, prompts and completions", "A"): lambda r: _value(r, operation="resources/read", status="ok") > 0,
    ("Errors by kind", "A"): lambda r: _value(r, kind="tool_error") > 0 and _value(r, kind="not_found") > 0,
    ("Nodes up", "A"): lambda r: _value(r) == 1,
}


@pytest.mark.parametrize("selection", ["all", "one"])
def test_every_panel_query_returns_series(observed: Observed, selection: str) -> None:
    dashboard = load_dashboard()
    values = (
        {"instance": ".*", "upstream": ".*"}
        if selection == "all"
        else {"instance": _regex_value(observed.instance), "upstream": _regex_value(UPSTREAM)}
    )
    checked = set()
    for panel in leaf_panels(dashboard):
        for target in panel["targets"]:
            expr = substitute(target["expr"], values)
            check = SHOWS.get((panel["title"], target["refId"]), bool)

            def answered(expr: str = expr, check=check) -> list[dict[str, Any]] | None:
                result = observed.prom.query(expr)
                return result if result and check(result) else None

            wait_until(f"{panel['title']!r} [{target['refId']}]: {expr}", answered, within=30, log=observed.prom.log, every=0.2)
            checked.add((panel["title"], target["refId"]))
    assert set(SHOWS) <= checked, set(SHOWS) - checked


def test_variable_queries_list_the_node_and_the_upstream(observed: Observed) -> None:
    """label_values(metric{selector}, label), as Grafana's Prometheus data source runs it: the series' label."""
    found = {}
    for name in ("instance", "upstream"):
        definition = variables(load_dashboard())[name]["query"]["query"]
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", definition)
        assert m, definition
        selector = substitute(m.group(1), {"instance": ".*"})
        series = observed.prom.api("series", **{"match[]": selector})
        found[name] = {s[m.group(2)] for s in series if m.group(2) in s}
    assert found["instance"] == {observed.instance}, found
    assert {UPSTREAM, "demo", "conf"} <= found["upstream"], found


def test_every_metric_the_dashboard_names_is_exposed(observed: Observed) -> None:
    with OPENER.open(f"{observed.front.base}/metrics", timeout=10) as r:
        exposed = set(re.findall(r"^(\w+?)(?:_bucket|_sum|_count)?(?:\{| )", r.read().decode(), re.M))
    named = {m for _, e in exprs(load_dashboard()) for m in re.findall(r"\b(mcp_\w+)", e)}
    named = {re.sub(r"_bucket$", "", m) for m in named}
    assert named - exposed == set(), f"named by the dashboard but not exposed: {sorted(named - exposed)}"

