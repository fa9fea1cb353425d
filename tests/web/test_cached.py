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
