"""A real browser against the real system: `python -m monitor run` with v1..v3 spawned.

An operator breaks v1 from the dashboard and watches the failover to v2 arrive on the overview
without a reload, then finds it in the audit log and as an incident with its timeline; a
viewer sees no action buttons; forged POSTs are refused. Needs Chromium at /usr/bin/chromium
(skipped when missing unless MONITOR_REQUIRE_BROWSER=1, which makes a missing browser a
failure).
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.browser import OPERATOR, VIEWER, browser_system, page_for

FAILOVER_WAIT_MS = 20_000


@pytest.fixture
def system(tmp_path):
    with browser_system(tmp_path / "data") as (monitor, browser):
        yield monitor, browser


def test_it_shows_an_operators_fault_injection_and_the_failover_live(system, tmp_path):
    from playwright.sync_api import expect

    monitor, browser = system
    page = page_for(browser, OPERATOR)
    page.goto(monitor.url + "/")
    expect(page.locator('[data-field="active"]')).to_have_text("v1")

    chaos = page.locator("#chaos-v1-errors")
    chaos.locator('input[name="probability"]').fill("1")
    chaos.get_by_role("button", name="errors").click()
    page.wait_for_url("**/?msg=*")
    expect(page.locator("#flash")).to_contain_text("v1: errors injected")

    page.evaluate("window.stillTheSamePage = true")  # lost if the page were reloaded
    expect(page.locator('[data-field="active"]')).to_have_text("v2", timeout=FAILOVER_WAIT_MS)
    expect(page.locator('tr[data-version="v1"] [data-col="state"]')).to_have_text(
        "down", timeout=FAILOVER_WAIT_MS)
    assert page.evaluate("window.stillTheSamePage") is True
    page.screenshot(path=str(tmp_path / "overview-after-failover.png"), full_page=True)
    assert (tmp_path / "overview-after-failover.png").stat().st_size > 0

    page.goto(monitor.url + "/audit")
    expect(page.locator("#verify")).to_contain_text("records valid")
    log = page.locator("table.audit-log")
    expect(log).to_contain_text("chaos.errors")
    expect(log).to_contain_text("failover.automatic")
    expect(log.locator("tr", has_text="chaos.errors")).to_contain_text(OPERATOR[0])
    page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)

    # the on-call view of the same failover: one incident, its timeline, its time to recover
    page.goto(monitor.url + "/incidents")
    incident = page.locator("tr.incident-closed", has_text="automatic failover to v2")
    expect(incident).to_have_count(1)
    incident.get_by_role("link").click()
    expect(page.locator('[data-field="version"]')).to_have_text("v1")
    expect(page.locator('[data-field="ttr"]')).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
    timeline = page.locator("#timeline")
    expect(timeline.locator('tr[data-kind="action"]', has_text="chaos.errors")).to_contain_text(
        OPERATOR[0])
    decision = timeline.locator('tr[data-kind="decision"]', has_text="failover.automatic")
    expect(decision).to_have_count(1)
    expect(decision).to_contain_text("failure=http_5xx")
    assert timeline.locator('tr[data-kind="probe"].outcome-failed').count() >= 3  # fall = 3
    page.screenshot(path=str(tmp_path / "incident.png"), full_page=True)


def test_it_shows_a_viewer_no_actions_and_refuses_forged_posts(system):
    monitor, browser = system
    viewer = page_for(browser, VIEWER)
    viewer.goto(monitor.url + "/")
    assert viewer.locator('[data-field="active"]').inner_text() == "v1"
    assert viewer.locator('form[action^="/actions/"]').count() == 0
    assert viewer.get_by_role("button", name="Fail over").count() == 0

    as_viewer = viewer.request.post(monitor.url + "/actions/failover",
                                    form={"target": "v2", "reason": "forged", "force": "on"},
                                    headers={"Origin": monitor.url})
    assert as_viewer.status == 403

    # A cross-site page that auto-submits a form to the dashboard with the operator's
    # credentials in the browser: refused, because it carries no token and the browser says
    # where it came from.
    operator = page_for(browser, OPERATOR)
    operator.goto(monitor.url + "/")
    operator.set_content(
        f'<form method="post" action="{monitor.url}/actions/failover">'
        '<input name="target" value="v3"><input name="reason" value="forged">'
        '<input name="force" value="on"><input name="csrf_token" value="1.forged"></form>')
    with operator.expect_navigation() as navigation:
        operator.eval_on_selector("form", "form => form.submit()")
    assert navigation.value.status == 403

    with httpx.Client(base_url=monitor.url, auth=OPERATOR, timeout=5) as client:
        assert client.get("/api/status").json()["active"] == "v1"
        rows = client.get("/api/audit?action=csrf.rejected").json()["rows"]
    assert [r["actor"] for r in rows] == [OPERATOR[0]]
