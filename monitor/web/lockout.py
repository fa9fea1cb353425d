"""Brute-force lockout: sliding failure windows per account and per client IP (pure, `now` in).

After `account_limit` failures for one user name (or `ip_limit` from one address) within
`window` seconds, that account (or address) is locked for `lock_for` seconds: every attempt
then gets 429 with Retry-After, even with the right password. A success clears the account's
failures, never the address's (an attacker who knows one password must not reset the counter
for the accounts they are guessing).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Locked:
    """A lock that a failure just caused (so the caller audits and notifies exactly once)."""

    scope: str  # "account" | "ip"
    key: str
    until: float


class Lockout:
    def __init__(self, *, account_limit: int = 5, ip_limit: int = 20, window: float = 300.0,
                 lock_for: float = 300.0, max_tracked: int = 10_000) -> None:
        self.limits = {"account": account_limit, "ip": ip_limit}
        self.window = window
        self.lock_for = lock_for
        self.max_tracked = max_tracked
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._locked_until: dict[tuple[str, str], float] = {}

    def retry_after(self, account: str, ip: str, *, now: float) -> float:
        """Seconds until both the account and the address may try again; 0 when not locked."""
        waits = [self._locked_until.get(key, 0.0) - now for key in self._keys(account, ip)]
        return max(0.0, *waits)

    def failure(self, account: str, ip: str, *, now: float) -> list[Locked]:
        """Count one failed login; return the locks it caused (empty when none)."""
        caused = []
        for key in self._keys(account, ip):
            if self._locked_until.get(key, 0.0) > now:
                continue
            failures = self._failures.setdefault(key, deque())
            failures.append(now)
            self._expire(failures, now)
            if len(failures) >= self.limits[key[0]]:
                until = now + self.lock_for
                self._locked_until[key] = until
                failures.clear()
                caused.append(Locked(scope=key[0], key=key[1], until=until))
        self._prune(now)
        return caused

    def success(self, account: str, *, now: float) -> None:
        self._failures.pop(("account", account), None)

    def _keys(self, account: str, ip: str) -> list[tuple[str, str]]:
        keys = [("account", account)]
        if ip:
            keys.append(("ip", ip))
        return keys

    def _expire(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self.window:
            failures.popleft()

    def _prune(self, now: float) -> None:
        """Forget stale entries so guessing random user names cannot grow memory forever."""
        if len(self._failures) + len(self._locked_until) <= self.max_tracked:
            return
        for key, until in list(self._locked_until.items()):
            if until <= now:
                del self._locked_until[key]
        for key, failures in list(self._failures.items()):
            self._expire(failures, now)
            if not failures:
                del self._failures[key]
        while len(self._failures) > self.max_tracked // 2:
            self._failures.pop(next(iter(self._failures)))
