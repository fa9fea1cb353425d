"""The notice outbox: rows written with the event that causes them, and what reads them.

See `monitor.notices.delivery` for the delivery job and the life of a notice.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from functools import lru_cache
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from monitor.storage.store import DEFAULT_SERVICE, Notice, Store

KINDS = ("failover", "suppressed", "all_down", "recovery", "failover_impossible", "lockout",
         "reminder", "test", "dataplane", "rollout")
STATUSES = ("pending", "sending", "sent", "failed", "unsent")
OPEN = ("pending", "sending", "unsent")  # statuses that may still become "sent"
NOT_CONFIGURED = "not sent: SMTP not configured"


@lru_cache(maxsize=1)
def message_domain() -> str:
    name = re.sub(r"[^A-Za-z0-9.-]", "", socket.gethostname()).strip(".-")
    return name or "failover-monitor"


def enqueue(session: Session, *, kind: str, subject: str, payload: dict[str, Any], now: float,
            incident_id: int | None = None, service: str = DEFAULT_SERVICE) -> Notice:
    """Add one notice to the outbox inside the caller's write transaction.

    Never sends and never fails for SMTP reasons; an unknown `kind` is a programming error
    (ValueError). The subject is stored as given; line breaks in it are folded into spaces
    when the email is written, so an operator's free-text reason can never add a header.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}; expected one of {', '.join(KINDS)}")
    notice = Notice(
        message_id=f"<notice-{uuid.uuid4().hex}@{message_domain()}>",
        kind=kind, subject=subject, incident_id=incident_id, service=service,
        payload=json.dumps(payload, sort_keys=True, default=str),
        created_at=now, status="pending", next_attempt_at=now,
    )
    session.add(notice)
    session.flush()
    return notice


def counts(store: Store) -> dict[str, int]:
    """Number of notices per status (every status present, zero when none), for metrics."""
    with store.read() as session:
        rows = session.exec(select(col(Notice.status), func.count())
                            .group_by(col(Notice.status))).all()
    result = dict.fromkeys(STATUSES, 0)
    result.update({status: number for status, number in rows})
    return result


def recent(store: Store, *, limit: int = 100, offset: int = 0) -> list[Notice]:
    """Newest notices first, for the dashboard's notices page."""
    with store.read() as session:
        query = select(Notice).order_by(col(Notice.created_at).desc(), col(Notice.id).desc())
        return list(session.exec(query.offset(offset).limit(limit)))
