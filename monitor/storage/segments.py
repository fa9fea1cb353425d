"""Archived audit rows: signed segment files and the chain of records that anchors them.

A segment file (`audit-archive/audit-<first>-<last>.jsonl.gz`) holds a header line, one JSON
line per row (the row's stored columns, so every row's own MAC still verifies) and a trailer
`{"end": {"first", "last", "rows", "sha256", "last_mac"}, "sig"}`: `sha256` covers the row
lines, `sig` = HMAC(audit key, the trailer's `end`). A file is thus checkable on its own.

Each archived segment also has a record (`audit_segment`) in the database: the same figures,
its file name, the previous record's MAC (`prev`) and its own `mac`. The newest record is the
**anchor** the chain in the table goes on from (its `last_seq`, `last_mac`); records chain like
checkpoint lines, so an altered or removed record is caught. A file without a record whose rows
are still in the table is the leftover of an interrupted archive: it is ignored and replaced.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlmodel import Field, SQLModel, col, select

from monitor.storage.chain import ChainRow
from monitor.storage.datadir import fsync_dir
from monitor.storage.store import Store

GENESIS = "0" * 64
ARCHIVE_DIR = "audit-archive"
SIGNED = ("first", "last", "rows", "sha256", "last_mac")


class AuditSegment(SQLModel, table=True):
    """The record of one archived segment; the newest is the chain's anchor."""

    __tablename__ = "audit_segment"
    id: int | None = Field(default=None, primary_key=True)
    first_seq: int
    last_seq: int
    rows: int
    last_mac: str
    sha256: str
    file: str
    at: str
    prev: str
    mac: str


def _hmac(key: bytes, label: str, body: dict[str, Any]) -> str:
    text = label + json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def record_mac(key: bytes, record: AuditSegment) -> str:
    body = {"first": record.first_seq, "last": record.last_seq, "rows": record.rows,
            "last_mac": record.last_mac, "sha256": record.sha256, "file": record.file,
            "at": record.at, "prev": record.prev}
    return _hmac(key, "segment-record\0", body)


def file_name(first: int, last: int) -> str:
    return f"audit-{first:012d}-{last:012d}.jsonl.gz"


@dataclass(frozen=True)
class Written:
    path: Path
    first: int
    last: int
    rows: int
    sha256: str
    last_mac: str


def write_segment(directory: Path, key: bytes, rows: Iterable[ChainRow], *,
                  first: int, last: int) -> Written:
    """Write the rows to a new segment file: temporary name, fsync, rename, fsync the
    directory. Raises ValueError when the rows are not exactly seqs `first..last`."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # private, like the data dir
    final = directory / file_name(first, last)
    partial = final.with_name(final.name + ".partial")
    digest, count, expected, last_mac = hashlib.sha256(), 0, first, GENESIS
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
            out.write(json.dumps({"segment": 1, "first": first, "last": last}).encode() + b"\n")
            for row in rows:
                if row.seq != expected:
                    raise ValueError(f"segment rows out of order: seq {row.seq}, "
                                     f"expected {expected}")
                line = json.dumps(row.as_dict(), sort_keys=True).encode() + b"\n"
                digest.update(line)
                out.write(line)
                count, expected, last_mac = count + 1, expected + 1, row.mac
            if expected != last + 1:
                raise ValueError(f"segment ends at seq {expected - 1}, expected {last}")
            end = {"first": first, "last": last, "rows": count, "sha256": digest.hexdigest(),
                   "last_mac": last_mac}
            out.write(json.dumps({"end": end, "sig": _hmac(key, "segment\0", end)}).encode()
                      + b"\n")
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, final)
    fsync_dir(directory)
    return Written(final, first, last, count, digest.hexdigest(), last_mac)


@dataclass
class Reading:
    """What reading one segment file found wrong (filled while its rows are consumed)."""

    problems: list[str] = field(default_factory=list)
    rows: int = 0
    sha256: str = ""
    last_mac: str = GENESIS


def read_segment(path: Path, key: bytes, reading: Reading) -> Iterator[ChainRow]:
    """The file's rows, streamed; a bad trailer, signature or digest lands in `reading`."""
    digest = hashlib.sha256()
    trailer: dict[str, Any] | None = None
    try:
        with gzip.open(path, "rb") as lines:
            next(lines, None)  # the header says what the trailer signs
            for line in lines:
                data = json.loads(line)
                if "end" in data:
                    trailer = data
                    break
                digest.update(line)
                row = ChainRow.of(data)
                reading.rows, reading.last_mac = reading.rows + 1, row.mac
                yield row
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        reading.problems.append(f"{path.name}: unreadable ({exc})")
        return
    reading.sha256 = digest.hexdigest()
    if trailer is None:
        reading.problems.append(f"{path.name}: no signed trailer (cut short)")
        return
    end = trailer.get("end", {})
    if not isinstance(end, dict) or set(end) != set(SIGNED) or not hmac.compare_digest(
            str(trailer.get("sig", "")).encode(), _hmac(key, "segment\0", end).encode()):
        reading.problems.append(f"{path.name}: trailer signature does not verify")
    elif (end["rows"], end["sha256"], end["last_mac"]) != (
            reading.rows, reading.sha256, reading.last_mac):
        reading.problems.append(f"{path.name}: rows differ from what the trailer signed")


def records(store: Store) -> list[AuditSegment]:
    """Every segment record, oldest first (one per archive run: a short list); none in a
    database not yet migrated to 0005 (verification reads only, it never migrates)."""
    if not inspect(store.reader).has_table(AuditSegment.__tablename__):
        return []
    with store.read() as session:
        return list(session.exec(select(AuditSegment).order_by(col(AuditSegment.id))))


@dataclass
class Archive:
    """The recorded segments, checked, and where the chain in the table starts."""

    records: list[AuditSegment]
    problems: list[str]
    start_seq: int = 0
    start_mac: str = GENESIS


def check_records(store: Store, key: bytes) -> Archive:
    """Each record's MAC and link to the one before; the newest is the anchor."""
    found = records(store)
    problems: list[str] = []
    prev, next_first = GENESIS, 1
    for record in found:
        name = f"archive record {record.id} ({record.file})"
        if not hmac.compare_digest(record.mac.encode(), record_mac(key, record).encode()):
            problems.append(f"{name}: altered (its MAC does not verify)")
        elif record.prev != prev or record.first_seq != next_first:
            problems.append(f"{name}: does not follow the record before it (removed or "
                            "reordered)")
        prev, next_first = record.mac, record.last_seq + 1
    archive = Archive(found, problems)
    if found:
        archive.start_seq, archive.start_mac = found[-1].last_seq, found[-1].last_mac
    return archive


def new_record(key: bytes, written: Written, *, at: str, prev: str) -> AuditSegment:
    record = AuditSegment(first_seq=written.first, last_seq=written.last, rows=written.rows,
                          last_mac=written.last_mac, sha256=written.sha256,
                          file=written.path.name, at=at, prev=prev, mac="")
    record.mac = record_mac(key, record)
    return record


def unrecorded(directory: Path, archive: Archive) -> list[Path]:
    """Segment files no record names (leftovers of an interrupted archive, or planted)."""
    if not directory.is_dir():
        return []
    named = {record.file for record in archive.records}
    return sorted(p for p in directory.glob("audit-*.jsonl.gz") if p.name not in named)
