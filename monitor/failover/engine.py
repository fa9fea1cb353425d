"""Pure failover state machine: health streaks, decisions and events (DESIGN.md section 5).

Standard library only, no I/O, no clock: every function takes ``now`` (seconds, like
``time.time()``) and returns a new :class:`MonitorState` plus the :class:`Event` list of what
happened. The caller persists the state and acts on the events (audit, notices, probing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from monitor.failover.health import (
    decay,
    eject,
    fold,
    last_failure,
    shown_state,
    undecided,
    why_not_eligible,
)
from monitor.failover.model import (
    ALL_DOWN,
    DOWN,
    UNKNOWN,
    UP,
    EngineError,
    Event,
    EventKind,
    Health,
    MonitorState,
    Observation,
    Policy,
    Step,
    cooldown_remaining,
)


def _housekeep(state: MonitorState, policy: Policy, now: float,
               names: Iterable[str] | None = None) -> Step:
    """Decay ejections and emit a state_change for each version whose shown state changed:
    of ``names`` only (one observation), or of every version (a tick)."""
    events: list[Event] = []
    visit = state.health if names is None else [state.health_of(n) for n in dict.fromkeys(names)]
    for h in visit:
        if names is None and h.shown == h.state and not h.ejections and \
                len(h.changes) < policy.flap_changes:
            continue  # nothing can decay, shown is current and it cannot be flapping
        new = decay(h, policy, now)
        shown = shown_state(new, policy, now)
        if shown != h.shown:
            events.append(Event(EventKind.STATE_CHANGE, version=h.name,
                                reason=f"{h.shown} -> {shown}", evidence=new.recent))
            new = replace(new, shown=shown)
        if new != h:
            state = state.with_health(new)
    return state, events


# --- automatic decisions --------------------------------------------------------------------

def _ready(state: MonitorState, policy: Policy, now: float) -> bool:
    """Past the startup grace, and every version has at least one real result."""
    return now - state.started_at >= policy.startup_grace and state.all_probed


def _candidate(state: MonitorState, policy: Policy, now: float) -> str | None:
    for h in state.health:
        if h.name != state.active and not why_not_eligible(h, policy, now):
            return h.name
    return None


def _down_reason(h: Health) -> str:
    return f"{h.name} down: {h.fail_streak} consecutive failures: {last_failure(h)}"


def _failback_due(state: MonitorState, policy: Policy, now: float) -> bool:
    primary = state.health[0]
    if (policy.auto_failback_after <= 0 or state.active == primary.name or state.paused
            or not _ready(state, policy, now) or cooldown_remaining(state, policy, now) > 0):
        return False
    if why_not_eligible(primary, policy, now) or primary.up_since is None:
        return False
    return now - primary.up_since >= policy.auto_failback_after


def _note_once(state: MonitorState, key: str, event: Event) -> Step:
    if key in state.noted:
        return state, []
    return replace(state, noted=state.noted | {key}), [event]


def _switch(state: MonitorState, switch: Event, now: float) -> Step:
    """Make ``switch.target`` active: epoch + 1; closes the incident when the target is UP."""
    target = switch.target
    assert target is not None
    state = replace(state, active=target, epoch=state.epoch + 1, last_switch_at=now,
                    pending_target=None, noted=frozenset())
    events = [switch]
    if state.incident and state.health_of(target).state == UP:
        state = replace(state, incident=None)
        events.append(Event(EventKind.INCIDENT_CLOSED, version=target, actor=switch.actor,
                            reason=f"recovered: {target} is active and up"))
    return state, events


def _confirmed(state: MonitorState, seen: Observation, policy: Policy, now: float) -> Step:
    """The confirming probe of the pending target arrived: switch on success, else drop it."""
    state = replace(state, pending_target=None)
    target = state.health_of(seen.version)
    source = state.health_of(state.active)
    if not seen.ok or why_not_eligible(target, policy, now):
        return state, []
    if source.state == DOWN:
        if state.paused or cooldown_remaining(state, policy, now) > 0 or not _ready(
                state, policy, now):
            return state, []
        reason, back = _down_reason(source), False
    elif _failback_due(state, policy, now):
        reason, back = "auto failback", True
    else:
        return state, []
    return _switch(state, Event(EventKind.SWITCH, source=source.name, target=target.name,
                                reason=reason, evidence=source.recent + (seen,),
                                failback=back), now)


def _settle(state: MonitorState, policy: Policy, now: float) -> Step:
    """The active is not DOWN: end the episode, close a recovered incident, maybe fail back."""
    events: list[Event] = []
    active = state.health_of(state.active)
    if active.state == UP:  # UNKNOWN (just restarted) does not end the episode
        state = replace(state, noted=frozenset())
    if state.incident and active.state == UP:
        state = replace(state, incident=None)
        events.append(Event(EventKind.INCIDENT_CLOSED, version=active.name, evidence=active.recent,
                            reason=f"recovered: {active.name} is up again"))
    primary = state.health[0].name
    due = _failback_due(state, policy, now)
    if state.pending_target is not None and (not due or state.pending_target != primary):
        state = replace(state, pending_target=None)  # the failover it confirmed is moot now
    if state.pending_target is None and due:
        state = replace(state, pending_target=primary, pending_since=now)
        events.append(Event(EventKind.CONFIRM, source=active.name, target=primary,
                            reason="auto failback"))
    return state, events


def _evaluate(state: MonitorState, policy: Policy, now: float) -> Step:
    """Act on the current health: failover, suppression, incident, or failback."""
    active = state.health_of(state.active)
    if active.state != DOWN:
        return _settle(state, policy, now)
    events: list[Event] = []
    if now - state.started_at < policy.startup_grace:
        return state, events
    all_down = state.all_down
    if all_down and state.incident is None:
        state = replace(state, incident=ALL_DOWN)
        events.append(Event(EventKind.INCIDENT_OPENED, version=active.name,
                            reason="all versions down",
                            evidence=tuple(h.recent[-1] for h in state.health)))
    if not _ready(state, policy, now):
        return state, events
    pending = state.pending_target
    if pending is not None and not why_not_eligible(state.health_of(pending), policy, now):
        return state, events  # still waiting for its confirming probe
    state = replace(state, pending_target=None)
    target = None if all_down else _candidate(state, policy, now)
    if target is None:
        others = [h for h in state.health if h.name != active.name]
        if not all_down and not any(undecided(h, policy, now) for h in others):
            why = "; ".join(f"{h.name} {why_not_eligible(h, policy, now)}" for h in others)
            state, more = _note_once(state, "failover_impossible", Event(
                EventKind.FAILOVER_IMPOSSIBLE, version=active.name, evidence=active.recent,
                reason=f"{_down_reason(active)}; no eligible standby ({why})"))
            events += more
        return state, events
    for key, held in (("paused", state.paused),
                      ("cooldown", cooldown_remaining(state, policy, now) > 0)):
        if held:
            state, more = _note_once(state, f"suppressed:{key}", Event(
                EventKind.SUPPRESSED, version=active.name, source=active.name, target=target,
                reason=key, evidence=active.recent))
            return state, events + more
    state = replace(state, pending_target=target, pending_since=now)
    events.append(Event(EventKind.CONFIRM, source=active.name, target=target,
                        reason=_down_reason(active), evidence=active.recent))
    return state, events


def decide(state: MonitorState, seen: Observation, policy: Policy, now: float) -> Step:
    """Fold one observation into the state; return the new state and what happened."""
    old = state.health_of(seen.version)
    if seen.passive:
        if seen.ok or old.passive_hint:
            return state, []
        return state.with_health(replace(old, passive_hint=True)), []
    new = fold(old, seen, policy, now)
    if seen.version == state.active and old.state != DOWN and new.state == DOWN:
        new = eject(new, policy, now)
    # only the observed version (and the active) can have changed; the rest waits for tick()
    state, events = _housekeep(state.with_health(new), policy, now, (seen.version, state.active))
    if seen.version == state.pending_target and seen.at >= state.pending_since:
        state, more = _confirmed(state, seen, policy, now)
        events += more
    state, more = _evaluate(state, policy, now)
    return state, events + more


def tick(state: MonitorState, policy: Policy, now: float) -> Step:
    """Time-driven decisions without a new observation: startup grace or cooldown ended while
    the active is DOWN, auto failback due, flapping over, ejection decay."""
    state, events = _housekeep(state, policy, now)
    state, more = _evaluate(state, policy, now)
    return state, events + more


def replay(state: MonitorState, seen: Iterable[Observation], policy: Policy) -> MonitorState:
    """Fold observations another monitor made (oldest first) into each version's health and
    decide nothing: a follower's view of the leader's probes, or a takeover's starting point."""
    for observation in seen:
        if state.knows(observation.version) and not observation.passive:
            health = state.health_of(observation.version)
            state = state.with_health(fold(health, observation, policy, observation.at))
    return state


