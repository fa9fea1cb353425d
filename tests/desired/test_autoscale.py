"""Autoscaling follows Kubernetes HPA: ceil(current x cpu / target), tolerance, scale-down
stabilisation window, [min, max]."""

import pytest

from monitor.desired.autoscale import Recommendations, raw_recommendation, recommend
from monitor.desired.spec import Autoscale

POLICY = Autoscale.model_validate({"targetCPU": 50, "min": 1, "max": 5,
                                   "scaleDownStabilizationSeconds": 300})


@pytest.mark.parametrize("current, cpu, desired", [
    (1, 50, 1),    # at target
    (2, 54, 2),    # within 10 % tolerance
    (2, 44, 2),    # within 10 % tolerance, below
    (2, 56, 3),    # ceil(2 x 1.12)
    (1, 100, 2),
    (2, 200, 5),   # ceil(8) capped at max
    (4, 10, 1),    # ceil(0.8)
    (3, 0, 1),     # idle: min
])
def test_it_applies_the_hpa_formula(current, cpu, desired):
    assert raw_recommendation(current, cpu, POLICY) == desired


def test_it_scales_up_at_once_and_down_only_after_the_window():
    history = Recommendations()
    history, n = recommend(history, current=1, cpu_percent=150, policy=POLICY, now=0)
    assert n == 3
    history, n = recommend(history, current=3, cpu_percent=10, policy=POLICY, now=10)
    assert n == 3  # the recommendation of 3 made at t=0 is still in the window
    history, n = recommend(history, current=3, cpu_percent=10, policy=POLICY, now=299)
    assert n == 3
    history, n = recommend(history, current=3, cpu_percent=10, policy=POLICY, now=310)
    assert n == 1  # the window only holds low recommendations now
    assert all(310 - at < 300 for at, _ in history.made)


def test_it_keeps_a_short_dip_from_removing_replicas():
    history, n = recommend(Recommendations(), current=4, cpu_percent=50, policy=POLICY, now=0)
    assert n == 4
    history, n = recommend(history, current=4, cpu_percent=5, policy=POLICY, now=30)
    assert n == 4
    history, n = recommend(history, current=4, cpu_percent=60, policy=POLICY, now=60)
    assert n == 5


def test_it_scales_down_at_once_with_a_zero_window():
    policy = POLICY.model_copy(update={"scale_down_stabilization_seconds": 0.0})
    history, n = recommend(Recommendations(), current=1, cpu_percent=200, policy=policy, now=0)
    assert n == 4
    _, n = recommend(history, current=4, cpu_percent=5, policy=policy, now=1)
    assert n == 1


def test_it_keeps_the_count_without_a_cpu_figure():
    history, n = recommend(Recommendations(), current=3, cpu_percent=None, policy=POLICY, now=0)
    assert (history, n) == (Recommendations(), 3)
    _, n = recommend(Recommendations(), current=9, cpu_percent=None, policy=POLICY, now=0)
    assert n == 5
