"""What the monitor's runtime offers the data plane about services other than the default, in
one place, whether or not the runtime knows several services.

A runtime that watches several services has ``service_routes()``: per service name (the
default one under its own name, ``books`` unless a spec names it) ``(epoch, candidates active
first, urls)``. Each such service with a valid name other than ``books`` gets its own route
file (:mod:`monitor.gateway.feed`); a default named otherwise is therefore reachable both at
``/books`` and at ``/NAME/books``. A runtime without it publishes the default route alone.

Passive evidence for another service goes to ``report_gateway_failure(version, failure,
service=NAME)`` when the runtime accepts ``service``, else it is dropped (debug log): charging
it to a default version of the same name would be wrong. Outcome counts of other services are
dropped the same way (the metrics have no service label yet).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from monitor.gateway.evidence import Counts
from monitor.gateway.feed import route_from
from monitor.gateway.route import DEFAULT_PATH, Route, valid_service

log = logging.getLogger(__name__)

Offered = Mapping[str, tuple[int, list[tuple[str, str]], Mapping[str, str]]]


class Reporter(Protocol):
    def report_gateway_failure(self, version: str, failure: str) -> None: ...


def other_services(runtime: object, clock: Callable[[], float]
                   ) -> Callable[[], dict[str, Route]] | None:
    """The routes of the services other than ``books``, or None for a one-service runtime."""
    offer: Callable[[], Offered] | None = getattr(runtime, "service_routes", None)
    if offer is None:
        return None
    refused: set[str] = set()

    def routes() -> dict[str, Route]:
        out: dict[str, Route] = {}
        for name, (epoch, candidates, urls) in offer().items():
            if valid_service(name) and urls:
                out[name] = route_from(epoch, candidates, urls, clock())
            elif name != DEFAULT_PATH and name not in refused:
                refused.add(name)
                log.warning("service %r is not routed by the gateway: its name is not a DNS "
                            "label or it has no versions", name)
        return out
    return routes


def service_evidence(runtime: Reporter) -> Callable[[str, str, str], None]:
    """``(service, version, failure)`` into the runtime, or dropped when it takes no service."""
    report = runtime.report_gateway_failure
    try:
        accepts = "service" in inspect.signature(report).parameters
    except (TypeError, ValueError):
        accepts = False

    def on_service_report(service: str, version: str, failure: str) -> None:
        if accepts:
            report(version, failure, service=service)  # type: ignore[call-arg]
        else:
            log.debug("gateway evidence for service %s dropped: the monitor routes one service",
                      service)
    return on_service_report


def drop_counts(service: str, counts: Counts) -> None:
    log.debug("gateway outcome counts of service %s dropped (%d rows)", service, len(counts))