# --- operator actions -----------------------------------------------------------------------

def manual_failover(state: MonitorState, target: str, policy: Policy, now: float, *,
                    reason: str, force: bool = False, actor: str, failback: bool = False) -> Step:
    """Operator failover, not limited by cooldown or pause; ``force`` allows a target that is
    not UP (the event says ``forced``). Raises EngineError for an unknown target, the active
    itself, a target not UP (without force) or an empty reason."""
    if not reason or not reason.strip():
        raise EngineError("a reason is required")
    h = state.health_of(target)
    if target == state.active:
        raise EngineError(f"{target} is already active")
    if h.state != UP and not force:
        raise EngineError(f"{target} is {shown_state(h, policy, now)}, not up; "
                          "use force to fail over anyway")
    source = state.health_of(state.active)
    return _switch(state, Event(EventKind.MANUAL_SWITCH, source=source.name, target=target,
                                reason=reason.strip(), evidence=source.recent + h.recent,
                                actor=actor, forced=force, failback=failback), now)


def failback(state: MonitorState, policy: Policy, now: float, *, reason: str = "",
             actor: str) -> Step:
    """Operator failback to the primary; an empty reason becomes "manual failback"."""
    primary = policy.versions[0]
    h = state.health_of(primary)
    if state.active == primary:
        raise EngineError(f"{primary} is already active")
    if h.state != UP:
        raise EngineError(f"{primary} is {shown_state(h, policy, now)}, not up; "
                          "use a forced failover instead")
    return manual_failover(state, primary, policy, now, failback=True,
                           reason=reason.strip() or "manual failback",
                           actor=actor)


