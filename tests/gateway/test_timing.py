"""Per-attempt timeouts from recent latency, as a table over a fake clock."""

from __future__ import annotations

import pytest

from monitor.gateway.timing import AttemptTimeouts


@pytest.mark.parametrize("samples, now, timeout", [
    ([], 0.0, 2.0),                                  # nothing known: the ceiling
    ([0.010] * 15, 0.0, 2.0),                        # too few answers yet
    ([0.010] * 100, 0.0, 0.1),                       # 4 x 10 ms is below the floor
    ([0.050] * 98 + [0.080] * 2, 0.0, 0.32),         # p99 x 4 (nearest rank)
    ([0.050] * 50 + [0.400] * 50, 0.0, 1.6),
    ([1.0] * 100, 0.0, 2.0),                         # bounded by the ceiling
    ([0.050] * 100, 31.0, 2.0),                      # all older than 30 s: learn afresh
])
def test_it_derives_the_attempt_timeout_from_recent_latency(samples, now, timeout):
    timeouts = AttemptTimeouts(floor=0.1, ceiling=2.0)
    for sample in samples:
        timeouts.observe("v1", sample, 0.0)
    assert timeouts.timeout_for("v1", now) == pytest.approx(timeout)
    assert timeouts.timeout_for("v2", now) == 2.0  # per version


def test_it_keeps_only_the_most_recent_answers():
    timeouts = AttemptTimeouts(floor=0.01, ceiling=10.0)
    for _ in range(300):
        timeouts.observe("v1", 1.0, 0.0)
    for _ in range(256):
        timeouts.observe("v1", 0.01, 0.5)
    assert timeouts.timeout_for("v1", 2.0) == pytest.approx(0.04)
