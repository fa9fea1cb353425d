"""An append-only, fsynced journal of transactions the database has not taken yet.

While the database refuses writes, the watchdog's decisions take effect at once and their
transactions queue in memory; each queued one is also appended here (one JSON line, fsynced
before the decision is acted on further), and marked done once the database committed it.
After a restart or an OOM kill, `pending()` hands back, in order, every entry not marked
done, so it is replayed instead of lost. When nothing is pending the file is emptied.

Lines: `{"add": id, "entry": {...}}` and `{"done": id}`. A torn last line (a crash in the
middle of a write) is ignored: its entry was never acknowledged to anyone.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from monitor.storage.datadir import fsync_dir

log = logging.getLogger("monitor.storage.journal")


class Journal:
    """Thread-safe; every write is fsynced before it returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pending: dict[int, dict[str, Any]] = {}
        self._next = 1
        self._load()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def append(self, entry: dict[str, Any]) -> int:
        """Journal one transaction; returns its id (to mark it done)."""
        with self._lock:
            ident = self._next
            self._next += 1
            self._write({"add": ident, "entry": entry})
            self._pending[ident] = entry
            return ident

    def done(self, ident: int) -> None:
        """The database committed it. With nothing left pending, the file is emptied."""
        with self._lock:
            if self._pending.pop(ident, None) is None:
                return
            if self._pending:
                self._write({"done": ident})
            else:
                self._truncate()

    def pending(self) -> list[tuple[int, dict[str, Any]]]:
        """Entries not yet done, oldest first."""
        with self._lock:
            return sorted(self._pending.items())

    def _write(self, line: dict[str, Any]) -> None:
        created = not self.path.exists()
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            fsync_dir(self.path.parent)

    def _truncate(self) -> None:
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.flush()
            os.fsync(handle.fileno())

    def _load(self) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        seen = 0
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                if "add" in record:
                    ident = int(record["add"])
                    self._pending[ident] = dict(record["entry"])
                else:
                    ident = int(record["done"])
                    self._pending.pop(ident, None)
                seen = max(seen, ident)
            except (ValueError, KeyError, TypeError):
                if number == len(lines):
                    log.warning("%s: ignoring a torn last line", self.path)
                    continue
                raise ValueError(f"{self.path} line {number} is damaged; move the file away "
                                 "after checking what it holds") from None
        self._next = seen + 1
        if lines and not self._pending:
            self._truncate()
