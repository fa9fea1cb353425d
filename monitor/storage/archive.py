"""`audit archive --before DATE`: old rows move to a signed segment file, never just vanish.

The safe order, so a crash at any point loses nothing:
1. the records of earlier segments must verify (else nothing is done);
2. rows from the anchor up to the last one before DATE (never the newest row, so the chain
   always has a head in the table) are streamed into a new segment file: temporary name,
   fsync, rename, fsync of the directory (storage.segments);
3. the file is read back and walked as a chain from the anchor: every row's MAC, the links,
   the trailer's signature and digest. Any problem: the file is removed, nothing else changes;
4. one transaction records the segment (the new anchor), deletes exactly those rows, and
   appends the `audit.archive` row.
A crash before 4 leaves every row in the table and, at most, a file no record names: the
verifier ignores it while its rows are still in the table and the next run replaces it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlmodel import col
from sqlmodel import select as sqlmodel_select

from monitor.storage import audit, chain, segments
from monitor.storage.chain import Progress
from monitor.storage.store import AuditRow, Store
from monitor.storage.verification import InDatabase, Walk


class ArchiveError(Exception):
    """The archive was refused; nothing was changed."""


@dataclass(frozen=True)
class Archived:
    file: Path
    first: int
    last: int
    rows: int


def parse_before(value: str, *, now: float) -> str:
    """`--before` as the log's UTC text: a date (`2025-01-31`, midnight UTC) or an ISO date
    and time; it must lie in the past."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ArchiveError(f"--before: expected a date like 2025-01-31 or 2025-01-31T13:45, "
                           f"got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment.timestamp() > now:
        raise ArchiveError(f"--before: {value} is in the future")
    return audit.utc_iso(moment)


def _cut(store: Store, before: str, start: int) -> int:
    """The last seq to archive: the row before the first one at or after `before`, and
    never the newest row."""
    with store.read() as session:
        first_kept = session.execute(select(func.min(col(AuditRow.seq))).where(
            col(AuditRow.ts) >= before, col(AuditRow.seq) > start)).scalar()
    _, high = chain.seq_range(store)
    last = high - 1 if first_kept is None else int(first_kept) - 1
    return min(last, high - 1)


def archive(store: Store, key: bytes, directory: Path, *, before: str, now: float,
            actor: str = "cli", progress: Progress | None = None,
            after_write: Callable[[Path], None] | None = None) -> Archived | None:
    """Archive the rows before `before` (UTC text); None when there is nothing to archive.
    `after_write` is called between the verified file and the delete (tests crash there)."""
    anchor = segments.check_records(store, key)
    if anchor.problems:
        raise ArchiveError("the archive records do not verify (" + "; ".join(anchor.problems)
                           + "); run `audit verify --full`")
    start = anchor.start_seq
    last = _cut(store, before, start)
    if last <= start:
        return None
    for leftover in segments.unrecorded(directory, anchor):
        leftover.unlink()  # an interrupted run's file: its rows are all still in the table
    if progress is not None:
        progress.total(2 * (last - start))
    rows = chain.rows_after(store, start, until=last)
    written = segments.write_segment(directory, key, chain.counted(rows, progress), first=start + 1,
                                     last=last)
    try:
        _check_written(store, key, written, anchor, progress)
    except ArchiveError:
        written.path.unlink(missing_ok=True)
        raise
    if after_write is not None:
        after_write(written.path)
    _commit(store, key, written, anchor, now=now, actor=actor, before=before)
    return Archived(written.path, written.first, written.last, written.rows)


def _check_written(store: Store, key: bytes, written: segments.Written,
                   anchor: segments.Archive, progress: Progress | None) -> None:
    """Walk the file as a chain from the anchor: it must hold exactly the intended rows."""
    walk = Walk(key, expected_seq=anchor.start_seq + 1, expected_prev=anchor.start_mac,
                head=anchor.start_seq)
    reading = segments.Reading()
    walk.feed(chain.counted(segments.read_segment(written.path, key, reading), progress),
              InDatabase(store))
    problems = [f"seq {p.seq}: {p.kind}: {p.detail}" for p in walk.report.problems]
    problems += reading.problems
    if walk.head != written.last or reading.rows != written.rows:
        problems.append(f"the file holds {reading.rows} rows up to seq {walk.head}, "
                        f"expected {written.rows} up to {written.last}")
    if problems:
        raise ArchiveError("the rows to archive do not verify, nothing was archived: "
                           + "; ".join(problems[:5]) + "; run `audit verify --full`")


def _commit(store: Store, key: bytes, written: segments.Written, anchor: segments.Archive,
            *, now: float, actor: str, before: str) -> None:
    """Record the segment, delete exactly its rows, audit it: one transaction."""
    with store.write() as session:
        newest = session.exec(sqlmodel_select(segments.AuditSegment).order_by(
            col(segments.AuditSegment.id).desc()).limit(1)).first()
        prev = anchor.records[-1].mac if anchor.records else segments.GENESIS
        if (newest.mac if newest is not None else segments.GENESIS) != prev:
            raise ArchiveError("another archive ran meanwhile; nothing was deleted")
        session.add(segments.new_record(key, written, at=audit.utc_iso(now), prev=prev))
        session.execute(delete(AuditRow).where(col(AuditRow.seq) >= written.first,
                                               col(AuditRow.seq) <= written.last))
        audit.append(session, key, now=now, action="audit.archive", actor=actor, role="admin",
                     target=written.path.name,
                     params={"before": before, "first": written.first, "last": written.last,
                             "rows": written.rows, "sha256": written.sha256})
