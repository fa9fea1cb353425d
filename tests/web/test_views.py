"""Pure helpers: chart geometry, form parsing, template filters."""

from __future__ import annotations

import pytest

from monitor.web.deps import format_faults
from monitor.web.forms import FormError, parse_bool, parse_chaos, parse_failover
from monitor.web.views import CHART_HEIGHT, PAD_BOTTOM, PAD_LEFT, PAD_TOP, chart, nice_ceiling

NOW = 10_000.0


@pytest.mark.parametrize("value, ceiling", [(0, 10), (3, 10), (10, 10), (11, 20), (180, 200),
                                            (201, 500), (900, 1000), (1001, 2000)])
def test_it_rounds_the_chart_scale_up_to_a_nice_number(value, ceiling):
    assert nice_ceiling(value) == ceiling


def test_it_draws_one_polyline_per_unbroken_run_of_successes():
    series = {"v1": [(NOW - 300, 10.0), (NOW - 200, 20.0), (NOW - 100, None), (NOW - 50, 5.0),
                     (NOW - 10, 5.0)],
              "v2": []}
    drawn = chart(series, now=NOW, minutes=15)
    v1, v2 = drawn["lines"]
    assert len(v1["segments"]) == 2 and len(v1["failures"]) == 1
    assert v1["last_ms"] == 5.0 and v2["segments"] == [] and v2["points"] == 0
    assert drawn["top_ms"] == 20


def test_it_maps_time_to_x_and_latency_to_y():
    drawn = chart({"v1": [(NOW - 900, 0.0), (NOW, 10.0)]}, now=NOW, minutes=15)
    first, last = (tuple(map(float, p.split(","))) for p in drawn["lines"][0]["segments"][0]
                   .split())
    assert first == (PAD_LEFT, CHART_HEIGHT - PAD_BOTTOM)      # oldest, 0 ms: bottom left
    assert last == (drawn["right"], PAD_TOP)                   # now, top of scale: top right


def test_it_leaves_out_points_older_than_the_window():
    drawn = chart({"v1": [(NOW - 3600, 999.0), (NOW - 60, 4.0), (NOW - 30, 4.0)]}, now=NOW)
    assert drawn["top_ms"] == 10 and drawn["lines"][0]["points"] == 2


def test_it_draws_a_lone_success_between_failures_as_a_dot():
    drawn = chart({"v1": [(NOW - 30, None), (NOW - 20, 7.0), (NOW - 10, None)]}, now=NOW)
    assert drawn["lines"][0]["segments"] == [] and len(drawn["lines"][0]["dots"]) == 1


@pytest.mark.parametrize("fault, form, params", [
    ("latency", {"ms": "250", "jitter_ms": ""}, {"ms": 250, "jitter_ms": 100}),
    ("errors", {"probability": "0.5"}, {"probability": 0.5}),
    ("corrupt", {"silent": "on"}, {"silent": True}),
    ("corrupt", {}, {"silent": False}),
    ("cpu", {"seconds": "5"}, {"seconds": 5.0, "workers": 1}),
    ("flap", {"period_s": "2.5"}, {"period_s": 2.5}),
    ("crash", {"ignored": "x"}, {}),
])
def test_it_types_chaos_parameters(fault, form, params):
    assert parse_chaos(fault, form) == params


@pytest.mark.parametrize("fault, form", [
    ("latency", {"ms": "-1"}), ("latency", {"ms": "1.5"}), ("errors", {"probability": "1.1"}),
    ("errors", {"probability": "inf"}), ("cpu", {"seconds": "0"}), ("flap", {"period_s": "x"}),
    ("corrupt", {"silent": "perhaps"}), ("nuke", {}),
])
def test_it_refuses_chaos_parameters_out_of_bounds(fault, form):
    with pytest.raises(FormError):
        parse_chaos(fault, form)


@pytest.mark.parametrize("value, expected", [("on", True), ("true", True), ("", False),
                                             ("off", False)])
def test_it_reads_checkboxes(value, expected):
    assert parse_bool({"force": value}, "force") is expected


def test_it_strips_the_reason_and_requires_it_for_failover():
    assert parse_failover({"target": "v2", "reason": "  drill  "}, ["v1", "v2"]) == (
        "v2", "drill", False)
    with pytest.raises(FormError, match="reason"):
        parse_failover({"target": "v2", "reason": "   "}, ["v1", "v2"])


@pytest.mark.parametrize("faults, text", [
    ({}, "none"), (None, "none"),
    ({"latency": {"ms": 500, "jitter_ms": 0}, "crash": {}}, "crash, latency(jitter_ms=0, ms=500)"),
])
def test_it_formats_active_faults(faults, text):
    assert format_faults(faults) == text
