"""The rollout driver in a monitor (fake clock, no processes): steps, analysis, audit rows,
notices, the switch on completion, aborts, operator actions and a restart mid-step."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlmodel import select

from monitor.actor import Actor
from monitor.config import Settings
from monitor.failover.model import Observation
from monitor.runtime import create_runtime
from monitor.storage import commands
from monitor.storage.commands import CommandKind
from monitor.storage.store import Notice
from tests import support

URLS = "v1=http://v1.test,v2=http://v2.test,v3=http://v3.test"
OLGA = Actor("olga", "operator", "127.0.0.1", "pytest", "req-1")
INTERVAL = 10.0  # Analysis() default: the driver's interval without a spec


def build(tmp_path, clock):
    settings = Settings(data_dir=tmp_path, services=URLS, _env_file=None)
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    return create_runtime(settings, clock=clock, http_client=client)


@pytest.fixture
def clock():
    return support.FakeClock()


@pytest.fixture
async def runtime(tmp_path, clock):
    runtime = build(tmp_path, clock)
    yield runtime
    await runtime.client.aclose()
    runtime.store.dispose()


async def up(runtime, *versions):
    for version in versions:
        for _ in range(runtime.policy.rise):
            await runtime.watchdog.observe(Observation(version=version, ok=True,
                                                       at=runtime.clock(), latency_ms=3.0))


def rows(runtime, action=None):
    return support.audit_rows(runtime.store, action)


def notices(runtime):
    with runtime.store.read() as session:
        return [n for n in session.exec(select(Notice)) if n.kind == "rollout"]


async def interval(runtime, clock, *, ok=100, failed=0):
    """One analysis interval of gateway traffic to the canary, then a tick."""
    runtime.rollout.observe_counts([("v2", "ok", ok)] if ok else [])
    for _ in range(failed):
        runtime.rollout.observe_failure("v2")
    clock.advance(INTERVAL)
    await runtime.rollout.tick()


async def test_it_sends_the_first_step_weight_after_an_audited_and_emailed_start(runtime):
    result = await runtime.rollout_action(OLGA, "start", {"target": "v2", "strategy": ""})
    assert result.ok
    await runtime.rollout.tick()
    assert runtime.rollout.weights() == {"v2": 10}
    view = runtime.status()["rollout"]
    assert {k: view[k] for k in ("strategy", "from", "to", "step", "weight", "state")} == {
        "strategy": "canary", "from": "v1", "to": "v2", "step": 0, "weight": 10,
        "state": "progressing"}
    start = rows(runtime, "rollout.start")[0]
    assert (start.actor, start.target, start.request_id) == ("olga", "v2", "req-1")
    assert [r.outcome for r in rows(runtime, "rollout.step")] == ["ok"]
    assert [n.subject for n in notices(runtime)] == [
        "Rollout v1 -> v2 started: canary v1 -> v2"]


async def test_it_aborts_a_bad_canary_with_its_evidence_and_one_abort_email(runtime, clock):
    await up(runtime, "v1", "v2")
    await runtime.rollout_action(OLGA, "start", {"target": "v2"})
    await runtime.rollout.tick()
    await interval(runtime, clock, ok=70, failed=30)
    assert runtime.status()["rollout"]["state"] == "aborted"
    assert runtime.rollout.weights() == {}
    assert runtime.watchdog.state.active == "v1"
    (analysis,) = rows(runtime, "rollout.analysis")
    details = json.loads(analysis.params)
    assert analysis.outcome == "failed" and "success rate 0.700" in analysis.reason
    assert (details["weight"], details["measurement"]["canary_requests"],
            details["measurement"]["canary_failures"]) == (10, 100, 30)
    (abort,) = rows(runtime, "rollout.abort")
    assert "success rate 0.700" in abort.reason
    assert json.loads(abort.evidence)[0]["canary_failures"] == 30
    aborted = [n for n in notices(runtime) if "aborted" in n.subject]
    assert len(aborted) == 1 and "success rate" in aborted[0].subject


async def test_it_walks_a_good_canary_to_the_end_and_makes_it_the_active_version(runtime,
                                                                                 clock):
    await up(runtime, "v1", "v2")
    epoch = runtime.watchdog.state.epoch
    await runtime.rollout_action(OLGA, "start", {"target": "v2"})
    await runtime.rollout.tick()
    await interval(runtime, clock, ok=100)
    assert runtime.rollout.weights() == {"v2": 50}
    await interval(runtime, clock, ok=500)
    assert runtime.status()["rollout"]["state"] == "completed"
    assert (runtime.watchdog.state.active, runtime.watchdog.state.epoch) == ("v2", epoch + 1)
    assert runtime.rollout.weights() == {}
    switch = rows(runtime, "failover.manual")[-1]
    assert (switch.actor, switch.target) == ("rollout", "v2")
    assert [json.loads(r.params)["ok"] for r in rows(runtime, "rollout.analysis")] == [True, True]
    assert len(rows(runtime, "rollout.complete")) == 1
    await runtime.rollout.tick()  # its own switch is no failover: it stays completed
    assert runtime.status()["rollout"]["state"] == "completed"


async def test_it_aborts_the_rollout_first_when_a_failover_happens(runtime):
    await up(runtime, "v1", "v2", "v3")
    await runtime.rollout_action(OLGA, "start", {"target": "v2"})
    await runtime.rollout.tick()
    assert (await runtime.failover(OLGA, "v3", reason="drill")).ok
    await runtime.rollout.tick()
    view = runtime.status()["rollout"]
    assert (view["state"], view["weight"]) == ("aborted", 0)
    assert view["reason"].startswith("failover during the rollout: v3 active")


async def test_it_switches_bluegreen_at_once_and_back_when_aborted_inside_the_delay(runtime,
                                                                                    clock):
    await up(runtime, "v1", "v2")
    await runtime.rollout_action(OLGA, "start", {"target": "v2", "strategy": "bluegreen"})
    await runtime.rollout.tick()
    assert runtime.rollout.weights() == {} and runtime.watchdog.state.active == "v1"
    await interval(runtime, clock, ok=0)
    assert runtime.watchdog.state.active == "v2"
    clock.advance(5)  # inside the 30 s scale-down delay: the old version still runs
    result = await runtime.rollout_action(OLGA, "abort", {"reason": "bad reviews"})
    assert result.ok
    assert runtime.watchdog.state.active == "v1"
    assert rows(runtime, "failover.manual")[-1].reason == \
        "rollout aborted: aborted by an operator: bad reviews"


@pytest.mark.parametrize("setup, op, params, refusal", [
    (None, "promote", {}, "no rollout to act on"),
    (None, "start", {"target": "v9"}, "unknown version 'v9'"),
    (None, "start", {"target": "v1"}, "v1 already leads"),
    (None, "start", {"target": "v2", "strategy": "rainbow"}, "strategy must be one of"),
    ("start", "start", {"target": "v3"}, "abort it first"),
    ("start", "resume", {}, "not paused"),
    ("start", "explode", {}, "unknown action 'explode'"),
])
async def test_it_refuses_actions_that_do_not_fit_and_audits_the_refusal(runtime, setup, op,
                                                                         params, refusal):
    if setup:
        await runtime.rollout_action(OLGA, "start", {"target": "v2"})
    before = runtime.status()["rollout"]
    result = await runtime.rollout_action(OLGA, op, params)
    assert not result.ok and refusal in result.message
    assert runtime.status()["rollout"] == before  # nothing changed
    row = rows(runtime)[-1]
    assert (row.outcome, row.actor) == ("refused", "olga") and refusal in row.reason


async def test_it_pauses_resumes_and_promotes_past_an_indefinite_pause(runtime, clock):
    await up(runtime, "v1", "v2")
    await runtime.rollout_action(OLGA, "start", {"target": "v2"})
    await runtime.rollout.tick()
    assert (await runtime.rollout_action(OLGA, "pause", {"reason": "look"})).ok
    await interval(runtime, clock)
    assert runtime.status()["rollout"]["state"] == "paused"
    assert runtime.rollout.weights() == {"v2": 10}  # a pause holds the weight
    assert (await runtime.rollout_action(OLGA, "resume", {})).ok
    assert (await runtime.rollout_action(OLGA, "promote", {})).ok
    await runtime.rollout.tick()
    assert runtime.rollout.weights() == {"v2": 50}
    assert [r.action for r in rows(runtime) if r.action.startswith("rollout.")] == [
        "rollout.start", "rollout.step", "rollout.pause", "rollout.analysis",
        "rollout.resume", "rollout.promote", "rollout.step"]


async def test_it_resumes_from_the_persisted_step_after_a_restart(tmp_path, runtime, clock):
    await up(runtime, "v1", "v2")
    await runtime.rollout_action(OLGA, "start", {"target": "v2"})
    await runtime.rollout.tick()
    await interval(runtime, clock)
    assert runtime.status()["rollout"]["weight"] == 50
    runtime.store.dispose()
    again = build(tmp_path, clock)
    try:
        view = again.status()["rollout"]
        assert (view["step"], view["weight"], view["state"]) == (1, 50, "progressing")
        assert again.rollout.weights() == {"v2": 50}
    finally:
        await again.client.aclose()
        again.store.dispose()


async def test_it_applies_a_rollout_command_queued_by_the_cli(runtime):
    command = commands.queue(runtime.store, CommandKind.ROLLOUT,
                             {"op": "start", "target": "v2", "strategy": "canary"},
                             actor="cli:olga", role="admin", source_ip="", user_agent="cli",
                             queued_by="", now=runtime.clock())
    assert await runtime.duties.apply_commands() == 1
    row = commands.get(runtime.store, command)
    assert row is not None and row.result.startswith("ok")
    start = rows(runtime, "rollout.start")[0]
    assert (start.actor, start.request_id) == ("cli:olga", f"cmd-{command}")
    assert runtime.status()["rollout"]["to"] == "v2"
