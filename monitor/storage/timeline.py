"""The timeline of one incident (read-only): its probes, decisions with their evidence,
operator actions, and the notices sent with their delivery attempts.

Everything is read for the incident's window, from `MARGIN_S` before its first failed probe
to its close (or now while it is open), each query bounded by `LIMIT` rows and served by an
index: probe (version, at), audit ts, notice created_at, notice_attempt notice_id. Raw probes
older than the retention window are rolled up; the page then says so instead of showing none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from monitor.storage import audit
from monitor.storage.incidents import IncidentSummary, parse_ts
from monitor.storage.store import AuditRow, Notice, NoticeAttempt, ProbeRow, Store

MARGIN_S = 10.0
LIMIT = 500
SYSTEM_ROLE = "system"
DECISIONS = ("failover.", "version.", "incident.", "rollout.", "replica.", "replicas.")


@dataclass(frozen=True)
class TimelineItem:
    at: float
    kind: str  # probe | decision | action (an operator's) | event (the monitor's) | notice
    title: str
    detail: str = ""
    outcome: str = "ok"
    evidence: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Timeline:
    items: list[TimelineItem]
    probes_shown: int
    truncated: bool  # a kind of row hit LIMIT: the page says only the first are shown
    notices: list[dict[str, Any]]
    rolled_up: bool  # the window is older than the raw probes kept


def window(incident: IncidentSummary, now: float) -> tuple[float, float]:
    end = incident.closed_at if incident.closed_at is not None else now
    return incident.first_failure_at - MARGIN_S, end + MARGIN_S


def read_timeline(store: Store, incident: IncidentSummary, *, now: float,
                  retention_s: float) -> Timeline:
    start, end = window(incident, now)
    versions = {incident.version} | ({incident.target} if incident.target else set())
    with store.read() as session:
        probes = list(session.exec(
            select(ProbeRow).where(col(ProbeRow.version).in_(versions))
            .where(col(ProbeRow.at) >= start).where(col(ProbeRow.at) <= end)
            .order_by(col(ProbeRow.at)).limit(LIMIT)))
        rows = list(session.exec(
            select(AuditRow).where(col(AuditRow.ts) >= audit.utc_iso(start))
            .where(col(AuditRow.ts) <= audit.utc_iso(end))
            .order_by(col(AuditRow.seq)).limit(LIMIT)))
        notices = list(session.exec(
            select(Notice).where(col(Notice.created_at) >= start)
            .where(col(Notice.created_at) <= end)
            .order_by(col(Notice.created_at), col(Notice.id)).limit(LIMIT)))
        attempts = list(session.exec(
            select(NoticeAttempt).where(col(NoticeAttempt.notice_id).in_(
                [n.id for n in notices])).order_by(col(NoticeAttempt.at)))) if notices else []
    items = [_probe_item(p) for p in probes] + [_audit_item(r) for r in rows] + \
        [_notice_item(n) for n in notices]
    items.sort(key=lambda i: i.at)
    by_notice: dict[int, list[NoticeAttempt]] = {}
    for attempt in attempts:
        by_notice.setdefault(attempt.notice_id, []).append(attempt)
    return Timeline(
        items=items, probes_shown=len(probes),
        truncated=any(len(found) >= LIMIT for found in (probes, rows, notices)),
        notices=[_notice_view(n, by_notice.get(n.id or 0, [])) for n in notices],
        rolled_up=start < now - retention_s)


def _probe_item(row: ProbeRow) -> TimelineItem:
    if row.ok:
        detail = f"{row.latency_ms:.1f} ms" if row.latency_ms is not None else ""
    else:
        detail = ": ".join(filter(None, [row.failure or "failed", row.detail]))
    return TimelineItem(at=row.at, kind="probe",
                        title=f"{'passive report' if row.passive else 'probe'} {row.version}",
                        detail=detail, outcome="ok" if row.ok else "failed")


def _audit_item(row: AuditRow) -> TimelineItem:
    try:
        evidence = json.loads(row.evidence or "[]")
    except ValueError:
        evidence = []
    shown = tuple(e for e in evidence if isinstance(e, dict)) if isinstance(evidence, list) \
        else ((evidence,) if isinstance(evidence, dict) else ())
    if row.role != SYSTEM_ROLE:
        kind = "action"
    else:
        kind = "decision" if row.action.startswith(DECISIONS) else "event"
    who = f"{row.actor} ({row.role}): " if kind == "action" else ""
    target = f" {row.target}" if row.target else ""
    return TimelineItem(at=parse_ts(row.ts), kind=kind, title=f"{who}{row.action}{target}",
                        detail=row.reason, outcome=row.outcome, evidence=shown)


def _notice_item(row: Notice) -> TimelineItem:
    return TimelineItem(at=row.created_at, kind="notice", title=f"notice {row.kind}",
                        detail=row.subject, outcome=row.status)


def _notice_view(row: Notice, attempts: list[NoticeAttempt]) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "subject": row.subject, "status": row.status,
            "created_at": row.created_at, "sent_at": row.sent_at, "last_error": row.last_error,
            "attempts": [{"at": a.at, "ok": a.ok, "error": a.error} for a in attempts]}
