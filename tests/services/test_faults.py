import pytest

from services.bookservice.faults import (
    CorruptFault,
    CpuFault,
    ErrorFault,
    FaultState,
    FlapFault,
    HangFault,
    LatencyFault,
    RequestPlan,
)


def roll(value):
    return lambda: value


@pytest.mark.parametrize(
    "elapsed, down",
    [(0, True), (9.99, True), (10, False), (19.99, False), (20, True), (35, False), (-5, True)],
)
def test_it_flaps_down_first_then_up_each_period(elapsed, down):
    assert FlapFault(period_s=10, since=100).is_down(100 + elapsed) is down


def test_it_plans_nothing_without_faults():
    assert FaultState().plan(0, roll(0.0)) == RequestPlan()


def test_it_adds_latency_with_jitter():
    faults = FaultState()
    faults.latency = LatencyFault(ms=200, jitter_ms=100, since=0)
    assert faults.plan(0, roll(0.5)).delay_s == pytest.approx(0.25)
    assert faults.plan(0, roll(0.0)).delay_s == pytest.approx(0.2)


@pytest.mark.parametrize(
    "probability, dice, status",
    [(1.0, 0.999, 500), (0.0, 0.0, None), (0.5, 0.49, 500), (0.5, 0.5, None)],
)
def test_it_fails_the_given_fraction_of_requests(probability, dice, status):
    faults = FaultState()
    faults.errors = ErrorFault(probability=probability, since=0)
    assert faults.plan(0, roll(dice)).status == status


def test_it_puts_hang_before_everything_else():
    faults = FaultState()
    faults.errors = ErrorFault(probability=1, since=0)
    faults.hang = HangFault(since=0)
    assert faults.plan(0, roll(0.0)) == RequestPlan(hang=True)


def test_it_leaves_the_flap_of_health_to_the_health_report():
    faults = FaultState()
    faults.flap = FlapFault(period_s=5, since=0)
    assert faults.plan(1, roll(0.0)).status == 503
    assert faults.plan(1, roll(0.0), health=True).status is None


def test_it_describes_active_faults_and_drops_expired_cpu():
    faults = FaultState()
    faults.cpu = CpuFault(seconds=10, workers=2, since=100)
    faults.corrupt = CorruptFault(silent=True, since=100)
    faults.flap = FlapFault(period_s=4, since=100)
    described = faults.describe(103)
    assert described["cpu"] == {"seconds": 10, "workers": 2, "active_for_s": 3, "expires_in_s": 7}
    assert described["corrupt"] == {"silent": True, "active_for_s": 3}
    assert described["flap"]["phase"] == "down" and described["flap"]["next_change_in_s"] == 1
    assert "cpu" not in faults.describe(110)
    faults.clear()
    assert faults.describe(103) == {}
