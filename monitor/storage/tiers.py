"""The hourly tier of probe history, and the folds that move history down the tiers.

Probe history is counted by exactly one tier at a time, so a read may add the tiers up over
any window without counting a probe twice:

    raw probe rows (`probe`, MONITOR_RETENTION_HOURS; counted in the minute tier as they
      arrive, `probe_fold`, so a raw row is only detail once counted)
      --fold_probes--> per-minute rollups (`probe_rollup`, MONITOR_ROLLUP_MINUTE_DAYS)
      --fold_minutes--> hourly rollups (`probe_hourly`, MONITOR_ROLLUP_HOUR_DAYS)
      --prune_hours--> gone

Each move is one transaction per batch (folded rows added to the coarser tier and deleted from
the finer one together), so a crash between batches loses and doubles nothing, and no batch
holds the SQLite write lock for long.

The hourly table is keyed by (service, version, bucket), as the minute table's rows carry
their service (migration 0007).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, Session, SQLModel, col, select

from monitor.storage.store import ProbeRollup, Store

HOUR_S = 3600.0
DEFAULT_SERVICE = "books"
BATCH = 5000

Pause = Callable[[], None]  # called between two batches: lets other writers take the lock


class ProbeHourly(SQLModel, table=True):
    """Per-minute rollups older than MONITOR_ROLLUP_MINUTE_DAYS, folded per hour."""

    __tablename__ = "probe_hourly"
    __table_args__ = (Index("ix_probe_hourly_bucket", "bucket"),)
    service: str = Field(default=DEFAULT_SERVICE, primary_key=True)
    version: str = Field(primary_key=True)
    bucket: float = Field(primary_key=True)  # start of the hour, seconds since the epoch
    count: int = 0
    ok_count: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0


# The minute table's primary key starts with `version`: the folds and the charts select a time
# range across versions, which needs an index on `bucket` alone (migration 0008).
Index("ix_probe_rollup_bucket", SQLModel.metadata.tables["probe_rollup"].c.bucket)


def service_of(row: ProbeRollup) -> str:
    """The service a minute rollup belongs to."""
    return row.service


def hour_of(at: float) -> float:
    return at - at % HOUR_S


def fold_minutes(store: Store, *, now: float, keep_s: float, batch: int = BATCH,
                 pause: Pause | None = None) -> int:
    """Fold per-minute rollups whose hour ended more than `keep_s` ago into hourly rollups.

    Only whole hours are folded (the cut-off is rounded down to an hour), so an hourly row is
    written once, complete. Returns how many minute rows were folded."""
    return delete_in_batches(store, ProbeRollup, col(ProbeRollup.bucket) < hour_of(now - keep_s),
                             order=col(ProbeRollup.bucket), batch=batch, pause=pause,
                             before_delete=_add_hours)


def _add_hours(session: Session, rows: list[ProbeRollup]) -> None:
    hours: dict[tuple[str, str, float], ProbeHourly] = {}
    for row in rows:
        key = (service_of(row), row.version, hour_of(row.bucket))
        hour = hours.get(key) or session.get(ProbeHourly, key) or ProbeHourly(
            service=key[0], version=key[1], bucket=key[2])
        hours[key] = hour
        hour.count += row.count
        hour.ok_count += row.ok_count
        hour.latency_sum += row.latency_sum
        hour.latency_max = max(hour.latency_max, row.latency_max)
    session.add_all(hours.values())


def prune_hours(store: Store, *, now: float, keep_s: float, batch: int = BATCH,
                pause: Pause | None = None) -> int:
    """Delete hourly rollups of hours that started more than `keep_s` ago; returns how many."""
    return delete_in_batches(store, ProbeHourly, col(ProbeHourly.bucket) < now - keep_s,
                             order=col(ProbeHourly.bucket), batch=batch, pause=pause)


def delete_in_batches(store: Store, model: type[SQLModel], where: Any, *, order: Any,
                      batch: int, pause: Pause | None = None,
                      before_delete: Callable[[Session, list[Any]], None] | None = None) -> int:
    """Delete the rows of `model` matching `where`, at most `batch` per transaction.

    `before_delete(session, rows)` runs in the batch's transaction first (dependent rows)."""
    deleted = 0
    while True:
        with store.write() as session:
            rows = list(session.exec(select(model).where(where).order_by(order).limit(batch)))
            if not rows:
                return deleted
            if before_delete is not None:
                before_delete(session, rows)
            for row in rows:
                session.delete(row)
            deleted += len(rows)
        if pause is not None:
            pause()
