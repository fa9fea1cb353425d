"""CSRF defence for the POST forms: an HMAC token bound to the user with an expiry, plus the
browser's own statement of where the request came from (Fetch metadata, Origin, Referer).

Token: `<expiry>.<hex HMAC(csrf key, user NUL login nonce NUL expiry)>`. The login nonce is
per user and rotated by logout (`LoginNonces`), so a token taken from a page before logout is
dead after it. Tokens are compared as bytes (a non-ASCII token is refused, never a 500). Both
checks must pass; each returns the reason for refusing, or None.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

TOKEN_TTL = 8 * 3600.0
ALLOWED_FETCH_SITES = ("same-origin", "none")


_TOKEN = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})")


class LoginNonces:
    """One random nonce per user for this process; `rotate` (logout) kills the user's tokens.
    A restart rotates them all (a page reload fetches a fresh token). Thread-safe."""

    def __init__(self) -> None:
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, user: str) -> str:
        with self._lock:
            return self._nonces.setdefault(user, secrets.token_hex(16))

    def rotate(self, user: str) -> None:
        with self._lock:
            self._nonces[user] = secrets.token_hex(16)


def _mac(key: bytes, user: str, nonce: str, expiry: int) -> bytes:
    message = f"{user}\0{nonce}\0{expiry}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest().encode()


def issue(key: bytes, user: str, *, now: float, nonce: str = "",
          ttl: float = TOKEN_TTL) -> str:
    expiry = int(now + ttl)
    return f"{expiry}.{_mac(key, user, nonce, expiry).decode()}"


def same_bytes(given: str, expected: bytes) -> bool:
    """Constant-time comparison of a client-supplied text with an expected ASCII value; a
    text that is not ASCII simply differs (compare_digest on such str raises TypeError)."""
    try:
        raw = given.encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(raw, expected)


def token_problem(key: bytes, user: str, token: str | None, *, now: float,
                  nonce: str = "") -> str | None:
    if not token:
        return "missing csrf_token"
    match = _TOKEN.fullmatch(token) if token.isascii() else None
    if match is None:
        return "malformed csrf_token"
    expiry = int(match.group(1))
    if not same_bytes(match.group(2), _mac(key, user, nonce, expiry)):
        return "csrf_token was not issued to this user (or the user logged out since)"
    if expiry < now:
        return "csrf_token expired: reload the page"
    return None


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_problem(headers: Mapping[str, str], allowed: Iterable[str]) -> str | None:
    """Refuse unless the browser says the POST comes from this site.

    `Sec-Fetch-Site` (which no page can set) decides when present: same-origin, or none (typed
    by the user), passes. It must be trusted over `Origin: null`, because with our
    `Referrer-Policy: no-referrer` browsers send `Origin: null` even on same-origin form posts.
    A real Origin that names another site still refuses. Without Fetch metadata (older
    clients) an `Origin` or `Referer` of an allowed origin is required, and `Origin: null`
    is refused.
    """
    allowed = {a.lower() for a in allowed}
    site = headers.get("sec-fetch-site")
    origin = (headers.get("origin") or "").strip()
    referer = headers.get("referer")
    foreign_origin = bool(origin) and origin.lower() != "null" and origin_of(origin) not in allowed
    if site is not None:
        if site.lower() not in ALLOWED_FETCH_SITES:
            return f"cross-site request refused (Sec-Fetch-Site: {site[:40]})"
        return "request from another origin refused" if foreign_origin else None
    if origin:
        if origin.lower() == "null":
            return "opaque origin refused (Origin: null)"
        return "request from another origin refused" if foreign_origin else None
    if referer:
        return None if origin_of(referer) in allowed else \
            "request from another origin refused (Referer)"
    return "origin unknown: no Sec-Fetch-Site, Origin or Referer header"
