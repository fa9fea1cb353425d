"""How the gateway spreads requests over the replicas of a version, as a pure function.

The route lists a version's ready replicas already rotated for this request (round-robin:
:meth:`monitor.gateway.route.Route.candidates`). With least-outstanding, each run of one
version's replicas is then ordered by the requests this gateway process has in flight to
each of them, fewest first; the rotation breaks ties, so idle replicas still take turns.
Versions keep their order (the active one first): balancing never crosses a failover
boundary. Counts are per gateway process (each SO_REUSEPORT worker counts its own), as in
nginx's ``least_conn`` without a shared zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Balance(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_OUTSTANDING = "least_outstanding"


def order(backends: list[tuple[str, str]], balance: Balance,
          outstanding: Mapping[str, int]) -> list[tuple[str, str]]:
    """``backends`` (version, base URL) in the order one request tries them."""
    if balance is Balance.ROUND_ROBIN or len(backends) < 2:
        return backends
    out: list[tuple[str, str]] = []
    start = 0
    while start < len(backends):
        end = start + 1
        while end < len(backends) and backends[end][0] == backends[start][0]:
            end += 1
        group = backends[start:end]
        if len(group) > 1:
            group.sort(key=lambda backend: outstanding.get(backend[1], 0))  # stable
        out.extend(group)
        start = end
    return out
