"""Per-attempt timeouts from recent latency, so a hung version costs a client one short wait.

For each version the gateway keeps the latencies of its last answers (at most ``SAMPLES``,
none older than ``MAX_AGE`` seconds). The timeout of an attempt that can still be retried is
``p99 x FACTOR``, bounded to [``floor``, ``ceiling``]; with fewer than ``MIN_SAMPLES``
recent answers it is the ceiling (nothing known yet). Only answers count, never timeouts: a
hung version must not teach the gateway to wait longer for it; once its samples have aged
out it gets the ceiling again and learns afresh. Pure: time is passed in.

Hedging ("The Tail at Scale"): an idempotent request still unanswered after the version's
recent p95 (at least ``hedge_floor``) is sent to the next version too; the first answer wins.
With nothing known there is no hedge (the delay is the ceiling).
"""

from __future__ import annotations

import collections
import math

SAMPLES = 256
MIN_SAMPLES = 16
MAX_AGE = 30.0
FACTOR = 4.0
RECOMPUTE_EVERY = 16


class AttemptTimeouts:
    def __init__(self, *, floor: float = 0.1, ceiling: float = 2.0,
                 hedge_floor: float = 0.05) -> None:
        self.floor = floor
        self.ceiling = ceiling
        self.hedge_floor = hedge_floor
        self._samples: dict[str, collections.deque[tuple[float, float]]] = {}
        # version -> (timeout, hedge delay, computed at, sample count then)
        self._cached: dict[str, tuple[float, float, float, int]] = {}

    def observe(self, version: str, seconds: float, now: float) -> None:
        samples = self._samples.get(version)
        if samples is None:
            samples = self._samples[version] = collections.deque(maxlen=SAMPLES)
        samples.append((now, seconds))

    def quantiles(self, version: str, now: float) -> tuple[float, float] | None:
        """(p95, p99) of the recent answers (nearest rank), None with too few."""
        samples = self._samples.get(version)
        if not samples:
            return None
        while samples and now - samples[0][0] > MAX_AGE:
            samples.popleft()
        if len(samples) < MIN_SAMPLES:
            return None
        ordered = sorted(s for _, s in samples)
        last = len(ordered) - 1
        return (ordered[min(last, math.ceil(0.95 * len(ordered)) - 1)],
                ordered[min(last, math.ceil(0.99 * len(ordered)) - 1)])

    def _values(self, version: str, now: float) -> tuple[float, float]:
        count = len(self._samples.get(version, ()))
        cached = self._cached.get(version)
        if cached is not None and count - cached[3] < RECOMPUTE_EVERY and count >= cached[3] \
                and now - cached[2] < 1.0:
            return cached[0], cached[1]
        known = self.quantiles(version, now)
        if known is None:
            timeout = hedge = self.ceiling
        else:
            timeout = min(self.ceiling, max(self.floor, known[1] * FACTOR))
            hedge = min(timeout, max(self.hedge_floor, known[0]))
        self._cached[version] = (timeout, hedge, now, len(self._samples.get(version, ())))
        return timeout, hedge

    def timeout_for(self, version: str, now: float) -> float:
        """The timeout of a retryable attempt on ``version`` (recomputed every few answers)."""
        return self._values(version, now)[0]

    def hedge_after(self, version: str, now: float) -> float:
        """Seconds after which an unanswered idempotent request is also sent elsewhere."""
        return self._values(version, now)[1]
