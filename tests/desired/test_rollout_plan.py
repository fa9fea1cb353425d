"""The pure helpers around a rollout: the analysis window, replica targets, weights, the view."""

from __future__ import annotations

import dataclasses

import pytest

from monitor.desired import rollout as ro
from monitor.desired import rollout_plan as plan
from monitor.desired.rollout import Phase, Strategy
from monitor.desired.spec import Rollout as RolloutSpec

CANARY, _ = ro.start(Strategy.CANARY, "v1", "v2", plan.DEFAULT_STEPS, 0.0)
BLUEGREEN, _ = ro.start(Strategy.BLUEGREEN, "v1", "v2", (), 0.0, scale_down_delay=30)
COUNTS = {"v1": 3, "v2": 1, "v3": 1}


def at(rollout, **changes):
    return dataclasses.replace(rollout, **changes)


@pytest.mark.parametrize("rollout, now, targets", [
    (None, 0, {}),
    (CANARY, 0, {"v2": 3}),  # the canary runs the leader's count while it is tried
    (at(CANARY, phase=Phase.ABORTED), 0, {}),  # aborted: back to the spec's counts
    (at(BLUEGREEN, phase=Phase.COMPLETED, scale_down_at=30.0), 10, {"v2": 3}),  # old kept
    (at(BLUEGREEN, phase=Phase.COMPLETED, scale_down_at=30.0), 30, {"v2": 3, "v1": 1}),
])
def test_it_sets_replica_targets_for_the_phase_of_the_rollout(rollout, now, targets):
    assert plan.replica_targets(rollout, COUNTS, now) == targets


@pytest.mark.parametrize("rollout, weights", [
    (None, {}),
    (at(CANARY, weight=10), {"v2": 10}),
    (at(CANARY, weight=10, phase=Phase.PAUSED), {"v2": 10}),
    (at(CANARY, weight=0), {}),
    (at(CANARY, weight=100, phase=Phase.COMPLETED), {}),  # the canary is active now
    (at(CANARY, weight=10, phase=Phase.ABORTED), {}),
    (at(BLUEGREEN, weight=0), {}),  # BlueGreen never splits traffic
])
def test_it_gives_the_gateway_the_canary_weight_only_while_it_runs(rollout, weights):
    assert plan.weights(rollout) == weights


def test_it_measures_the_canary_from_its_answered_and_failed_attempts():
    window = plan.Window(started=0.0)
    window.count([("v2", "ok", 60), ("v2", "retried", 10), ("v2", "failed", 5), ("v1", "ok", 900)])
    for _ in range(5):
        window.fail("v2")  # every failed attempt is reported, final ones too
    window.probe("v2", False, None)
    window.probe("v2", True, 4.0)
    seen = window.measurement("v2", "v1", ready=True)
    assert (seen.canary_requests, seen.canary_failures, seen.canary_probe_failures) == (75, 5, 1)
    assert seen.canary_p99_ms is None  # two probes say nothing about a p99
    window.reset(10.0)
    assert window.measurement("v2", "v1", ready=True).canary_requests == 0


def test_it_compares_the_gateway_p99s_when_it_reported_both_versions():
    window = plan.Window(started=0.0)
    for ms in range(1, 21):
        window.probe("v2", True, float(ms))
        window.probe("v1", True, 1.0)
    seen = window.measurement("v2", "v1", ready=True)
    assert (seen.canary_p99_ms, seen.stable_p99_ms) == (20.0, 1.0)  # the probes' p99s
    window.count([("v2", "p99_us", 45_000), ("v2", "ok", 3)])
    assert window.measurement("v2", "v1", ready=True).canary_p99_ms == 20.0  # one side only
    window.count([("v1", "p99_us", 9_000)])
    seen = window.measurement("v2", "v1", ready=True)
    assert (seen.canary_p99_ms, seen.stable_p99_ms, seen.canary_requests) == (45.0, 9.0, 3)


def test_it_takes_a_p99_only_from_enough_samples():
    assert plan.p99([5.0] * (plan.MIN_LATENCY_SAMPLES - 1)) is None
    assert plan.p99([float(i) for i in range(1, 101)]) == 99.0


@pytest.mark.parametrize("name, spec, strategy", [
    ("", None, Strategy.CANARY),
    ("BlueGreen", None, Strategy.BLUEGREEN),
    ("", RolloutSpec.model_validate({"strategy": "BlueGreen"}), Strategy.BLUEGREEN),
    ("canary", RolloutSpec.model_validate({"strategy": "BlueGreen"}), Strategy.CANARY),
])
def test_it_takes_the_strategy_from_the_request_else_the_spec(name, spec, strategy):
    assert plan.strategy_named(name, spec) == strategy


def test_it_shows_the_rollout_in_the_status_shape():
    view = plan.view(at(CANARY, weight=10))
    assert view is not None
    assert {k: view[k] for k in ("strategy", "from", "to", "step", "weight", "state")} == {
        "strategy": "canary", "from": "v1", "to": "v2", "step": 0, "weight": 10,
        "state": "progressing"}
    assert plan.view(None) is None
