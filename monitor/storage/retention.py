"""The retention job (runtime, every 600 s): history down its tiers, old notices away.

Raw probes are counted in the minute tier first (probe_fold: a minute job does it as well),
so only counted ones are deleted; minutes are then folded into hours, hours deleted.

Notices: a notice is pruned with its delivery attempts once it is older than
MONITOR_NOTICE_RETENTION_DAYS (counted from its creation) AND final (`sent` or `failed`).
An open notice (pending, sending, unsent) may still be delivered, so it is never pruned,
however old; the delivery job gives it up (failed) first.

Every step works in batches of its own transactions (tiers.delete_in_batches), pausing briefly
between two, so the probes' and decisions' writes are never held up for long.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, delete

from monitor.storage.probe_fold import fold_probes, prune_probes
from monitor.storage.store import Notice, NoticeAttempt, Store
from monitor.storage.tiers import BATCH, Pause, delete_in_batches, fold_minutes, prune_hours

DAY_S = 86_400.0
FINAL = ("sent", "failed")  # notice statuses that never change again
PAUSE_S = 0.01


@dataclass(frozen=True)
class Ages:
    """How long each kind of history is kept, in seconds."""

    raw_s: float
    minute_s: float
    hour_s: float
    notice_s: float

    @classmethod
    def of(cls, settings: Any) -> Ages:
        """From monitor.config.Settings."""
        return cls(raw_s=settings.retention_hours * 3600.0,
                   minute_s=settings.rollup_minute_days * DAY_S,
                   hour_s=settings.rollup_hour_days * DAY_S,
                   notice_s=settings.notice_retention_days * DAY_S)


@dataclass(frozen=True)
class Pruned:
    """What one run moved or deleted (row counts)."""

    raw_folded: int
    raw_deleted: int
    minutes_folded: int
    hours_deleted: int
    notices_deleted: int


def _brief_pause() -> None:
    time.sleep(PAUSE_S)


def run(store: Store, *, now: float, ages: Ages, batch: int = BATCH,
        pause: Pause | None = _brief_pause) -> Pruned:
    """One retention pass (blocking: run it in a worker thread)."""
    return Pruned(
        raw_folded=fold_probes(store, batch=batch, pause=pause),
        raw_deleted=prune_probes(store, now=now, keep_s=ages.raw_s, batch=batch, pause=pause),
        minutes_folded=fold_minutes(store, now=now, keep_s=ages.minute_s, batch=batch,
                                    pause=pause),
        hours_deleted=prune_hours(store, now=now, keep_s=ages.hour_s, batch=batch, pause=pause),
        notices_deleted=prune_notices(store, now=now, keep_s=ages.notice_s, batch=batch,
                                      pause=pause))


def prune_notices(store: Store, *, now: float, keep_s: float, batch: int = BATCH,
                  pause: Pause | None = None) -> int:
    """Delete final notices created more than `keep_s` ago, with their attempts."""
    where = col(Notice.status).in_(FINAL) & (col(Notice.created_at) < now - keep_s)
    return delete_in_batches(store, Notice, where, order=col(Notice.created_at), batch=batch,
                             pause=pause, before_delete=_delete_attempts)


def _delete_attempts(session: Session, notices: list[Any]) -> None:
    session.exec(delete(NoticeAttempt).where(
        col(NoticeAttempt.notice_id).in_([n.id for n in notices])))
    session.flush()
