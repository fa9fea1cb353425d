"""No query on a request path scans a big table: each is answered through an index.

Every SELECT the dashboard runs while it answers a request (reader and writer engines alike)
is captured and explained with SQLite's `EXPLAIN QUERY PLAN`; a `SCAN` of a table that grows
with history fails the test (a `SEARCH` through an index, or a scan of a small table, is fine).
The plans are those of a database without ANALYZE statistics, as the monitor's is.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from sqlalchemy import event

from monitor.storage.store import Notice, ProbeRow
from tests.web.support import auth

BIG = {"probe", "probe_rollup", "probe_hourly", "audit", "notice", "notice_attempt"}
SCAN = re.compile(r"\bSCAN (\w+)")
REQUESTS = [
    "/", "/partials/chart", "/api/status",
    "/health-log", "/health-log?version=v1", "/health-log?before=1",
    "/health-log?version=v2&before=2025-06-01T00:00",
    "/api/probes", "/api/probes?version=v1&since=1749990000&before=1",
    "/api/probes?before=1749999000.5",
    "/audit", "/audit?action=failover", "/audit?actor=admin&before=3",
    "/api/audit?action=user", "/api/audit?since=2025-01-01T00:00",
    "/charts?window=15m", "/charts?window=24h", "/charts?window=7d",
    "/incidents",
    "/?service=books", "/api/status?service=books", "/api/services",
    "/health-log?service=books", "/health-log?service=books&version=v1&before=1",
    "/api/probes?service=books", "/api/probes?service=books&version=v2&before=1749999000.5",
]  # not yet: /notices and /api/notices still page by OFFSET (a walk of the created_at index)


@pytest.fixture
def captured(runtime):
    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    for engine in (runtime.store.reader, runtime.store.writer):
        event.listen(engine, "before_cursor_execute", capture)
    return statements


def scans(runtime, statements) -> list[str]:
    path = runtime.store.url.removeprefix("sqlite:///")
    found = []
    with sqlite3.connect(path) as conn:
        for statement, parameters in statements:
            for *_, detail in conn.execute(f"EXPLAIN QUERY PLAN {statement}", parameters):
                table = SCAN.search(detail)
                if table and table.group(1) in BIG:
                    found.append(f"{detail}: {' '.join(statement.split())[:300]}")
    return found


@pytest.mark.parametrize("path", REQUESTS)
def test_it_answers_a_request_without_scanning_a_big_table(client, runtime, captured, path):
    with runtime.store.write() as session:
        session.add(ProbeRow(version="v1", at=runtime.clock() - 5, ok=True, latency_ms=2.0))
        session.add(Notice(message_id="<n@x>", kind="failover", subject="s",
                           created_at=runtime.clock()))
    captured.clear()
    assert client.get(path, auth=auth("admin")).status_code == 200
    assert captured, "no query was captured"
    assert scans(runtime, captured) == []
