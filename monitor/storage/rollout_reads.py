"""The audit rows of the latest rollout (read-only): its accepted `rollout.start` and every
row of the rollout actions after it, in order. Two indexed reads: the newest start by
(action, seq), then the rollout actions from it by (action, seq), at most `LIMIT` rows."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import col, select

from monitor.storage.store import AuditRow, Store

START = "rollout.start"
ACTIONS = (START, "rollout.step", "rollout.analysis", "rollout.pause", "rollout.resume",
           "rollout.promote", "rollout.abort", "rollout.complete")
LIMIT = 300


def latest_rollout_rows(store: Store, *, limit: int = LIMIT) -> list[AuditRow]:
    """The rows of the newest rollout, oldest first (empty when none was ever started); the
    newest `limit` of them when there are more."""
    with store.read() as session:
        started = session.exec(select(func.max(AuditRow.seq))
                               .where(col(AuditRow.action) == START)
                               .where(col(AuditRow.outcome) == "ok")).one()
        if started is None:
            return []
        rows = list(session.exec(
            select(AuditRow).where(col(AuditRow.action).in_(ACTIONS))
            .where(col(AuditRow.seq) >= started)
            .order_by(col(AuditRow.seq).desc()).limit(limit)))
    return rows[::-1]
