"""One rollout step as one transaction: its audit rows, the persisted rollout, its notices.

Written by the leader only (a fenced write), so a monitor that lost the lease writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.actor import Actor
from monitor.notices import delivery
from monitor.storage import audit, rollouts
from monitor.storage.store import Store


@dataclass
class Rows:
    """One transaction's worth: audit rows, the rollout record, notices."""

    actor: Actor
    rows: list[dict[str, Any]]
    record: dict[str, Any]
    notices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def commit(store: Store, audit_key: bytes, service: str, rows: Rows, now: float) -> None:
    """Blocking: the rows, the record and the notices in one fenced write transaction."""
    with store.write(fenced=True) as session:
        for one in rows.rows:
            audit.append(session, audit_key, now=now, **rows.actor.audit_fields(), **one)
        if rows.record["rollout"] is not None:
            rollouts.save(session, service, rows.record, now=now)
        for subject, payload in rows.notices:
            delivery.enqueue(session, kind="rollout", subject=subject, payload=payload, now=now)


def row(action: str, target: str, params: dict[str, Any], outcome: str, reason: str, *,
        evidence: list[Any] | None = None) -> dict[str, Any]:
    return {"action": action, "target": target, "params": params, "outcome": outcome,
            "reason": reason[:500], "evidence": evidence}
