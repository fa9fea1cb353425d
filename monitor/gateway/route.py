"""The route the gateway follows, as data: which version serves, which may take over, and the
epoch that orders routes. Pure functions only (encode, sign, verify, order).

A route travels as one JSON document with an HMAC-SHA256 ``mac`` over its canonical JSON,
keyed by a subkey of the monitor's master key (``Keys.derive("route-feed")``), so a route
file someone else wrote, or one damaged on disk, is refused rather than followed.

Order: a route with a higher ``epoch`` (the engine's switch counter) always wins; within the
same epoch the later ``issued`` wins (the fallbacks change without a switch). A route from an
older epoch is never applied, whatever its ``issued``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

PURPOSE = "route-feed"
MAX_ROUTE_BYTES = 64 * 1024


class RouteError(ValueError):
    """A route document that must not be followed (bad JSON, bad shape, bad MAC)."""


@dataclass(frozen=True)
class Route:
    """``active`` first, then ``fallbacks`` (UP versions in priority order); ``urls`` maps
    every version named to its base URL; ``issued`` is the publisher's clock in seconds.
    ``replicas`` lists, for a version with several ready replicas, their base URLs: requests
    are spread over them round-robin, and a retry goes to the next replica first, then to the
    next version."""

    epoch: int
    active: str
    fallbacks: tuple[str, ...]
    urls: dict[str, str]
    issued: float
    replicas: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def candidates(self, turn: int = 0) -> list[tuple[str, str]]:
        """The backends of one request in order; `turn` rotates each version's replicas."""
        order = [self.active, *[v for v in self.fallbacks if v != self.active]]
        out: list[tuple[str, str]] = []
        for version in order:
            spread = self.replicas.get(version)
            if spread:
                start = turn % len(spread)
                out.extend((version, url) for url in spread[start:] + spread[:start])
            elif version in self.urls:
                out.append((version, self.urls[version]))
        return out

    def same_path(self, other: Route) -> bool:
        """True when both send requests the same way (only ``issued`` may differ)."""
        return (self.epoch, self.active, self.fallbacks, self.urls, self.replicas) == \
            (other.epoch, other.active, other.fallbacks, other.urls, other.replicas)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"epoch": self.epoch, "active": self.active,
                                "fallbacks": list(self.fallbacks), "urls": dict(self.urls),
                                "issued": self.issued}
        if self.replicas:
            body["replicas"] = {v: list(urls) for v, urls in self.replicas.items()}
        return body


def newer(candidate: Route, held: Route | None) -> bool:
    """Whether ``candidate`` replaces ``held``: a higher epoch, or the same epoch issued later."""
    if held is None:
        return True
    if candidate.epoch != held.epoch:
        return candidate.epoch > held.epoch
    return candidate.issued > held.issued


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def encode(route: Route, key: bytes) -> bytes:
    body = route.as_dict()
    mac = hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()
    return _canonical({**body, "mac": mac}) + b"\n"


def decode(raw: bytes, key: bytes) -> Route:
    """The route in ``raw`` if its MAC is right and its shape valid, else RouteError."""
    if len(raw) > MAX_ROUTE_BYTES:
        raise RouteError(f"route document larger than {MAX_ROUTE_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise RouteError(f"route document is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("mac"), str):
        raise RouteError("route document without a mac")
    mac = doc.pop("mac")
    expected = hmac.new(key, _canonical(doc), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        raise RouteError("route document mac does not match (wrong key or altered)")
    return _shape(doc)


def _shape(doc: dict[str, Any]) -> Route:
    epoch, active, fallbacks = doc.get("epoch"), doc.get("active"), doc.get("fallbacks")
    urls, issued = doc.get("urls"), doc.get("issued")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise RouteError("route epoch must be a non-negative integer")
    if not isinstance(urls, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.startswith(("http://", "https://"))
            for k, v in urls.items()):
        raise RouteError("route urls must map version names to http(s) URLs")
    if not isinstance(active, str) or active not in urls:
        raise RouteError("route active version must be one of its urls")
    if not isinstance(fallbacks, list) or not all(
            isinstance(v, str) and v in urls for v in fallbacks):
        raise RouteError("route fallbacks must be versions named in its urls")
    if not isinstance(issued, int | float) or isinstance(issued, bool):
        raise RouteError("route issued must be a number")
    replicas = doc.get("replicas", {})
    if not isinstance(replicas, dict) or not all(
            k in urls and isinstance(v, list) and all(
                isinstance(u, str) and u.startswith(("http://", "https://")) for u in v)
            for k, v in replicas.items()):
        raise RouteError("route replicas must map its versions to lists of http(s) URLs")
    return Route(epoch=epoch, active=active, fallbacks=tuple(fallbacks), urls=dict(urls),
                 issued=float(issued), replicas={k: tuple(v) for k, v in replicas.items()})
