"""The live overview in a real browser against a real monitor: what another client changes
appears without a reload, carried by the Server-Sent Events stream; the stream refuses a
request without credentials; the rollout timeline shows rollout rows as they are written, and
follows a real rollout step by step once the rollout backend is in (/api/status has
"rollout"). Needs Chromium (see tests/e2e/browser.py).
"""

from __future__ import annotations

import re
import time

import pytest

from monitor.actor import SYSTEM
from monitor.config import Settings
from monitor.recorder import Recorder
from monitor.storage.keys import load_keys
from monitor.storage.store import Store
from tests.e2e.browser import OPERATOR, VIEWER, browser_system, page_for, post_action

WAIT_MS = 30_000  # generous: a loaded CI machine; each wait ends as soon as the page shows it
# Records what the page's EventSource receives (an init script: CDP-injected, so the page's
# own CSP, which forbids inline script, still holds for everything the page loads).
RECORD_SSE = """
(() => {
  const Original = window.EventSource;
  window.sseActions = [];
  window.EventSource = function (url, options) {
    const source = new Original(url, options);
    source.addEventListener("audit", (e) => window.sseActions.push(JSON.parse(e.data).action));
    return source;
  };
  window.EventSource.prototype = Original.prototype;
})();
"""


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    with browser_system(tmp_path_factory.mktemp("live") / "data") as (monitor, browser):
        yield monitor, browser


def live_page(browser, monitor, user=VIEWER):
    page = page_for(browser, user)
    page.add_init_script(RECORD_SSE)
    page.goto(monitor.url + "/")
    page.evaluate("window.stillTheSamePage = true")  # lost if the page were reloaded
    return page


def wait_for_event(page, action: str) -> None:
    # a function, not an expression string: the page's CSP forbids eval (as it should)
    page.wait_for_function("(action) => window.sseActions.includes(action)", arg=action,
                           timeout=WAIT_MS)


def test_it_shows_another_operators_pause_and_resume_without_reload(system):
    from playwright.sync_api import expect

    monitor, browser = system
    page = live_page(browser, monitor)
    paused = page.locator('[data-field="paused"]')
    expect(paused).to_have_text("on")

    assert post_action(monitor, "/actions/pause", reason="browser test").status_code == 303
    wait_for_event(page, "failover.pause")
    expect(paused).to_have_text("paused", timeout=WAIT_MS)
    assert post_action(monitor, "/actions/resume", reason="browser test").status_code == 303
    wait_for_event(page, "failover.resume")
    expect(paused).to_have_text("on", timeout=WAIT_MS)
    assert page.evaluate("window.stillTheSamePage") is True


def test_it_refuses_the_event_stream_without_credentials(system):
    monitor, browser = system
    anonymous = browser.new_context()
    try:
        answer = anonymous.request.get(monitor.url + "/api/events")
        assert answer.status == 401
        assert answer.headers["content-type"].startswith("application/json")
    finally:
        anonymous.close()
    # from inside the dashboard, a stream opened without the page's credentials
    page = page_for(browser, VIEWER)
    page.goto(monitor.url + "/")
    statuses = page.evaluate("""async () => {
        const bare = await fetch("/api/events", {credentials: "omit"});
        const own = await fetch("/api/events", {credentials: "same-origin"});
        await own.body.cancel();
        return [bare.status, own.status, own.headers.get("content-type")];
    }""")
    assert statuses[:2] == [401, 200] and statuses[2].startswith("text/event-stream")
    wrong = browser.new_context(http_credentials={"username": VIEWER[0], "password": "wrong"})
    try:
        assert wrong.request.get(monitor.url + "/api/events").status == 401
    finally:
        wrong.close()


