"""The overview's latency chart: computed off the event loop, once per max age for everyone."""

from __future__ import annotations

from monitor.storage.store import ProbeRow
from monitor.web.routes.pages import CHART_MAX_AGE_S
from tests.web.support import auth


def add_failure(runtime, ago: float) -> None:
    with runtime.store.write() as session:
        session.add(ProbeRow(version="v2", at=runtime.clock() - ago, ok=False,
                             failure="timeout"))


def test_it_serves_one_chart_per_max_age_then_a_fresh_one(client, runtime, clock):
    with runtime.store.write() as session:
        session.add(ProbeRow(version="v1", at=clock() - 30, ok=True, latency_ms=3.0))
    first = client.get("/partials/chart", auth=auth("viewer")).text
    assert "<polyline" in first or "<circle" in first
    assert 'class="fail"' not in first
    add_failure(runtime, 5)
    clock.advance(CHART_MAX_AGE_S / 2)
    assert 'class="fail"' not in client.get("/", auth=auth("viewer")).text  # the same chart
    clock.advance(CHART_MAX_AGE_S)
    assert 'class="fail"' in client.get("/partials/chart", auth=auth("viewer")).text
