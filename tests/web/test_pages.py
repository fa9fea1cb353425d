"""Pages and actions as an operator sees them: content, escaping, outcomes, validation."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text

from monitor.actor import Actor
from monitor.storage.audit import utc_iso
from monitor.storage.store import Incident, Notice, ProbeRow
from monitor.web.deps import format_time
from tests.web.support import audit_rows, auth, post_form


def add_probes(runtime, rows: list[tuple[str, float, float | None]]) -> None:
    with runtime.store.write() as session:
        for version, ago, latency in rows:
            session.add(ProbeRow(version=version, at=runtime.clock() - ago, ok=latency is not None,
                                 latency_ms=latency, failure=None if latency else "timeout",
                                 detail="" if latency else "no answer in 1 s"))


def test_it_shows_the_overview_with_state_chart_and_versions(client, runtime):
    add_probes(runtime, [("v1", 60, 3.0), ("v1", 30, 5.0), ("v1", 10, None), ("v2", 20, 4.0),
                         ("v2", 5, 6.0)])
    html = client.get("/", auth=auth("viewer")).text
    assert 'data-field="active">v1<' in html
    for version in ("v1", "v2", "v3"):
        assert f'<tr data-version="{version}"' in html
    assert "<svg" in html and "<polyline points=" in html
    assert 'class="fail"' in html  # the failed probe is marked on the chart
    assert '<script src="/static/app.js" defer></script>' in html
    assert "<script>" not in html and " style=" not in html  # nothing inline (CSP)


def test_it_shows_an_open_incident_banner(client, runtime):
    assert 'id="incident" class="banner banner-incident" role="alert" hidden' in client.get(
        "/", auth=auth("viewer")).text
    with runtime.store.write() as session:
        session.add(Incident(kind="all_down", opened_at=runtime.clock() - 30,
                             summary="<all> versions down"))
    html = client.get("/", auth=auth("viewer")).text
    assert 'role="alert" hidden' not in html
    assert "all_down: &lt;all&gt; versions down since" in html


def test_it_is_ready_only_when_started_and_writable(client, runtime):
    assert client.get("/readyz").status_code == 503
    runtime.started = True
    assert client.get("/readyz").json() == {"ready": True, "status": "ready", "started": True,
                                            "writable": True, "queued_writes": 0}


def test_it_reports_degraded_while_decisions_wait_for_the_database(client, runtime):
    runtime.started = True
    runtime.metrics.set_write_queue(3)
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["queued_writes"]) == ("degraded", 3)
    assert "monitor_write_queue 3.0" in client.get("/metrics", auth=auth("viewer")).text


def test_it_checks_the_write_lock_for_readyz_at_most_every_two_seconds(client, runtime,
                                                                         clock, monkeypatch):
    checks: list[float] = []

    def not_writable() -> bool:  # a database that stays locked: the case a flood would hurt
        checks.append(clock())
        return False

    monkeypatch.setattr(runtime.store, "writable", not_writable)
    runtime.started = True
    for _ in range(5):
        assert client.get("/readyz").json()["writable"] is False
    clock.advance(1.5)
    assert client.get("/readyz").status_code == 503
    assert len(checks) == 1
    clock.advance(1.0)
    client.get("/readyz")
    assert len(checks) == 2


def test_it_shows_no_action_buttons_to_a_viewer(client):
    viewer = client.get("/", auth=auth("viewer")).text
    operator = client.get("/", auth=auth("operator")).text
    assert 'action="/actions/' not in viewer
    assert 'action="/actions/failover"' in operator
    assert 'action="/actions/chaos/v1/crash"' in operator
    assert 'action="/logout"' in viewer  # everyone can log out


def test_it_escapes_a_hostile_reason_on_the_page_and_encodes_it_in_the_row(client, runtime):
    reason = '<script>alert("x")</script>\r\nInjected: line'
    response = post_form(client, runtime, "/actions/failover", "operator",
                         {"target": "v2", "reason": reason, "force": "on"})
    assert response.status_code == 303
    [row] = audit_rows(runtime, "failover.manual")
    assert "\r" not in row.reason and "\n" not in row.reason
    assert "\\x0d\\x0a" in row.reason
    html = client.get("/audit", auth=auth("viewer")).text
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;\\x0d\\x0aInjected: line" in html


def test_it_shows_the_outcome_of_an_action_after_the_redirect(client, runtime):
    response = post_form(client, runtime, "/actions/failover", "operator",
                         {"target": "v3", "reason": "game day", "force": "on"})
    location = response.headers["location"]
    assert parse_qs(urlsplit(location).query)["msg"] == ["switched to v3"]
    page = client.get(location, auth=auth("operator")).text
    assert 'class="flash flash-ok"' in page and "switched to v3" in page
    assert runtime.status()["active"] == "v3"
    [row] = audit_rows(runtime, "failover.manual")
    assert (row.actor, row.role, row.target, row.source_ip) == (
        "operator", "operator", "v3", "testclient")


def test_it_ignores_a_flash_message_it_did_not_sign(client):
    page = client.get("/?msg=Your+password+expired&ok=1&sig=00", auth=auth("viewer")).text
    assert "Your password expired" not in page


def test_it_reports_a_refused_action_as_an_error(client, runtime):
    response = post_form(client, runtime, "/actions/failover", "operator",
                         {"target": "v2", "reason": "not up yet"})  # v2 unknown, no force
    page = client.get(response.headers["location"], auth=auth("operator")).text
    assert 'class="flash flash-error"' in page
    assert runtime.status()["active"] == "v1"


def test_it_sends_chaos_with_typed_parameters(client, runtime):
    response = post_form(client, runtime, "/actions/chaos/v2/latency", "operator",
                         {"ms": "250", "jitter_ms": "20"})
    assert response.status_code == 303
    [row] = audit_rows(runtime, "chaos.latency")
    assert (row.target, row.outcome) == ("v2", "refused")  # the service is not running
    assert {"ms": 250, "jitter_ms": 20}.items() <= json.loads(row.params).items()


@pytest.mark.parametrize("path, form, reason, action", [
    ("/actions/failover", {"target": "v9", "reason": "x"}, "target: unknown version",
     "failover.manual"),
    ("/actions/failover", {"target": "v2", "reason": ""}, "reason: required", "failover.manual"),
    ("/actions/failover", {"target": "v2", "reason": "x", "force": "maybe"}, "force:",
     "failover.manual"),
    ("/actions/failover", {"target": "v2", "reason": "x" * 501}, "at most 500",
     "failover.manual"),
    ("/actions/chaos/v9/crash", {}, "version: unknown version", "chaos.crash"),
    ("/actions/chaos/v1/explode", {}, "fault: unknown fault", "chaos.unknown"),
    ("/actions/chaos/v1/latency", {"ms": "fast"}, "ms: expected a number", "chaos.latency"),
    ("/actions/chaos/v1/latency", {"ms": "99999"}, "ms: must be between 0 and 10000",
     "chaos.latency"),
    ("/actions/chaos/v1/errors", {"probability": "nan"}, "probability: must be between",
     "chaos.errors"),
    ("/actions/pause", {"reason": "y" * 600}, "at most 500", "failover.pause"),
    ("/actions/resume", {"reason": "y" * 600}, "at most 500", "failover.resume"),
    ("/actions/failback", {"reason": "y" * 600}, "at most 500", "failover.failback"),
])
def test_it_refuses_bad_form_input_with_422_audits_it_and_changes_nothing(
        client, runtime, path, form, reason, action):
    before = audit_rows(runtime)
    response = post_form(client, runtime, path, "operator", form)
    assert response.status_code == 422
    assert reason in response.text
    [row] = audit_rows(runtime)[len(before):]
    assert (row.actor, row.outcome, row.action) == ("operator", "invalid", action)
    assert reason in row.reason
    assert runtime.status()["paused"] is False and runtime.status()["active"] == "v1"


def test_it_pauses_and_resumes_and_shows_the_state(client, runtime):
    post_form(client, runtime, "/actions/pause", "operator", {"reason": "maintenance"})
    page = client.get("/", auth=auth("operator")).text
    assert 'data-field="paused" class="paused">paused<' in page
    assert 'action="/actions/resume"' in page
    post_form(client, runtime, "/actions/resume", "operator")
    assert runtime.status()["paused"] is False
    assert [r.action for r in audit_rows(runtime) if r.action.startswith("failover.")] == [
        "failover.pause", "failover.resume"]


def test_it_logs_out_with_401_and_clear_site_data(client, runtime):
    response = post_form(client, runtime, "/logout", "viewer")
    assert response.status_code == 401
    assert response.headers["clear-site-data"] == '"credentials", "cache"'
    assert response.headers["www-authenticate"].startswith("Basic realm=")
    assert [r.actor for r in audit_rows(runtime, "logout")] == ["viewer"]


def test_it_filters_and_pages_the_audit_log(client, runtime):
    for index in range(60):
        runtime.recorder.record(Actor("ann" if index % 2 else "bob", "operator"),
                                f"test.step{index % 3}", reason=f"row {index}")
    first = client.get("/api/audit?actor=ann&limit=20", auth=auth("viewer")).json()
    assert len(first["rows"]) == 20 and first["has_next"]
    assert {r["actor"] for r in first["rows"]} == {"ann"}
    second = client.get(f"/api/audit?actor=ann&limit=20&before={first['next_before']}",
                        auth=auth("viewer")).json()
    seqs = [r["seq"] for r in first["rows"] + second["rows"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 30
    by_action = client.get("/api/audit?action=test&limit=500", auth=auth("viewer")).json()
    assert len(by_action["rows"]) == 60
    html = client.get("/audit?actor=bob&action=test.step1", auth=auth("viewer")).text
    assert html.count("<td>test.step1</td>") == 10


def test_it_filters_the_audit_log_by_time(client, runtime, clock):
    runtime.recorder.record(Actor("ann", "operator"), "test.early")
    clock.advance(3600)
    runtime.recorder.record(Actor("ann", "operator"), "test.late")
    since = utc_iso(clock() - 60)
    rows = client.get(f"/api/audit?since={since}", auth=auth("viewer")).json()["rows"]
    assert [r["action"] for r in rows] == ["test.late"]
    rows = client.get(f"/api/audit?until={since}&action=test",
                      auth=auth("viewer")).json()["rows"]
    assert [r["action"] for r in rows] == ["test.early"]
    assert client.get("/audit?since=yesterday", auth=auth("viewer")).status_code == 422


def test_it_shows_the_chain_verification_on_the_audit_page(client, runtime):
    html = client.get("/audit", auth=auth("viewer")).text
    total = len(audit_rows(runtime))
    assert f"{total}/{total} records valid" in html and "verify-ok" in html
    with runtime.store.write() as session:
        session.exec(text("UPDATE audit SET reason='edited' WHERE seq=2"))
    report = client.get("/api/audit/verify", auth=auth("admin")).json()
    assert report["ok"] is False
    assert [p["kind"] for p in report["problems"]] == ["modified"]
    assert "verify-bad" in client.get("/audit", auth=auth("viewer")).text  # the API refreshed it


def test_it_reuses_the_audit_page_verification_for_a_minute(client, runtime, clock):
    first = client.get("/audit", auth=auth("viewer")).text
    verified_at = format_time(clock())
    assert f"verified at {verified_at}" in first and "verify-ok" in first
    client.get("/", auth=("viewer", "Wrong-password-1"))  # a failed login moves the head
    with runtime.store.write() as session:  # and the new row is edited
        session.exec(text("UPDATE audit SET reason='edited' WHERE seq=(SELECT max(seq) "
                          "FROM audit)"))
    clock.advance(59)
    cached = client.get("/audit", auth=auth("viewer")).text
    assert f"verified at {verified_at}" in cached and "verify-ok" in cached
    clock.advance(2)
    fresh = client.get("/audit", auth=auth("viewer")).text
    assert f"verified at {format_time(clock())}" in fresh and "verify-bad" in fresh


def test_it_pages_the_health_log_per_version(client, runtime):
    add_probes(runtime, [("v1", i, 2.0) for i in range(1, 61)] + [("v2", 5, None)])
    page = client.get("/health-log?version=v1", auth=auth("viewer")).text
    assert page.count("<td>v1</td>") == 50 and "<td>v2</td>" not in page
    older = re.search(r'href="/health-log\?([^"]+)" rel="next"', page)
    assert older is not None and parse_qs(older.group(1).replace("&amp;", "&"))["version"] == ["v1"]
    second = client.get(f"/health-log?{older.group(1).replace('&amp;', '&')}",
                        auth=auth("viewer")).text
    assert second.count("<td>v1</td>") == 10 and 'rel="next"' not in second
    failed = client.get("/health-log?version=v2", auth=auth("viewer")).text
    assert "no answer in 1 s" in failed and "probe-fail" in failed
    api = client.get("/api/probes?version=v2", auth=auth("viewer")).json()
    assert [r["failure"] for r in api["rows"]] == ["timeout"]


def test_it_lists_notices_with_their_delivery_state(client, runtime):
    with runtime.store.write() as session:
        session.add(Notice(message_id="<a@x>", kind="failover", subject="Failover v1 -> v2",
                           created_at=runtime.clock(), status="unsent"))
        session.add(Notice(message_id="<b@x>", kind="lockout", subject="<b>lockout</b>",
                           created_at=runtime.clock() - 5, status="failed", attempts=3,
                           last_error="connection refused"))
    html = client.get("/notices", auth=auth("viewer")).text
    assert "Failover v1 -&gt; v2" in html and "not sent" in html
    assert "&lt;b&gt;lockout&lt;/b&gt;" in html and "connection refused" in html
    api = client.get("/api/notices", auth=auth("viewer")).json()
    assert [r["status"] for r in api["rows"]] == ["unsent", "failed"]


def test_it_lists_users_for_admins(client):
    html = client.get("/users", auth=auth("admin")).text
    assert all(f"<td>{name}</td>" in html for name in ("viewer", "operator", "admin"))
    users = client.get("/api/users", auth=auth("admin")).json()["rows"]
    assert "password_hash" not in str(users)

