"""A value recomputed at most once per max_age, one computation shared by concurrent callers."""

from __future__ import annotations

import asyncio
import threading

import pytest

from monitor.web.cached import Cached
from tests.web.support import FakeClock


class Counting:
    """A blocking computation that counts its runs and can be held until released."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> int:
        self.runs += 1
        self.release.wait(timeout=10)
        return self.runs


async def test_it_shares_one_computation_between_concurrent_callers():
    compute = Counting()
    compute.release.clear()
    cached = Cached(compute, max_age=2.0, clock=FakeClock())
    callers = [asyncio.create_task(cached.get()) for _ in range(20)]
    for _ in range(1000):  # bounded: until the one computation has started
        if compute.runs:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0)
    compute.release.set()
    results = await asyncio.gather(*callers)
    assert compute.runs == 1
    assert {r.value for r in results} == {1}


async def test_it_recomputes_only_when_the_value_is_older_than_max_age():
    compute, clock = Counting(), FakeClock()
    cached = Cached(compute, max_age=2.0, clock=clock)
    first = await cached.get()
    clock.advance(1.9)
    assert (await cached.get()) == first and compute.runs == 1
    clock.advance(0.2)
    later = await cached.get()
    assert (later.value, later.at, compute.runs) == (2, clock(), 2)


async def test_it_refreshes_on_demand_and_keeps_the_fresh_value():
    compute, clock = Counting(), FakeClock()
    cached = Cached(compute, max_age=60.0, clock=clock)
    await cached.get()
    clock.advance(5)
    forced = await cached.refresh()
    assert forced.value == 2 and (await cached.get()) == forced


async def test_it_keeps_a_failed_computation_out_of_the_cache():
    clock, runs = FakeClock(), []

    def flaky() -> str:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("database locked")
        return "ok"

    cached = Cached(flaky, max_age=60.0, clock=clock)
    with pytest.raises(RuntimeError, match="database locked"):
        await cached.get()
    assert (await cached.get()).value == "ok" and len(runs) == 2


class SlowClock(FakeClock):
    """A clock that a computation moves forward (a verification that takes long)."""


async def test_it_counts_a_values_age_from_when_its_computation_finished():
    clock = SlowClock()

    def slow() -> str:
        clock.advance(90.0)  # longer than max_age
        return "report"

    runs: list[int] = []

    def counted() -> str:
        runs.append(1)
        return slow()

    cached = Cached(counted, max_age=60.0, clock=clock)
    first = await cached.get()
    assert (await cached.get()) is first and len(runs) == 1  # not stale on arrival
    assert first.done - first.at == 90.0


async def test_it_shares_one_forced_refresh_between_concurrent_callers():
    compute = Counting()
    forced_runs: list[int] = []
    gate = threading.Event()

    def forced() -> int:
        forced_runs.append(1)
        gate.wait(timeout=10)
        return -1

    cached = Cached(compute, max_age=60.0, clock=FakeClock(), forced=forced)
    callers = [asyncio.create_task(cached.refresh()) for _ in range(10)]
    for _ in range(1000):
        if forced_runs:
            break
        await asyncio.sleep(0.005)
    gate.set()
    results = await asyncio.gather(*callers)
    assert len(forced_runs) == 1 and compute.runs == 0
    assert {r.value for r in results} == {-1}
