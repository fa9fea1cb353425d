"""Progressive delivery as a PURE state machine: BlueGreen and Canary with analysis.

Like the engine, nothing here does I/O or reads a clock: every function takes `now` and
returns the new :class:`Rollout` and the :class:`RolloutEvent` list of what happened. The
caller persists the rollout (``to_record``/``from_record``), routes by ``weight`` and audits
the events.

Canary (Argo Rollouts steps, Flagger analysis): the canary's share of traffic follows the
spec's steps. A ``setWeight`` step holds until one analysis interval at that weight has
passed; a ``pause`` with a duration holds for that long; a ``pause`` without one holds until
an operator promotes. After the last step the canary takes all traffic and the rollout is
completed. BlueGreen: the new version takes no traffic until it is ready and one analysis
interval of its probes has passed; then all traffic switches at once, and the old version is
kept for ``scaleDownDelaySeconds`` so that an abort switches back at once.

A failed analysis aborts: weight back to 0, the stable version keeps leading, the evidence
goes with the event. A failover during a rollout aborts it first (``abort``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from monitor.desired.spec import Analysis, Step


class Strategy(StrEnum):
    CANARY = "canary"
    BLUEGREEN = "bluegreen"


class Phase(StrEnum):
    PROGRESSING = "progressing"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"


class Kind(StrEnum):
    STARTED = "started"
    WEIGHT = "weight"
    PAUSED = "paused"
    RESUMED = "resumed"
    PROMOTED = "promoted"
    ANALYSIS = "analysis"
    ABORTED = "aborted"
    COMPLETED = "completed"


class RolloutError(ValueError):
    """An operator action the rollout refuses; the message says why."""


@dataclass(frozen=True)
class Measurement:
    """What the gateway and the probes saw of both versions over one analysis interval."""

    canary_requests: int = 0
    canary_failures: int = 0
    canary_p99_ms: float | None = None
    stable_p99_ms: float | None = None
    canary_probe_failures: int = 0
    canary_ready: bool = True


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class RolloutEvent:
    kind: Kind
    weight: int
    step: int
    reason: str = ""
    evidence: dict[str, Any] | None = None


@dataclass(frozen=True)
class Rollout:
    strategy: Strategy
    stable: str
    canary: str
    steps: tuple[Step, ...]
    started_at: float
    step: int = 0
    weight: int = 0
    phase: Phase = Phase.PROGRESSING
    step_since: float = 0.0
    reason: str = ""
    scale_down_delay: float = 0.0
    scale_down_at: float | None = None  # once completed: when the old version may stop

    @property
    def done(self) -> bool:
        return self.phase in (Phase.COMPLETED, Phase.ABORTED)

    @property
    def leader(self) -> str:
        """The version that leads the priority order now."""
        return self.canary if self.phase == Phase.COMPLETED else self.stable


def analyse(seen: Measurement, policy: Analysis) -> Verdict:
    """Flagger-style checks of one interval; a check without data (no requests, no stable
    p99) passes, so an idle service is not rolled back for want of traffic."""
    reasons = []
    if seen.canary_requests:
        rate = 1 - seen.canary_failures / seen.canary_requests
        if rate < policy.success_rate:
            reasons.append(f"success rate {rate:.3f} below {policy.success_rate:g} "
                           f"({seen.canary_failures} of {seen.canary_requests} failed)")
    if seen.canary_p99_ms is not None and seen.stable_p99_ms:
        ratio = seen.canary_p99_ms / seen.stable_p99_ms
        if ratio > policy.max_p99_ratio:
            reasons.append(f"p99 {seen.canary_p99_ms:.0f} ms is {ratio:.2f}x stable's "
                           f"{seen.stable_p99_ms:.0f} ms (max {policy.max_p99_ratio:g}x)")
    if seen.canary_probe_failures > policy.max_probe_failures:
        reasons.append(f"{seen.canary_probe_failures} failed probes "
                       f"(max {policy.max_probe_failures})")
    return Verdict(not reasons, tuple(reasons))


def start(strategy: Strategy, stable: str, canary: str, steps: tuple[Step, ...],
          now: float, *, scale_down_delay: float = 0.0) -> tuple[Rollout, list[RolloutEvent]]:
    if stable == canary:
        raise RolloutError(f"{canary} already leads")
    if strategy == Strategy.CANARY and not steps:
        steps = (Step.model_validate({"setWeight": 100}),)
    rollout = Rollout(strategy, stable, canary, steps if strategy == Strategy.CANARY else (),
                      started_at=now, step_since=now, scale_down_delay=scale_down_delay)
    return rollout, [RolloutEvent(Kind.STARTED, 0, 0, f"{strategy} {stable} -> {canary}")]


def advance(rollout: Rollout, seen: Measurement | None, policy: Analysis,
            now: float) -> tuple[Rollout, list[RolloutEvent]]:
    """One analysis tick: `seen` is the last full interval's measurement, None while the
    current interval is still open."""
    if rollout.done or rollout.phase == Phase.PAUSED and seen is None:
        return rollout, []
    if seen is not None:
        verdict = analyse(seen, policy)
        if not verdict.ok:
            return abort(rollout, "; ".join(verdict.reasons), now, evidence=asdict(seen))
    if rollout.phase == Phase.PAUSED:
        return rollout, []
    if rollout.strategy == Strategy.BLUEGREEN:
        return _bluegreen(rollout, seen, now)
    return _canary(rollout, seen, now)


def _bluegreen(rollout: Rollout, seen: Measurement | None,
               now: float) -> tuple[Rollout, list[RolloutEvent]]:
    if seen is None or not seen.canary_ready:
        return rollout, []
    return _complete(rollout, now, "ready, one interval of good probes")


def _canary(rollout: Rollout, seen: Measurement | None,
            now: float) -> tuple[Rollout, list[RolloutEvent]]:
    events: list[RolloutEvent] = []
    while rollout.step < len(rollout.steps):
        step = rollout.steps[rollout.step]
        if step.set_weight is not None:
            if rollout.weight != step.set_weight:
                rollout = replace(rollout, weight=step.set_weight, step_since=now)
                events.append(RolloutEvent(Kind.WEIGHT, rollout.weight, rollout.step,
                                           f"step {rollout.step + 1}: setWeight"))
                return rollout, events
            if seen is None or not seen.canary_ready:
                return rollout, events  # hold for one passing interval at this weight
            seen = None  # one interval proves one step
        elif step.pause is not None:
            if step.pause.duration is None:
                rollout = replace(rollout, phase=Phase.PAUSED, step_since=now,
                                  reason="waiting for promote")
                events.append(RolloutEvent(Kind.PAUSED, rollout.weight, rollout.step,
                                           "pause step: waiting for promote"))
                return rollout, events
            if now - rollout.step_since < step.pause.duration:
                return rollout, events
        rollout = replace(rollout, step=rollout.step + 1, step_since=now)
    rollout, done = _complete(rollout, now, "all steps passed")
    return rollout, events + done


def _complete(rollout: Rollout, now: float, why: str) -> tuple[Rollout, list[RolloutEvent]]:
    rollout = replace(rollout, weight=100, phase=Phase.COMPLETED, step_since=now, reason=why,
                      step=len(rollout.steps), scale_down_at=now + rollout.scale_down_delay)
    return rollout, [RolloutEvent(Kind.COMPLETED, 100, rollout.step, why)]


def promote(rollout: Rollout, now: float) -> tuple[Rollout, list[RolloutEvent]]:
    """Past the current step: an indefinite pause, or the wait of a timed step."""
    if rollout.done:
        raise RolloutError(f"the rollout is already {rollout.phase}")
    if rollout.strategy == Strategy.BLUEGREEN:
        return _complete(rollout, now, "promoted")
    moved = replace(rollout, phase=Phase.PROGRESSING, step=rollout.step + 1, step_since=now,
                    reason="")
    event = RolloutEvent(Kind.PROMOTED, rollout.weight, rollout.step, "promoted")
    if moved.step >= len(moved.steps):
        moved, done = _complete(moved, now, "promoted past the last step")
        return moved, [event, *done]
    return moved, [event]


def pause(rollout: Rollout, now: float, reason: str = "") -> tuple[Rollout, list[RolloutEvent]]:
    if rollout.phase != Phase.PROGRESSING:
        raise RolloutError(f"the rollout is {rollout.phase}, not progressing")
    return (replace(rollout, phase=Phase.PAUSED, reason=reason or "paused by an operator"),
            [RolloutEvent(Kind.PAUSED, rollout.weight, rollout.step, reason)])


def resume(rollout: Rollout, now: float) -> tuple[Rollout, list[RolloutEvent]]:
    if rollout.phase != Phase.PAUSED:
        raise RolloutError(f"the rollout is {rollout.phase}, not paused")
    step = rollout.steps[rollout.step] if rollout.step < len(rollout.steps) else None
    if step is not None and step.pause is not None and step.pause.duration is None:
        raise RolloutError("this pause step waits for promote")
    return (replace(rollout, phase=Phase.PROGRESSING, reason="", step_since=now),
            [RolloutEvent(Kind.RESUMED, rollout.weight, rollout.step)])


def abort(rollout: Rollout, reason: str, now: float, *,
          evidence: dict[str, Any] | None = None) -> tuple[Rollout, list[RolloutEvent]]:
    """Weight back to 0 and the stable version leading; within `scale_down_delay` after
    completion (the old version still running) it switches straight back."""
    kept = rollout.scale_down_at is not None and now < rollout.scale_down_at
    if rollout.phase == Phase.ABORTED or rollout.phase == Phase.COMPLETED and not kept:
        raise RolloutError(f"the rollout is already {rollout.phase}")
    aborted = replace(rollout, weight=0, phase=Phase.ABORTED, reason=reason, step_since=now,
                      scale_down_at=None)
    return aborted, [RolloutEvent(Kind.ABORTED, 0, rollout.step, reason, evidence)]


def to_record(rollout: Rollout) -> dict[str, Any]:
    record = asdict(rollout)
    record["steps"] = [s.model_dump(by_alias=True, exclude_none=True) for s in rollout.steps]
    return record


def from_record(record: dict[str, Any]) -> Rollout:
    fields = dict(record)
    fields["steps"] = tuple(Step.model_validate(s) for s in record.get("steps", ()))
    fields["strategy"] = Strategy(record["strategy"])
    fields["phase"] = Phase(record["phase"])
    return Rollout(**fields)
