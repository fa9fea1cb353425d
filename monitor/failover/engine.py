"""Pure failover state machine: health streaks, decisions and events (DESIGN.md section 5).

Standard library only, no I/O, no clock: every function takes ``now`` (seconds, like
``time.time()``) and returns a new :class:`MonitorState` plus the :class:`Event` list of what
happened. The caller persists the state and acts on the events (audit, notices, probing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

UNKNOWN, UP, DOWN, FLAPPING = "unknown", "up", "down", "flapping"
ALL_DOWN = "all_down"
EVIDENCE_KEPT = 5


class EngineError(ValueError):
    """An input or operator action the engine refuses; the message says why, for a human."""


@dataclass(frozen=True)
class Policy:
    """Failover settings; ``versions`` is the priority order (the first is the primary)."""

    versions: tuple[str, ...] = ("v1", "v2", "v3")
    fall: int = 3
    rise: int = 2
    cooldown: float = 15.0
    startup_grace: float = 10.0
    auto_failback_after: float = 0.0  # 0 = manual failback only
    ejection_base: float = 30.0
    ejection_max: float = 300.0
    flap_changes: int = 4
    flap_window: float = 300.0
    interval: float = 2.0
    fast_interval: float = 1.0
    down_interval: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "versions", tuple(self.versions))  # accept a list, stay hashable
        if not self.versions or len(set(self.versions)) != len(self.versions):
            raise EngineError("versions must be a non-empty list of distinct names")
        if min(self.fall, self.rise, self.flap_changes) < 1:
            raise EngineError("fall, rise and flap_changes must be at least 1")
        if min(self.cooldown, self.startup_grace, self.auto_failback_after, self.ejection_base) < 0:
            raise EngineError("cooldown, startup_grace, auto_failback_after and "
                              "ejection_base must not be negative")
        timings = (self.ejection_max, self.flap_window, self.interval, self.fast_interval,
                   self.down_interval)
        if min(timings) <= 0:
            raise EngineError("ejection_max, flap_window and the probe intervals must be positive")


@dataclass(frozen=True)
class Observation:
    """What one probe saw. ``passive`` marks a gateway failure report: it speeds up probing of
    that version and never counts toward fall or rise."""

    version: str
    ok: bool
    at: float
    latency_ms: float | None = None
    failure: str | None = None  # refused, timeout, http_5xx, bad_body, corrupt, slow, passive
    status: int | None = None
    detail: str = ""
    passive: bool = False


@dataclass(frozen=True)
class Event:
    """Something that happened. ``kind`` is one of: state_change, confirm, switch, suppressed,
    failover_impossible, incident_opened, incident_closed, manual_switch, paused, resumed."""

    kind: str
    version: str | None = None
    source: str | None = None
    target: str | None = None
    reason: str = ""
    evidence: tuple[Observation, ...] = ()
    actor: str = "monitor"


@dataclass(frozen=True)
class Health:
    """One version's health. ``state`` is UNKNOWN, UP or DOWN; FLAPPING is derived over time
    (see :func:`shown_state`) and ``shown`` is the last shown state an event was emitted for.
    ``changes`` holds the times of the latest UP<->DOWN changes (at most ``flap_changes``)."""

    name: str
    state: str = UNKNOWN
    ok_streak: int = 0
    fail_streak: int = 0
    up_since: float | None = None
    changes: tuple[float, ...] = ()
    recent: tuple[Observation, ...] = ()  # the last real observations, kept as evidence
    ejections: int = 0
    ejected_until: float = 0.0
    decay_from: float | None = None  # start of the UP period not yet used to decay ejections
    passive_hint: bool = False  # a gateway failure report arrived since the last real probe
    shown: str = UNKNOWN

    @property
    def probed(self) -> bool:
        return bool(self.recent)


@dataclass(frozen=True)
class MonitorState:
    """Everything the engine knows; immutable and hashable. ``noted`` holds the once-per-episode
    events already emitted while the active is DOWN (cleared when the episode ends)."""

    active: str
    epoch: int
    started_at: float
    health: tuple[Health, ...]
    last_switch_at: float | None = None
    paused: bool = False
    incident: str | None = None
    pending_target: str | None = None
    pending_since: float = 0.0  # a confirming probe must have started after this
    noted: frozenset[str] = frozenset()

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.health)

    def health_of(self, version: str) -> Health:
        for h in self.health:
            if h.name == version:
                return h
        raise EngineError(f"unknown version {version!r} (known: {', '.join(self.versions)})")

    def with_health(self, new: Health) -> MonitorState:
        return replace(self, health=tuple(new if h.name == new.name else h for h in self.health))


Step = tuple[MonitorState, list[Event]]


# --- construction and persistence -----------------------------------------------------------

def initial_state(policy: Policy, now: float, *, active: str | None = None) -> MonitorState:
    active = policy.versions[0] if active is None else active
    if active not in policy.versions:
        raise EngineError(f"unknown version {active!r} (known: {', '.join(policy.versions)})")
    return MonitorState(active=active, epoch=0, started_at=now,
                        health=tuple(Health(name=v) for v in policy.versions))


def to_record(state: MonitorState) -> dict:
    """What must survive a restart, as JSON-serialisable data."""
    return {
        "active": state.active,
        "epoch": state.epoch,
        "last_switch_at": state.last_switch_at,
        "paused": state.paused,
        "incident": state.incident,
        "noted": sorted(state.noted),
        "versions": {h.name: {"ejections": h.ejections, "ejected_until": h.ejected_until}
                     for h in state.health},
    }


def from_record(record: Mapping, policy: Policy, now: float) -> MonitorState:
    """Resume after a restart: same active, epoch, pause, incident, ejections and the notes of
    the current episode (so a restart repeats no notice); health back to
    UNKNOWN and ``started_at=now``, so the startup grace applies again. Versions missing from
    the record start clean; an active that is no longer configured raises EngineError."""
    try:
        active = str(record["active"])
        epoch = int(record["epoch"])
        last = record.get("last_switch_at")
        last_switch_at = None if last is None else float(last)
        stored = record.get("versions") or {}
        health = tuple(
            Health(name=v, ejections=int(stored.get(v, {}).get("ejections", 0)),
                   ejected_until=float(stored.get(v, {}).get("ejected_until", 0.0)))
            for v in policy.versions)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EngineError(f"stored monitor state is unreadable: {exc!r}") from exc
    if active not in policy.versions:
        raise EngineError(f"stored active version {active!r} is not configured "
                          f"(configured: {', '.join(policy.versions)})")
    return MonitorState(active=active, epoch=epoch, started_at=now, health=health,
                        last_switch_at=last_switch_at, paused=bool(record.get("paused", False)),
                        incident=record.get("incident") or None,
                        noted=frozenset(str(n) for n in record.get("noted") or ()))


# --- health ---------------------------------------------------------------------------------

def _fold(h: Health, seen: Observation, policy: Policy, now: float) -> Health:
    """Add one real observation to a version's streaks; change state at fall / rise."""
    ok, fail = (h.ok_streak + 1, 0) if seen.ok else (0, h.fail_streak + 1)
    folded = replace(h, ok_streak=ok, fail_streak=fail, passive_hint=False,
                     recent=(h.recent + (seen,))[-EVIDENCE_KEPT:])
    state = h.state
    if seen.ok and state != UP and ok >= policy.rise:
        state = UP
    elif not seen.ok and state != DOWN and fail >= policy.fall:
        state = DOWN
    if state == h.state:
        return folded
    changes = h.changes
    if h.state != UNKNOWN:  # leaving UNKNOWN at startup is not flapping
        changes = (changes + (now,))[-policy.flap_changes:]
    since = now if state == UP else None
    return replace(folded, state=state, changes=changes, up_since=since, decay_from=since)


