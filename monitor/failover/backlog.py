"""The writes of the watchdog that the database has not taken yet, oldest first.

While the database refuses writes (locked, full, gone) the decisions still take effect and
their transactions wait here in order; each is journaled (fsynced, storage.journal) once a write
has failed, and replayed at the next start. Database thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from monitor.ops.metrics import Metrics
from monitor.storage.journal import Journal
from monitor.storage.lease import Fenced
from monitor.storage.store import StaleEpoch

log = logging.getLogger("monitor.failover.watchdog")
MAX_BACKLOG = 100_000  # queued writes kept while the database refuses them


@dataclass(eq=False)
class Queued:
    """A write waiting for the database: the job, whether it may be dropped when the queue is
    full, how to journal it, and its journal id once journaled."""

    job: Callable[[], None]
    droppable: bool
    entry: Callable[[], dict[str, Any]] | None = None
    journal_id: int | None = None


class Backlog:
    def __init__(self, journal: Journal | None, metrics: Metrics | None) -> None:
        self.journal, self.metrics = journal, metrics
        self.items: list[Queued] = []
        self._failing = False

    def __len__(self) -> int:
        return len(self.items)

    def drain(self, queued: Queued | None) -> None:
        """Database thread only. Writes queue up in order while the database refuses them
        (locked, full, gone), so the monitor keeps deciding and failing over and no audit row
        or notice is lost; each queued decision is journaled (fsynced) before it takes effect,
        and written, oldest first, as soon as a write succeeds. When the queue is full, plain
        probe rows are dropped first, decisions never. A StaleEpoch drops only the job that
        met it (re-raised when it is the caller's own); the jobs behind it are still written."""
        if queued is not None:
            self.items.append(queued)
            if len(self.items) > MAX_BACKLOG:
                plain = next((i for i, q in enumerate(self.items) if q.droppable), None)
                if plain is not None:
                    self.done(self.items.pop(plain))
        try:
            while self.items:
                head = self.items[0]
                try:
                    head.job()
                except Fenced:
                    # written by a monitor that no longer leads: none of them may be written
                    for item in self.items:
                        self.done(item)
                    self.items.clear()
                    raise
                except StaleEpoch:
                    self.done(self.items.pop(0))
                    if head is queued:
                        raise
                    log.warning("dropped a queued write built on a state that is no longer "
                                "current (another writer moved the epoch)")
                    continue
                except Exception as exc:  # noqa: BLE001 - any database failure: keep it queued
                    if not self._failing:
                        log.error("database write failed (%s); keeping decisions in memory "
                                  "and in the journal until it can be written", exc)
                    self._failing = True
                    self.journal_pending()
                    return
                self.done(self.items.pop(0))
            if self._failing:
                log.warning("database writable again; queued decisions written")
                self._failing = False
        finally:
            if self.metrics:
                self.metrics.set_write_queue(len(self.items))

    def journal_pending(self) -> None:
        if self.journal is None:
            return
        for queued in self.items:
            if queued.journal_id is None and queued.entry is not None:
                queued.journal_id = self.journal.append(queued.entry())

    def done(self, queued: Queued) -> None:
        if self.journal is not None and queued.journal_id is not None:
            self.journal.done(queued.journal_id)

    def replay(self, apply: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
        """Queue the journal's transactions (oldest first) and try to write them now; the
        state record of the last journaled decision, or None without one."""
        if self.journal is None:
            return None
        latest = None
        for ident, entry in self.journal.pending():
            self.items.append(Queued(partial(apply, entry), False, None, ident))
            latest = entry.get("new", latest)
        if not self.items:
            return None
        log.warning("replaying %d journaled transaction(s)", len(self.items))
        self.drain(None)
        return latest if self.items else None