@pytest.fixture
def audit_writer(system):
    """Writes audit rows into the running monitor's log, as another process of it would (the
    CLI does): stands in for the rollout backend until it is merged."""
    monitor, _ = system
    # only the data dir matters here (database and secret key); Settings wants two services
    settings = Settings(_env_file=None, data_dir=monitor.data_dir,
                        services="v1=http://127.0.0.1:9,v2=http://127.0.0.1:7")
    store = Store(settings.db_url())
    try:
        yield Recorder(store, load_keys(settings, create=False).audit, time.time).record
    finally:
        store.dispose()


def test_it_shows_rollout_rows_on_the_overview_as_they_are_written(system, audit_writer,
                                                                   tmp_path):
    from playwright.sync_api import expect

    monitor, browser = system
    page = live_page(browser, monitor)
    section = page.locator("#rollout")
    expect(section).to_be_hidden()
    audit_writer(SYSTEM, "rollout.start", target="v3", reason="canary v1 -> v3")
    expect(section).to_be_visible(timeout=WAIT_MS)
    audit_writer(SYSTEM, "rollout.step", target="v3", params={"step": 0, "weight": 10},
                 reason="step 1: setWeight")
    step = section.locator('#rollout-steps tr[data-step="0"]')
    expect(step).to_contain_text("10 %", timeout=WAIT_MS)
    expect(step.locator('[data-col="analysis"]')).to_have_text("no analysis yet")
    evidence = [{"canary_requests": 50, "canary_failures": 15, "canary_p99_ms": 9.5,
                 "stable_p99_ms": 9.0}]
    audit_writer(SYSTEM, "rollout.analysis", target="v3", params={"step": 0, "weight": 10},
                 outcome="failed", reason="success rate 0.700 below 0.99", evidence=evidence)
    audit_writer(SYSTEM, "rollout.abort", target="v3", params={"step": 0, "weight": 0},
                 reason="analysis failed: success rate 0.700 below 0.99", evidence=evidence)
    expect(section.locator('[data-field="rollout-state"]')).to_have_text("aborted",
                                                                          timeout=WAIT_MS)
    expect(section.locator('[data-field="rollout-why"]')).to_contain_text(
        "analysis failed: success rate 0.700 below 0.99")
    expect(step.locator('[data-col="analysis"]')).to_contain_text("failed: success rate 0.700")
    expect(section.locator("#rollout-events")).to_contain_text("canary_success_rate=0.700")
    wait_for_event(page, "rollout.abort")
    assert page.evaluate("window.stillTheSamePage") is True
    page.screenshot(path=str(tmp_path / "overview-rollout-aborted.png"), full_page=True)
    page.goto(monitor.url + "/charts?window=15m")
    # a young monitor may have one bucket of probes only: a dot, not yet a line
    expect(page.locator("#latency-chart :is(polyline, circle)").first).to_be_attached()
    page.screenshot(path=str(tmp_path / "charts-15m.png"), full_page=True)


def test_it_follows_a_rollout_step_by_step_without_reload(system):
    from playwright.sync_api import expect

    monitor, browser = system
    if "rollout" not in monitor.status():
        pytest.skip("the rollout backend is not merged yet: /api/status has no 'rollout'")
    page = live_page(browser, monitor, OPERATOR)
    section = page.locator("#rollout")  # may show an earlier test's rollout rows

    answer = post_action(monitor, "/actions/rollout/start", target="v2", strategy="canary",
                         reason="browser test")
    assert answer.status_code == 303
    wait_for_event(page, "rollout.start")
    expect(section).to_be_visible(timeout=WAIT_MS)
    expect(section.locator('[data-field="rollout-versions"]')).to_contain_text(
        "v2", timeout=WAIT_MS)
    # a step: the backend moves the weight (a rollout.step row), and the timeline shows it
    wait_for_event(page, "rollout.step")
    expect(section.locator('#rollout-events [data-action="step"]').first).to_be_attached(
        timeout=WAIT_MS)
    expect(section.locator('[data-field="rollout-weight"]')).to_have_text(
        re.compile(r"^\d+ %$"), timeout=WAIT_MS)
    assert page.evaluate("window.stillTheSamePage") is True
