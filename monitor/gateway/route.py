"""The route the gateway follows, as data: which version serves, which may take over, and the
epoch that orders routes. Pure functions only (encode, sign, verify, order).

A route travels as one JSON document with an HMAC-SHA256 ``mac`` over its canonical JSON,
keyed by a subkey of the monitor's master key (``Keys.derive("route-feed")``), so a route
file someone else wrote, or one damaged on disk, is refused rather than followed.

Order: a route with a higher ``epoch`` (the engine's switch counter) always wins; within the
same epoch the later ``issued`` wins (the fallbacks change without a switch). A route from an
older epoch is never applied, whatever its ``issued``.

Services: the default service's route has no ``service`` key (the format of a single-service
monitor, so gateways and monitors of different releases agree on it); any other service's
route names its service inside the signed body, so a file renamed into another service's place
is refused. A :class:`Removal` (a signed tombstone: service, epoch, issued) takes a service
out of the gateway; a route issued after it brings the service back, whatever its epoch (a
service added again may start counting anew).

Weights (rollouts): ``weights`` gives a version (the canary) a percent of the requests as
their first choice; the rest go to ``active`` first. No stickiness: each request is chosen
on its own, and its retries still go to the other version.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any

PURPOSE = "route-feed"
MAX_ROUTE_BYTES = 64 * 1024
GOLDEN = 0.6180339887498949  # turn x golden ratio mod 1: an even spread for any weight
DEFAULT_PATH = "books"  # the first path segment of the default service (the book API)
_SERVICE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def valid_service(name: str) -> bool:
    """A DNS label (lowercase letters, digits, inner hyphens, up to 63), other than ``books``
    (``/books`` is the default service's book API): safe as a path segment, a file name and
    an HAProxy backend name."""
    return name != DEFAULT_PATH and _SERVICE_NAME.fullmatch(name) is not None


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
    weights: dict[str, int] = field(default_factory=dict)
    service: str = ""  # empty for the default service

    def first_choice(self, turn: int) -> str:
        """The version request number `turn` goes to first: a weighted version for its
        percent of the turns (spread evenly, not in runs), else the active one."""
        share = (turn * GOLDEN) % 1.0 * 100
        for version, weight in sorted(self.weights.items()):
            if share < weight and version in self.urls:
                return version
            share -= weight
        return self.active

    def candidates(self, turn: int = 0) -> list[tuple[str, str]]:
        """The backends of one request in order; `turn` rotates each version's replicas and
        picks the weighted version's share of requests."""
        first = self.first_choice(turn) if self.weights else self.active
        order = list(dict.fromkeys([first, self.active, *self.fallbacks]))
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
        return (self.epoch, self.active, self.fallbacks, self.urls, self.replicas,
                self.weights, self.service) == (other.epoch, other.active, other.fallbacks,
                                                other.urls, other.replicas, other.weights,
                                                other.service)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"epoch": self.epoch, "active": self.active,
                                "fallbacks": list(self.fallbacks), "urls": dict(self.urls),
                                "issued": self.issued}
        if self.replicas:
            body["replicas"] = {v: list(urls) for v, urls in self.replicas.items()}
        if self.weights:
            body["weights"] = dict(self.weights)
        if self.service:
            body["service"] = self.service
        return body


@dataclass(frozen=True)
class Removal:
    """The monitor took ``service`` away: the gateway stops routing it (404)."""

    service: str
    epoch: int
    issued: float

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "removed": True, "epoch": self.epoch,
                "issued": self.issued}


Entry = Route | Removal


def newer(candidate: Entry, held: Entry | None) -> bool:
    """Whether ``candidate`` replaces ``held``: a higher epoch, or the same epoch issued later;
    after a removal, anything issued later."""
    if held is None:
        return True
    if isinstance(held, Removal):
        return candidate.issued > held.issued
    if candidate.epoch != held.epoch:
        return candidate.epoch > held.epoch
    return candidate.issued > held.issued


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def encode(route: Entry, key: bytes) -> bytes:
    body = route.as_dict()
    mac = hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()
    return _canonical({**body, "mac": mac}) + b"\n"


def decode(raw: bytes, key: bytes) -> Route:
    """The route in ``raw`` if its MAC is right and its shape valid, else RouteError."""
    entry = decode_entry(raw, key)
    if isinstance(entry, Removal):
        raise RouteError(f"service {entry.service} was removed")
    return entry


def decode_entry(raw: bytes, key: bytes) -> Entry:
    """The route or removal in ``raw`` if its MAC is right and its shape valid."""
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
    service = doc.get("service", "")
    if not isinstance(service, str) or (service and not valid_service(service)):
        raise RouteError("route service must be a service name")
    if doc.get("removed") is True:
        return _removal(doc, service)
    return _shape(doc, service)


def _removal(doc: dict[str, Any], service: str) -> Removal:
    epoch, issued = doc.get("epoch"), doc.get("issued")
    if not service:
        raise RouteError("the default service cannot be removed")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0 or \
            not isinstance(issued, int | float) or isinstance(issued, bool):
        raise RouteError("removal epoch and issued must be numbers")
    return Removal(service=service, epoch=epoch, issued=float(issued))


def _shape(doc: dict[str, Any], service: str) -> Route:
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
    weights = doc.get("weights", {})
    if not isinstance(weights, dict) or not all(
            k in urls and isinstance(w, int) and not isinstance(w, bool) and 0 <= w <= 100
            for k, w in weights.items()) or sum(weights.values()) > 100:
        raise RouteError("route weights must map its versions to percents (0-100, sum <= 100)")
    return Route(epoch=epoch, active=active, fallbacks=tuple(fallbacks), urls=dict(urls),
                 issued=float(issued), replicas={k: tuple(v) for k, v in replicas.items()},
                 weights=dict(weights), service=service)
