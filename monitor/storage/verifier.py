"""Running verifications: where a walk starts, what it is fed, and progress.

Incremental (the CLI's default, the dashboard's periodic check) starts after the newest
checkpoint whose row is still stored with the checkpointed mac (that line was signed by the
monitor when the chain up to it was its own), or, in a process that walked before, where its
last walk ended; it costs O(rows appended since). `full=True` (`audit verify --full`, the
admin's forced check) walks every archived segment file and then every row of the table
again. Both read in bounded memory (storage.chain) and report the same `N/N records valid` for
an intact log: rows up to a trusted start count as valid.
"""

from __future__ import annotations

import hmac
import threading
from pathlib import Path

from monitor.storage import chain, segments
from monitor.storage.checkpoints import read_checkpoints
from monitor.storage.store import Store
from monitor.storage.verification import (
    InDatabase,
    Problem,
    Progress,
    Report,
    Stored,
    Walk,
    mac_matches,
)

RESUME_TRIES = 64  # checkpoints tried (newest first) before walking from the start


def _checkpointed(key: bytes, path: Path | None) -> set[int]:
    if path is None:
        return set()
    return {int(e["seq"]) for e in read_checkpoints(key, path).entries}


def resume_point(store: Store, key: bytes, path: Path | None, *, after: int) -> int | None:
    """The newest checkpoint (seq > `after`) whose row is still stored with the checkpointed
    mac, and that mac verifies: the chain up to it was attested by the monitor when it wrote
    the line, so an incremental walk starts there. None: walk from `after`."""
    if path is None:
        return None
    entries = sorted(read_checkpoints(key, path).entries, key=lambda e: -int(e["seq"]))
    for entry in entries[:RESUME_TRIES]:
        seq = int(entry["seq"])
        if seq <= after:
            return None
        row = chain.row_at(store, seq)
        if row is not None and hmac.compare_digest(row.mac, str(entry["mac"])) \
                and mac_matches(row, key, seq):
            return seq
    return None


class Verifier:
    """Verification for the CLI and a long-running process (thread-safe, one walk at a time).

    Incremental (the default) walks from the newest verified checkpoint, or, in a process
    that ran before, from where its last walk ended, so it costs O(rows appended since);
    tampering before that point is `full=True`'s job: every row again, archived segment
    files first, in bounded memory. Rows up to a trusted start count as valid, so both
    report the same `N/N records valid` for an intact log."""

    def __init__(self, store: Store, key: bytes, checkpoint_path: Path | None,
                 archive_dir: Path | None = None) -> None:
        self.store, self.key, self.path = store, key, checkpoint_path
        self.archive_dir = archive_dir or (
            checkpoint_path.parent / segments.ARCHIVE_DIR if checkpoint_path else None)
        self._walk: Walk | None = None
        self._lock = threading.Lock()
        self.rows_read = 0  # rows the last run walked (how incremental it was)

    def run(self, *, full: bool = False, progress: Progress | None = None) -> Report:
        with self._lock:
            archive = segments.check_records(self.store, self.key)
            problems = [Problem(0, "archive", p) for p in archive.problems]
            stored = InDatabase(self.store)
            walk = None if full else self._resumable()
            if walk is None:
                walk = Walk(self.key)
                if not full:
                    self._start(walk, archive)
            walk.wanted |= _checkpointed(self.key, self.path)
            if not full:
                problems += self._gap(archive)
            if progress is not None:
                first = archive.start_seq if full else (walk.last_stored or (0, ""))[0]
                progress.total(self._remaining(first) + (
                    sum(r.rows for r in archive.records) if full else 0))
            if full:
                problems += self._feed_segments(walk, archive, stored, progress)
            before = walk.report.total
            after = walk.last_stored[0] if walk.last_stored else None
            walk.feed(chain.counted(chain.rows_after(self.store, after), progress), stored)
            self.rows_read = walk.report.total - before
            self._walk = walk
            report = walk.finish(self.path, self.store)
            report.problems[:0] = problems
            return report

    def _gap(self, archive: segments.Archive) -> list[Problem]:
        """Rows between the archive anchor and the table's first row are gone (a full walk
        finds this itself)."""
        low, _ = chain.seq_range(self.store)
        if low <= archive.start_seq + 1:
            return []
        return [Problem(archive.start_seq + 1, "deleted", (
            f"{low - archive.start_seq - 1} row(s) missing before seq {low}: neither in the "
            "table nor in an archived segment"))]

    def _start(self, walk: Walk, archive: segments.Archive) -> None:
        """Begin after the newest verified checkpoint, else after the archive anchor."""
        seq, mac = archive.start_seq, archive.start_mac
        resumed = resume_point(self.store, self.key, self.path, after=seq)
        if resumed is not None:
            row = chain.row_at(self.store, resumed)
            seq, mac = resumed, row.mac if row else mac
        walk.expected_seq, walk.expected_prev, walk.head = seq + 1, mac, seq
        walk.report.total = walk.report.valid = seq
        walk.last_stored = (seq, mac) if seq else None

    def _feed_segments(self, walk: Walk, archive: segments.Archive, stored: Stored,
                       progress: Progress | None) -> list[Problem]:
        """Walk every recorded segment file's rows, oldest first, before the table's."""
        problems: list[Problem] = []
        directory = self.archive_dir
        for record in archive.records:
            path = directory / record.file if directory else None
            if path is None or not path.exists():
                problems.append(Problem(record.first_seq, "archive",
                                        f"segment file {record.file} is missing"))
                continue
            reading = segments.Reading()
            walk.feed(chain.counted(segments.read_segment(path, self.key, reading), progress),
                      stored)
            if (reading.sha256, reading.rows) != (record.sha256, record.rows):
                reading.problems.append(f"{record.file}: differs from its archive record")
            problems += [Problem(record.first_seq, "archive", p) for p in reading.problems]
        if directory is not None:
            for path in segments.unrecorded(directory, archive):
                if not path.name.endswith(".partial") and _first_seq(path) <= archive.start_seq:
                    problems.append(Problem(0, "archive", f"{path.name}: a segment file no "
                                                          "archive record names"))
        # rows of an interrupted archive may still be stored below the anchor: skip them
        walk.last_stored = (archive.start_seq, archive.start_mac) if archive.start_seq \
            else walk.last_stored
        return problems

    def _remaining(self, after: int) -> int:
        low, high = chain.seq_range(self.store)
        return max(0, high - max(after, low - 1))

    def _resumable(self) -> Walk | None:
        """The last walk, when the row it ended on is still there, unchanged."""
        walk = self._walk
        if walk is None or walk.last_stored is None:
            return None
        seq, mac = walk.last_stored
        row = chain.row_at(self.store, seq)
        if row is None or not hmac.compare_digest(row.mac, mac):
            return None
        return walk if mac_matches(row, self.key, seq - walk.offset) else None


def _first_seq(path: Path) -> int:
    try:
        return int(path.name.split("-")[1])
    except (IndexError, ValueError):
        return 0


def verify(store: Store, key: bytes, checkpoint_path: Path | None = None, *, full: bool = True,
           archive_dir: Path | None = None, progress: Progress | None = None) -> Report:
    """Read-only check of the chain, streamed; every bad row is reported with its reason.
    `full=False`: from the newest verified checkpoint on (see Verifier)."""
    return Verifier(store, key, checkpoint_path, archive_dir).run(full=full, progress=progress)
