"""Read queries behind the pages and the JSON API (blocking: call from a worker thread).

Each query is served by an index of store.py: audit (actor, seq), (action, seq), ts; probe
(version, at); notice created_at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Query
from sqlmodel import col, select

from monitor.storage import audit
from monitor.storage.store import AuditRow, Notice, Store
from monitor.storage.verifier import Verifier
from monitor.web.forms import FormError
from monitor.web.views import page_rows

VERIFY_CACHE_S = 60.0
# Upper bounds of numeric query parameters: SQLite integers are 64-bit, and a bigger number
# must be a 422, never an OverflowError (500).
MAX_SEQ = 2**62
MAX_OFFSET = 1_000_000
MAX_TIME = 1e11  # seconds since 1970: year 5138
# since/until of the audit filters: ISO 8601 date-times (the HTML form sends datetime-local)
def time_query() -> Any:
    """A fresh Query per parameter (FastAPI must not share one between two parameters)."""
    return Query("", json_schema_extra={"format": "date-time"})


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    action: str = ""
    since: str = ""  # canonical UTC ISO strings, comparable with AuditRow.ts
    until: str = ""

    def as_query(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v}


def parse_time(value: str, field: str) -> str:
    """A datetime-local or ISO 8601 value as the audit log's UTC text (naive means UTC)."""
    value = value.strip()
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FormError(f"{field}: expected a date and time like 2025-01-31T13:45") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return audit.utc_iso(moment)


def audit_filter(actor: str = "", action: str = "", since: str = "",
                 until: str = "") -> AuditFilter:
    return AuditFilter(actor=actor.strip()[:100], action=action.strip()[:100],
                       since=parse_time(since, "since"), until=parse_time(until, "until"))


def audit_page(store: Store, where: AuditFilter, *, before: int | None,
               size: int) -> tuple[list[AuditRow], bool]:
    """Newest first, keyset-paged by seq (`before` = the last seq of the previous page).

    `action` matches exactly or as a dotted prefix: `login` finds `login.failed`.
    """
    query = select(AuditRow)
    if where.actor:
        query = query.where(col(AuditRow.actor) == where.actor)
    if where.action:
        query = query.where(audit.action_filter(where.action))
    if where.since:
        query = query.where(col(AuditRow.ts) >= where.since)
    if where.until:
        query = query.where(col(AuditRow.ts) <= where.until)
    if before is not None:
        query = query.where(col(AuditRow.seq) < before)
    with store.read() as session:
        rows = list(session.exec(query.order_by(col(AuditRow.seq).desc()).limit(size + 1)))
    return page_rows(rows, size)


def notices_page(store: Store, *, offset: int, size: int,
                 service: str | None = None) -> tuple[list[Notice], bool]:
    """A page of notices, newest first; only one service's when `service` is given."""
    with store.read() as session:
        query = select(Notice)
        if service:
            query = query.where(col(Notice.service) == service)
        rows = list(session.exec(query.order_by(col(Notice.created_at).desc(),
                                                col(Notice.id).desc())
                                 .offset(offset).limit(size + 1)))
    return page_rows(rows, size)


def verifier_for(runtime: Any) -> Verifier:
    """The dashboard's incremental verifier: each run walks only the rows appended since the
    last one (the audit page shows a result at most VERIFY_CACHE_S old); the admin's verify
    API walks everything again (`full=True`)."""
    return Verifier(runtime.store, runtime.keys.audit, runtime.checkpoint_path)


def audit_json(row: AuditRow) -> dict[str, Any]:
    return row.model_dump()


def notice_json(row: Notice) -> dict[str, Any]:
    return row.model_dump()
