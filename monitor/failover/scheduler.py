"""APScheduler wiring only: probe cycles per version, the engine tick, and periodic jobs.

Each version has one `date` job that re-arms itself after its probe finished, so probes of one
version never overlap and every delay can differ (interval, fast_interval, down_interval, with
±5 % jitter). A version that must be probed at once has its pending job moved to now.
At most `in_flight` cycles run at once; a cycle waits for its slot before its probe's timeout
starts, so a burst of slow targets delays other probes instead of failing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

JITTER = 0.05


def jittered(delay: float, rng: Callable[[], float] = random.random) -> float:
    return max(0.0, delay * (1 - JITTER + 2 * JITTER * rng()))


class Scheduler:
    def __init__(self, *, cycle: Callable[[str], Awaitable[float]], versions: tuple[str, ...],
                 first_delay: float, in_flight: int = 64,
                 on_lag: Callable[[float], None] | None = None,
                 slots: asyncio.Semaphore | None = None) -> None:
        """`slots`: another scheduler's (`.slots`), so several share one in-flight limit."""
        self._cycle = cycle
        self._slots = slots or asyncio.Semaphore(in_flight)
        self.slots = self._slots
        self._on_lag = on_lag  # seconds between a probe's planned and actual start
        self._due: dict[str, float] = {}
        self.versions = versions
        self.first_delay = first_delay
        self.aps = AsyncIOScheduler(timezone=UTC,
                                    job_defaults={"misfire_grace_time": None, "coalesce": True,
                                                  "max_instances": 1})

    def start(self) -> None:
        for version in self.versions:
            self._arm(version, random.uniform(0, self.first_delay))
        self.aps.start()

    def every(self, seconds: float, job: Callable[[], Awaitable[object]], job_id: str) -> None:
        self.aps.add_job(job, "interval", seconds=seconds, id=job_id, replace_existing=True,
                         jitter=None)

    def shutdown(self) -> None:
        if self.aps.running:
            self.aps.shutdown(wait=False)

    def set_versions(self, versions: tuple[str, ...]) -> None:
        """Probe these versions from now on: new ones at once, removed ones no more."""
        added = [v for v in versions if v not in self.versions]
        removed = [v for v in self.versions if v not in versions]
        self.versions = versions
        for version in removed:
            with contextlib.suppress(JobLookupError):
                self.aps.remove_job(f"probe:{version}")
            self._due.pop(version, None)
        if self.aps.running:
            for version in added:
                self._arm(version, 0.0)

    def hurry(self, version: str) -> None:
        """Probe `version` now; when its probe is already running, it re-arms at once."""
        try:
            self.aps.modify_job(f"probe:{version}", next_run_time=datetime.now(UTC))
            self._due[version] = time.monotonic()
        except JobLookupError:
            pass

    async def _run(self, version: str) -> None:
        delay = 1.0
        try:
            async with self._slots:
                if self._on_lag is not None and version in self._due:
                    self._on_lag(max(0.0, time.monotonic() - self._due[version]))
                delay = await self._cycle(version)
        finally:
            if self.aps.running and version in self.versions:
                self._arm(version, jittered(delay))

    def _arm(self, version: str, delay: float) -> None:
        # max_instances=2: the finishing run is still counted while it arms its successor;
        # overlap is impossible anyway, since a successor is armed only when a run ends.
        self._due[version] = time.monotonic() + delay
        self.aps.add_job(self._run, "date", args=[version], id=f"probe:{version}",
                         run_date=datetime.now(UTC) + timedelta(seconds=delay),
                         replace_existing=True, max_instances=2)
