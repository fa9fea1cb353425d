"""Incidents as an on-call engineer reads them, derived from the audit log (read-only).

The store keeps an `incident` row only for "all versions down"; a failover is recorded as
audit rows (`version.state`, `failover.automatic`, ...). An incident here is a period during
which the ACTIVE version was not serving: it opens when the active version goes down or
flapping (or an all-down incident is opened, or a failover arrives that the log did not see
coming) and closes when clients are served again: a switch to another version, the active
version up again, or `incident.closed` for an all-down incident. Its id is the `seq` of the
audit row that opened it, so a link to it never changes.

`step` is the pure fold (rows as data, no clock); `IncidentIndex` applies it incrementally:
each refresh reads only the rows after the last one it saw (by the (action, seq) index), so a
page costs one small query however long the log is. The index keeps the newest
`MAX_KEPT` incidents.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import col, select

from monitor.storage.store import AuditRow, Store

MAX_KEPT = 1000
BATCH = 2000
SWITCHES = ("failover.automatic", "failover.manual")
STATE = "version.state"
OPENED, CLOSED = "incident.opened", "incident.closed"
FOLDED = (*SWITCHES, STATE, OPENED, CLOSED)
NOT_SERVING = ("down", "flapping")


class IncidentKind(StrEnum):
    OUTAGE = "outage"  # the active version was down and came back without a switch
    FAILOVER = "failover"  # ended by a switch to another version
    ALL_DOWN = "all_down"  # every version was down (fail static)


@dataclass(frozen=True)
class Entry:
    """The part of one audit row the fold needs."""

    seq: int
    at: float
    action: str
    target: str = ""
    reason: str = ""
    outcome: str = "ok"
    params: dict[str, Any] = field(default_factory=dict)
    evidence: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class IncidentSummary:
    id: int  # seq of the row that opened it
    kind: IncidentKind
    version: str  # the active version that stopped serving
    opened_at: float
    first_failure_at: float  # earliest failed probe in the opening evidence
    summary: str
    closed_at: float | None = None
    closed_seq: int | None = None
    recovered_by: str = ""
    target: str | None = None  # the version serving after it

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def time_to_recover(self) -> float | None:
        """From the first failed probe to clients being served again (None while open)."""
        return None if self.closed_at is None else self.closed_at - self.first_failure_at


def first_failure(entry: Entry) -> float:
    times = [float(o["at"]) for o in entry.evidence
             if isinstance(o, dict) and o.get("ok") is False and isinstance(o.get("at"),
                                                                            (int, float))]
    return min([entry.at, *times])


def _open(entry: Entry, version: str, kind: IncidentKind, summary: str) -> IncidentSummary:
    return IncidentSummary(id=entry.seq, kind=kind, version=version, opened_at=entry.at,
                           first_failure_at=first_failure(entry), summary=summary)


def _close(incident: IncidentSummary, entry: Entry, how: str,
           target: str | None = None) -> IncidentSummary:
    return replace(incident, closed_at=entry.at, closed_seq=entry.seq, recovered_by=how,
                   target=target or incident.target)


def step(active: str, current: IncidentSummary | None, entry: Entry
         ) -> tuple[str, IncidentSummary | None, IncidentSummary | None]:
    """Fold one row: (the active version after it, the open incident, an incident it closed)."""
    if entry.outcome != "ok":
        return active, current, None  # a refused action changed nothing
    if entry.action in SWITCHES:
        source = str(entry.params.get("source") or active)
        target = entry.target
        how = ("automatic failover" if entry.action == SWITCHES[0] else
               f"manual failover by {entry.params.get('actor', 'an operator')}")
        if current is None:
            if entry.action == SWITCHES[0] and not entry.params.get("failback"):
                opened = _open(entry, source, IncidentKind.FAILOVER, f"{source} failed")
                return target, None, _close(opened, entry, f"{how} to {target}", target)
            return target, None, None  # a planned switch is no incident
        if current.kind == IncidentKind.ALL_DOWN:
            return target, replace(current, target=target), None  # until incident.closed
        closed = _close(replace(current, kind=IncidentKind.FAILOVER), entry,
                        f"{how} to {target}", target)
        return target, None, closed
    if entry.action == STATE:
        new = entry.reason.rpartition("->")[2].strip()
        if entry.target == active and current is None and new in NOT_SERVING:
            return active, _open(entry, active, IncidentKind.OUTAGE,
                                 f"{active} {new}"), None
        if entry.target == active and current is not None and new == "up" \
                and current.kind != IncidentKind.ALL_DOWN:
            return active, None, _close(current, entry, f"{active} up again", active)
        return active, current, None
    if entry.action == OPENED:
        if current is None:
            return active, _open(entry, active, IncidentKind.ALL_DOWN, "all versions down"), None
        return active, replace(current, kind=IncidentKind.ALL_DOWN,
                               summary="all versions down"), None
    if entry.action == CLOSED and current is not None:
        return active, None, _close(current, entry, f"{active} up again", active)
    return active, current, None


def parse_ts(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def entry_of(row: AuditRow) -> Entry:
    params = _json(row.params, {})
    evidence = _json(row.evidence, [])
    if isinstance(params, dict):
        params.setdefault("actor", row.actor)
    return Entry(seq=row.seq, at=parse_ts(row.ts), action=row.action, target=row.target,
                 reason=row.reason, outcome=row.outcome,
                 params=params if isinstance(params, dict) else {},
                 evidence=evidence if isinstance(evidence, list) else [])


def _json(text: str, default: Any) -> Any:
    try:
        return json.loads(text or "null") or default
    except ValueError:
        return default


class IncidentIndex:
    """The incidents of the log so far, folded incrementally (thread-safe; blocking reads)."""

    def __init__(self, store: Store, *, first_active: str) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._active = first_active
        self._after = 0
        self._open: IncidentSummary | None = None
        self._closed: list[IncidentSummary] = []

    def refresh(self) -> None:
        with self._lock:
            while True:
                with self._store.read() as session:
                    rows = list(session.exec(
                        select(AuditRow).where(col(AuditRow.action).in_(FOLDED))
                        .where(col(AuditRow.seq) > self._after)
                        .order_by(col(AuditRow.seq)).limit(BATCH)))
                for row in rows:
                    self._active, self._open, closed = step(self._active, self._open,
                                                            entry_of(row))
                    if closed is not None:
                        self._closed.append(closed)
                    self._after = row.seq
                del self._closed[:-MAX_KEPT]
                if len(rows) < BATCH:
                    return

    def newest(self, limit: int = 100) -> list[IncidentSummary]:
        """Newest first, the open one (if any) on top."""
        self.refresh()
        with self._lock:
            found = list(reversed(self._closed))
            if self._open is not None:
                found.insert(0, self._open)
        return found[:limit]

    def get(self, incident_id: int) -> IncidentSummary | None:
        return next((i for i in self.newest(MAX_KEPT + 1) if i.id == incident_id), None)
