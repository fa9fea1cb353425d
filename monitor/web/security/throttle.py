"""Brute-force throttle: failure windows per (account, client IP) and per client IP, with
lock durations that grow on every repeat (pure, `now` in; thread-safe).

Buckets (OWASP "account lockout" guidance, ASVS 6.3):
- `pair` (account, IP): `pair_limit` failures within `window` seconds lock that account *from
  that address only*. An attacker elsewhere can therefore never lock the real operator out;
  a correct password from any address that is not itself throttled gets in.
- `ip`: `ip_limit` failures from one address (guessing many accounts, malformed headers,
  wrong scrape tokens) lock that address.
- A failure without an account (an undecodable header) counts against the address only.
- The scrape token has its own bucket per address (`SCRAPE_ACCOUNT`, apart from the address's
  login bucket): a misconfigured Prometheus neither locks the operators on its host out nor
  is locked out by their typos.

A lock lasts `lock_for * 2**strikes` seconds (capped at `max_lock`), `strikes` being how often
that bucket was locked before within `strike_memory` seconds: 60 s, 120 s, 240 s, ... A success
clears the pair's failures, never the address's (an attacker who knows one password must not
reset the counter for the accounts they are guessing).

A password check is reserved before it runs (`reserve`) and counts against both limits while
in flight, until `settle` turns it into a failure or drops it. So concurrent wrong attempts can
never run more checks than the limit: once failures plus checks in flight reach it, further
attempts are refused (429, retry after `busy_wait`) without a check.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    PAIR = "pair"
    IP = "ip"


Key = tuple[Scope, str, str]  # (scope, account, ip); account "" for the ip scope
SCRAPE_ACCOUNT = "\0scrape-token"  # no user name can contain NUL


@dataclass(frozen=True)
class Locked:
    """A lock that a failure just caused (so the caller audits and notifies exactly once)."""

    scope: Scope
    account: str
    ip: str
    until: float
    seconds: float

    @property
    def key(self) -> str:
        return self.account if self.scope is Scope.PAIR else self.ip

    def describe(self) -> str:
        if self.scope is Scope.PAIR:
            return f"account {self.account!r} from {self.ip or 'an unknown address'}"
        return f"address {self.ip}"


@dataclass(frozen=True, eq=False)
class Attempt:
    """One reserved password check (settle it exactly once)."""

    account: str
    ip: str


class Lockout:
    def __init__(self, *, pair_limit: int = 5, ip_limit: int = 20, window: float = 300.0,
                 lock_for: float = 60.0, max_lock: float = 3600.0,
                 strike_memory: float = 86400.0, max_tracked: int = 10_000,
                 busy_wait: float = 1.0) -> None:
        self.limits = {Scope.PAIR: pair_limit, Scope.IP: ip_limit}
        self.window = window
        self.lock_for = lock_for
        self.max_lock = max_lock
        self.strike_memory = strike_memory
        self.max_tracked = max_tracked
        self.busy_wait = busy_wait
        self._failures: dict[Key, deque[float]] = {}
        self._locked_until: dict[Key, float] = {}
        self._strikes: dict[Key, tuple[int, float]] = {}  # key -> (locks so far, last lock)
        self._pending: dict[Key, int] = {}
        self._lock = threading.Lock()

    def retry_after(self, account: str, ip: str, *, now: float, busy: bool = True) -> float:
        """Seconds until `account` may try again from `ip`; 0 when it may.

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
                self._failures.pop(_pair(attempt.account, attempt.ip), None)
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

    def success(self, account: str, ip: str, *, now: float) -> None:
        with self._lock:
            self._failures.pop(_pair(account, ip), None)

    def _wait(self, keys: list[Key], now: float, *, busy: bool = True) -> float:
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
                seconds = self._lock_duration(key, now)
                self._locked_until[key] = now + seconds
                failures.clear()
                caused.append(Locked(key[0], key[1], key[2], now + seconds, seconds))
        self._prune(now)
        return caused

    def _lock_duration(self, key: Key, now: float) -> float:
        strikes, last = self._strikes.get(key, (0, 0.0))
        if now - last > self.strike_memory:
            strikes = 0
        self._strikes[key] = (strikes + 1, now)
        return min(self.max_lock, self.lock_for * 2 ** min(strikes, 30))

    def _release(self, attempt: Attempt) -> None:
        for key in self._keys(attempt.account, attempt.ip):
            left = self._pending.get(key, 0) - 1
            if left > 0:
                self._pending[key] = left
            else:
                self._pending.pop(key, None)

    @staticmethod
    def _keys(account: str, ip: str) -> list[Key]:
        keys: list[Key] = [_pair(account, ip)] if account else []
        if ip and account != SCRAPE_ACCOUNT:
            keys.append((Scope.IP, "", ip))
        return keys

    def _expire(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self.window:
            failures.popleft()

    def _prune(self, now: float) -> None:
        """Forget stale entries so guessing random user names cannot grow memory forever."""
        if len(self._failures) + len(self._locked_until) + len(self._strikes) \
                <= self.max_tracked:
            return
        for key, until in list(self._locked_until.items()):
            if until <= now:
                del self._locked_until[key]
        for key, failures in list(self._failures.items()):
            self._expire(failures, now)
            if not failures:
                del self._failures[key]
        for key, (_, last) in list(self._strikes.items()):
            if now - last > self.strike_memory or len(self._strikes) > self.max_tracked // 2:
                del self._strikes[key]
        while len(self._failures) > self.max_tracked // 2:
            self._failures.pop(next(iter(self._failures)))


def _pair(account: str, ip: str) -> Key:
    return (Scope.PAIR, account, ip)