def replay(state: MonitorState, seen: Iterable[Observation], policy: Policy) -> MonitorState:
    """Fold observations another monitor made (oldest first) into each version's health and
    decide nothing: a follower's view of the leader's probes, or a takeover's starting point."""
    for observation in seen:
        if observation.version in state.versions and not observation.passive:
            health = state.health_of(observation.version)
            state = state.with_health(_fold(health, observation, policy, observation.at))
    return state


def _eject(h: Health, policy: Policy, now: float) -> Health:
    """Back-off for a version that went DOWN while active: base x count, capped."""
    count = h.ejections + 1
    until = now + min(policy.ejection_base * count, policy.ejection_max)
    return replace(h, ejections=count, ejected_until=max(h.ejected_until, until))


def _decay(h: Health, policy: Policy, now: float) -> Health:
    """One ejection is forgiven per ``ejection_max`` seconds of being UP continuously."""
    if h.ejections == 0 or h.state != UP or h.decay_from is None:
        return h
    periods = int((now - h.decay_from) // policy.ejection_max)
    if periods <= 0:
        return h
    return replace(h, ejections=max(0, h.ejections - periods),
                   decay_from=h.decay_from + periods * policy.ejection_max)


def _flapping(h: Health, policy: Policy, now: float) -> bool:
    n = policy.flap_changes
    return len(h.changes) >= n and now - h.changes[-n] < policy.flap_window


def shown_state(h: Health, policy: Policy, now: float) -> str:
    """The state as the dashboard shows it: FLAPPING overrides UP / DOWN."""
    return FLAPPING if _flapping(h, policy, now) else h.state


def _last_failure(h: Health) -> str | None:
    failed = [o for o in h.recent if not o.ok]
    return (failed[-1].failure or "failed") if failed else None


def _why_not_eligible(h: Health, policy: Policy, now: float) -> str:
    """Why this version cannot be an automatic failover target now ('' when it can)."""
    if _flapping(h, policy, now):
        return f"flapping: {policy.flap_changes} state changes within {policy.flap_window:g} s"
    if h.state == DOWN:
        if h.fail_streak:
            return f"{h.fail_streak} consecutive failures: {_last_failure(h)}"
        return f"down, recovering: {h.ok_streak} of {policy.rise} successes"
    if h.state == UNKNOWN:
        return "no result yet" if not h.probed else "not up yet"
    if now < h.ejected_until:
        return (f"ejected for {h.ejected_until - now:.0f} s after failing while active "
                f"({h.ejections}x)")
    if h.fail_streak:  # a confirming probe failed or a fall is under way: not a safe target
        return f"last probe failed: {_last_failure(h)}"
    return ""


def _undecided(h: Health, policy: Policy, now: float) -> bool:
    """Not eligible only because its streak has not settled yet (worth waiting for)."""
    return (h.state in (UP, UNKNOWN) and not _flapping(h, policy, now)
            and now >= h.ejected_until)


def _housekeep(state: MonitorState, policy: Policy, now: float) -> Step:
    """Decay ejections and emit a state_change for each version whose shown state changed."""
    events: list[Event] = []
    for h in state.health:
        new = _decay(h, policy, now)
        shown = shown_state(new, policy, now)
        if shown != h.shown:
            events.append(Event("state_change", version=h.name, reason=f"{h.shown} -> {shown}",
                                evidence=new.recent))
            new = replace(new, shown=shown)
        if new != h:
            state = state.with_health(new)
    return state, events


# --- automatic decisions --------------------------------------------------------------------

def cooldown_remaining(state: MonitorState, policy: Policy, now: float) -> float:
    if state.last_switch_at is None:
        return 0.0
    return max(0.0, state.last_switch_at + policy.cooldown - now)


def _ready(state: MonitorState, policy: Policy, now: float) -> bool:
    """Past the startup grace, and every version has at least one real result."""
    return now - state.started_at >= policy.startup_grace and all(h.probed for h in state.health)


def _candidate(state: MonitorState, policy: Policy, now: float) -> str | None:
    for h in state.health:
        if h.name != state.active and not _why_not_eligible(h, policy, now):
            return h.name
    return None


def _down_reason(h: Health) -> str:
    return f"{h.name} down: {h.fail_streak} consecutive failures: {_last_failure(h)}"


def _failback_due(state: MonitorState, policy: Policy, now: float) -> bool:
    primary = state.health[0]
    if (policy.auto_failback_after <= 0 or state.active == primary.name or state.paused
            or not _ready(state, policy, now) or cooldown_remaining(state, policy, now) > 0):
        return False
    if _why_not_eligible(primary, policy, now) or primary.up_since is None:
        return False
    return now - primary.up_since >= policy.auto_failback_after


def _note_once(state: MonitorState, key: str, event: Event) -> Step:
    if key in state.noted:
        return state, []
    return replace(state, noted=state.noted | {key}), [event]


def _switch(state: MonitorState, target: str, now: float, *, kind: str, reason: str,
            evidence: tuple[Observation, ...], actor: str) -> Step:
    """Make ``target`` active: epoch + 1; closes the incident when the target is UP."""
    source = state.active
    state = replace(state, active=target, epoch=state.epoch + 1, last_switch_at=now,
                    pending_target=None, noted=frozenset())
    events = [Event(kind, source=source, target=target, reason=reason, evidence=evidence,
                    actor=actor)]
    if state.incident and state.health_of(target).state == UP:
        state = replace(state, incident=None)
        events.append(Event("incident_closed", version=target, actor=actor,
                            reason=f"recovered: {target} is active and up"))
    return state, events


def _confirmed(state: MonitorState, seen: Observation, policy: Policy, now: float) -> Step:
    """The confirming probe of the pending target arrived: switch on success, else drop it."""
    state = replace(state, pending_target=None)
    target = state.health_of(seen.version)
    source = state.health_of(state.active)
    if not seen.ok or _why_not_eligible(target, policy, now):
        return state, []
    if source.state == DOWN:
        if state.paused or cooldown_remaining(state, policy, now) > 0 or not _ready(
                state, policy, now):
            return state, []
        reason = _down_reason(source)
    elif _failback_due(state, policy, now):
        reason = "auto failback"
    else:
        return state, []
    return _switch(state, target.name, now, kind="switch", reason=reason,
                   evidence=source.recent + (seen,), actor="monitor")


def _settle(state: MonitorState, policy: Policy, now: float) -> Step:
    """The active is not DOWN: end the episode, close a recovered incident, maybe fail back."""
    events: list[Event] = []
    active = state.health_of(state.active)
    if active.state == UP:  # UNKNOWN (just restarted) does not end the episode
        state = replace(state, noted=frozenset())
    if state.incident and active.state == UP:
        state = replace(state, incident=None)
        events.append(Event("incident_closed", version=active.name, evidence=active.recent,
                            reason=f"recovered: {active.name} is up again"))
    primary = state.health[0].name
    due = _failback_due(state, policy, now)
    if state.pending_target is not None and (not due or state.pending_target != primary):
        state = replace(state, pending_target=None)  # the failover it confirmed is moot now
    if state.pending_target is None and due:
        state = replace(state, pending_target=primary, pending_since=now)
        events.append(Event("confirm", source=active.name, target=primary,
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
    all_down = all(h.state == DOWN for h in state.health)
    if all_down and state.incident is None:
        state = replace(state, incident=ALL_DOWN)
        events.append(Event("incident_opened", version=active.name, reason="all versions down",
                            evidence=tuple(h.recent[-1] for h in state.health)))
    if not _ready(state, policy, now):
        return state, events
    pending = state.pending_target
    if pending is not None and not _why_not_eligible(state.health_of(pending), policy, now):
        return state, events  # still waiting for its confirming probe
    state = replace(state, pending_target=None)
    target = _candidate(state, policy, now)
    if target is None:
        others = [h for h in state.health if h.name != active.name]
        if not all_down and not any(_undecided(h, policy, now) for h in others):
            why = "; ".join(f"{h.name} {_why_not_eligible(h, policy, now)}" for h in others)
            state, more = _note_once(state, "failover_impossible", Event(
                "failover_impossible", version=active.name, evidence=active.recent,
                reason=f"{_down_reason(active)}; no eligible standby ({why})"))
            events += more
        return state, events
    for key, held in (("paused", state.paused),
                      ("cooldown", cooldown_remaining(state, policy, now) > 0)):
        if held:
            state, more = _note_once(state, f"suppressed:{key}", Event(
                "suppressed", version=active.name, source=active.name, target=target,
                reason=key, evidence=active.recent))
            return state, events + more
    state = replace(state, pending_target=target, pending_since=now)
    events.append(Event("confirm", source=active.name, target=target,
                        reason=_down_reason(active), evidence=active.recent))
    return state, events


def decide(state: MonitorState, seen: Observation, policy: Policy, now: float) -> Step:
    """Fold one observation into the state; return the new state and what happened."""
    old = state.health_of(seen.version)
    if seen.passive:
        if seen.ok or old.passive_hint:
            return state, []
        return state.with_health(replace(old, passive_hint=True)), []
    new = _fold(old, seen, policy, now)
    if seen.version == state.active and old.state != DOWN and new.state == DOWN:
        new = _eject(new, policy, now)
    state, events = _housekeep(state.with_health(new), policy, now)
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


# --- operator actions -----------------------------------------------------------------------

def manual_failover(state: MonitorState, target: str, policy: Policy, now: float, *,
                    reason: str, force: bool = False, actor: str) -> Step:
    """Operator failover, not limited by cooldown or pause; ``force`` allows a target that is
    not UP. Raises EngineError for an unknown target, the active itself, a target not UP
    (without force) or an empty reason."""
    if not reason or not reason.strip():
        raise EngineError("a reason is required")
    h = state.health_of(target)
    if target == state.active:
        raise EngineError(f"{target} is already active")
    if h.state != UP and not force:
        raise EngineError(f"{target} is {shown_state(h, policy, now)}, not up; "
                          "use force to fail over anyway")
    text = f"{reason.strip()} [force]" if force else reason.strip()
    source = state.health_of(state.active)
    return _switch(state, target, now, kind="manual_switch", reason=text,
                   evidence=source.recent + h.recent, actor=actor)


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
    return manual_failover(state, primary, policy, now, reason=reason.strip() or "manual failback",
                           actor=actor)


def pause(state: MonitorState, now: float, *, reason: str = "", actor: str) -> Step:
    """Stop automatic switches (maintenance); drops a pending confirmation."""
    if state.paused:
        raise EngineError("automatic failover is already paused")
    state = replace(state, paused=True, pending_target=None)
    return state, [Event("paused", reason=reason.strip(), actor=actor)]


def resume(state: MonitorState, now: float, *, reason: str = "", actor: str) -> Step:
    """Re-enable automatic switches; the next tick or decide acts on the current health."""
    if not state.paused:
        raise EngineError("automatic failover is not paused")
    return replace(state, paused=False), [Event("resumed", reason=reason.strip(), actor=actor)]


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
    return {e.target for e in events if e.kind == "confirm" and e.target}


def version_view(state: MonitorState, version: str, policy: Policy, now: float) -> dict:
    """One version for the dashboard. ``streak`` > 0 counts consecutive successes, < 0
    consecutive failures; ``reason`` says why it is not eligible (or why it is down)."""
    h = state.health_of(version)
    last = h.recent[-1] if h.recent else None
    return {
        "name": version,
        "state": shown_state(h, policy, now),
        "active": version == state.active,
        "pending": version == state.pending_target,
        "eligible": not _why_not_eligible(h, policy, now),
        "reason": _why_not_eligible(h, policy, now),
        "ejected_for_s": round(max(0.0, h.ejected_until - now), 1),
        "ejections": h.ejections,
        "latency_ms": last.latency_ms if last else None,
        "last_failure": _last_failure(h),
        "streak": h.ok_streak or -h.fail_streak,
    }


def status_view(state: MonitorState, policy: Policy, now: float) -> dict:
    """The engine's part of ``GET /api/status``."""
    return {
        "active": state.active,
        "epoch": state.epoch,
        "paused": state.paused,
        "cooldown_remaining_s": round(cooldown_remaining(state, policy, now), 1),
        "incident": state.incident,
        "pending_target": state.pending_target,
        "versions": [version_view(state, v, policy, now) for v in state.versions],
    }
