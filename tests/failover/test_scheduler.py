"""Probe scheduling: per-version jobs that never overlap, jitter, and probing at once on demand."""

import asyncio
import collections

import pytest

from monitor.failover.scheduler import Scheduler, jittered, spread
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


@pytest.mark.parametrize("count, over", [(1, 2.0), (4, 2.0), (1000, 2.0), (10, 0.0)])
def test_it_spreads_the_first_probes_evenly_over_the_first_delay(count, over):
    for rng in (lambda: 0.0, lambda: 0.999):
        delays = spread(count, over, rng)
        assert len(delays) == count
        slices = [int(d / over * count) if over else 0 for d in delays]
        assert slices == ([0] * count if not over else list(range(count)))  # one per slice


async def test_it_starts_the_first_probes_spread_over_the_first_delay_and_keeps_probing():
    loop = asyncio.get_running_loop()
    started: dict[str, list[float]] = collections.defaultdict(list)
    versions = tuple(f"v{i}" for i in range(20))

    async def cycle(version):
        started[version].append(loop.time())
        return 0.05

    scheduler = Scheduler(cycle=cycle, versions=versions, first_delay=0.4)
    begun = loop.time()
    scheduler.start()
    try:
        await eventually(lambda: all(len(started[v]) >= 3 for v in versions))
    finally:
        scheduler.shutdown()
    firsts = sorted(started[v][0] - begun for v in versions)
    assert firsts[-1] - firsts[0] > 0.2  # not all at once: spread over the 0.4 s


async def test_it_shares_one_in_flight_bound_between_schedulers_with_the_same_names():
    slots = asyncio.Semaphore(2)
    running, most = [0], [0]
    runs: collections.Counter[tuple[str, str]] = collections.Counter()

    def cycle_of(service):
        async def cycle(version):
            running[0] += 1
            most[0] = max(most[0], running[0])
            await asyncio.sleep(0.02)
            running[0] -= 1
            runs[(service, version)] += 1
            return 0.0
        return cycle

    schedulers = [Scheduler(cycle=cycle_of(s), versions=("v1", "v2", "v3"), first_delay=0.01,
                            in_flight=slots) for s in ("books", "films")]
    for scheduler in schedulers:
        scheduler.start()
    try:
        await eventually(lambda: len(runs) == 6 and min(runs.values()) >= 2)
    finally:
        for scheduler in schedulers:
            scheduler.shutdown()
    assert most[0] == 2  # both services' versions probed, never more than two at once


async def test_it_keeps_probing_a_version_whose_cycle_raised_and_stops_at_shutdown():
    runs = collections.Counter()

    async def cycle(version):
        runs[version] += 1
        if runs[version] == 1:
            raise RuntimeError("a bug in one cycle")
        return 0.01

    scheduler = Scheduler(cycle=cycle, versions=("v1",), first_delay=0.0)
    scheduler.start()
    try:
        await eventually(lambda: runs["v1"] >= 3)
    finally:
        scheduler.shutdown()
    stopped_at = runs["v1"]
    await asyncio.sleep(0.1)
    assert runs["v1"] <= stopped_at + 1  # at most the cycle that was running finishes


async def test_it_probes_added_versions_at_once_and_removed_ones_no_more():
    runs = collections.Counter()

    async def cycle(version):
        runs[version] += 1
        return 0.02

    scheduler = Scheduler(cycle=cycle, versions=("v1", "v2"), first_delay=0.0)
    scheduler.start()
    try:
        await eventually(lambda: runs["v2"] >= 1)
        scheduler.set_versions(("v1", "v3"))
        await eventually(lambda: runs["v3"] >= 2)
        seen_v2 = runs["v2"]
        await eventually(lambda: runs["v3"] >= 8)
    finally:
        scheduler.shutdown()
    assert runs["v2"] <= seen_v2 + 1
