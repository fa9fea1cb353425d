"""The persisted rollout of each service: one row, replaced on every step.

The leader writes it in the same transaction as the audit row of the step (fenced), so a
restarted or newly elected monitor resumes from the persisted step, never from an older one.
"""

from __future__ import annotations

import json
from typing import Any, cast

from sqlmodel import Field, Session, SQLModel

from monitor.storage.store import Store


class RolloutRow(SQLModel, table=True):
    __tablename__ = "rollout_state"
    service: str = Field(primary_key=True)
    record: str = "{}"
    updated_at: float = 0.0


def load(store: Store, service: str) -> dict[str, Any] | None:
    with store.read() as session:
        row = session.get(RolloutRow, service)
        return None if row is None else cast(dict[str, Any], json.loads(row.record))


def save(session: Session, service: str, record: dict[str, Any], *, now: float) -> None:
    row = session.get(RolloutRow, service) or RolloutRow(service=service)
    row.record, row.updated_at = json.dumps(record, sort_keys=True), now
    session.add(row)
