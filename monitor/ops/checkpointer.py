"""When the monitor checkpoints its audit head: every minute when it moved, after every
security-relevant row, and at a clean stop. Only the leader writes (through `fenced`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func
from sqlmodel import select

from monitor.storage import audit, checkpoints
from monitor.storage.store import AuditRow, Store


class Checkpointer:
    def __init__(self, *, store: Store, key: bytes, path: Path, url: str,
                 clock: Callable[[], float],
                 fenced: Callable[[Callable[[], None]], None]) -> None:
        self.store, self.key, self.path, self.clock = store, key, path, clock
        self.sink = checkpoints.sink_for(url)  # the second sink (MONITOR_AUDIT_CHECKPOINT_URL)
        self._fenced = fenced
        self._seq = 0  # the audit head of the last checkpoint written

    async def checkpoint(self) -> None:
        """A checkpoint when the audit head moved since the last one."""
        def write() -> None:
            if self._head_moved():
                self.now()
        await asyncio.to_thread(write)

    def now(self) -> None:
        """Blocking: append a checkpoint of the audit head (file, anchor, second sink)."""
        self._fenced(self._write)

    def _write(self) -> None:
        entry = audit.write_checkpoint(self.store, self.key, self.path, now=self.clock(),
                                       sink=self.sink)
        if entry:
            self._seq = entry["seq"]

    def _head_moved(self) -> bool:
        with self.store.read() as session:
            head = session.exec(select(func.max(AuditRow.seq))).one() or 0
        return head != self._seq