def pause(state: MonitorState, now: float, *, reason: str = "", actor: str) -> Step:
    """Stop automatic switches (maintenance); drops a pending confirmation."""
    if state.paused:
        raise EngineError("automatic failover is already paused")
    state = replace(state, paused=True, pending_target=None)
    return state, [Event(EventKind.PAUSED, reason=reason.strip(), actor=actor)]


def resume(state: MonitorState, now: float, *, reason: str = "", actor: str) -> Step:
    """Re-enable automatic switches; the next tick or decide acts on the current health."""
    if not state.paused:
        raise EngineError("automatic failover is not paused")
    return replace(state, paused=False), [Event(EventKind.RESUMED, reason=reason.strip(),
                                                actor=actor)]


# --- scheduling and views -------------------------------------------------------------------

def next_probe_delay(state: MonitorState, version: str, policy: Policy) -> float:
    """Seconds until the next probe of ``version``, without jitter (the caller adds it)."""
    h = state.health_of(version)
    settling = ((h.state == UP and h.fail_streak > 0) or (h.state == DOWN and h.ok_streak > 0)
                or (h.state == UNKNOWN))
    if settling or h.passive_hint or version == state.pending_target:
        return policy.fast_interval
    return policy.down_interval if h.state == DOWN else policy.interval


def wants_probe_now(events: Iterable[Event]) -> set[str]:
    """Versions to probe immediately: the targets of "confirm" events."""
    return {e.target for e in events if e.kind == EventKind.CONFIRM and e.target}


