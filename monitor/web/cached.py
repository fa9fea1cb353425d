"""A value that is expensive to compute, recomputed at most once per `max_age` seconds.

Single-flight: while a computation runs (in a worker thread), every caller that needs a new
value awaits that same computation instead of starting another, so a flood of requests costs
one computation and at most one worker thread. A computation that raises is not cached.
Used for /readyz (a write-lock check) and the audit page's chain verification.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Stamped(Generic[T]):
    value: T
    at: float  # clock time when the computation started


class Cached(Generic[T]):
    def __init__(self, compute: Callable[[], T], *, max_age: float,
                 clock: Callable[[], float]) -> None:
        self.compute = compute  # blocking; runs in a worker thread
        self.max_age = max_age
        self.clock = clock
        self._latest: Stamped[T] | None = None
        self._flight: asyncio.Task | None = None

    @property
    def latest(self) -> Stamped[T] | None:
        return self._latest

    async def get(self) -> Stamped[T]:
        """The cached value while younger than max_age, else a new one (shared)."""
        latest = self._latest
        if latest is not None and self.clock() - latest.at < self.max_age:
            return latest
        return await self._join(force=False)

    async def refresh(self) -> Stamped[T]:
        """Compute now, whatever the cache holds (an on-demand check), and keep the result."""
        return await self._join(force=True)

    async def _join(self, *, force: bool) -> Stamped[T]:
        loop = asyncio.get_running_loop()
        flight = self._flight
        # A flight of another event loop (tests run one loop per request) cannot be awaited.
        if force or flight is None or flight.done() or flight.get_loop() is not loop:
            flight = loop.create_task(self._run())
            flight.add_done_callback(_retrieve)
            self._flight = flight
        # shield: a caller that goes away must not cancel the computation the others await
        return await asyncio.shield(flight)

    async def _run(self) -> Stamped[T]:
        started = self.clock()
        try:
            value = await asyncio.to_thread(self.compute)
        finally:
            if self._flight is asyncio.current_task():
                self._flight = None
        stamped = Stamped(value, started)
        if self._latest is None or started >= self._latest.at:
            self._latest = stamped
        return stamped


def _retrieve(task: asyncio.Task) -> None:
    """Mark a failure as seen even when every caller went away (no 'never retrieved' noise)."""
    if not task.cancelled():
        task.exception()
