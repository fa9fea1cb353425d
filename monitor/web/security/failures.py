"""Aggregation of failed logins per source address (pure, `now` in; thread-safe).

The first failure from an address in a window is audited at once (so an alert sees it); the
ones that follow within `window` seconds are only counted, and become ONE audit row with the
count when the window ends. An anonymous client can therefore add at most two rows per window
to the audit log, however fast it sends, instead of one row (and one write-lock hold) per
request. Nothing is dropped: `due` hands back every ended window, `drain` all of them (at
shutdown); past `max_sources` open windows, the oldest are handed back early.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

MAX_ACCOUNTS_LISTED = 20


@dataclass
class Failures:
    """Failed logins from one address in one window (what one audit row says)."""

    source_ip: str
    started: float
    last: float
    count: int = 0
    accounts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    user_agent: str = ""

    def add(self, account: str, reason: str, now: float, user_agent: str) -> None:
        self.count += 1
        self.last = now
        if account in self.accounts or len(self.accounts) < MAX_ACCOUNTS_LISTED:
            self.accounts[account or "-"] += 1
        self.reasons[reason] += 1
        self.user_agent = user_agent

    @property
    def actor(self) -> str:
        return next(iter(self.accounts)) if len(self.accounts) == 1 else "-"

    def reason(self) -> str:
        parts = ", ".join(f"{why} x{n}" for why, n in self.reasons.most_common())
        return f"{self.count} failed login(s) from {self.source_ip or '-'}: {parts}"

    def params(self) -> dict[str, object]:
        return {"count": self.count, "accounts": dict(self.accounts),
                "first_at": self.started, "last_at": self.last, "aggregated": True}


class FailureLog:
    def __init__(self, *, window: float = 60.0, max_sources: int = 1000) -> None:
        self.window = window
        self.max_sources = max_sources
        self._open: dict[str, Failures] = {}  # source ip -> failures after the first
        self._ended: list[Failures] = []  # replaced by a new window before `due` saw them
        self._lock = threading.Lock()

    def record(self, source_ip: str, account: str, reason: str, *, now: float,
               user_agent: str = "") -> bool:
        """Count one failure; True when it opens a window (audit it on its own now)."""
        with self._lock:
            current = self._open.get(source_ip)
            if current is not None and now - current.started < self.window:
                current.add(account, reason, now, user_agent)
                return False
            if current is not None and current.count:
                self._ended.append(current)
            self._open[source_ip] = Failures(source_ip, started=now, last=now)
            return True

    def due(self, now: float) -> list[Failures]:
        """Windows that ended and counted failures after their first (each is one row)."""
        with self._lock:
            ended = [ip for ip, f in self._open.items() if now - f.started >= self.window]
            overflow = max(0, len(self._open) - len(ended) - self.max_sources)
            ended += [ip for ip in self._open if ip not in ended][:overflow]
            closed = self._ended + [self._open.pop(ip) for ip in ended]
            self._ended = []
        return [f for f in closed if f.count]

    def requeue(self, batches: list[Failures]) -> None:
        """Hand back rows that could not be written (a locked database): `due` returns them."""
        with self._lock:
            self._ended.extend(batches)

    def drain(self) -> list[Failures]:
        with self._lock:
            closed = self._ended + list(self._open.values())
            self._open, self._ended = {}, []
        return [f for f in closed if f.count]
