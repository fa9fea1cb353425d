"""Brute-force lockout: sliding failure windows per account and per client IP (pure, `now` in).

After `account_limit` failures for one user name (or `ip_limit` from one address) within
`window` seconds, that account (or address) is locked for `lock_for` seconds: every attempt
then gets 429 with Retry-After, even with the right password. A success clears the account's
failures, never the address's (an attacker who knows one password must not reset the counter
for the accounts they are guessing).

A password check is reserved before it runs (`reserve`) and counts against both limits while
in flight, until `settle` turns it into a failure or drops it. So concurrent wrong attempts can
never run more checks than the limit: once failures plus checks in flight reach it, further
attempts are refused (429, retry after `busy_wait`) without a check. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Locked:
    """A lock that a failure just caused (so the caller audits and notifies exactly once)."""

    scope: str  # "account" | "ip"
    key: str
    until: float


@dataclass(frozen=True, eq=False)
class Attempt:
    """One reserved password check (settle it exactly once)."""

    account: str
    ip: str


class Lockout:
    def __init__(self, *, account_limit: int = 5, ip_limit: int = 20, window: float = 300.0,
                 lock_for: float = 300.0, max_tracked: int = 10_000,
                 busy_wait: float = 1.0) -> None:
        self.limits = {"account": account_limit, "ip": ip_limit}
        self.window = window
        self.lock_for = lock_for
        self.max_tracked = max_tracked
        self.busy_wait = busy_wait
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._locked_until: dict[tuple[str, str], float] = {}
        self._pending: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def retry_after(self, account: str, ip: str, *, now: float, busy: bool = True) -> float:
        """Seconds until both the account and the address may try again; 0 when they may.

        While failures plus checks in flight fill a limit, that is `busy_wait` (unless
        `busy=False`: for credentials already known good, which need no check)."""
        with self._lock:
            return self._wait(self._keys(account, ip), now, busy=busy)

    def reserve(self, account: str, ip: str, *, now: float) -> Attempt | None:
        """Admit one password check (counted as in flight), or None when it must wait."""
        keys = self._keys(account, ip)
        with self._lock:
            if self._wait(keys, now) > 0:
                return None
            for key in keys:
                self._pending[key] = self._pending.get(key, 0) + 1
        return Attempt(account, ip)

    def settle(self, attempt: Attempt, *, ok: bool, now: float) -> list[Locked]:
        """The reserved check's outcome: a success clears, a failure counts (maybe locks)."""
        with self._lock:
            self._release(attempt)
            if ok:
                self._failures.pop(("account", attempt.account), None)
                return []
            return self._count(attempt.account, attempt.ip, now)

    def release(self, attempt: Attempt) -> None:
        """Forget a reserved check that never finished (it neither failed nor succeeded)."""
        with self._lock:
            self._release(attempt)

    def failure(self, account: str, ip: str, *, now: float) -> list[Locked]:
        """Count one failed login that needed no reservation; return the locks it caused."""
        with self._lock:
            return self._count(account, ip, now)

    def success(self, account: str, *, now: float) -> None:
        with self._lock:
            self._failures.pop(("account", account), None)

    def _wait(self, keys: list[tuple[str, str]], now: float, *, busy: bool = True) -> float:
        wait = 0.0
        for key in keys:
            wait = max(wait, self._locked_until.get(key, 0.0) - now)
            if not busy:
                continue
            failures = self._failures.get(key)
            if failures:
                self._expire(failures, now)
            in_use = len(failures or ()) + self._pending.get(key, 0)
            if in_use >= self.limits[key[0]]:
                wait = max(wait, self.busy_wait)
        return wait

    def _count(self, account: str, ip: str, now: float) -> list[Locked]:
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

    def _release(self, attempt: Attempt) -> None:
        for key in self._keys(attempt.account, attempt.ip):
            left = self._pending.get(key, 0) - 1
            if left > 0:
                self._pending[key] = left
            else:
                self._pending.pop(key, None)

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
