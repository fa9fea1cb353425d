"""Reading the checkpoint file for a verification, in bounded memory, whole or by its tail.

The file grows by a line a minute and one per security-relevant row: a year is hundreds of
thousands of lines. A verification therefore never holds them: `Scan` hands out the signed
entries in file (= seq) order while it reads, and a walk compares each with the row of that seq
as it passes (storage.verification).
- `Scan.full`: every line from the first: each signature and each link (line n signs line n-1),
  then the anchor (lines written, last signature). `audit verify --full`.
- `Scan.tail`: only the lines at the end (newer than the walk's start, plus the one before them
  for the link), read backwards; the anchor check takes the last line's number and signature,
  so a shortened or missing file is still caught. Lines removed or forged in the middle (out
  of the lines read) are `--full`'s job.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.storage.checkpoints import GENESIS, anchor_id, anchor_mac, raw_sig, sign_line
from monitor.storage.store import AuditAnchor, Store

BLOCK = 1 << 16
TAIL_LIMIT = 10_000  # lines read back at most by an incremental check


def _parsed(key: bytes, line: str) -> tuple[dict[str, Any] | None, str, str]:
    """(entry without sig or None, its sig as written, the problem if any)."""
    try:
        entry = json.loads(line)
        sig = str(entry.pop("sig"))
        if not hmac.compare_digest(sig.encode(), sign_line(key, entry).encode()):
            return None, sig, "bad signature"
        return entry, sig, ""
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, GENESIS, str(exc) or type(exc).__name__


def tail_lines(path: Path, *, stop_seq: int, limit: int) -> tuple[list[str], bool]:
    """Lines from the end backwards (newest first) down to the first whose seq <= stop_seq
    (included), at most `limit`; and whether the file's first line was reached."""
    found: list[str] = []
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        position, rest = handle.tell(), b""
        while position > 0 and len(found) < limit:
            size = min(BLOCK, position)
            position -= size
            handle.seek(position)
            parts = (handle.read(size) + rest).split(b"\n")
            rest = parts[0]
            for raw in reversed(parts[1:]):
                if raw.strip():
                    found.append(raw.decode("utf-8", "replace"))
                    if _seq_of(found[-1]) <= stop_seq or len(found) >= limit:
                        return found, position == 0 and not rest.strip() and raw is parts[1]
        if rest.strip() and len(found) < limit:
            found.append(rest.decode("utf-8", "replace"))
    return found, True


def _seq_of(line: str) -> int:
    try:
        return int(json.loads(line)["seq"])
    except (ValueError, KeyError, TypeError):
        return -1


def count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
    return count


