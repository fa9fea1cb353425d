"""Live dashboard benchmark: how soon an operator action shows on an open overview, over the
Server-Sent Events stream versus the polling the page falls back to without EventSource.

    python bench/live.py [--rounds 8]

One real monitor (`python -m monitor run`, v1..v3 spawned) and one headless Chromium with two
overview pages side by side: one as shipped (SSE), one with EventSource removed (it refreshes
every 3 s, the page's `data-refresh`). Each round another client POSTs pause or resume; each
page records (MutationObserver, browser clock) when its "Automatic failover" field changes.
The time counts from just before the POST (its CSRF token fetched earlier) to the change,
both pages measured in the same round, so the ratio compares the two paths under the same
load. Needs /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import all_versions_up, start_monitor  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
USER = ("bench-operator", "Bench-operator-4711")
NO_SSE = "delete window.EventSource;"
WATCH = """() => {
  window.changedAt = null;
  const field = document.querySelector('[data-field="paused"]');
  const before = field.textContent;
  new MutationObserver(() => {
    if (window.changedAt === null && field.textContent !== before) {
      window.changedAt = Date.now();
    }
  }).observe(field, {childList: true, characterData: true, subtree: true});
}"""


def csrf_token(client: httpx.Client) -> str:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert token, "no csrf token on the overview"
    return token.group(1)


def post(client: httpx.Client, url: str, path: str, token: str) -> None:
    answer = client.post(path, data={"csrf_token": token, "reason": "bench"},
                         headers={"Origin": url})
    assert answer.status_code == 303, answer.text[:200]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    rounds = parser.parse_args().rounds
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        monitor = start_monitor(Path(tmp) / "data", ready_timeout=60)
        try:
            monitor.wait_for(all_versions_up, timeout=60)
            monitor.cli("user", "add", USER[0], "--role", "operator",
                        extra_env={"MONITOR_NEW_PASSWORD": USER[1]})
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                pages = {}
                for name, script in (("sse", None), ("polling", NO_SSE)):
                    context = browser.new_context(
                        http_credentials={"username": USER[0], "password": USER[1]})
                    page = context.new_page()
                    if script:
                        page.add_init_script(script)
                    page.goto(monitor.url + "/")
                    pages[name] = page
                times: dict[str, list[float]] = {name: [] for name in pages}
                with httpx.Client(base_url=monitor.url, auth=USER, timeout=10) as client:
                    for n in range(rounds):
                        for page in pages.values():
                            page.evaluate(WATCH)
                        token = csrf_token(client)
                        time.sleep(0.5)  # let any refresh in flight settle
                        start_ms = time.time() * 1000
                        post(client, monitor.url, "/actions/pause" if n % 2 == 0
                             else "/actions/resume", token)
                        for name, page in pages.items():
                            page.wait_for_function("() => window.changedAt !== null",
                                                   timeout=30_000)
                            times[name].append(page.evaluate("window.changedAt") - start_ms)
                browser.close()
        finally:
            monitor.stop()
    print(f"Operator action -> open overview updated, {rounds} rounds (ms)")
    print(f"{'path':<10}{'median':>10}{'p90':>10}{'max':>10}")
    for name, values in times.items():
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        print(f"{name:<10}{statistics.median(values):>10.0f}{p90:>10.0f}{max(values):>10.0f}")
    ratio = statistics.median(times["polling"]) / statistics.median(times["sse"])
    print(f"polling / sse (median): {ratio:.1f}x")


if __name__ == "__main__":
    main()
