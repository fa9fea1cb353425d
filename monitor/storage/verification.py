"""Verification of the audit chain: streaming, in bounded memory, and incremental.

A `Walk` is fed rows in seq order (storage.chain reads them in keyset batches, never all at
once). Each intact row costs one HMAC; a tampered one at most a bounded search (WINDOW) plus
two indexed look-ups. What a walk needs to know about rows it has not seen (is this seq
stored? is this mac?) it asks the database. Only the macs of checkpointed seqs are kept.
Where a walk starts and what it is fed (archived segments, the table) is storage.verifier's.
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import exists
from sqlmodel import col, select

from monitor.storage.audit import CHAINED, GENESIS, compute_mac
from monitor.storage.chain import Progress as Progress
from monitor.storage.checkpoints import read_checkpoints
from monitor.storage.store import AuditRow, Store

WINDOW = 32  # how far a renumbered or moved row is searched for



@dataclass
class Problem:
    seq: int
    kind: str  # modified | deleted | inserted | reordered | truncated | checkpoint
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"seq": self.seq, "kind": self.kind, "detail": self.detail}


@dataclass
class Report:
    total: int = 0
    valid: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return f"{self.valid}/{self.total} records valid"

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "total": self.total, "valid": self.valid,
                "summary": self.summary(), "problems": [p.as_dict() for p in self.problems]}


class Stored(Protocol):
    """What a walk asks about rows it has not seen."""

    def has_seq(self, seq: int) -> bool: ...
    def has_mac(self, mac: str) -> bool: ...


@dataclass
class InDatabase:
    store: Store

    def has_seq(self, seq: int) -> bool:
        with self.store.read() as session:
            return bool(session.exec(select(exists().where(col(AuditRow.seq) == seq))).one())

    def has_mac(self, mac: str) -> bool:
        with self.store.read() as session:
            return bool(session.exec(select(exists().where(col(AuditRow.mac) == mac))).one())


class Row(Protocol):
    """A stored audit row: an ORM `AuditRow` or a `chain.ChainRow` (table or segment file)."""

    seq: int
    prev_mac: str
    mac: str


def _fields(row: Row, seq: int | None = None) -> dict[str, Any]:
    fields = {k: getattr(row, k) for k in CHAINED}
    if seq is not None:
        fields["seq"] = seq
    return fields


def mac_matches(row: Row, key: bytes, seq: int) -> bool:
    return hmac.compare_digest(row.mac, compute_mac(key, _fields(row, seq)))


@dataclass
class Walk:
    """The state of one walk along the chain; `feed` it rows in stored-seq order."""

    key: bytes
    wanted: set[int] = field(default_factory=set)  # checkpointed seqs whose mac to keep
    report: Report = field(default_factory=Report)
    expected_seq: int = 1
    expected_prev: str = GENESIS
    offset: int = 0  # stored seq minus original seq, once rows were renumbered
    head: int = 0  # the highest original seq whose mac verified
    macs: dict[int, str] = field(default_factory=dict)  # wanted seq -> mac
    last_stored: tuple[int, str] | None = None  # (seq, mac) of the last row read

    def feed(self, rows: Iterable[Row], stored: Stored) -> None:
        iterator = iter(rows)
        row = next(iterator, None)
        while row is not None:
            following = next(iterator, None)
            self._one(row, following, stored)
            self.last_stored = (row.seq, row.mac)
            row = following

    def _one(self, row: Row, following: Row | None, stored: Stored) -> None:
        report = self.report
        report.total += 1
        original = self._placed(row, stored)
        if original is not None:
            self._intact(row, original)
            return
        moved_to = self._original_position(row, stored)
        if moved_to is not None:
            report.problems.append(Problem(row.seq, "reordered", f"row belongs at seq {moved_to}"))
            self.expected_seq, self.expected_prev = self.expected_seq + 1, row.mac
        elif row.prev_mac == self.expected_prev and (following is None
                                                      or following.prev_mac == row.mac):
            report.problems.append(Problem(row.seq, "modified", "content does not match its mac"))
            self.expected_seq, self.expected_prev = self.expected_seq + 1, row.mac
        else:
            report.problems.append(Problem(row.seq, "inserted", "row is not part of the chain"))

    def _intact(self, row: Row, original: int) -> None:
        report = self.report
        self.offset = row.seq - original
        linked = row.prev_mac == self.expected_prev
        if original > self.expected_seq:
            missing = original - self.expected_seq
            report.problems.append(Problem(self.expected_seq, "deleted",
                                           f"{missing} row(s) missing before seq {row.seq}"))
            report.total += missing
            linked = True  # its predecessor is gone; the gap is the problem
        if original != row.seq:
            report.problems.append(Problem(row.seq, "modified", (
                f"renumbered: stored as seq {row.seq}, its mac verifies as seq {original}")))
        elif not linked:
            report.problems.append(Problem(row.seq, "reordered",
                                           "intact row, but not linked to the row before it"))
        else:
            report.valid += 1
        if original in self.wanted:
            self.macs[original] = row.mac
        self.head = max(self.head, original)
        self.expected_seq, self.expected_prev = original + 1, row.mac

    def _placed(self, row: Row, stored: Stored) -> int | None:
        """The original seq of an intact row: where the current renumbering puts it, or just
        after a gap of deleted rows (the rows after a deletion or insertion may be renumbered).
        A row whose predecessor is still stored was moved, not left behind by a deletion."""
        for original in (row.seq - self.offset, self.expected_seq):
            if mac_matches(row, self.key, original):
                return original
        if stored.has_mac(row.prev_mac):
            return None
        for original in range(self.expected_seq + 1, self.expected_seq + WINDOW):
            if mac_matches(row, self.key, original):
                return original
        return None

    def _original_position(self, row: Row, stored: Stored) -> int | None:
        """The seq under which a moved row's mac verifies (bounded search near its place)."""
        for candidate in range(row.seq - WINDOW, row.seq + WINDOW + 1):
            if candidate != row.seq and mac_matches(row, self.key, candidate) \
                    and stored.has_seq(candidate):
                return candidate
        return None

    def finish(self, path: Path | None, store: Store | None) -> Report:
        """The report so far plus what the checkpoints say (recomputed on every call)."""
        report = copy.deepcopy(self.report)
        if path is None:
            return report
        checkpoints = read_checkpoints(self.key, path, store)
        report.problems.extend(Problem(0, "checkpoint", p) for p in checkpoints.problems)
        if not checkpoints.entries:
            return report
        last = max(checkpoints.entries, key=lambda e: int(e["seq"]))
        # Only rows whose mac verified count: a forged high seq cannot hide a truncation.
        if last["seq"] > self.head:
            report.problems.append(Problem(
                self.head + 1, "truncated", f"checkpoint at {last['at']} saw seq "
                f"{last['seq']}, the verified log ends at {self.head}"))
            report.total += last["seq"] - max(self.head, report.total)
            return report
        for entry in checkpoints.entries:
            mac = self.macs.get(entry["seq"])
            if mac is not None and not hmac.compare_digest(mac, entry["mac"]):
                report.problems.append(Problem(entry["seq"], "modified",
                                               "row differs from the checkpointed head"))
        return report
