"""The incident pages: a list, and one incident's timeline with probes, decisions and their
evidence, operator actions, notices with their delivery, and the time to recover."""

from __future__ import annotations

import re

from monitor.actor import SYSTEM, Actor
from monitor.storage.store import NoticeAttempt, ProbeRow
from monitor.storage.timeline import MARGIN_S
from tests.web.support import auth

OPERATOR = Actor("operator", "operator", source_ip="127.0.0.1")


def write_failover(runtime, clock) -> None:
    """v1 fails from t0+2 (an operator injected errors), goes down at t0+6, fails over at t0+7."""
    t0 = clock()
    runtime.recorder.record(OPERATOR, "chaos.errors", target="v1", params={"probability": 1},
                            reason="game day <b>drill</b>")
    with runtime.store.write() as session:
        for n, ok in enumerate([True, False, False, False]):
            session.add(ProbeRow(version="v1", at=t0 + 2 * n, ok=ok,
                                 latency_ms=4.0 if ok else None,
                                 failure=None if ok else "http_5xx", status=200 if ok else 500))
        session.add(ProbeRow(version="v2", at=t0 + 6.5, ok=True, latency_ms=3.0))
        session.add(ProbeRow(version="v3", at=t0 + 6.5, ok=True, latency_ms=3.0))
    clock.advance(6)
    failed = [{"version": "v1", "ok": False, "at": t0 + 2 * n, "failure": "http_5xx"}
              for n in (1, 2, 3)]
    runtime.recorder.record(SYSTEM, "version.state", target="v1", reason="up -> down",
                            evidence=failed)
    clock.advance(1)
    runtime.recorder.record(SYSTEM, "failover.automatic", target="v2",
                            params={"source": "v1", "epoch": 1}, reason="v1 down",
                            evidence=failed, notice=("failover", "Failover v1 -> v2", {}))
    with runtime.store.write() as session:
        session.add(NoticeAttempt(notice_id=1, at=t0 + 8, ok=False, error="connection refused"))


def incident_id(client) -> int:
    page = client.get("/incidents", auth=auth("viewer")).text
    found = re.findall(r'href="/incidents/(\d+)"', page)
    assert len(found) == 1, page
    return int(found[0])


def test_it_lists_a_failover_with_its_time_to_recover(client, runtime, clock):
    write_failover(runtime, clock)
    page = client.get("/incidents", auth=auth("viewer"))
    assert page.status_code == 200
    row = re.search(r'<tr class="incident-closed".*?</tr>', page.text, re.S)
    assert row, page.text
    assert "failover" in row.group(0) and "automatic failover to v2" in row.group(0)
    assert "5.0 s" in row.group(0)  # first failed probe t0+2, served by v2 at t0+7


def test_it_shows_one_incidents_timeline(client, runtime, clock):
    write_failover(runtime, clock)
    page = client.get(f"/incidents/{incident_id(client)}", auth=auth("viewer"))
    assert page.status_code == 200
    html = page.text
    assert re.search(r'data-field="ttr">5.0 s<', html)
    kinds = re.findall(r'data-kind="(\w+)"', html)
    assert kinds.count("probe") == 5  # v1's four and the v2 confirming probe, not v3's
    assert {"decision", "action", "notice"} <= set(kinds)
    assert "operator (operator): chaos.errors v1" in html
    assert "game day &lt;b&gt;drill&lt;/b&gt;" in html and "<b>drill" not in html
    assert "failover.automatic v2" in html and "failure=http_5xx" in html
    notices = html.split('id="incident-notices"')[1]
    assert "Failover v1 -&gt; v2" in notices and "failed: connection refused" in notices


def test_it_shows_an_open_incident_as_open(client, runtime, clock):
    runtime.recorder.record(SYSTEM, "version.state", target="v1", reason="up -> flapping")
    clock.advance(90)
    html = client.get(f"/incidents/{incident_id(client)}", auth=auth("viewer")).text
    assert re.search(r'data-field="closed">open<', html)
    assert re.search(r'data-field="ttr">open for 90 s<', html)


def test_it_leaves_out_what_happened_outside_the_incident(client, runtime, clock):
    runtime.recorder.record(OPERATOR, "chaos.latency", target="v3", reason="long before")
    clock.advance(MARGIN_S + 60)
    write_failover(runtime, clock)
    html = client.get(f"/incidents/{incident_id(client)}", auth=auth("viewer")).text
    assert "chaos.errors" in html and "long before" not in html


def test_it_answers_404_for_an_unknown_incident_and_422_for_a_bad_id(client):
    assert client.get("/incidents/7", auth=auth("viewer")).status_code == 404
    assert client.get("/incidents/0", auth=auth("viewer")).status_code == 422
    assert client.get("/incidents/x", auth=auth("viewer")).status_code == 422
