"""Probe history in buckets: raw probes and per-minute rollups read as one series."""

from __future__ import annotations

import pytest
from sqlmodel import select

from monitor.storage.probe_fold import fold_probes, prune_probes
from monitor.storage.rollup_reads import history
from monitor.storage.store import ProbeRollup, ProbeRow

T0 = 1_750_003_200.0  # a multiple of 3600


def add_probes(store, version: str, start: float, results: list[float | None], every=10.0):
    """One probe per `every` seconds from `start`; a number is a success with that latency."""
    with store.write() as session:
        for n, latency in enumerate(results):
            session.add(ProbeRow(version=version, at=start + n * every, ok=latency is not None,
                                 latency_ms=latency, failure=None if latency else "timeout"))


def summary(found) -> dict[str, list[tuple[float, int, int, float | None]]]:
    return {v: [(b.start - T0, b.count, b.ok_count, b.latency_ms) for b in buckets]
            for v, buckets in found.items()}


def test_it_buckets_raw_probes_per_version(store):
    add_probes(store, "v1", T0, [2.0, 4.0, None, 6.0, 8.0, 10.0, 12.0])  # t0 .. t0+60
    add_probes(store, "v2", T0 + 300, [None, None])
    found = history(store, since=T0, until=T0 + 3600, bucket_s=60)
    assert summary(found) == {
        "v1": [(0, 6, 5, 6.0), (60, 1, 1, 12.0)],  # the failed probe counts, not its latency
        "v2": [(300, 2, 0, None)],
    }
    assert found["v1"][0].uptime == pytest.approx(100 * 5 / 6)
    assert history(store, since=T0 + 60, until=T0 + 120, bucket_s=60).keys() == {"v1"}


def test_it_reads_the_same_history_after_the_probes_are_folded_and_pruned(store):
    add_probes(store, "v1", T0, [3.0, None, 5.0, 7.0] * 30, every=15.0)  # 30 minutes
    before = summary(history(store, since=T0, until=T0 + 7200, bucket_s=600))
    assert fold_probes(store) == 120
    assert summary(history(store, since=T0, until=T0 + 7200, bucket_s=600)) == before
    prune_probes(store, now=T0 + 3600 + 900, keep_s=1800)  # the first 45 min of raw rows go
    with store.read() as session:
        assert len(list(session.exec(select(ProbeRow)))) == 0
    with store.read() as session:
        assert session.get(ProbeRollup, ("v1", T0, "books")) is not None
    assert summary(history(store, since=T0, until=T0 + 7200, bucket_s=600)) == before


def test_it_merges_rollups_and_raw_probes_in_one_bucket(store):
    with store.write() as session:
        session.add(ProbeRollup(version="v1", bucket=T0, count=30, ok_count=27,
                                latency_sum=270.0, latency_max=40.0))
    add_probes(store, "v1", T0 + 1800, [20.0, None, 20.0])
    (bucket,) = history(store, since=T0, until=T0 + 3600, bucket_s=3600)["v1"]
    assert (bucket.count, bucket.ok_count, bucket.latency_max) == (33, 29, 40.0)
    assert bucket.latency_ms == pytest.approx(310.0 / 29)


def test_it_adds_the_hourly_tier_to_the_minutes_and_the_raw_probes(store):
    from monitor.storage.rollup_reads import uptime
    from monitor.storage.tiers import ProbeHourly

    with store.write() as session:
        session.add(ProbeHourly(version="v1", bucket=T0, count=360, ok_count=300,
                                latency_sum=600.0, latency_max=9.0))
        session.add(ProbeRollup(version="v1", bucket=T0 + 3600, count=6, ok_count=6,
                                latency_sum=12.0, latency_max=2.0))
    add_probes(store, "v1", T0 + 7200, [2.0, None])
    found = summary(history(store, since=T0, until=T0 + 3 * 3600, bucket_s=3600))
    assert found == {"v1": [(0, 360, 300, 2.0), (3600, 6, 6, 2.0), (7200, 2, 1, 2.0)]}
    assert uptime(store, since=T0, until=T0 + 3 * 3600) == {"v1": round(100 * 307 / 368, 2)}
    assert uptime(store, since=T0 + 3600, until=T0 + 3 * 3600) == {"v1": 87.5}
