"""One version's health over time: streaks, ejection back-off, flapping, eligibility.

Pure functions of a :class:`Health`, the policy and ``now``; the engine composes them.
"""

from __future__ import annotations

from dataclasses import replace

from monitor.failover.model import (
    DOWN,
    EVIDENCE_KEPT,
    FLAPPING,
    UNKNOWN,
    UP,
    Health,
    HealthState,
    Observation,
    Policy,
)


def fold(h: Health, seen: Observation, policy: Policy, now: float) -> Health:
    """Add one real observation to a version's streaks; change state at fall / rise."""
    ok, fail = (h.ok_streak + 1, 0) if seen.ok else (0, h.fail_streak + 1)
    if seen.certain and not seen.ok:
        fail = max(fail, policy.fall)
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


def eject(h: Health, policy: Policy, now: float) -> Health:
    """Back-off for a version that went DOWN while active: base x count, capped."""
    count = h.ejections + 1
    until = now + min(policy.ejection_base * count, policy.ejection_max)
    return replace(h, ejections=count, ejected_until=max(h.ejected_until, until))


def decay(h: Health, policy: Policy, now: float) -> Health:
    """One ejection is forgiven per ``ejection_max`` seconds of being UP continuously."""
    if h.ejections == 0 or h.state != UP or h.decay_from is None:
        return h
    periods = int((now - h.decay_from) // policy.ejection_max)
    if periods <= 0:
        return h
    return replace(h, ejections=max(0, h.ejections - periods),
                   decay_from=h.decay_from + periods * policy.ejection_max)


def flapping(h: Health, policy: Policy, now: float) -> bool:
    n = policy.flap_changes
    return len(h.changes) >= n and now - h.changes[-n] < policy.flap_window


def shown_state(h: Health, policy: Policy, now: float) -> HealthState:
    """The state as the dashboard shows it: FLAPPING overrides UP / DOWN."""
    return FLAPPING if flapping(h, policy, now) else h.state


def last_failure(h: Health) -> str | None:
    failed = [o for o in h.recent if not o.ok]
    return (failed[-1].failure or "failed") if failed else None


def why_not_eligible(h: Health, policy: Policy, now: float) -> str:
    """Why this version cannot be an automatic failover target now ('' when it can)."""
    if flapping(h, policy, now):
        return f"flapping: {policy.flap_changes} state changes within {policy.flap_window:g} s"
    if h.state == DOWN:
        if h.fail_streak:
            return f"{h.fail_streak} consecutive failures: {last_failure(h)}"
        return f"down, recovering: {h.ok_streak} of {policy.rise} successes"
    if h.state == UNKNOWN:
        return "no result yet" if not h.probed else "not up yet"
    if now < h.ejected_until:
        return (f"ejected for {h.ejected_until - now:.0f} s after failing while active "
                f"({h.ejections}x)")
    if h.fail_streak:  # a confirming probe failed or a fall is under way: not a safe target
        return f"last probe failed: {last_failure(h)}"
    return ""


def undecided(h: Health, policy: Policy, now: float) -> bool:
    """Not eligible only because its streak has not settled yet (worth waiting for)."""
    return (h.state in (UP, UNKNOWN) and not flapping(h, policy, now)
            and now >= h.ejected_until)

