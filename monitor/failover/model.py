"""The failover engine's data: health states, event kinds, policy, observations, events and
the monitor state, plus how the state is persisted (DESIGN.md section 5).

Standard library only. Everything here is immutable; the engine (engine.py) folds
observations into a new state and returns events instead of acting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from monitor.failover.table import Table

EVIDENCE_KEPT = 5


class HealthState(StrEnum):
    """A version's state as the engine tracks it; FLAPPING is only ever shown (derived)."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"
    FLAPPING = "flapping"


class EventKind(StrEnum):
    STATE_CHANGE = "state_change"
    CONFIRM = "confirm"
    SWITCH = "switch"  # automatic failover (or auto failback: Event.failback)
    SUPPRESSED = "suppressed"
    FAILOVER_IMPOSSIBLE = "failover_impossible"
    INCIDENT_OPENED = "incident_opened"
    INCIDENT_CLOSED = "incident_closed"
    MANUAL_SWITCH = "manual_switch"  # operator failover or failback (Event.forced)
    PAUSED = "paused"
    RESUMED = "resumed"


class Failure(StrEnum):
    """Why a probe failed (DESIGN §5); PASSIVE is a gateway's report, not a probe."""

    REFUSED = "refused"
    TIMEOUT = "timeout"
    HTTP_5XX = "http_5xx"
    BAD_BODY = "bad_body"
    CORRUPT = "corrupt"
    SLOW = "slow"
    PASSIVE = "passive"
    EXITED = "exited"  # every ready replica's process exited (certain, not probed)
    REPLICAS = "replicas"  # fewer than minReady replicas ready (the probe itself passed)


class IncidentKind(StrEnum):
    ALL_DOWN = "all_down"


UNKNOWN, UP, DOWN, FLAPPING = (HealthState.UNKNOWN, HealthState.UP, HealthState.DOWN,
                               HealthState.FLAPPING)
ALL_DOWN = IncidentKind.ALL_DOWN


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
    that version and never counts toward fall or rise. ``certain`` marks a failure that needs
    no confirmation (every ready replica's process of the version exited): the version is
    DOWN at once, without waiting for ``fall`` failed probes."""

    version: str
    ok: bool
    at: float
    latency_ms: float | None = None
    failure: Failure | None = None
    status: int | None = None
    detail: str = ""
    passive: bool = False
    certain: bool = False


@dataclass(frozen=True)
class Event:
    """Something that happened. A switch says whether it was an (auto) failback and whether an
    operator forced it onto a version that was not UP, as fields, never inside ``reason``."""

    kind: EventKind
    version: str | None = None
    source: str | None = None
    target: str | None = None
    reason: str = ""
    evidence: tuple[Observation, ...] = ()
    actor: str = "monitor"
    forced: bool = False
    failback: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", EventKind(self.kind))  # a misspelt kind fails here


@dataclass(frozen=True)
class Health:
    """One version's health. ``state`` is UNKNOWN, UP or DOWN; FLAPPING is derived over time
    (see :func:`shown_state`) and ``shown`` is the last shown state an event was emitted for.
    ``changes`` holds the times of the latest UP<->DOWN changes (at most ``flap_changes``)."""

    name: str
    state: HealthState = UNKNOWN
    ok_streak: int = 0
    fail_streak: int = 0
    up_since: float | None = None
    changes: tuple[float, ...] = ()
    recent: tuple[Observation, ...] = ()  # the last real observations, kept as evidence
    ejections: int = 0
    ejected_until: float = 0.0
    decay_from: float | None = None  # start of the UP period not yet used to decay ejections
    passive_hint: bool = False  # a gateway failure report arrived since the last real probe
    shown: HealthState = UNKNOWN

    @property
    def probed(self) -> bool:
        return bool(self.recent)

    @property
    def down(self) -> bool:
        return self.state == DOWN


@dataclass(frozen=True)
class MonitorState:
    """Everything the engine knows; immutable and hashable. ``noted`` holds the once-per-episode
    events already emitted while the active is DOWN (cleared when the episode ends). ``table``
    is derived from ``health`` (rebuilt when ``health`` is replaced by anything but
    :meth:`with_health`) and takes no part in equality."""

    active: str
    epoch: int
    started_at: float
    health: tuple[Health, ...]
    last_switch_at: float | None = None
    paused: bool = False
    incident: IncidentKind | None = None
    pending_target: str | None = None
    pending_since: float = 0.0  # a confirming probe must have started after this
    noted: frozenset[str] = frozenset()
    table: Table | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.table is None or self.table.health is not self.health:
            object.__setattr__(self, "table", Table.of(tuple(self.health)))

    @property
    def _table(self) -> Table:
        assert self.table is not None  # set by __post_init__
        return self.table

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(self._table.index)

    def knows(self, version: str) -> bool:
        return version in self._table.index

    def health_of(self, version: str) -> Health:
        i = self._table.index.get(version)
        if i is None:
            raise EngineError(f"unknown version {version!r} (known: {', '.join(self.versions)})")
        return self.health[i]

    def with_health(self, new: Health) -> MonitorState:
        self.health_of(new.name)  # EngineError for an unknown version
        table = self._table.put(new)
        return replace(self, health=table.health, table=table)

    @property
    def all_probed(self) -> bool:
        return self._table.probed == len(self.health)

    @property
    def all_down(self) -> bool:
        return self._table.down == len(self.health)


Step = tuple[MonitorState, list[Event]]


# --- construction and persistence -----------------------------------------------------------

def initial_state(policy: Policy, now: float, *, active: str | None = None) -> MonitorState:
    active = policy.versions[0] if active is None else active
    if active not in policy.versions:
        raise EngineError(f"unknown version {active!r} (known: {', '.join(policy.versions)})")
    return MonitorState(active=active, epoch=0, started_at=now,
                        health=tuple(Health(name=v) for v in policy.versions))


def to_record(state: MonitorState) -> dict[str, Any]:
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


def record_changed(old: MonitorState, new: MonitorState) -> bool:
    """Whether ``to_record(new) != to_record(old)`` may hold, in O(1): the top-level fields
    differ, the versions differ, or a version's ejections were written since (conservative:
    an ejection changed and changed back still counts)."""
    if (old.active, old.epoch, old.last_switch_at, old.paused, old.incident, old.noted) != \
            (new.active, new.epoch, new.last_switch_at, new.paused, new.incident, new.noted):
        return True
    return old._table.durable is not new._table.durable


def from_record(record: Mapping[str, Any], policy: Policy, now: float) -> MonitorState:
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
        incident = IncidentKind(record["incident"]) if record.get("incident") else None
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
                        incident=incident,
                        noted=frozenset(str(n) for n in record.get("noted") or ()))


def cooldown_remaining(state: MonitorState, policy: Policy, now: float) -> float:
    if state.last_switch_at is None:
        return 0.0
    return max(0.0, state.last_switch_at + policy.cooldown - now)

