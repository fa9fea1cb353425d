"""When each version is probed, plus the monitor's periodic jobs.

Probes are timed by the event loop itself: each version has at most one pending timer
(`loop.call_at`), armed again when its probe finished, so probes of one version never overlap
and every delay can differ (interval, fast_interval, down_interval, with ±5 % jitter). A probe
costs one timer handle and one task, not a job in a job store (one APScheduler `date` job per
probe cost more than the probe's own bookkeeping at a thousand targets). The first probes are
spread evenly over `first_delay`. A version that must be probed at once has its timer fired now.
At most `in_flight` cycles run at once (a count, or a semaphore shared with other schedulers);
a cycle waits for its slot before its probe's timeout starts, so a burst of slow targets
delays other probes instead of failing them. APScheduler runs the periodic `every()` jobs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger("monitor.failover.scheduler")
JITTER = 0.05


def jittered(delay: float, rng: Callable[[], float] = random.random) -> float:
    return max(0.0, delay * (1 - JITTER + 2 * JITTER * rng()))


def spread(count: int, over: float, rng: Callable[[], float] = random.random) -> list[float]:
    """First delays for `count` versions: one in each of `count` equal slices of `over`."""
    return [over * (i + rng()) / count for i in range(count)]


class Scheduler:
    def __init__(self, *, cycle: Callable[[str], Awaitable[float]], versions: tuple[str, ...],
                 first_delay: float, in_flight: int | asyncio.Semaphore = 64,
                 on_lag: Callable[[float], None] | None = None) -> None:
        self._cycle = cycle
        self._slots = in_flight if isinstance(in_flight, asyncio.Semaphore) \
            else asyncio.Semaphore(in_flight)
        self.slots = self._slots  # another scheduler given it shares one in-flight limit
        self._on_lag = on_lag  # seconds between a probe's planned and actual start
        self._timers: dict[str, asyncio.TimerHandle] = {}  # versions waiting for their probe
        self._due: dict[str, float] = {}  # planned start (loop time) of each armed version
        self._tasks: set[asyncio.Task[None]] = set()  # probe cycles running
        self._loop: asyncio.AbstractEventLoop | None = None
        self.versions, self._names = versions, frozenset(versions)
        self.first_delay = first_delay
        self.aps = AsyncIOScheduler(timezone=UTC,
                                    job_defaults={"misfire_grace_time": None, "coalesce": True,
                                                  "max_instances": 1})

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        order = list(self.versions)
        random.shuffle(order)  # no version is always first
        for version, delay in zip(order, spread(len(order), self.first_delay), strict=True):
            self._arm(version, delay)
        self.aps.start()

    def every(self, seconds: float, job: Callable[[], Awaitable[object]], job_id: str) -> None:
        self.aps.add_job(job, "interval", seconds=seconds, id=job_id, replace_existing=True,
                         jitter=None)

    def shutdown(self) -> None:
        """No probe starts from now on (the ones running finish); periodic jobs stop."""
        self._loop = None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._due.clear()
        if self.aps.running:
            self.aps.shutdown(wait=False)

    def set_versions(self, versions: tuple[str, ...]) -> None:
        """Probe these versions from now on: new ones at once, removed ones no more."""
        added = [v for v in versions if v not in self.versions]
        removed = [v for v in self.versions if v not in versions]
        self.versions, self._names = versions, frozenset(versions)
        for version in removed:
            if (timer := self._timers.pop(version, None)) is not None:
                timer.cancel()
            self._due.pop(version, None)
        if self.running:
            for version in added:
                self._arm(version, 0.0)

    def hurry(self, version: str) -> None:
        """Probe `version` now; when its probe is already running, the caller's cycle returns
        0 and it re-arms at once (see Watchdog.cycle)."""
        timer = self._timers.pop(version, None)
        if timer is None or self._loop is None:
            return
        timer.cancel()
        self._due[version] = self._loop.time()
        self._fire(version)

    def _arm(self, version: str, delay: float) -> None:
        assert self._loop is not None
        due = self._due[version] = self._loop.time() + delay
        self._timers[version] = self._loop.call_at(due, self._fire, version)

    def _fire(self, version: str) -> None:
        self._timers.pop(version, None)
        if self._loop is None:
            return
        task = self._loop.create_task(self._run(version))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, version: str) -> None:
        delay = 1.0
        try:
            async with self._slots:
                if self._on_lag is not None and self._loop is not None:
                    self._on_lag(max(0.0, self._loop.time() - self._due.get(version, 0.0)))
                delay = await self._cycle(version)
        except Exception:  # a failed cycle must not stop probing that version
            log.exception("probe cycle of %s failed", version)
        finally:
            if self.running and version in self._names and version not in self._timers:
                self._arm(version, jittered(delay))
