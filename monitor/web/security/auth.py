"""HTTP Basic authentication against the user table, with Argon2id and a short success cache.

Work is constant per attempt: an unknown or disabled user is still checked against a hash (a
dummy one for unknown users), so timing does not tell which names exist. A successful check is
remembered for `ttl` seconds under HMAC(auth-cache key, user:password), so Argon2 does not run
on every request; the entry is only used while the user's stored hash is unchanged and the
user is enabled, which also covers changes made by the CLI in another process.

A name that is not a user is never stored as typed (it may be a password typed into the wrong
field): audit rows, lockout keys and notices name it `unknown:<12 hex of HMAC(key, name)>`,
stable so that repeated attempts still correlate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from monitor.storage.store import Store, User
from monitor.storage.users import Hasher, get_user

REALM = "Secure Failover Monitor"
UNKNOWN_PREFIX = "unknown:"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'


@dataclass(frozen=True)
class Credentials:
    name: str
    password: str


@dataclass(frozen=True)
class Principal:
    """Who is making a request once authenticated (or the anonymous caller of public routes)."""

    name: str
    role: str


ANONYMOUS = Principal("anonymous", "anonymous")


@dataclass(frozen=True)
class Verdict:
    principal: Principal | None
    reason: str = ""  # why it failed: unknown user, wrong password, account disabled

    @property
    def ok(self) -> bool:
        return self.principal is not None


class BadCredentials(ValueError):
    """The Authorization header is Basic but cannot be decoded."""


def parse_basic(header: str | None) -> Credentials | None:
    """Credentials from an `Authorization: Basic` header (UTF-8), None when there is none."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadCredentials("credentials are not base64 of UTF-8 text") from None
    name, sep, password = decoded.partition(":")
    if not sep or not name:
        raise BadCredentials("credentials lack a user name")
    return Credentials(name=name, password=password)


def bearer_token(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def unknown_account(key: bytes, name: str) -> str:
    """How a name that is no user appears in audit rows, lockout keys and notices."""
    digest = hmac.new(key, name.encode(), hashlib.sha256).hexdigest()
    return f"{UNKNOWN_PREFIX}{digest[:12]}"


@dataclass(frozen=True)
class Lookup:
    """What one database read tells about credentials, before any password check."""

    account: str  # the user's name, or unknown:<digest> for a name that is no user
    user: User | None
    cached: Verdict | None = None  # a remembered success that still holds


@dataclass
class _Entry:
    name: str
    password_hash: str
    expires: float


class Authenticator:
    """Checks credentials. Blocking (Argon2, SQLite): call it from a worker thread."""

    def __init__(self, store: Store, cache_key: bytes, *, hasher: Hasher,
                 clock: Callable[[], float], ttl: float = 60.0, max_entries: int = 1024) -> None:
        self.store = store
        self.cache_key = cache_key
        self.hasher = hasher
        self.clock = clock
        self.ttl = ttl
        self.max_entries = max_entries
        self.dummy_hash = hasher.hash(secrets.token_urlsafe(24))
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def check(self, credentials: Credentials) -> Verdict:
        """`lookup` then, unless a remembered success holds, `verify`."""
        found = self.lookup(credentials)
        return found.cached or self.verify(credentials, found)

    def lookup(self, credentials: Credentials) -> Lookup:
        """The user and a still valid remembered success (one SQLite read, no Argon2)."""
        user = get_user(self.store, credentials.name)
        account = user.name if user else unknown_account(self.cache_key, credentials.name)
        key = self._cache_key(credentials)
        now = self.clock()
        with self._lock:
            entry = self._cache.get(key)
        if entry and user and not user.disabled and entry.expires > now \
                and entry.name == user.name and entry.password_hash == user.password_hash:
            return Lookup(account, user, Verdict(Principal(user.name, user.role)))
        if entry:
            self._drop(key)
        return Lookup(account, user)

    def verify(self, credentials: Credentials, found: Lookup) -> Verdict:
        """The Argon2 check (against a dummy hash for an unknown user: same work)."""
        user = found.user
        matches = self._verify(user.password_hash if user else self.dummy_hash,
                               credentials.password)
        if user is None:
            return Verdict(None, "unknown user")
        if not matches:
            return Verdict(None, "wrong password")
        if user.disabled:
            return Verdict(None, "account disabled")
        key = self._cache_key(credentials)
        now = self.clock()
        self._remember(key, _Entry(user.name, user.password_hash, now + self.ttl), now)
        return Verdict(Principal(user.name, user.role))

    def forget(self, name: str) -> None:
        """Drop cached successes of `name` (after a password change or disabling)."""
        with self._lock:
            for key in [k for k, e in self._cache.items() if e.name == name]:
                del self._cache[key]

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(password_hash, password))
        except Exception:  # noqa: BLE001 - argon2 raises several kinds; all mean "no"
            return False

    def _cache_key(self, credentials: Credentials) -> str:
        message = f"{credentials.name}:{credentials.password}".encode()
        return hmac.new(self.cache_key, message, hashlib.sha256).hexdigest()

    def _remember(self, key: str, entry: _Entry, now: float) -> None:
        with self._lock:
            if len(self._cache) >= self.max_entries:
                for stale in [k for k, e in self._cache.items() if e.expires <= now]:
                    del self._cache[stale]
                while len(self._cache) >= self.max_entries:
                    self._cache.pop(next(iter(self._cache)))
            self._cache[key] = entry

    def _drop(self, key: str) -> None:
        with self._lock:
            self._cache.pop(key, None)
