"""Read queries behind the pages and the JSON API (blocking: call from a worker thread).

Each query is served by an index of store.py: audit (actor, seq), (family, seq), ts; probe
(version, at), at; notice created_at (tests/web/test_query_plans.py checks the plans).

Probes page by keyset, newest first, ordered by (at, id): `before` is a probe id (the last
row of the previous page: the next page starts just after it, so rows inserted between two
requests never shift a page) or a time (ISO 8601, naive = UTC, or seconds since 1970: rows
strictly older).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Query
from sqlmodel import col, or_, select

from monitor.storage import audit
from monitor.storage.store import AuditRow, Notice, ProbeRow, Store
from monitor.storage.verifier import Verifier
from monitor.web.forms import FormError
from monitor.web.views import page_rows

VERIFY_CACHE_S = 60.0
# Upper bounds of numeric query parameters: SQLite integers are 64-bit, and a bigger number
# must be a 422, never an OverflowError (500).
MAX_SEQ = 2**62
MAX_OFFSET = 1_000_000
MAX_TIME = 1e11  # seconds since 1970: year 5138
MAX_KEY = 64  # characters of a `before=` keyset
BEFORE_HELP = "a probe id, or a time like 2025-01-31T13:45 or 1738331100.5 (seconds since 1970)"
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
    # always a keyset bound, so even the unfiltered newest page is an index range, not a scan
    query = query.where(col(AuditRow.seq) < (before if before is not None else MAX_SEQ))
    with store.read() as session:
        rows = list(session.exec(query.order_by(col(AuditRow.seq).desc()).limit(size + 1)))
    return page_rows(rows, size)


@dataclass(frozen=True)
class ProbeKey:
    """Where a page of probes starts: rows older than (at, id); `id=None`: older than `at`."""

    at: float
    id: int | None = None


def before_query() -> Any:
    return Query("", max_length=MAX_KEY, description=f"keyset: {BEFORE_HELP}")


def parse_before(value: str) -> ProbeKey | int | None:
    """A `before=` value: a probe id (int), a time (ProbeKey), or None (the newest page)."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit() and len(value) < 19:
        return int(value)
    try:
        at = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise FormError(f"before: expected {BEFORE_HELP}") from None
        at = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not 0 <= at <= MAX_TIME:  # also NaN
        raise FormError(f"before: a time between 1970 and {MAX_TIME:g} seconds after it")
    return ProbeKey(at=at)


def probes_page(store: Store, *, version: str | None, since: float, before: str,
                size: int, service: str | None = None) -> tuple[list[ProbeRow], bool]:
    """Newest first, keyset-paged (see the module docstring); an unknown id is a FormError.
    `service`: only that service's probes."""
    key = parse_before(before)
    query = select(ProbeRow).where(col(ProbeRow.at) >= since)
    if version:
        query = query.where(col(ProbeRow.version) == version)
    if service:
        query = query.where(col(ProbeRow.service) == service)
    with store.read() as session:
        if isinstance(key, int):
            row = session.get(ProbeRow, key)
            if row is None:
                raise FormError(f"before: no probe {key} (rolled up, or never recorded)")
            key = ProbeKey(at=row.at, id=key)
        if key is not None and key.id is None:
            query = query.where(col(ProbeRow.at) < key.at)
        elif key is not None:
            query = query.where(col(ProbeRow.at) <= key.at).where(
                or_(col(ProbeRow.at) < key.at, col(ProbeRow.id) < key.id))
        rows = list(session.exec(query.order_by(col(ProbeRow.at).desc(), col(ProbeRow.id).desc())
                                 .limit(size + 1)))
    return page_rows(rows, size)


def next_before(rows: list[ProbeRow], has_next: bool) -> int | None:
    """The keyset of the next (older) page: the last row's id."""
    return rows[-1].id if rows and has_next else None


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
