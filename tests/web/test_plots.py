"""Latency and uptime chart geometry over 15 minutes, 24 hours and 7 days (pure)."""

from __future__ import annotations

import pytest

from monitor.storage.rollup_reads import Bucket
from monitor.web.plots import SPANS, ChartWindow, charts

NOW = 1_750_003_200.0


def bucket(start: float, count: int, ok: int, latency: float = 10.0) -> Bucket:
    return Bucket(start=start, count=count, ok_count=ok, latency_sum=latency * ok,
                  latency_max=latency)


@pytest.mark.parametrize("window, marks, first", [
    (ChartWindow.MINUTES_15, 4, "-15 min"),
    (ChartWindow.HOURS_24, 5, "-24 h"),
    (ChartWindow.DAYS_7, 8, "-7 d"),
])
def test_it_labels_the_axis_of_each_window(window, marks, first):
    drawn = charts({}, ["v1"], window, NOW)
    labels = [m["label"] for m in drawn["latency"]["marks"]]
    assert len(labels) == marks and labels[0] == "now" and labels[-1] == first
    assert drawn["empty"] is True


def test_it_breaks_lines_at_gaps_and_marks_buckets_that_all_failed():
    step = SPANS[ChartWindow.HOURS_24].bucket_s
    start = NOW - 20 * step
    history = {"v1": [bucket(start, 10, 10), bucket(start + step, 10, 10),
                      bucket(start + 2 * step, 10, 0),  # all failed
                      bucket(start + 3 * step, 10, 10), bucket(start + 4 * step, 10, 10),
                      bucket(start + 9 * step, 10, 5)]}  # after a gap: not joined
    drawn = charts(history, ["v1", "v2"], ChartWindow.HOURS_24, NOW)
    latency = drawn["latency"]["lines"][0]
    assert len(latency["segments"]) == 2 and len(latency["dots"]) == 1
    assert len(latency["failures"]) == 1
    uptime = drawn["uptime"]["lines"][0]
    assert len(uptime["segments"]) == 1 and len(uptime["dots"]) == 1  # 0 % is still a value
    legend = {item["name"]: item for item in drawn["legend"]}
    assert legend["v1"]["probes"] == 60 and legend["v1"]["uptime"] == pytest.approx(75.0)
    assert legend["v2"]["probes"] == 0 and legend["v2"]["uptime"] is None


def test_it_leaves_out_buckets_outside_the_window_and_scales_to_what_is_shown():
    history = {"v1": [bucket(NOW - 2 * 3600, 1, 1, latency=900.0),
                      bucket(NOW - 600, 1, 1, latency=30.0)]}
    drawn = charts(history, ["v1"], ChartWindow.MINUTES_15, NOW)
    assert drawn["legend"][0]["probes"] == 1
    assert drawn["latency"]["ticks"][-1]["label"] == "50 ms"
