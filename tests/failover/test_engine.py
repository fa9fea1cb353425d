"""The failover engine's specification (DESIGN.md section 5), as scenario tables.

A scenario is a script run against a fake clock that starts at T0:
  ``v1:ok*2``        two successful probes of v1 (``fail`` = timeout; any other word is a failure
                     class, e.g. ``v1:refused``; ``passive`` = a gateway failure report)
  ``[+11s]``         advance the clock by 11 s, then tick
  ``tick``           tick without moving the clock
  ``pause`` ``resume`` ``failback`` ``failover:v3`` ``force:v3``   operator actions
Probes do not move the clock. Events are summarised as "switch v1->v2", "suppressed: cooldown",
"confirm v2", "v1: up -> down" (state changes), or just the kind.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field, replace

import pytest

from monitor.failover.engine import (
    decide,
    failback,
    manual_failover,
    next_probe_delay,
    pause,
    resume,
    tick,
    wants_probe_now,
)
from monitor.failover.model import (
    DOWN,
    FLAPPING,
    UNKNOWN,
    UP,
    EngineError,
    Event,
    MonitorState,
    Observation,
    Policy,
    cooldown_remaining,
    from_record,
    initial_state,
    to_record,
)
from monitor.failover.view import status_view, version_view

T0 = 1000.0
POLICY = Policy()
FAILBACK_60 = Policy(auto_failback_after=60.0)
WARM = "v1:ok*2 v2:ok*2 v3:ok*2 [+11s]"  # every version UP, startup grace over
V2_FLAPS = "v2:fail*3 v2:ok*2 v2:fail*3 v2:ok*2"  # four UP<->DOWN changes
NOISE = {"confirm", "state_change"}


@dataclass
class Run:
    state: MonitorState
    now: float
    policy: Policy
    events: list[Event] = field(default_factory=list)

    @property
    def summary(self) -> list[str]:
        return [summarise(e) for e in self.events]

    @property
    def decisions(self) -> list[str]:
        """The summary without confirmations and state changes."""
        return [summarise(e) for e in self.events if e.kind not in NOISE]

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def view(self, version: str) -> dict:
        return version_view(self.state, version, self.policy, self.now)


def summarise(e: Event) -> str:
    if e.kind in ("switch", "manual_switch"):
        return f"{e.kind} {e.source}->{e.target}"
    if e.kind == "suppressed":
        return f"suppressed: {e.reason}"
    if e.kind == "confirm":
        return f"confirm {e.target}"
    if e.kind == "state_change":
        return f"{e.version}: {e.reason}"
    return e.kind


def _step(r: Run, token: str) -> list[Event]:
    if m := re.fullmatch(r"\[\+(\d+(?:\.\d+)?)s\]", token):
        r.now += float(m[1])
        return _apply(r, tick(r.state, r.policy, r.now))
    if token == "tick":
        return _apply(r, tick(r.state, r.policy, r.now))
    if token == "pause":
        return _apply(r, pause(r.state, r.now, reason="maintenance", actor="alice"))
    if token == "resume":
        return _apply(r, resume(r.state, r.now, reason="done", actor="alice"))
    if token == "failback":
        return _apply(r, failback(r.state, r.policy, r.now, reason="primary fixed", actor="alice"))
    if m := re.fullmatch(r"(failover|force):(\w+)", token):
        return _apply(r, manual_failover(r.state, m[2], r.policy, r.now, reason="game day",
                                         force=m[1] == "force", actor="alice"))
    m = re.fullmatch(r"(\w+):(\w+)(?:\*(\d+))?", token)
    assert m, f"bad token {token!r}"
    events: list[Event] = []
    for _ in range(int(m[3] or 1)):
        events += _apply(r, decide(r.state, probe(m[1], m[2], r.now), r.policy, r.now))
    return events


def _apply(r: Run, step: tuple[MonitorState, list[Event]]) -> list[Event]:
    r.state, events = step
    r.events += events
    return events


def probe(version: str, what: str, now: float) -> Observation:
    if what == "ok":
        return Observation(version, True, now, latency_ms=3.0, status=200)
    if what == "passive":
        return Observation(version, False, now, failure="passive", passive=True)
    failure = "timeout" if what == "fail" else what
    return Observation(version, False, now, failure=failure, detail=f"{failure} in test")


def run(script: str, policy: Policy = POLICY, *, start: Run | None = None) -> Run:
    r = start or Run(initial_state(policy, T0), T0, policy)
    for token in script.split():
        _step(r, token)
    return r


# --- the failover rules ---------------------------------------------------------------------

RULES = [
    # (script, policy, active afterwards, decisions)
    (f"{WARM} v1:fail", POLICY, "v1", []),  # a single failed probe never fails over
    (f"{WARM} v1:ok v1:fail v1:ok v1:fail v1:fail v1:ok v1:fail", POLICY, "v1", []),  # blips
    (f"{WARM} v1:fail*3", POLICY, "v1", []),  # DOWN, but the target is not confirmed yet
    (f"{WARM} v1:fail*3 v2:ok", POLICY, "v2", ["switch v1->v2"]),  # fall = 3, then confirm
    (f"{WARM} v1:refused*3 v2:fail v3:ok", POLICY, "v3", ["switch v1->v3"]),  # confirm failed
    (f"{WARM} v1:fail*3 v1:ok*2 v2:ok", POLICY, "v1", []),  # recovered before the confirm
    (f"{WARM} v1:fail*3 v2:ok [+16s] v2:fail*3 v3:ok", POLICY, "v3",
     ["switch v1->v2", "switch v2->v3"]),  # v2 failing next goes on to v3
    # cooldown holds the second failover back, records it once, acts when it ends
    (f"{WARM} v1:fail*3 v2:ok [+5s] v2:fail*3 v2:fail*4 v3:ok [+5s]", POLICY, "v2",
     ["switch v1->v2", "suppressed: cooldown"]),
    (f"{WARM} v1:fail*3 v2:ok [+5s] v2:fail*3 v2:fail*4 [+10s] v3:ok", POLICY, "v3",
     ["switch v1->v2", "suppressed: cooldown", "switch v2->v3"]),
    (f"{WARM} v1:fail*3 v2:ok [+5s] v2:fail*3 v2:ok*2 [+10s] v3:ok", POLICY, "v2",
     ["switch v1->v2", "suppressed: cooldown"]),  # recovered before the cooldown ended
    # passive reports speed up probing, never fail over, never count toward fall
    (f"{WARM} v1:passive*10", POLICY, "v1", []),
    (f"{WARM} v1:passive*5 v1:fail*2 v1:passive*5 v2:ok", POLICY, "v1", []),
    # startup grace, and every version needs a real result first
    ("v1:ok*2 v2:ok*2 v3:ok*2 v1:fail*3 v2:ok", POLICY, "v1", []),
    ("v1:ok*2 v2:ok*2 v3:ok*2 v1:fail*3 [+11s] v2:ok", POLICY, "v2", ["switch v1->v2"]),
    ("[+11s] v1:ok*2 v2:ok*2 v1:fail*3 v2:ok*3", POLICY, "v1", []),
    ("[+11s] v1:ok*2 v2:ok*2 v1:fail*3 v2:ok v3:fail v2:ok", POLICY, "v2", ["switch v1->v2"]),
    # all versions down: fail static, one incident, recovery closes it
    (f"{WARM} v1:fail*3 v2:fail*3 v3:fail*3 v1:fail*3 [+60s] v2:fail*3 tick", POLICY, "v1",
     ["incident_opened"]),
    (f"{WARM} v1:fail*3 v2:fail*3 v3:fail*3 v1:ok*2", POLICY, "v1",
     ["incident_opened", "incident_closed"]),
    (f"{WARM} v1:fail*3 v2:fail*3 v3:fail*3 v3:ok*2 v3:ok", POLICY, "v3",
     ["incident_opened", "switch v1->v3", "incident_closed"]),
    # ejection back-off: v1 failed while active, so it is skipped for 30 s, then chosen again
    (f"{WARM} v1:fail*3 v2:ok v1:ok*2 [+16s] v2:fail*3 v3:ok", POLICY, "v3",
     ["switch v1->v2", "switch v2->v3"]),
    (f"{WARM} v1:fail*3 v2:ok v1:ok*2 [+16s] v2:fail*3 v3:ok [+20s] v3:fail*3 v1:ok", POLICY,
     "v1", ["switch v1->v2", "switch v2->v3", "switch v3->v1"]),
    # flapping: four changes within five minutes make v2 ineligible until the window passes
    (f"{WARM} {V2_FLAPS} v1:fail*3 v2:ok v3:ok", POLICY, "v3", ["switch v1->v3"]),
    (f"{WARM} {V2_FLAPS} [+301s] v1:fail*3 v2:ok", POLICY, "v2", ["switch v1->v2"]),
    (f"{WARM} v3:fail*3 {V2_FLAPS} v1:fail*3 v1:fail*3 [+5s]", POLICY, "v1",
     ["failover_impossible"]),
    # pause suppresses (once), resume acts
    (f"{WARM} pause v1:fail*3 v1:fail*3 v2:ok", POLICY, "v1", ["paused", "suppressed: paused"]),
    (f"{WARM} pause v1:fail*3 v2:ok resume tick v2:ok", POLICY, "v2",
     ["paused", "suppressed: paused", "resumed", "switch v1->v2"]),
    # manual actions ignore cooldown but start one
    (f"{WARM} failover:v3", POLICY, "v3", ["manual_switch v1->v3"]),
    (f"{WARM} v1:fail*3 v2:ok failover:v3", POLICY, "v3",
     ["switch v1->v2", "manual_switch v2->v3"]),
    (f"{WARM} failover:v2 v2:fail*3 v3:ok", POLICY, "v2",
     ["manual_switch v1->v2", "suppressed: cooldown"]),
    (f"{WARM} v3:fail*3 force:v3", POLICY, "v3", ["manual_switch v1->v3"]),
    (f"{WARM} pause failover:v2", POLICY, "v2", ["paused", "manual_switch v1->v2"]),
    (f"{WARM} v1:fail*3 v2:ok v1:ok*2 failback", POLICY, "v1",
     ["switch v1->v2", "manual_switch v2->v1"]),
    # failback is manual by default; automatic only after the primary was UP long enough
    (f"{WARM} v1:fail*3 v2:ok v1:ok*2 [+600s] v1:ok", POLICY, "v2", ["switch v1->v2"]),
    (f"{WARM} v1:fail*3 v2:ok v1:ok*2 [+59s] v1:ok", FAILBACK_60, "v2", ["switch v1->v2"]),
    (f"{WARM} v1:fail*3 v2:ok v1:ok*2 [+61s] v1:ok", FAILBACK_60, "v1",
     ["switch v1->v2", "switch v2->v1"]),
    (f"{WARM} v1:fail*3 v2:ok v1:ok*2 [+30s] v1:fail v1:ok [+40s] v1:ok", FAILBACK_60, "v1",
     ["switch v1->v2", "switch v2->v1"]),  # a blip does not end "UP continuously"
    (f"{WARM} v1:fail*3 v2:ok v1:ok*2 [+30s] v1:fail*3 v1:ok*2 [+40s] v1:ok", FAILBACK_60, "v2",
     ["switch v1->v2"]),  # going DOWN does
    (f"{WARM} v1:fail*3 v2:ok v1:ok*2 pause [+120s] v1:ok", FAILBACK_60, "v2",
     ["switch v1->v2", "paused"]),
]


@pytest.mark.parametrize(("script", "policy", "active", "decisions"), RULES)
def test_it_follows_the_failover_rules(script, policy, active, decisions):
    r = run(script, policy)
    assert r.decisions == decisions
    assert r.state.active == active
    assert r.state.epoch == sum(d.startswith(("switch", "manual_switch")) for d in decisions)


# --- confirmation, evidence and events ------------------------------------------------------

def test_it_probes_the_target_once_more_before_switching():
    r = run(f"{WARM} v1:fail*3")
    confirm = r.of("confirm")
    assert [summarise(e) for e in confirm] == ["confirm v2"]
    assert wants_probe_now(confirm) == {"v2"}
    assert r.state.pending_target == "v2"
    assert r.state.epoch == 0
    run("v2:ok", start=r)
    assert (r.state.active, r.state.epoch, r.state.last_switch_at) == ("v2", 1, r.now)
    assert r.state.pending_target is None


def test_it_does_not_take_a_probe_started_before_the_confirmation_as_confirming():
    r = run(f"{WARM} v1:fail*3")
    stale = Observation("v2", True, r.now - 0.5, latency_ms=3.0, status=200)
    r.state, events = decide(r.state, stale, r.policy, r.now)
    assert (r.state.active, r.state.pending_target, events) == ("v1", "v2", [])
    run("v2:ok", start=r)
    assert (r.state.active, r.state.epoch) == ("v2", 1)


def test_it_stores_the_evidence_of_a_switch():
    r = run(f"{WARM} v1:refused v1:timeout v1:http_5xx v2:ok")
    (switch,) = r.of("switch")
    assert switch.reason == "v1 down: 3 consecutive failures: http_5xx"
    assert switch.actor == "monitor"
    assert [(o.version, o.ok, o.failure) for o in switch.evidence] == [
        ("v1", True, None), ("v1", True, None),  # the last 5 of v1, then the confirming probe
        ("v1", False, "refused"), ("v1", False, "timeout"), ("v1", False, "http_5xx"),
        ("v2", True, None),
    ]


def test_it_reports_every_shown_state_change_once():
    r = run(f"{WARM} v1:fail*3 v1:fail*2 v1:ok*2 {V2_FLAPS} v2:fail*3 [+301s]")
    assert [summarise(e) for e in r.of("state_change")] == [
        "v1: unknown -> up", "v2: unknown -> up", "v3: unknown -> up",
        "v1: up -> down", "v1: down -> up",
        "v2: up -> down", "v2: down -> up", "v2: up -> down", "v2: down -> flapping",
        "v2: flapping -> down",  # the window passed on a tick
    ]


def test_it_reports_a_failover_it_cannot_make_with_the_reasons():
    r = run(f"{WARM} v3:fail*3 {V2_FLAPS} v1:fail*3")
    (impossible,) = r.of("failover_impossible")
    assert "v2 flapping" in impossible.reason
    assert "v3 3 consecutive failures: timeout" in impossible.reason


def test_it_waits_for_a_standby_whose_streak_is_still_settling():
    # v2 and v3 are failing but not DOWN yet: no "failover impossible" alarm before all are down
    r = run(f"{WARM} v2:fail*2 v3:fail*2 v1:fail*3 v2:fail v3:fail")
    assert r.decisions == ["incident_opened"]


def test_it_keeps_one_incident_open_while_all_stay_down():
    r = run(f"{WARM} v1:fail*3 v2:fail*3 v3:fail*3")
    assert r.state.incident == "all_down"
    run("[+60s] v1:fail*5 v2:fail*5 v3:fail*5 [+600s] v2:ok v2:fail", start=r)
    assert len(r.of("incident_opened")) == 1
    assert r.state.active == "v1"


# --- operator actions -----------------------------------------------------------------------

@pytest.mark.parametrize(("script", "action", "message"), [
    (WARM, lambda s, now: manual_failover(s, "v9", POLICY, now, reason="x", actor="a"),
     "unknown version 'v9'"),
    (WARM, lambda s, now: manual_failover(s, "v1", POLICY, now, reason="x", actor="a"),
     "v1 is already active"),
    (f"{WARM} v3:fail*3", lambda s, now: manual_failover(s, "v3", POLICY, now, reason="x",
                                                          actor="a"),
     "v3 is down, not up; use force"),
    ("v1:ok*2", lambda s, now: manual_failover(s, "v2", POLICY, now, reason="x", actor="a"),
     "v2 is unknown, not up"),
    (WARM, lambda s, now: manual_failover(s, "v2", POLICY, now, reason="  ", actor="a"),
     "a reason is required"),
    (WARM, lambda s, now: failback(s, POLICY, now, reason="x", actor="a"), "v1 is already active"),
    (f"{WARM} v1:fail*3 v2:ok", lambda s, now: failback(s, POLICY, now, reason="x", actor="a"),
     "v1 is down, not up"),
    (f"{WARM} pause", lambda s, now: pause(s, now, reason="x", actor="a"), "already paused"),
    (WARM, lambda s, now: resume(s, now, reason="x", actor="a"), "not paused"),
])
def test_it_refuses_impossible_operator_actions(script, action, message):
    r = run(script)
    with pytest.raises(EngineError, match=re.escape(message)):
        action(r.state, r.now)


def test_it_records_who_switched_why_and_whether_forced():
    r = run(f"{WARM} v3:fail*3 force:v3")
    (switch,) = r.of("manual_switch")
    assert (switch.source, switch.target, switch.actor) == ("v1", "v3", "alice")
    assert (switch.reason, switch.forced, switch.failback) == ("game day", True, False)
    assert (r.state.epoch, r.state.last_switch_at) == (1, r.now)
    assert r.state.incident is None


@pytest.mark.parametrize("script, kind, forced, failback", [
    (f"{WARM} failover:v2", "manual_switch", False, False),
    (f"{WARM} failover:v2 failback", "manual_switch", False, True),
    (f"{WARM} v1:fail*3 v2:ok", "switch", False, False),
])
def test_it_types_how_a_switch_happened_instead_of_wording_it(script, kind, forced, failback):
    switch = [e for e in run(script).events if e.kind in ("switch", "manual_switch")][-1]
    assert (switch.kind, switch.forced, switch.failback) == (kind, forced, failback)


def test_it_refuses_an_event_of_an_unknown_kind():
    with pytest.raises(ValueError):
        Event("switched")


def test_it_drops_a_pending_confirmation_when_paused():
    r = run(f"{WARM} v1:fail*3 pause")
    assert r.state.pending_target is None
    run("v2:ok", start=r)
    assert r.state.active == "v1"
    assert [(e.kind, e.actor, e.reason) for e in r.of("paused")] == [
        ("paused", "alice", "maintenance")]


# --- ejection back-off ----------------------------------------------------------------------

def test_it_backs_off_longer_each_time_a_version_fails_while_active():
    r = run(f"{WARM} v1:fail*3 v2:ok")
    assert (r.view("v1")["ejections"], r.view("v1")["ejected_for_s"]) == (1, 30.0)
    run("v1:ok*2 failback v1:fail*3", start=r)
    assert (r.view("v1")["ejections"], r.view("v1")["ejected_for_s"]) == (2, 60.0)
    assert r.view("v1")["eligible"] is False


def test_it_caps_the_ejection_back_off():
    record = to_record(initial_state(POLICY, T0))
    record["versions"]["v1"]["ejections"] = 10
    r = Run(from_record(record, POLICY, T0), T0, POLICY)
    run(f"{WARM} v1:fail*3", start=r)
    assert (r.view("v1")["ejections"], r.view("v1")["ejected_for_s"]) == (11, 300.0)


def test_it_forgives_one_ejection_per_ejection_max_seconds_up():
    r = run(f"{WARM} v1:fail*3 v2:ok v1:ok*2 failback v1:fail*3 v1:ok*2")
    assert r.view("v1")["ejections"] == 2
    run("[+299s]", start=r)
    assert r.view("v1")["ejections"] == 2
    run("[+1s]", start=r)
    assert r.view("v1")["ejections"] == 1
    run("[+300s]", start=r)
    assert r.view("v1")["ejections"] == 0


def test_it_restarts_the_forgiveness_clock_when_the_version_goes_down():
    r = run(f"{WARM} v1:fail*3 v2:ok v1:ok*2 [+299s] v1:fail*3 v1:ok*2 [+299s]")
    assert r.view("v1")["ejections"] == 1


# --- persistence ----------------------------------------------------------------------------

def test_it_resumes_the_same_active_and_epoch_after_a_restart():
    before = run(f"{WARM} v1:fail*3 v2:ok pause")
    record = json.loads(json.dumps(to_record(before.state)))
    assert record == {
        "active": "v2", "epoch": 1, "last_switch_at": T0 + 11, "paused": True, "incident": None,
        "noted": [], "versions": {"v1": {"ejections": 1, "ejected_until": T0 + 41},
                     "v2": {"ejections": 0, "ejected_until": 0.0},
                     "v3": {"ejections": 0, "ejected_until": 0.0}},
    }
    restart = T0 + 100
    state = from_record(record, POLICY, restart)
    assert (state.active, state.epoch, state.paused, state.started_at) == ("v2", 1, True, restart)
    assert {h.state for h in state.health} == {UNKNOWN}
    after = run("v1:ok*2 v2:ok*2 v3:ok*2 [+11s] resume [+60s]",
                start=Run(state, restart, POLICY))
    assert after.decisions == ["resumed"]
    assert (after.state.active, after.state.epoch) == ("v2", 1)


def test_it_repeats_no_once_per_episode_notice_after_a_restart():
    policy = replace(POLICY, startup_grace=0, cooldown=60)
    held = run(f"{WARM} v1:fail*3 v2:ok [+5s] v2:fail*3", policy)  # v2 down in the cooldown
    assert held.decisions.count("suppressed: cooldown") == 1
    restart = held.now + 1
    r = Run(from_record(json.loads(json.dumps(to_record(held.state))), policy, restart),
            restart, policy)
    run("v1:fail*3 v3:ok*2 v2:fail*3 [+60s] v3:ok", start=r)
    assert "suppressed: cooldown" not in r.decisions
    assert r.state.active == "v3"


def test_it_applies_the_startup_grace_again_after_a_restart():
    record = to_record(run(f"{WARM} v1:fail*3 v2:ok").state)
    r = Run(from_record(record, POLICY, T0 + 100), T0 + 100, POLICY)
    run("v1:ok*2 v3:ok*2 v2:fail*3 v1:ok", start=r)
    assert r.state.active == "v2"
    run("[+10s] v1:ok", start=r)
    assert (r.state.active, r.state.epoch) == ("v1", 2)


def test_it_keeps_an_open_incident_across_a_restart_until_recovery():
    record = to_record(run(f"{WARM} v1:fail*3 v2:fail*3 v3:fail*3").state)
    r = Run(from_record(record, POLICY, T0 + 100), T0 + 100, POLICY)
    assert r.state.incident == "all_down"
    run("v1:fail*3 v2:fail*3 v3:fail*3 [+11s] v1:ok*2", start=r)
    assert r.decisions == ["incident_closed"]


@pytest.mark.parametrize(("record", "message"), [
    ({"active": "v9", "epoch": 3}, "stored active version 'v9' is not configured"),
    ({"epoch": 3}, "unreadable"),
    ({"active": "v1", "epoch": "many"}, "unreadable"),
])
def test_it_refuses_a_stored_state_it_cannot_resume(record, message):
    with pytest.raises(EngineError, match=re.escape(message)):
        from_record(record, POLICY, T0)


# --- probe schedule -------------------------------------------------------------------------

@pytest.mark.parametrize(("script", "version", "delay"), [
    ("", "v1", POLICY.fast_interval),  # UNKNOWN
    ("v1:ok", "v1", POLICY.fast_interval),  # rising
    (WARM, "v1", POLICY.interval),  # steady UP
    (f"{WARM} v1:fail", "v1", POLICY.fast_interval),  # a fall in progress
    (f"{WARM} v1:fail v1:ok", "v1", POLICY.interval),  # the streak was reset
    (f"{WARM} v1:fail*3", "v1", POLICY.down_interval),  # steady DOWN
    (f"{WARM} v1:fail*3", "v2", POLICY.fast_interval),  # the pending target
    (f"{WARM} v1:fail*3 v1:ok", "v1", POLICY.fast_interval),  # recovering
    (f"{WARM} v2:passive", "v2", POLICY.fast_interval),  # a gateway reported a failure
    (f"{WARM} v2:passive v2:ok", "v2", POLICY.interval),  # until the next real probe
])
def test_it_probes_faster_while_a_version_is_changing_state(script, version, delay):
    r = run(script)
    assert next_probe_delay(r.state, version, POLICY) == delay


def test_it_asks_for_an_immediate_probe_only_for_confirmations():
    events = [Event("confirm", target="v3"), Event("switch", source="v1", target="v2"),
              Event("state_change", version="v1", reason="up -> down")]
    assert wants_probe_now(events) == {"v3"}


# --- dashboard views ------------------------------------------------------------------------

@pytest.mark.parametrize(("script", "version", "expected"), [
    (WARM, "v2", {"state": UP, "eligible": True, "reason": "", "streak": 2,
                  "latency_ms": 3.0, "last_failure": None}),
    (f"{WARM} v2:refused*3 v2:timeout", "v2",
     {"state": DOWN, "eligible": False, "reason": "4 consecutive failures: timeout",
      "streak": -4, "latency_ms": None, "last_failure": "timeout"}),
    (f"{WARM} v2:refused", "v2",
     {"state": UP, "eligible": False, "reason": "last probe failed: refused", "streak": -1}),
    (f"{WARM} {V2_FLAPS}", "v2", {"state": FLAPPING, "eligible": False,
                                  "reason": "flapping: 4 state changes within 300 s"}),
    (f"{WARM} v1:fail*3 v2:ok v1:ok*2 [+10s]", "v1",
     {"state": UP, "eligible": False, "ejected_for_s": 20.0,
      "reason": "ejected for 20 s after failing while active (1x)"}),
    ("v1:ok", "v3", {"state": UNKNOWN, "eligible": False, "reason": "no result yet"}),
])
def test_it_explains_each_version_on_the_dashboard(script, version, expected):
    view = run(script).view(version)
    assert {k: view[k] for k in expected} == expected
    assert view["name"] == version


def test_it_reports_the_cooldown_and_status():
    r = run(f"{WARM} v1:fail*3 v2:ok [+5s]")
    assert cooldown_remaining(r.state, POLICY, r.now) == 10.0
    assert cooldown_remaining(r.state, POLICY, r.now + 60) == 0.0
    status = json.loads(json.dumps(status_view(r.state, POLICY, r.now)))
    assert {k: status[k] for k in ("active", "epoch", "paused", "cooldown_remaining_s",
                                   "incident")} == {
        "active": "v2", "epoch": 1, "paused": False, "cooldown_remaining_s": 10.0,
        "incident": None}
    assert [(v["name"], v["state"], v["active"]) for v in status["versions"]] == [
        ("v1", DOWN, False), ("v2", UP, True), ("v3", UP, False)]


# --- state and policy -----------------------------------------------------------------------

def test_it_never_changes_a_state_in_place():
    before = run(WARM).state
    frozen = hash(before)
    after, _ = decide(before, probe("v1", "fail", T0 + 11), POLICY, T0 + 11)
    assert hash(before) == frozen
    assert before.health_of("v1").fail_streak == 0
    assert after.health_of("v1").fail_streak == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.active = "v2"  # type: ignore[misc]


def test_it_refuses_an_observation_of_an_unknown_version():
    with pytest.raises(EngineError, match="unknown version 'v4'"):
        decide(initial_state(POLICY, T0), probe("v4", "ok", T0), POLICY, T0)


@pytest.mark.parametrize("kwargs", [
    {"versions": ()}, {"versions": ("v1", "v1")}, {"fall": 0}, {"rise": 0},
    {"cooldown": -1}, {"ejection_max": 0}, {"interval": 0}, {"flap_changes": 0},
])
def test_it_refuses_a_nonsensical_policy(kwargs):
    with pytest.raises(EngineError):
        Policy(**kwargs)


def test_it_follows_the_configured_priority_order_and_thresholds():
    policy = Policy(versions=["blue", "green"], fall=1, rise=1, startup_grace=0)
    r = run("blue:ok green:ok blue:fail green:ok", policy)
    assert r.decisions == ["switch blue->green"]
    assert initial_state(policy, T0, active="green").active == "green"
    with pytest.raises(EngineError):
        initial_state(policy, T0, active="v1")
