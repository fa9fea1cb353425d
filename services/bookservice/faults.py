"""Chaos fault state: what is injected, since when, and what it does to the next request.

Pure: time (``now``) and randomness (``rand``, uniform in [0, 1)) are passed in, so tests can
drive it with a fake clock. Applying a plan (sleeping, hanging, answering) is the middleware's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LatencyFault:
    ms: int
    jitter_ms: int
    since: float


@dataclass(frozen=True)
class ErrorFault:
    probability: float
    since: float


@dataclass(frozen=True)
class CpuFault:
    seconds: float
    workers: int
    since: float

    def until(self) -> float:
        return self.since + self.seconds


@dataclass(frozen=True)
class CorruptFault:
    silent: bool
    since: float


@dataclass(frozen=True)
class HangFault:
    since: float


@dataclass(frozen=True)
class FlapFault:
    """Down for ``period_s``, then up for ``period_s``, and so on, starting down."""

    period_s: float
    since: float

    def is_down(self, now: float) -> bool:
        return int(max(0.0, now - self.since) // self.period_s) % 2 == 0

    def next_change(self, now: float) -> float:
        elapsed = max(0.0, now - self.since)
        return self.since + (elapsed // self.period_s + 1) * self.period_s


@dataclass(frozen=True)
class RequestPlan:
    """What to do to one non-chaos request: hang, wait ``delay_s``, answer ``status`` early."""

    hang: bool = False
    delay_s: float = 0.0
    status: int | None = None
    reason: str | None = None


class FaultState:
    """The active faults of one service. At most one fault of each kind; setting replaces."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.latency: LatencyFault | None = None
        self.errors: ErrorFault | None = None
        self.cpu: CpuFault | None = None
        self.corrupt: CorruptFault | None = None
        self.hang: HangFault | None = None
        self.flap: FlapFault | None = None

    def cpu_active(self, now: float) -> bool:
        return self.cpu is not None and now < self.cpu.until()

    def flap_down(self, now: float) -> bool:
        return self.flap is not None and self.flap.is_down(now)

    def plan(self, now: float, rand: Callable[[], float], *, health: bool = False) -> RequestPlan:
        """Decide the fate of one request. On /health (``health=True``) a flap is left to the
        health report, which answers 503 with its own body."""
        if self.hang is not None:
            return RequestPlan(hang=True)
        delay = 0.0
        if self.latency is not None:
            delay = (self.latency.ms + rand() * self.latency.jitter_ms) / 1000.0
        if not health and self.flap_down(now):
            return RequestPlan(delay_s=delay, status=503, reason="service unavailable (flap down)")
        if self.errors is not None and rand() < self.errors.probability:
            return RequestPlan(delay_s=delay, status=500, reason="injected error")
        return RequestPlan(delay_s=delay)

    def describe(self, now: float) -> dict[str, dict[str, Any]]:
        """Active faults with their parameters, for /health and GET /chaos (JSON-ready)."""
        active: dict[str, dict[str, Any]] = {}

        def age(since: float) -> float:
            return round(max(0.0, now - since), 3)

        if self.latency is not None:
            active["latency"] = {
                "ms": self.latency.ms,
                "jitter_ms": self.latency.jitter_ms,
                "active_for_s": age(self.latency.since),
            }
        if self.errors is not None:
            active["errors"] = {
                "probability": self.errors.probability,
                "active_for_s": age(self.errors.since),
            }
        if self.cpu is not None and self.cpu_active(now):
            active["cpu"] = {
                "seconds": self.cpu.seconds,
                "workers": self.cpu.workers,
                "active_for_s": age(self.cpu.since),
                "expires_in_s": round(self.cpu.until() - now, 3),
            }
        if self.corrupt is not None:
            active["corrupt"] = {
                "silent": self.corrupt.silent,
                "active_for_s": age(self.corrupt.since),
            }
        if self.hang is not None:
            active["hang"] = {"active_for_s": age(self.hang.since)}
        if self.flap is not None:
            active["flap"] = {
                "period_s": self.flap.period_s,
                "phase": "down" if self.flap.is_down(now) else "up",
                "next_change_in_s": round(self.flap.next_change(now) - now, 3),
                "active_for_s": age(self.flap.since),
            }
        return active
