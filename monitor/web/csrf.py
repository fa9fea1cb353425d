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

    Every signal present must agree: `Sec-Fetch-Site` same-origin (or none: typed by the user),
    `Origin` equal to an allowed origin (`null` is refused), and `Referer` likewise when there is
    no Origin. At least one of them is required.
    """
    allowed = {a.lower() for a in allowed}
    site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    referer = headers.get("referer")
    if site is not None and site.lower() not in ALLOWED_FETCH_SITES:
        return f"cross-site request refused (Sec-Fetch-Site: {site})"
    if origin is not None:
        if origin.strip().lower() == "null":
            return "opaque origin refused (Origin: null)"
        if origin_of(origin.strip()) not in allowed:
            return "request from another origin refused"
        return None
    if referer:
        if origin_of(referer) not in allowed:
            return "request from another origin refused (Referer)"
        return None
    if site is None:
        return "origin unknown: no Sec-Fetch-Site, Origin or Referer header"
    return None
