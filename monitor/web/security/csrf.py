"""CSRF defence for the POST forms: an HMAC token bound to the user with an expiry, plus the
browser's own statement of where the request came from (Fetch metadata, Origin, Referer).

Token: `<expiry>.<hex HMAC(csrf key, user NUL expiry)>`. Both checks must pass; each returns
the reason for refusing, or None.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

TOKEN_TTL = 8 * 3600.0
ALLOWED_FETCH_SITES = ("same-origin", "none")


def _mac(key: bytes, user: str, expiry: int) -> str:
    return hmac.new(key, f"{user}\0{expiry}".encode(), hashlib.sha256).hexdigest()


def issue(key: bytes, user: str, *, now: float, ttl: float = TOKEN_TTL) -> str:
    expiry = int(now + ttl)
    return f"{expiry}.{_mac(key, user, expiry)}"


def token_problem(key: bytes, user: str, token: str | None, *, now: float) -> str | None:
    if not token:
        return "missing csrf_token"
    expiry_text, _, mac = token.partition(".")
    if not expiry_text.isdigit() or len(expiry_text) > 12 or not mac:
        return "malformed csrf_token"
    expiry = int(expiry_text)
    if not hmac.compare_digest(mac, _mac(key, user, expiry)):
        return "csrf_token was not issued to this user"
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
