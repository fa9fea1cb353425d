"""The audit action filter: the same rows as a prefix match, answered by an index, newest first."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from monitor.storage import audit
from monitor.storage.store import AuditRow

KEY = b"k" * 32
ACTIONS = ["login.failed", "login", "loginx.other", "user.add", "user.disable", "failover.auto",
           "failover.manual", "failover.manual.forced", "chaos.inject", "login.lockout"]


@pytest.fixture
def filled(store):
    with store.write() as session:
        for index, action in enumerate(ACTIONS * 3):
            audit.append(session, KEY, now=1.75e9 + index, action=action)
    return store


@pytest.mark.parametrize("wanted, expected", [
    ("login", {"login.failed", "login", "login.lockout"}),  # not loginx.other
    ("user", {"user.add", "user.disable"}),
    ("failover.manual", {"failover.manual", "failover.manual.forced"}),
    ("failover.manual.forced", {"failover.manual.forced"}),
    ("chaos.inject", {"chaos.inject"}),
    ("nothing", set()),
])
def test_it_matches_an_action_and_everything_under_it(filled, wanted, expected):
    query = select(AuditRow).where(audit.action_filter(wanted)).order_by(col(AuditRow.seq).desc())
    with filled.read() as session:
        rows = list(session.exec(query))
    assert {r.action for r in rows} == expected
    assert [r.seq for r in rows] == sorted((r.seq for r in rows), reverse=True)


@pytest.mark.parametrize("wanted", ["user", "failover.manual"])
def test_it_answers_the_filter_from_an_index_not_a_table_scan(sqlite_store, wanted):
    query = (select(AuditRow).where(audit.action_filter(wanted), col(AuditRow.seq) < 10**9)
             .order_by(col(AuditRow.seq).desc()).limit(51))
    compiled = query.compile(sqlite_store.reader, compile_kwargs={"literal_binds": True})
    with sqlite_store.read() as session:
        plan = " | ".join(str(row[-1]) for row in session.execute(
            text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "USING INDEX ix_audit_family_seq" in plan or "USING INDEX ix_audit_action_seq" in plan
    assert "SCAN audit" not in plan.replace("SCAN audit USING INDEX", "")
