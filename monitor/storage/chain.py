"""Reading the audit chain in bounded memory: keyset batches by `seq`, never all rows.

Each batch is its own short read (`WHERE seq > last ORDER BY seq LIMIT n`), so a walk over a
million rows neither holds a long read transaction (SQLite's WAL can still be checkpointed,
PostgreSQL's vacuum is not held back) nor more than one batch of rows. Rows are plain
`ChainRow`s (no ORM identity map), which is also what archived segment files hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import func, select

from monitor.storage.store import AuditRow, Store

BATCH = 2000
PROGRESS_EVERY = 5000
T = TypeVar("T")


class Progress(Protocol):
    """Where long walks report (storage.progress)."""

    def total(self, rows: int) -> None: ...
    def advance(self, rows: int) -> None: ...


def counted(rows: Iterable[T], progress: Progress | None) -> Iterator[T]:
    """The rows, unchanged, reporting to `progress` every PROGRESS_EVERY rows and at the end."""
    if progress is None:
        yield from rows
        return
    done = 0
    for row in rows:
        yield row
        done += 1
        if done == PROGRESS_EVERY:
            progress.advance(done)
            done = 0
    progress.advance(done)
NAMES = ("seq", "ts", "actor", "role", "source_ip", "user_agent", "action", "target", "params",
         "outcome", "reason", "request_id", "evidence", "prev_mac", "mac")


@dataclass(slots=True, weakref_slot=True)
class ChainRow:
    """One audit row as data (the columns of `audit`, in NAMES order)."""

    seq: int
    ts: str
    actor: str
    role: str
    source_ip: str
    user_agent: str
    action: str
    target: str
    params: str
    outcome: str
    reason: str
    request_id: str
    evidence: str
    prev_mac: str
    mac: str

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> ChainRow:
        return cls(*(fields[name] for name in NAMES))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(values: Any) -> ChainRow:
    return ChainRow(*values)


def _columns() -> list[Any]:
    table = AuditRow.__table__  # type: ignore[attr-defined]
    return [table.c[name] for name in NAMES]


def rows_after(store: Store, after: int | None = None, *, until: int | None = None,
               batch: int | None = None) -> Iterator[ChainRow]:
    """Rows with `after < seq <= until` in seq order, one batch in memory at a time."""
    size = batch or BATCH
    table = AuditRow.__table__  # type: ignore[attr-defined]
    last = after
    while True:
        query = select(*_columns()).order_by(table.c.seq).limit(size)
        if last is not None:
            query = query.where(table.c.seq > last)
        if until is not None:
            query = query.where(table.c.seq <= until)
        with store.read() as session:
            rows = [_row(values) for values in session.execute(query)]
        if not rows:
            return
        last, full = rows[-1].seq, len(rows) == size
        yield from rows
        del rows  # the next batch replaces this one instead of joining it
        if not full:
            return


def seq_range(store: Store) -> tuple[int, int]:
    """(lowest, highest) stored seq; (0, 0) for an empty table. Two index look-ups."""
    table = AuditRow.__table__  # type: ignore[attr-defined]
    with store.read() as session:  # apart: SQLite answers a lone min() or max() from the index
        low = session.execute(select(func.min(table.c.seq))).scalar()
        high = session.execute(select(func.max(table.c.seq))).scalar()
    return int(low or 0), int(high or 0)


def row_at(store: Store, seq: int) -> ChainRow | None:
    table = AuditRow.__table__  # type: ignore[attr-defined]
    with store.read() as session:
        values = session.execute(select(*_columns()).where(table.c.seq == seq)).first()
    return None if values is None else _row(values)
