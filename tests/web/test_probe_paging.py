"""Keyset paging of /api/probes and /health-log: `before=` a probe id or a time, never OFFSET."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape
from itertools import count

import pytest

from monitor.storage.store import ProbeRow
from tests.web.support import auth

NEXT = re.compile(r'href="(/health-log\?[^"]+)" rel="next"')


def add(runtime, times: list[float], version: str = "v1") -> list[int]:
    """Probe rows at the given times; returns their ids."""
    with runtime.store.write() as session:
        rows = [ProbeRow(version=version, at=at, ok=True, latency_ms=1.0) for at in times]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def seeded(runtime) -> set[int]:
    """150 probes over 100 s; groups of rows share a time, some across a page boundary."""
    now = runtime.clock()
    times = [now - 100 + n // 3 for n in range(150)]  # three rows per time
    return set(add(runtime, times[:75], "v1") + add(runtime, times[75:], "v2"))


def test_it_pages_the_api_without_losing_or_repeating_rows_while_rows_arrive(client, runtime):
    expected = seeded(runtime)
    seen: list[int] = []
    later = count(1)
    url = "/api/probes?limit=40"
    for _ in range(10):  # bounded: 150 rows are 4 pages
        page = client.get(url, auth=auth("viewer")).json()
        seen += [row["id"] for row in page["rows"]]
        ats = [(row["at"], row["id"]) for row in page["rows"]]
        assert ats == sorted(ats, reverse=True)  # newest first
        # between two requests: new probes arrive, and a late batch row older than the page
        add(runtime, [runtime.clock() + next(later)])
        if page["next_before"] is None:
            break
        expected |= set(add(runtime, [page["rows"][-1]["at"] - 0.5]))
        url = f"/api/probes?limit=40&before={page['next_before']}"
    assert len(seen) == len(set(seen))
    assert set(seen) == expected
    assert page["has_next"] is False


def test_it_pages_the_health_log_with_an_older_link(client, runtime):
    expected = seeded(runtime)
    shown = 0
    url: str | None = "/health-log"
    pages = 0
    while url is not None and pages < 10:
        html = client.get(url, auth=auth("viewer")).text
        pages += 1
        shown += html.count("<td>v1</td>") + html.count("<td>v2</td>")
        add(runtime, [runtime.clock() + pages])  # a new probe between two pages
        found = NEXT.search(html)
        url = unescape(found.group(1)) if found else None
        if pages > 1:
            assert 'href="/health-log?" rel="first">Newest</a>' in html
    assert (pages, shown) == (3, len(expected))


def test_it_pages_from_a_time_and_keeps_the_version_filter(client, runtime):
    now = runtime.clock()
    add(runtime, [now - 30, now - 20, now - 10], "v1")
    add(runtime, [now - 25, now - 15], "v2")
    found = client.get(f"/api/probes?version=v1&before={now - 15}", auth=auth("viewer")).json()
    assert [r["at"] for r in found["rows"]] == [now - 20, now - 30]
    moment = datetime.fromtimestamp(now - 12, UTC).replace(tzinfo=None).isoformat()
    html = client.get(f"/health-log?version=v2&before={moment}", auth=auth("viewer")).text
    assert html.count("<td>v2</td>") == 2 and "<td>v1</td>" not in html  # naive = UTC
    at_20 = client.get(f"/health-log?version=v2&before={moment[:-2]}20Z",  # 20 s ago, "Z"
                       auth=auth("viewer")).text
    assert at_20.count("<td>v2</td>") == 1


@pytest.mark.parametrize(("before", "reason"), [
    ("yesterday", "before: expected a probe id, or a time"),
    ("2025-13-40T00:00", "before: expected a probe id, or a time"),
    ("-5", "before: a time between 1970"),
    ("1e300", "before: a time between 1970"),
    ("nan", "before: a time between 1970"),
    ("424242", "before: no probe 424242"),
    ("9" * 30, "before: a time between 1970"),
])
@pytest.mark.parametrize("path", ["/api/probes", "/health-log"])
def test_it_refuses_a_bad_keyset_with_the_reason(client, runtime, path, before, reason):
    add(runtime, [runtime.clock() - 1])
    answer = client.get(path, params={"before": before}, auth=auth("viewer"))
    assert answer.status_code == 422
    assert reason in unescape(answer.text)


def test_it_refuses_an_over_long_keyset(client):
    answer = client.get("/api/probes", params={"before": "1" * 65}, auth=auth("viewer"))
    assert answer.status_code == 422 and "before" in answer.text
