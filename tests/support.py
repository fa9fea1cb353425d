"""Helpers shared by the fast tests: a fake clock, bounded waiting, audit rows.

Process helpers (free ports, real services, the monitor process) are in bench/processes.py,
shared with the benchmarks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlmodel import select

from monitor.storage.store import AuditRow, Store


class FakeClock:
    """Time that moves only when told: `clock()` reads it, `advance(s)` and `at(t)` move it."""

    def __init__(self, now: float = 1_750_000_000.0, start: float | None = None) -> None:
        self.now = now
        self.start = now if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> FakeClock:
        self.now += seconds
        return self

    def at(self, offset: float) -> FakeClock:
        """Set the time to `offset` seconds after the start."""
        self.now = self.start + offset
        return self


async def eventually(predicate: Callable[[], object], timeout: float = 10.0,
                     every: float = 0.01) -> None:
    """Poll `predicate` on the event loop until it holds; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s")
        await asyncio.sleep(every)


def audit_rows(store: Store, action: str | None = None) -> list[AuditRow]:
    """The audit log in order, optionally only the rows of one action."""
    with store.read() as session:
        query = select(AuditRow).order_by(AuditRow.seq)  # type: ignore[arg-type]
        if action:
            query = query.where(AuditRow.action == action)
        return list(session.exec(query))
