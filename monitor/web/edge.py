"""The dashboard's connection edge: limits uvicorn does not have (slow-request floods).

uvicorn gives a fresh connection unlimited time to send its request headers, and any number of
connections per client. A slowloris client (headers dribbled a byte at a time, or a connection
that sends nothing) therefore holds a socket and a file descriptor for as long as it likes,
and enough of them exhaust the process's descriptors: nobody else gets in. This protocol class
adds, per connection:
- a header deadline (`MONITOR_DASHBOARD_HEADER_TIMEOUT`): from the connection (or the first
  byte of each next request) to the end of the request's headers; missed, the connection is
  closed;
- a cap on open connections per client IP (`MONITOR_DASHBOARD_CONNS_PER_IP`): one above it is
  closed at once, so a flood from one address never crowds out the operators' (addresses of
  `MONITOR_TRUSTED_PROXIES` are exempt: every client comes through them).
Idle keep-alive connections are closed by uvicorn's own `timeout_keep_alive`.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from monitor.config import Settings


@dataclass(frozen=True)
class EdgeLimits:
    header_timeout: float = 10.0
    per_ip: int = 64
    exempt: frozenset[str] = frozenset()


def guarded_protocol(limits: EdgeLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the limits above (one counter per server)."""
    open_per_ip: collections.Counter[str] = collections.Counter()

    class Guarded(HttpToolsProtocol):
        _ip = ""
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            ip = self.client[0] if self.client else ""
            if ip not in limits.exempt:
                if open_per_ip[ip] >= limits.per_ip:
                    transport.close()
                    return
                open_per_ip[ip] += 1
                self._ip = ip
            self._arm()

        def on_message_begin(self) -> None:
            self._arm()
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._ip:
                open_per_ip[self._ip] -= 1
                if open_per_ip[self._ip] <= 0:
                    del open_per_ip[self._ip]
                self._ip = ""
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(limits.header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            self.transport.close()

    return Guarded


def edge_protocol(settings: Settings) -> type[HttpToolsProtocol]:
    """The dashboard's protocol with a header deadline and a per-IP connection cap."""
    return guarded_protocol(EdgeLimits(header_timeout=settings.dashboard_header_timeout,
                                       per_ip=settings.dashboard_conns_per_ip,
                                       exempt=frozenset(settings.trusted_proxies)))
