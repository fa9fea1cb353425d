"""The engine's part of the dashboard: what `GET /api/status` says about the state."""

from __future__ import annotations

from typing import Any

from monitor.failover.health import last_failure, shown_state, why_not_eligible
from monitor.failover.model import MonitorState, Policy, cooldown_remaining


def version_view(state: MonitorState, version: str, policy: Policy, now: float) -> dict[str, Any]:
    """One version for the dashboard. ``streak`` > 0 counts consecutive successes, < 0
    consecutive failures; ``reason`` says why it is not eligible (or why it is down)."""
    h = state.health_of(version)
    last = h.recent[-1] if h.recent else None
    why = why_not_eligible(h, policy, now)
    return {
        "name": version,
        "state": shown_state(h, policy, now),
        "active": version == state.active,
        "pending": version == state.pending_target,
        "eligible": not why,
        "reason": why,
        "ejected_for_s": round(max(0.0, h.ejected_until - now), 1),
        "ejections": h.ejections,
        "latency_ms": last.latency_ms if last else None,
        "last_failure": last_failure(h),
        "streak": h.ok_streak or -h.fail_streak,
    }


def status_view(state: MonitorState, policy: Policy, now: float) -> dict[str, Any]:
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
