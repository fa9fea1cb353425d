"""Which service a request is for: the default one at ``/books``, another one NAME at
``/NAME/books...`` (the prefix stripped), anything else 404.

The default service's book API is checked first and costs what it did with one service; a
prefixed path costs one ``find`` of the second slash and one dict lookup of the first segment
in the services table (name as bytes -> router, kept up to date by
:class:`monitor.gateway.services.ServiceRoutes`). Each service gets a :class:`Lane` of its
own (its router, its versions' latency history, its outcome counts), so equal version names
in two services never mix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from monitor.gateway.timing import AttemptTimeouts

BOOKS = b"/books"
NOT_FOUND = {"error": "not found", "detail": "the gateway forwards only /books"}
NO_SERVICE = {"error": "not found", "detail": "no such service"}


class Router(Protocol):
    def route_candidates(self) -> list[tuple[str, str]]: ...

    def report_gateway_failure(self, version: str, failure: str) -> None: ...


class Metrics(Protocol):
    def gateway_request(self, version: str, outcome: str) -> None: ...


@dataclass(frozen=True)
class Lane:
    """One service as the gateway sees it (``name`` empty for the default one)."""

    name: str
    router: Router
    timeouts: AttemptTimeouts
    metrics: Metrics | None


def book_api(path: bytes) -> bool:
    """``/books`` or ``/books/<one segment>`` (an id, or ``search``), nothing else."""
    if path == BOOKS:
        return True
    rest = path[len(BOOKS) + 1:]
    return path.startswith(BOOKS + b"/") and bool(rest) and b"/" not in rest \
        and b"%2f" not in rest.lower()


class Lanes:
    """The other services' lanes, made on first use and again when a service's router
    changes (a service removed and added again)."""

    def __init__(self, services: Mapping[bytes, Router],
                 metrics: Callable[[str], Metrics] | None,
                 timeouts: Callable[[], AttemptTimeouts]) -> None:
        self.services = services
        self.metrics = metrics
        self.timeouts = timeouts
        self._lanes: dict[bytes, Lane] = {}

    def find(self, path: bytes) -> tuple[Lane, bytes] | dict[str, str]:
        """The service of ``/NAME/books...`` and the path without ``/NAME``, or the 404
        answer for a path that is neither."""
        slash = path.find(b"/", 1)
        rest = path[slash:]
        if slash < 0 or not book_api(rest):
            return NOT_FOUND
        name = path[1:slash]
        router = self.services.get(name)
        if router is None:
            return NO_SERVICE
        lane = self._lanes.get(name)
        if lane is None or lane.router is not router:
            service = name.decode("ascii", "replace")
            lane = Lane(service, router, self.timeouts(),
                        self.metrics(service) if self.metrics else None)
            self._lanes[name] = lane
        return lane, rest
