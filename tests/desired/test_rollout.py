"""The rollout state machine as a specification: steps, analysis, operator actions."""

import pytest

from monitor.desired import rollout as ro
from monitor.desired.rollout import Kind, Measurement, Phase, RolloutError, Strategy
from monitor.desired.spec import Analysis, Step

POLICY = Analysis.model_validate({"successRate": 0.99, "maxP99Ratio": 1.5,
                                  "intervalSeconds": 10, "maxProbeFailures": 0})
GOOD = Measurement(canary_requests=1000, canary_failures=2, canary_p99_ms=20,
                   stable_p99_ms=18)
STEPS = tuple(Step.model_validate(s) for s in
              ({"setWeight": 10}, {"pause": {"duration": 30}}, {"setWeight": 50},
               {"pause": {}}, {"setWeight": 80}))


def canary(now=0.0):
    rollout, events = ro.start(Strategy.CANARY, "v1", "v2", STEPS, now)
    assert [e.kind for e in events] == [Kind.STARTED]
    return rollout


def tick(rollout, seen, now):
    return ro.advance(rollout, seen, POLICY, now)


@pytest.mark.parametrize("seen, verdict", [
    (GOOD, True),
    (Measurement(), True),  # no traffic, no data: not a failure
    (Measurement(canary_requests=100, canary_failures=2), False),  # 0.98 < 0.99
    (Measurement(canary_p99_ms=30, stable_p99_ms=18), False),  # 1.67x > 1.5x
    (Measurement(canary_p99_ms=27, stable_p99_ms=18), True),  # exactly 1.5x
    (Measurement(canary_probe_failures=1), False),
])
def test_it_analyses_like_flagger(seen, verdict):
    assert ro.analyse(seen, POLICY).ok is verdict


def test_it_walks_a_good_canary_through_its_steps():
    r = canary()
    r, events = tick(r, None, 1)
    assert (r.weight, r.step, [e.kind for e in events]) == (10, 0, [Kind.WEIGHT])
    r, events = tick(r, None, 5)  # interval still open: hold
    assert (r.weight, r.step, events) == (10, 0, [])
    r, _ = tick(r, GOOD, 11)  # one good interval at 10 %: on to the timed pause
    assert (r.weight, r.step) == (10, 1)
    r, _ = tick(r, GOOD, 21)
    assert r.step == 1  # 10 s of a 30 s pause
    r, events = tick(r, GOOD, 41)  # pause over: setWeight 50
    assert (r.weight, r.step, [e.kind for e in events]) == (50, 2, [Kind.WEIGHT])
    r, events = tick(r, GOOD, 51)  # good interval at 50 %: the indefinite pause
    assert (r.phase, r.step, [e.kind for e in events]) == (Phase.PAUSED, 3, [Kind.PAUSED])
    r, events = tick(r, GOOD, 500)
    assert (r.phase, events) == (Phase.PAUSED, [])  # waits for promote, however long
    with pytest.raises(RolloutError, match="waits for promote"):
        ro.resume(r, 501)
    r, events = ro.promote(r, 502)
    assert (r.phase, r.step, [e.kind for e in events]) == (Phase.PROGRESSING, 4,
                                                            [Kind.PROMOTED])
    r, _ = tick(r, None, 503)
    assert r.weight == 80
    r, events = tick(r, GOOD, 513)
    assert (r.phase, r.weight, r.leader) == (Phase.COMPLETED, 100, "v2")
    assert [e.kind for e in events] == [Kind.COMPLETED]


def test_it_aborts_a_bad_canary_at_the_first_step_with_its_evidence():
    r, _ = tick(canary(), None, 1)
    bad = Measurement(canary_requests=100, canary_failures=30)
    r, events = tick(r, bad, 11)
    assert (r.phase, r.weight, r.leader) == (Phase.ABORTED, 0, "v1")
    (event,) = events
    assert event.kind == Kind.ABORTED and "success rate 0.700" in event.reason
    assert event.evidence is not None and event.evidence["canary_failures"] == 30
    assert tick(r, GOOD, 21) == (r, [])  # an aborted rollout stays aborted


def test_it_still_analyses_while_paused():
    r, _ = tick(canary(), None, 1)
    r, _ = ro.pause(r, 2, "looking at dashboards")
    assert tick(r, None, 3) == (r, [])
    r, events = tick(r, Measurement(canary_probe_failures=3), 12)
    assert r.phase == Phase.ABORTED and events[0].kind == Kind.ABORTED


def test_it_pauses_and_resumes_on_operator_request():
    r, _ = tick(canary(), None, 1)
    r, _ = ro.pause(r, 2)
    assert r.phase == Phase.PAUSED
    with pytest.raises(RolloutError, match="not progressing"):
        ro.pause(r, 3)
    r, events = ro.resume(r, 4)
    assert r.phase == Phase.PROGRESSING and events[0].kind == Kind.RESUMED
    with pytest.raises(RolloutError, match="not paused"):
        ro.resume(r, 5)


def test_it_aborts_for_a_failover_during_a_step():
    r, _ = tick(canary(), None, 1)
    r, events = ro.abort(r, "failover during the rollout", 2)
    assert (r.phase, r.weight, r.leader) == (Phase.ABORTED, 0, "v1")
    with pytest.raises(RolloutError, match="already aborted"):
        ro.abort(r, "again", 3)


def test_it_switches_bluegreen_at_once_and_back_within_the_delay():
    r, _ = ro.start(Strategy.BLUEGREEN, "v1", "v2", (), 0, scale_down_delay=30)
    r, events = tick(r, None, 1)
    assert (r.weight, events) == (0, [])
    r, events = tick(r, Measurement(canary_ready=False), 10)
    assert (r.weight, events) == (0, [])  # not ready yet: no traffic
    r, events = tick(r, GOOD, 20)
    assert (r.phase, r.weight, r.leader, r.scale_down_at) == (Phase.COMPLETED, 100, "v2", 50)
    back, events = ro.abort(r, "operator abort", 40)
    assert (back.leader, back.weight) == ("v1", 0)
    with pytest.raises(RolloutError, match="already completed"):
        ro.abort(r, "too late", 51)


def test_it_resumes_from_the_persisted_step_after_a_restart():
    r, _ = tick(canary(), None, 1)
    r, _ = tick(r, GOOD, 11)
    restored = ro.from_record(ro.to_record(r))
    assert restored == r
    r2, events = tick(restored, GOOD, 41)
    assert (r2.weight, r2.step) == (50, 2)


def test_it_refuses_a_rollout_to_the_leading_version():
    with pytest.raises(RolloutError, match="already leads"):
        ro.start(Strategy.CANARY, "v1", "v1", STEPS, 0)
