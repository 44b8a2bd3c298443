"""deploy/prometheus/ live: a real Prometheus, with the shipped scrape config (target and intervals rewritten)
and the shipped alerts.yml unchanged, scrapes a real mcpgate that federates a real upstream (a second mcpgate
serving the demo tools over Streamable HTTP). The upstream is killed: UpstreamDown goes pending for it.

promtool's unit tests (crates/mcpgate/tests/prometheus.rs) already show each rule's logic on synthetic series;
this shows the chain they cannot: mcpgate's health check notices, /metrics says so, the scrape config reaches
it, and the rule as shipped matches the series as exposed.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import Gateway, gateway, wait_until
from live import call_tool, prometheus

UPSTREAM = "up"


@pytest.fixture
def federating(mcpgate_bin: str, tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    """(upstream, front): the front federates the upstream, pinging it every 200 ms."""
    with gateway(mcpgate_bin, tmp_path, name="upstream") as upstream:
        config = f"""\
upstreams:
  {UPSTREAM}:
    url: {upstream.base}/mcp
    health_check_interval: 200ms
    timeout: 5s
"""
        with gateway(mcpgate_bin, tmp_path, config, name="front") as front:
            yield upstream, front


def _evaluated_at(rule: dict) -> float:
    """A rule's lastEvaluation (RFC 3339, nanoseconds) as a Unix time."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", rule["lastEvaluation"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).astimezone(timezone.utc).timestamp()


def test_upstream_down_goes_pending_when_the_upstream_dies(
    federating: tuple[Gateway, Gateway], tmp_path: Path
) -> None:
    upstream, front = federating
    instance = front.base.removeprefix("http://")
    # The upstream's tools are served through the front: a real federation, not just a configured one.
    answer = call_tool(front.base, f"{UPSTREAM}__echo", {"message": "through"})
    assert answer["result"]["content"][0]["text"] == "through", answer

    with prometheus(tmp_path / "prom", [instance]) as prom:
        selector = f'mcp_upstream_up{{instance="{instance}",upstream="{UPSTREAM}"}}'

        # Before: Prometheus has seen the upstream up, and the rule has been evaluated since, without an alert.
        seen = wait_until(f"{selector} == 1 in Prometheus", lambda: prom.query(f"{selector} == 1"), log=prom.log)
        seen_at = float(seen[0]["value"][0])

        def evaluated_since() -> dict | None:
            rule = prom.rule("UpstreamDown")
            return rule if _evaluated_at(rule) > seen_at else None

        rule = wait_until("UpstreamDown evaluated after the upstream was seen up", evaluated_since, log=prom.log)
        assert rule["health"] == "ok" and rule["state"] == "inactive", rule
        assert rule["query"] == "mcp_upstream_up == 0", rule["query"]
        assert prom.alerts("UpstreamDown") == []

        upstream.proc.send_signal(signal.SIGKILL)
        upstream.proc.wait()
        killed = time.monotonic()

        # After: the front's health check fails, the next scrape shows 0, the next evaluation makes it pending
        # (firing takes the rule's `for: 1m`, which this test does not wait out).
        def upstream_down_alert() -> dict | None:
            for alert in prom.alerts("UpstreamDown"):
                if alert["labels"].get("upstream") == UPSTREAM and alert["labels"].get("instance") == instance:
                    return alert
            return None

        alert = wait_until("UpstreamDown pending for the killed upstream", upstream_down_alert, within=30, log=front.log)
        took = time.monotonic() - killed
        assert alert["state"] in ("pending", "firing"), alert
        assert alert["labels"]["severity"] == "critical", alert
        assert alert["annotations"]["summary"] == f"Upstream {UPSTREAM} is down on {instance}", alert
        assert prom.query(f"{selector} == 0"), "the alert is active but the series is not 0"
        # Only the upstream is down, not the node: McpgateDown stays silent.
        assert prom.alerts("McpgateDown") == []
        print(f"UpstreamDown {alert['state']} {took:.1f}s after the upstream was killed")
