"""Probe scheduling: per-version jobs that never overlap, jitter, and probing at once on demand."""

import asyncio
import collections

import pytest

from monitor.failover.scheduler import Scheduler, jittered
from tests.support import eventually


@pytest.mark.parametrize("rng, expected", [(0.0, 1.90), (0.5, 2.0), (1.0, 2.10)])
def test_it_adds_at_most_five_percent_jitter(rng, expected):
    assert jittered(2.0, lambda: rng) == pytest.approx(expected)


async def test_it_never_overlaps_two_probes_of_one_version():
    running = collections.Counter()
    most = collections.Counter()
    runs = collections.Counter()

    async def cycle(version):
        running[version] += 1
        most[version] = max(most[version], running[version])
        await asyncio.sleep(0.03)  # a probe slower than the requested delay
        running[version] -= 1
        runs[version] += 1
        return 0.0

    scheduler = Scheduler(cycle=cycle, versions=("v1", "v2"), first_delay=0.01)
    scheduler.start()
    try:
        await eventually(lambda: min(runs["v1"], runs["v2"]) >= 5)
        for _ in range(5):
            scheduler.hurry("v1")  # hurrying a running probe must not start a second one
            await asyncio.sleep(0.01)
    finally:
        scheduler.shutdown()
    assert most == {"v1": 1, "v2": 1}


async def test_it_probes_a_version_at_once_when_hurried():
    runs = collections.Counter()

    async def cycle(version):
        runs[version] += 1
        return 60.0  # the next regular probe would be a minute away

    scheduler = Scheduler(cycle=cycle, versions=("v1",), first_delay=0.01)
    scheduler.start()
    try:
        await eventually(lambda: runs["v1"] == 1)
        scheduler.hurry("v1")
        await eventually(lambda: runs["v1"] == 2)
    finally:
        scheduler.shutdown()
    assert runs["v1"] == 2


async def test_it_runs_at_most_in_flight_cycles_at_once():
    versions = tuple(f"v{i}" for i in range(12))
    running, most, runs = [0], [0], collections.Counter()

    async def cycle(version):
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(0.02)
        running[0] -= 1
        runs[version] += 1
        return 0.0

    scheduler = Scheduler(cycle=cycle, versions=versions, first_delay=0.01, in_flight=3)
    scheduler.start()
    try:
        await eventually(lambda: all(runs[v] >= 2 for v in versions))
    finally:
        scheduler.shutdown()
    assert most[0] == 3  # every version got probed, never more than three at once


async def test_it_reports_how_late_each_probe_started():
    lags: list[float] = []
    release = asyncio.Event()

    async def cycle(version):
        await release.wait()  # the only slot stays busy, so the other version waits for it
        return 60.0

    scheduler = Scheduler(cycle=cycle, versions=("v1", "v2"), first_delay=0.0, in_flight=1,
                          on_lag=lags.append)
    scheduler.start()
    try:
        await eventually(lambda: len(lags) == 1)
        await asyncio.sleep(0.05)
        release.set()
        await eventually(lambda: len(lags) == 2)
    finally:
        scheduler.shutdown()
    assert lags[0] < 0.05 <= lags[1]  # the second start waited at least as long as the first ran
