"""Per-attempt timeouts from recent latency, so a hung version costs a client one short wait.

For each version the gateway keeps the latencies of its last answers (at most ``SAMPLES``,
none older than ``MAX_AGE`` seconds). The timeout of an attempt that can still be retried is
``p99 x FACTOR``, bounded to [``floor``, ``ceiling``]; with fewer than ``MIN_SAMPLES``
recent answers it is the ceiling (nothing known yet). Only answers count, never timeouts: a
hung version must not teach the gateway to wait longer for it; once its samples have aged
out it gets the ceiling again and learns afresh. Pure: time is passed in.
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
    def __init__(self, *, floor: float = 0.1, ceiling: float = 2.0) -> None:
        self.floor = floor
        self.ceiling = ceiling
        self._samples: dict[str, collections.deque[tuple[float, float]]] = {}
        self._cached: dict[str, tuple[float, float, int]] = {}  # version -> (timeout, at, n)

    def observe(self, version: str, seconds: float, now: float) -> None:
        samples = self._samples.get(version)
        if samples is None:
            samples = self._samples[version] = collections.deque(maxlen=SAMPLES)
        samples.append((now, seconds))

    def p99(self, version: str, now: float) -> float | None:
        samples = self._samples.get(version)
        if not samples:
            return None
        while samples and now - samples[0][0] > MAX_AGE:
            samples.popleft()
        if len(samples) < MIN_SAMPLES:
            return None
        ordered = sorted(s for _, s in samples)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]

    def timeout_for(self, version: str, now: float) -> float:
        """The timeout of a retryable attempt on ``version`` (recomputed every few answers)."""
        count = len(self._samples.get(version, ()))
        cached = self._cached.get(version)
        if cached is not None and count - cached[2] < RECOMPUTE_EVERY and count >= cached[2] \
                and now - cached[1] < 1.0:
            return cached[0]
        p99 = self.p99(version, now)
        value = self.ceiling if p99 is None else min(self.ceiling, max(self.floor, p99 * FACTOR))
        self._cached[version] = (value, now, len(self._samples.get(version, ())))
        return value