@dataclass
class Scan:
    """Entries (ascending seq) for a walk to compare, and what is wrong with the file."""

    key: bytes
    path: Path
    store: Store | None
    entries: Iterator[dict[str, Any]] = field(default_factory=lambda: iter(()))
    problems: list[str] = field(default_factory=list)
    last: dict[str, Any] | None = None  # the entry with the highest seq seen
    _done: bool = False
    _tail_entries: list[dict[str, Any]] = field(default_factory=list)
    _anchor_row: AuditAnchor | None = None

    @classmethod
    def full(cls, key: bytes, path: Path, store: Store | None) -> Scan:
        scan = cls(key, path, store)
        scan._anchor_row = scan._read_anchor()
        scan.entries = scan._every_line()
        return scan

    @classmethod
    def tail(cls, key: bytes, path: Path, store: Store | None, *, after: int,
             limit: int = TAIL_LIMIT) -> Scan:
        scan = cls(key, path, store)
        scan._anchor_row = scan._read_anchor()
        scan.entries = iter(scan._tail(after, limit))
        return scan

    def _read_anchor(self) -> AuditAnchor | None:
        if self.store is None:
            return None
        with self.store.read() as session:
            return session.get(AuditAnchor, anchor_id(self.store, self.path))

    def newest_first(self) -> list[dict[str, Any]]:
        """(tail scans) the entries read, newest first, for choosing a resume point."""
        return list(reversed(self._tail_entries))

    def finish(self) -> None:
        """Read what the walk did not need, then check the anchor. Idempotent."""
        if self._done:
            return
        for _ in self.entries:
            pass
        self._done = True

    def _seen(self, entry: dict[str, Any]) -> None:
        if self.last is None or int(entry["seq"]) >= int(self.last["seq"]):
            self.last = entry

    def _every_line(self) -> Iterator[dict[str, Any]]:
        number, prev, last_sig = 0, GENESIS, GENESIS
        anchored = self._anchor_row.lines if self._anchor_row else 0
        sig_at_anchor: str | None = None
        chained = False
        if self.path.exists():
            with open(self.path, encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    number += 1
                    entry, last_sig, problem = _parsed(self.key, line)
                    if number == anchored:
                        sig_at_anchor = raw_sig(line)
                    if entry is None:
                        self.problems.append(f"checkpoint line {number}: {problem}")
                        prev = last_sig
                        continue
                    if "n" in entry and (entry["n"] != number or entry["prev"] != prev):
                        self.problems.append(
                            f"checkpoint line {number}: does not follow line {number - 1} "
                            "(lines removed, inserted or reordered)")
                    prev, chained = last_sig, chained or "n" in entry
                    self._seen(entry)
                    yield entry
        self._anchor(number, sig_at_anchor, chained=chained)

    def _tail(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Entries newer than `after`, ascending; their signatures and links checked."""
        if not self.path.exists():
            self._anchor(0, None, chained=False)
            return []
        lines, whole = tail_lines(self.path, stop_seq=after, limit=limit)
        newer: dict[str, Any] | None = None
        for line in lines:  # newest first
            entry, sig, problem = _parsed(self.key, line)
            if entry is None:
                self.problems.append(f"checkpoint line near the end: {problem}")
                newer = None
                continue
            if newer is not None and "n" in newer and (
                    newer["prev"] != sig or newer["n"] != entry.get("n", 0) + 1):
                self.problems.append(f"checkpoint line {newer['n']}: does not follow the "
                                     "line before it (lines removed, inserted or reordered)")
            self._tail_entries.append(entry)
            self._seen(entry)
            newer = entry
        newest = _parsed(self.key, lines[0])[0] if lines else None
        # the lines written: the last line's number (counting the lines is --full's cost)
        total = newest["n"] if newest and isinstance(newest.get("n"), int) \
            else count_lines(self.path)
        oldest = _parsed(self.key, lines[-1])[0] if whole and lines else None
        if oldest is not None and oldest.get("n", 1) != 1:
            self.problems.append(f"checkpoint line 1: is line {oldest['n']}: the lines "
                                 "before it were removed")
        anchored = self._anchor_row.lines if self._anchor_row else 0
        back = total - anchored  # how far from the end the anchored line is
        sig_at_anchor = raw_sig(lines[back]) if 0 <= back < len(lines) else None
        self._anchor(total, sig_at_anchor, chained=bool(lines) and '"n":' in lines[0])
        return [e for e in reversed(self._tail_entries) if int(e["seq"]) > after]

    def _anchor(self, lines: int, sig_at_anchor: str | None, *, chained: bool) -> None:
        """A file missing or shorter than the anchor (MAC'd, in the database) says, or whose
        anchored line is another (`sig_at_anchor`: None when that line was not read)."""
        if self.store is None:
            return
        anchor = self._anchor_row
        name = self.path.name
        if anchor is None:
            if chained:
                self.problems.append(f"{name}: its anchor row was deleted")
            return
        if not hmac.compare_digest(anchor.mac.encode(),
                                   anchor_mac(self.key, anchor.lines, anchor.last_sig).encode()):
            self.problems.append(f"{name}: its anchor row was altered")
        elif anchor.lines and lines < anchor.lines:
            state = "is missing" if not lines else f"has {lines} lines"
            self.problems.append(f"{name} {state}, but {anchor.lines} checkpoint(s) were "
                                 "written: deleted or shortened")
        elif anchor.lines and sig_at_anchor is not None and sig_at_anchor != anchor.last_sig:
            self.problems.append(f"checkpoint line {anchor.lines}: not the line that was "
                                 "written")
