"""Desired versus observed replicas -> actions: a PURE function, in the engine's style.

The reconciler never starts a process or sends a request. It is given what the spec wants
(replicas per version), what was observed (each replica's process and probe streaks) and the
time, and returns the actions that would close the gap. The controller around it carries them
out and audits each one.

Rules (Kubernetes' ReplicaSet and probe semantics, for local processes):
- a version that left the spec has all its replicas stopped;
- a replica whose process exited is out of load balancing at once (certain evidence); its
  supervisor restarts it, and it still counts toward the version's replicas meanwhile;
- a replica that was live once and then failed its liveness probe ``failureThreshold`` times
  in a row is restarted; so is one not live ``initialDelaySeconds`` after its start (a slow
  start is not a failure: Kubernetes' startup probe);
- a replica that failed its readiness probe ``failureThreshold`` times in a row is taken out of
  load balancing, and put back after one success;
- too few replicas (starting ones count, so a spec change while one starts never doubles it):
  start the missing ones; too many: stop the surplus, exited first, then unready, then the
  newest;
- a replica of an older template (the version's command or env changed) is replaced like a
  Kubernetes RollingUpdate with maxSurge 1 and maxUnavailable 0: one new replica at a time
  is started beside the old ones, and an old one is stopped only while the ready replicas
  left would still be at least the wanted count (an old one not ready goes at once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class ActionKind(StrEnum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    READY = "ready"
    UNREADY = "unready"


@dataclass(frozen=True)
class Replica:
    """One replica as observed: its process and its probe streaks."""

    id: str
    version: str
    started_at: float
    alive: bool = True
    in_rotation: bool = False  # in load balancing now
    readiness_failures: int = 0  # consecutive
    readiness_successes: int = 0  # consecutive
    liveness_failures: int = 0  # consecutive
    has_lived: bool = False  # passed a liveness probe since it (re)started
    stopping: bool = False
    template: str = ""  # digest of the command and env it was started with


@dataclass(frozen=True)
class Thresholds:
    readiness_failures: int = 3
    liveness_failures: int = 3
    readiness_successes: int = 1
    startup_timeout: float = 30.0  # a replica never live this long after a start is restarted


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    version: str
    replica: str | None = None
    reason: str = ""


def reconcile(wanted: Mapping[str, int], observed: Sequence[Replica], thresholds: Thresholds,
              now: float, templates: Mapping[str, str] | None = None) -> list[Action]:
    """The actions that move `observed` toward `wanted` (replicas per version), in order:
    stops of removed versions, restarts, rotation changes, then scaling per version.
    `templates` gives each version's current template; a version without one has no old
    replicas."""
    actions = [Action(ActionKind.STOP, r.version, r.id, "version removed from the spec")
               for r in observed if r.version not in wanted and not r.stopping]
    current = [r for r in observed if r.version in wanted and not r.stopping]
    for replica in current:
        actions.extend(_health(replica, thresholds, now))
    for version, count in wanted.items():
        mine = [r for r in current if r.version == version]
        template = (templates or {}).get(version)
        old = [r for r in mine if template is not None and r.template != template]
        actions.extend(_roll(version, count, old, [r for r in mine if r not in old]))
    return actions


def _roll(version: str, count: int, old: list[Replica], new: list[Replica]) -> list[Action]:
    """Scale the replicas of the current template to `count`, replacing the old ones."""
    if not old:
        return _scale(version, count, new)
    actions = []
    if len(new) < count and len(new) + len(old) <= count:
        actions = [Action(ActionKind.START, version, None, "replacing a replica of an older "
                          "command or env")]  # one at a time (maxSurge 1)
    ready = sum(1 for r in new + old if r.alive and r.in_rotation)
    for replica in sorted(old, key=lambda r: (r.alive and r.in_rotation, -r.started_at)):
        serving = replica.alive and replica.in_rotation
        if serving and ready - 1 < count:
            break
        ready -= serving
        actions.append(Action(ActionKind.STOP, version, replica.id,
                              "replaced: its command or env changed"))
    return actions


def _health(replica: Replica, thresholds: Thresholds, now: float) -> list[Action]:
    version, rid = replica.version, replica.id
    if not replica.alive:
        return ([Action(ActionKind.UNREADY, version, rid, "process exited")]
                if replica.in_rotation else [])
    failing = replica.has_lived and replica.liveness_failures >= thresholds.liveness_failures
    never_up = (not replica.has_lived
                and now - replica.started_at >= thresholds.startup_timeout)
    if failing or never_up:
        why = (f"liveness probe failed {replica.liveness_failures} times" if failing else
               f"not live {thresholds.startup_timeout:g}s after its start")
        return [Action(ActionKind.RESTART, version, rid, why),
                *([Action(ActionKind.UNREADY, version, rid, "restarting")]
                  if replica.in_rotation else [])]
    if replica.in_rotation and replica.readiness_failures >= thresholds.readiness_failures:
        return [Action(ActionKind.UNREADY, version, rid,
                       f"readiness probe failed {replica.readiness_failures} times")]
    if (not replica.in_rotation
            and replica.readiness_successes >= thresholds.readiness_successes):
        return [Action(ActionKind.READY, version, rid, "readiness probe passed")]
    return []


def _scale(version: str, count: int, replicas: list[Replica]) -> list[Action]:
    if len(replicas) < count:
        missing = count - len(replicas)
        return [Action(ActionKind.START, version, None,
                       f"{len(replicas)} of {count} replicas") for _ in range(missing)]
    surplus = len(replicas) - count
    if surplus <= 0:
        return []

    def keep_first(r: Replica) -> tuple[bool, bool, float]:
        return (r.alive, r.in_rotation, -r.started_at)  # exited, unready, newest go first

    doomed = sorted(replicas, key=keep_first)[:surplus]
    return [Action(ActionKind.STOP, version, r.id, f"{len(replicas)} of {count} replicas")
            for r in doomed]


def replica_state(replica: Replica) -> str:
    """What the dashboard says of a replica: exited, ready, starting (never live yet) or
    unready."""
    if not replica.alive:
        return "exited"
    if replica.in_rotation:
        return "ready"
    return "unready" if replica.has_lived else "starting"


def ready_count(observed: Sequence[Replica], version: str) -> int:
    """Replicas of `version` in load balancing (alive and in rotation)."""
    return sum(1 for r in observed
               if r.version == version and r.alive and r.in_rotation and not r.stopping)
