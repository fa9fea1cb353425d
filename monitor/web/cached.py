"""A value that is expensive to compute, recomputed at most once per `max_age` seconds.

Single-flight: while a computation runs (in a worker thread), every caller that needs a new
value awaits that same computation instead of starting another, so a flood of requests costs
one computation and at most one worker thread. `refresh` (an on-demand check, possibly with
its own `forced` computation) is single-flight too: concurrent refreshes share one run. A
value's age counts from when its computation finished, so a computation that takes longer
than `max_age` is not stale on arrival. A computation that raises is not cached.
Used for /readyz (a write-lock check) and the audit page's chain verification.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Stamped(Generic[T]):
    value: T
    at: float  # clock time when the computation started (what the value describes)
    done: float = 0.0  # clock time when it finished (what its age counts from)


class Cached(Generic[T]):
    def __init__(self, compute: Callable[[], T], *, max_age: float,
                 clock: Callable[[], float], forced: Callable[[], T] | None = None) -> None:
        self.compute = compute  # blocking; runs in a worker thread
        self.forced = forced or compute  # what `refresh` runs
        self.max_age = max_age
        self.clock = clock
        self._latest: Stamped[T] | None = None
        self._flight: asyncio.Task[Stamped[T]] | None = None
        self._forced_flight: asyncio.Task[Stamped[T]] | None = None

    @property
    def latest(self) -> Stamped[T] | None:
        return self._latest

    async def get(self) -> Stamped[T]:
        """The cached value while younger than max_age, else a new one (shared)."""
        latest = self._latest
        if latest is not None and self.clock() - latest.done < self.max_age:
            return latest
        flight = self._flight
        if not _joinable(flight):
            flight = self._flight = self._start(self.compute)
        assert flight is not None
        # shield: a caller that goes away must not cancel the computation the others await
        return await asyncio.shield(flight)

    async def refresh(self) -> Stamped[T]:
        """Compute now with `forced`, whatever the cache holds; concurrent calls share one."""
        flight = self._forced_flight
        if not _joinable(flight):
            flight = self._forced_flight = self._start(self.forced)
        assert flight is not None
        return await asyncio.shield(flight)

    def _start(self, compute: Callable[[], T]) -> asyncio.Task[Stamped[T]]:
        flight = asyncio.get_running_loop().create_task(self._run(compute))
        flight.add_done_callback(_retrieve)
        return flight

    async def _run(self, compute: Callable[[], T]) -> Stamped[T]:
        started = self.clock()
        value = await asyncio.to_thread(compute)
        stamped = Stamped(value, started, self.clock())
        if self._latest is None or started >= self._latest.at:
            self._latest = stamped
        return stamped


def cached_in(holder: object, attr: str, key: Hashable,
              make: Callable[[], Cached[T]]) -> Cached[T]:
    """The cache under `key` in the dict `holder.<attr>` (an app's state), made on first use;
    callers keep the keys bounded (known services, windows, pages)."""
    caches: dict[Hashable, Cached[T]] = getattr(holder, attr, None) or {}
    setattr(holder, attr, caches)
    if key not in caches:
        caches[key] = make()
    return caches[key]


def _joinable(flight: asyncio.Task[T] | None) -> bool:
    """A running flight of this event loop (tests run one loop per request)."""
    return flight is not None and not flight.done() \
        and flight.get_loop() is asyncio.get_running_loop()


def _retrieve(task: asyncio.Task[T]) -> None:
    """Mark a failure as seen even when every caller went away (no 'never retrieved' noise)."""
    if not task.cancelled():
        task.exception()
