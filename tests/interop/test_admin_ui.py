"""The admin page (`ui.enabled`) in a real headless Chromium (Debian's `chromium`, driven by Playwright from PyPI):
it asks for the admin credential, shows a federated upstream up and then down once its process is killed, and its
playground calls a tool, which then shows in the recent calls. Screenshots go to target/test-artifacts/admin-ui/.

Needs `chromium` (Debian) and `playwright` (PyPI); scripts/test.sh installs both and sets MCPGATE_REQUIRE_BROWSER=1,
without which a missing browser skips the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_python_sdk import _serve, _stop, mcpgate_bin  # noqa: F401

KEY = "the-admin-credential-0123456789"
ARTIFACTS = Path(__file__).resolve().parents[2] / "target" / "test-artifacts" / "admin-ui"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright  # noqa: F401
    except ImportError:
        found = None
    if not found:
        message = "chromium (Debian) or playwright (PyPI) is not installed"
        if os.environ.get("MCPGATE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MCPGATE_REQUIRE_BROWSER=1 but {message}", pytrace=False)
        pytest.skip(message)
    return found


def _status(url: str, authorization: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_admin_page_shows_an_upstream_dying_and_its_playground_calls_a_tool(mcpgate_bin: str, tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    # The upstream: mcpgate over stdio, started through a script that records its pid and starts only while
    # `allow` exists — so once the test removes it and kills the process, the upstream stays down.
    allow, pid_file = tmp_path / "allow", tmp_path / "upstream.pid"
    allow.touch()
    script = tmp_path / "upstream.sh"
    script.write_text(f'#!/bin/sh\n[ -e "{allow}" ] || exit 1\necho $$ > "{pid_file}"\nexec "{mcpgate_bin}" serve --stdio\n')
    script.chmod(0o755)
    config = tmp_path / "front.yaml"
    config.write_text(
        f"ui:\n  enabled: true\nupstreams:\n  up:\n    command: {script}\n    env: {{ LOG_LEVEL: warn }}\n"
        "backends:\n  local: { kind: builtin, builtin: demo }\n"
    )
    proc, base, log = _serve(mcpgate_bin, config, tmp_path, {"ADMIN_API_KEY": KEY})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        # Never open: no credential, a wrong one.
        assert _status(f"{base}/ui") == 401
        assert _status(f"{base}/ui/api/state", "Bearer not-the-key-0123456789") == 401
        assert _status(f"{base}/ui/api/state", f"Bearer {KEY}") == 200

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            context = browser.new_context(http_credentials={"username": "admin", "password": KEY})
            page = context.new_page()
            page.goto(f"{base}/ui")
            page.wait_for_selector('#backends tr[data-name="up"][data-state="up"]', timeout=15_000)
            page.wait_for_selector('#backends tr[data-name="local"][data-state="up"]')
            page.screenshot(path=str(ARTIFACTS / "1-upstream-up.png"), full_page=True)

            # The playground: a form made from the tool's input schema, the call through the dispatch as `admin`.
            page.select_option("#tool", "up__echo")
            page.fill("#arg-message", "from the browser")
            page.click("#call")
            # (The page's CSP forbids eval, so waits are selectors, not page functions.)
            page.wait_for_selector("#result:has-text('from the browser')", timeout=10_000)
            page.wait_for_selector("#recent td:has-text('up__echo')", timeout=10_000)
            page.screenshot(path=str(ARTIFACTS / "2-playground-call.png"), full_page=True)

            # The upstream dies and cannot come back: the page shows it down within a few refreshes.
            allow.unlink()
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            page.wait_for_selector('#backends tr[data-name="up"][data-state="down"]', timeout=15_000)
            page.screenshot(path=str(ARTIFACTS / "3-upstream-down.png"), full_page=True)
            reason = page.inner_text('#backends tr[data-name="up"] .reason')
            assert reason, "a down upstream shows why"
            browser.close()
    finally:
        _stop(proc)
    assert "admin page: request refused" in log.read_text()
