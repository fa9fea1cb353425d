"""Shared by the browser tests: Chromium (skipped when missing unless
MONITOR_REQUIRE_BROWSER=1), a real monitor with an operator and a viewer, pages per user."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.monitor_proc import MonitorProcess, all_versions_up, start_monitor

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
OPERATOR = ("olivia", "Olivia-operator-7419")
VIEWER = ("victor", "Victor-viewer-2863")


def require_browser() -> Any:
    """Playwright's sync_playwright, or a skip (a failure with MONITOR_REQUIRE_BROWSER=1)."""
    required = os.environ.get("MONITOR_REQUIRE_BROWSER") == "1"
    if not CHROMIUM.exists():
        if required:
            pytest.fail("MONITOR_REQUIRE_BROWSER=1 but /usr/bin/chromium is missing")
        pytest.skip("Chromium not found at /usr/bin/chromium (set MONITOR_REQUIRE_BROWSER=1 "
                    "to make this a failure)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed")
    return sync_playwright


@contextmanager
def browser_system(data_dir: Path, **settings: str) -> Iterator[tuple[MonitorProcess, Any]]:
    """`python -m monitor run` (v1..v3 spawned, all up) with the two users, and Chromium."""
    sync_playwright = require_browser()
    monitor = start_monitor(data_dir, ready_timeout=60, **settings)  # bounds for a loaded CI
    try:
        monitor.wait_for(all_versions_up, timeout=60)
        for (name, password), role in ((OPERATOR, "operator"), (VIEWER, "viewer")):
            done = monitor.cli("user", "add", name, "--role", role,
                               extra_env={"MONITOR_NEW_PASSWORD": password})
            assert done.returncode == 0, done.stderr
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=LAUNCH_ARGS, timeout=30_000)
            try:
                yield monitor, browser
            finally:
                browser.close()
    finally:
        monitor.stop()


def page_for(browser: Any, user: tuple[str, str]) -> Any:
    context = browser.new_context(http_credentials={"username": user[0], "password": user[1]})
    return context.new_page()


def post_action(monitor: MonitorProcess, path: str, user: tuple[str, str] = OPERATOR,
                **form: str) -> httpx.Response:
    """A dashboard form posted by another client (its own CSRF token, same origin)."""
    with httpx.Client(base_url=monitor.url, auth=user, timeout=10) as client:
        page = client.get("/").text
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, "the overview has no csrf_token field"
        return client.post(path, data={"csrf_token": match.group(1), **form},
                           headers={"Origin": monitor.url})
