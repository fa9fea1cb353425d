"""CPU autoscaling with Kubernetes HPA semantics, as a pure function of time.

    desired = ceil(current x average CPU / target CPU)

- Within the tolerance (|ratio - 1| <= 10 % by default) nothing changes.
- Scale-up takes effect at once.
- Scale-down is stabilised: the replica count used is the highest recommendation made within
  the last ``scaleDownStabilizationSeconds`` (HPA's downscale stabilisation window), so a short
  dip in CPU never removes replicas that a moment later would be needed again.
- The result always lies within [min, max]; with no CPU figure (no ready replica measured)
  the current count is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitor.desired.spec import Autoscale


@dataclass(frozen=True)
class Recommendations:
    """Recommendations made within the stabilisation window: (time, replicas), oldest first."""

    made: tuple[tuple[float, int], ...] = ()


def raw_recommendation(current: int, cpu_percent: float, policy: Autoscale) -> int:
    """HPA's formula with its tolerance, clamped to [min, max]; `current` >= 1."""
    ratio = cpu_percent / policy.target_cpu
    desired = current if abs(ratio - 1.0) <= policy.tolerance else math.ceil(current * ratio)
    return max(policy.min, min(policy.max, desired))


def recommend(history: Recommendations, *, current: int, cpu_percent: float | None,
              policy: Autoscale, now: float) -> tuple[Recommendations, int]:
    """Fold one CPU reading into the window; return the window and the replica count to run."""
    if cpu_percent is None or current < 1:
        return history, max(policy.min, min(policy.max, max(current, policy.min)))
    proposal = raw_recommendation(current, cpu_percent, policy)
    window = policy.scale_down_stabilization_seconds
    kept = tuple((at, n) for at, n in history.made if now - at < window)
    made = (*kept, (now, proposal))
    if proposal >= current:
        return Recommendations(made), proposal
    return Recommendations(made), max(min(current, max(n for _, n in made)), proposal)
