"""Raw probes folded into the per-minute tier as they arrive, and deleted after the window.

The minute tier counts every probe older than the fold mark, including those still kept raw
for the health log, so charts and uptime read a few rollup rows per minute instead of every
probe (a 24 h uptime of 9 versions: 13k minute rows, not 390k probes):

- `fold_probes` adds the raw rows with an id above the mark (`rollup_mark.probe_id`) into
  their minutes and moves the mark, in one transaction per batch: a probe is counted by the
  minute tier exactly when its id is at most the mark. Ids grow with inserts, so a late probe
  row (a batch flushed after newer ones) still gets a higher id and is folded once.
- Reads add the raw rows above the mark (rollup_reads.history): a short tail.
- `prune_probes` deletes raw rows older than MONITOR_RETENTION_HOURS whose id is at most the
  mark (already counted), in batches.

A database whose raw rows were folded by the older `Store.roll_up` (fold, then delete) needs
nothing: its mark starts at 0 and the raw rows it still has were never folded.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from monitor.storage.store import ProbeRollup, ProbeRow, Store
from monitor.storage.tiers import BATCH, Pause, delete_in_batches

MINUTE_S = 60.0


class RollupMark(SQLModel, table=True):
    """The highest raw probe id already counted by the minute tier."""

    __tablename__ = "rollup_mark"
    id: int = Field(default=1, primary_key=True)
    probe_id: int = 0


def minute_key(row: ProbeRow) -> tuple[str, float, str]:
    """The minute rollup a probe row counts in: the primary key (version, bucket, service)."""
    return row.version, row.at - row.at % MINUTE_S, row.service


def mark(session: Session) -> int:
    row = session.get(RollupMark, 1)
    return row.probe_id if row is not None else 0


def fold_probes(store: Store, *, batch: int = BATCH, pause: Pause | None = None) -> int:
    """Count the raw probes above the mark in their minutes; returns how many were folded."""
    _create_mark(store)
    folded = 0
    while True:
        with store.write() as session:
            # locked (PostgreSQL): the minute job and the retention job may fold at once
            current = session.get(RollupMark, 1, with_for_update=True) or RollupMark()
            rows = list(session.exec(select(ProbeRow).where(col(ProbeRow.id) > current.probe_id)
                                     .order_by(col(ProbeRow.id)).limit(batch)))
            if not rows:
                return folded
            _add_minutes(session, rows)
            current.probe_id = max(r.id or 0 for r in rows)
            session.add(current)
            folded += len(rows)
        if pause is not None:
            pause()


def _create_mark(store: Store) -> None:
    """The mark row, once: a fold running at the same time may create it first."""
    with store.read() as session:
        if session.get(RollupMark, 1) is not None:
            return
    try:
        with store.write() as session:
            if session.get(RollupMark, 1) is None:
                session.add(RollupMark())
    except IntegrityError:
        pass  # the other fold created it


def _add_minutes(session: Session, rows: list[ProbeRow]) -> None:
    minutes: dict[tuple[str, float, str], ProbeRollup] = {}
    for row in rows:
        key = minute_key(row)
        minute = minutes.get(key) or session.get(ProbeRollup, key) or ProbeRollup(
            version=key[0], bucket=key[1], service=key[2])
        minutes[key] = minute
        minute.count += 1
        minute.ok_count += int(row.ok)
        latency = (row.latency_ms or 0.0) if row.ok else 0.0  # the mean is of successes
        minute.latency_sum += latency
        minute.latency_max = max(minute.latency_max, latency)
    session.add_all(minutes.values())


def prune_probes(store: Store, *, now: float, keep_s: float, batch: int = BATCH,
                 pause: Pause | None = None) -> int:
    """Delete raw probes older than `keep_s` that the minute tier already counts."""
    with store.read() as session:
        counted = mark(session)
    where = (col(ProbeRow.at) < now - keep_s) & (col(ProbeRow.id) <= counted)
    return delete_in_batches(store, ProbeRow, where, order=col(ProbeRow.at), batch=batch,
                             pause=pause)
