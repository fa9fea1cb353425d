"""PURE helpers of a running rollout: the measurement window, replica targets, the view.

The state machine is :mod:`monitor.desired.rollout`; this module holds what the driver
(:mod:`monitor.desired.rollout_driver`) needs around it without doing I/O itself:

- :class:`Window` accumulates what the gateway and the probes saw since the current analysis
  interval began, and turns it into a :class:`Measurement`. The canary's requests are its
  answered attempts plus its failed ones (each failed attempt is reported by the gateway as
  passive evidence; an answered one is counted once a second), so a failure retried on the
  stable version still counts against the canary although the client never saw it. The p99s
  are the gateway's (its recent answers of each version, sent once a second) when it reported
  both versions in the interval, else the probes' (with enough samples), else unknown.
- :func:`replica_targets`: BlueGreen brings the new version to the leader's replica count
  before it takes traffic, keeps the old one whole for ``scaleDownDelaySeconds`` after the
  switch, then gives it the standby count the new version had. A canary is scaled like that
  too while it runs; an aborted rollout hands the counts back to the spec.
- :func:`view` is the ``rollout`` field of ``/api/status`` (DESIGN section 13).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from monitor.desired.rollout import Kind, Measurement, Phase, Rollout, Strategy
from monitor.desired.spec import Rollout as RolloutSpec
from monitor.desired.spec import Step
from monitor.gateway.evidence import P99_US

DEFAULT_STEPS = (Step.model_validate({"setWeight": 10}), Step.model_validate({"setWeight": 50}))
MIN_LATENCY_SAMPLES = 10  # fewer samples than this say nothing about a p99
ANSWERED = ("ok", "retried", "failed")  # gateway outcomes counted against the version answering


class Op(StrEnum):
    START = "start"
    PROMOTE = "promote"
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"


ACTIONS: dict[Kind, str] = {
    Kind.STARTED: "rollout.start", Kind.WEIGHT: "rollout.step", Kind.PAUSED: "rollout.pause",
    Kind.RESUMED: "rollout.resume", Kind.PROMOTED: "rollout.promote",
    Kind.ANALYSIS: "rollout.analysis", Kind.ABORTED: "rollout.abort",
    Kind.COMPLETED: "rollout.complete",
}
NOTIFIED = frozenset({Kind.STARTED, Kind.ABORTED})  # e-mailed (a completion is a failover)


def strategy_named(name: str | None, spec: RolloutSpec | None) -> Strategy:
    """`canary`/`bluegreen` (any case) when given, else the spec's, else canary."""
    if name:
        try:
            return Strategy(name.lower())
        except ValueError:
            raise ValueError(f"strategy must be one of {', '.join(Strategy)}") from None
    if spec is not None and spec.strategy == "BlueGreen":
        return Strategy.BLUEGREEN
    return Strategy.CANARY


def steps_for(strategy: Strategy, spec: RolloutSpec | None) -> tuple[Step, ...]:
    if strategy == Strategy.CANARY and spec is not None and spec.steps:
        return spec.steps
    return DEFAULT_STEPS if strategy == Strategy.CANARY else ()


def p99(samples: Iterable[float]) -> float | None:
    """Nearest-rank p99, None below MIN_LATENCY_SAMPLES."""
    ordered = sorted(samples)
    if len(ordered) < MIN_LATENCY_SAMPLES:
        return None
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass
class Window:
    """What was seen since `started`; `reset` opens the next analysis interval."""

    started: float
    answered: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    probes: dict[str, list[tuple[bool, float | None]]] = field(default_factory=dict)
    gateway_p99_ms: dict[str, float] = field(default_factory=dict)

    def reset(self, now: float) -> None:
        self.started = now
        self.answered.clear()
        self.failed.clear()
        self.probes.clear()
        self.gateway_p99_ms.clear()

    def count(self, counts: Iterable[tuple[str, str, int]]) -> None:
        for version, outcome, requests in counts:
            if outcome == P99_US:
                self.gateway_p99_ms[version] = requests / 1000
            elif outcome in ANSWERED and outcome != "failed":  # a final failure is reported too
                self.answered[version] += requests

    def fail(self, version: str) -> None:
        self.failed[version] += 1

    def probe(self, version: str, ok: bool, latency_ms: float | None) -> None:
        self.probes.setdefault(version, []).append((ok, latency_ms))

    def measurement(self, canary: str, stable: str, *, ready: bool) -> Measurement:
        def latencies(version: str) -> list[float]:
            return [ms for ok, ms in self.probes.get(version, []) if ok and ms is not None]

        gateway = self.gateway_p99_ms
        both = canary in gateway and stable in gateway
        return Measurement(
            canary_requests=self.answered[canary] + self.failed[canary],
            canary_failures=self.failed[canary],
            canary_p99_ms=gateway[canary] if both else p99(latencies(canary)),
            stable_p99_ms=gateway[stable] if both else p99(latencies(stable)),
            canary_probe_failures=sum(1 for ok, _ in self.probes.get(canary, []) if not ok),
            canary_ready=ready)


def replica_targets(rollout: Rollout | None, counts: Mapping[str, int],
                    now: float) -> dict[str, int]:
    """Replica counts that override the spec's while a rollout needs them."""
    if rollout is None or rollout.phase == Phase.ABORTED:
        return {}
    stable, canary = counts.get(rollout.stable, 1), counts.get(rollout.canary, 1)
    targets = {rollout.canary: max(stable, canary)}
    if rollout.phase == Phase.COMPLETED and rollout.scale_down_at is not None \
            and now >= rollout.scale_down_at:
        targets[rollout.stable] = min(stable, canary)
    return targets


def weights(rollout: Rollout | None) -> dict[str, int]:
    """The gateway's weights: the canary's share while the rollout runs."""
    if rollout is None or rollout.done or rollout.strategy == Strategy.BLUEGREEN \
            or rollout.weight <= 0:
        return {}
    return {rollout.canary: rollout.weight}


def view(rollout: Rollout | None, iso: Any = None) -> dict[str, Any] | None:
    """`/api/status` `rollout`: strategy, from, to, step, weight, state (+ reason, times)."""
    if rollout is None:
        return None
    stamp = iso or (lambda t: t)
    return {"strategy": str(rollout.strategy), "from": rollout.stable, "to": rollout.canary,
            "step": rollout.step, "steps": len(rollout.steps), "weight": rollout.weight,
            "state": str(rollout.phase), "reason": rollout.reason,
            "started_at": stamp(rollout.started_at),
            "scale_down_at": None if rollout.scale_down_at is None
            else stamp(rollout.scale_down_at)}
