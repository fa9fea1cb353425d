"""The engine's cost per observation does not grow with the number of versions (issue 16).

Work is counted, not timed: every Python line the engine executes (loop iterations included,
through ``sys.settrace``) and every version whose health it visits. A step over 1,000 versions
must cost exactly what the same step costs over 3.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import Any

import pytest

from monitor.failover import engine
from monitor.failover.model import (
    DOWN,
    UP,
    Failure,
    MonitorState,
    Observation,
    Policy,
    initial_state,
    record_changed,
    to_record,
)

T0 = 1000.0


def _warm(count: int) -> tuple[MonitorState, Policy]:
    """``count`` versions, every one UP, startup grace over (built without the engine)."""
    policy = Policy(versions=tuple(f"v{i}" for i in range(count)))
    state = initial_state(policy, T0)
    for v in policy.versions:
        for _ in range(policy.rise):
            state, _ = engine.decide(state, Observation(v, True, T0), policy, T0)
    state, _ = engine.tick(state, policy, T0 + 11)
    assert all(h.state == UP for h in state.health)
    return state, policy


def _lines(step: Callable[[], Any]) -> int:
    """Python lines executed by ``step`` (every loop iteration counts)."""
    count = [0]

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            count[0] += 1
        return tracer

    sys.settrace(tracer)
    try:
        step()
    finally:
        sys.settrace(None)
    return count[0]


def _ok_standby(state: MonitorState, policy: Policy) -> Callable[[], Any]:
    return lambda: engine.decide(state, Observation(policy.versions[1], True, T0 + 12), policy,
                                 T0 + 12)


def _ok_active(state: MonitorState, policy: Policy) -> Callable[[], Any]:
    return lambda: engine.decide(state, Observation(policy.versions[0], True, T0 + 12), policy,
                                 T0 + 12)


def _failing_standby(state: MonitorState, policy: Policy) -> Callable[[], Any]:
    seen = Observation(policy.versions[-1], False, T0 + 12, failure=Failure.TIMEOUT)
    return lambda: engine.decide(state, seen, policy, T0 + 12)


def _active_goes_down(state: MonitorState, policy: Policy) -> Callable[[], Any]:
    """The third failure of the active: DOWN, ejected, a failover to the next one confirmed."""
    for _ in range(policy.fall - 1):
        state, _ = engine.decide(state, Observation(policy.versions[0], False, T0 + 12,
                                                    failure=Failure.TIMEOUT), policy, T0 + 12)
    seen = Observation(policy.versions[0], False, T0 + 12, failure=Failure.TIMEOUT)
    return lambda: engine.decide(state, seen, policy, T0 + 12)


@pytest.mark.parametrize("scenario", [_ok_standby, _ok_active, _failing_standby,
                                      _active_goes_down])
def test_it_costs_the_same_work_per_observation_for_3_and_1000_versions(scenario):
    small, policy_small = _warm(3)
    large, policy_large = _warm(1000)
    work_small = _lines(scenario(small, policy_small))
    work_large = _lines(scenario(large, policy_large))
    assert work_small > 0
    assert work_large == work_small


def test_it_visits_only_the_observed_and_the_active_version_per_observation(monkeypatch):
    state, policy = _warm(1000)
    visited: list[str] = []
    real_decay = engine.decay

    def counting_decay(h: Any, policy: Policy, now: float) -> Any:
        visited.append(h.name)
        return real_decay(h, policy, now)

    monkeypatch.setattr(engine, "decay", counting_decay)
    engine.decide(state, Observation("v500", True, T0 + 12), policy, T0 + 12)
    assert sorted(visited) == ["v0", "v500"]


def test_it_still_decides_a_failover_at_1000_versions():
    state, policy = _warm(1000)
    for _ in range(policy.fall):
        state, events = engine.decide(state, Observation("v0", False, T0 + 12,
                                                         failure=Failure.TIMEOUT), policy, T0 + 12)
    assert state.health_of("v0").state == DOWN
    assert state.pending_target == "v1"
    assert engine.wants_probe_now(events) == {"v1"}


@pytest.mark.parametrize("observation, changed", [
    (Observation("v1", True, T0 + 12), False),  # a probe that changes only streaks
    (Observation("v0", True, T0 + 12), False),
    (Observation("v0", False, T0 + 12, failure=Failure.EXITED, certain=True), True),  # ejected
])
def test_it_says_cheaply_whether_a_step_changed_the_persisted_record(observation, changed):
    state, policy = _warm(3)
    new, _ = engine.decide(state, observation, policy, T0 + 12)
    assert record_changed(state, new) is changed
    assert (to_record(new) != to_record(state)) is changed


def test_it_rebuilds_the_index_when_the_health_tuple_is_replaced():
    state, policy = _warm(3)
    reordered = replace(state, health=tuple(reversed(state.health)))
    assert reordered.versions == ("v2", "v1", "v0")
    assert reordered.health_of("v2") is state.health_of("v2")
    assert record_changed(state, reordered)
