"""The HTTP client the monitor probes with.

Two costs of one shared httpx pool are avoided here:
- httpcore 1.0.9 leaks a pool slot for good when a request is cancelled while it waits for a
  connection of a full pool (encode/httpcore#1093, open): after enough probe timeouts under a
  burst, every later probe times out against healthy services and the monitor declares a false
  outage. So no pool here ever makes a request wait: pools have no connection limit, and the
  number of probes in flight is bounded by the scheduler (`MONITOR_PROBE_CONCURRENCY`) before a
  probe's timeout starts, so waiting for a slot is schedule lag and never a failed probe.
- httpcore scans every connection of its pool on each request, so one pool shared by N
  targets costs O(N) per probe. Each origin (scheme, host, port) gets its own small pool
  instead: a probe's cost does not grow with the number of targets.
"""

from __future__ import annotations

import ssl

import httpx

KEEPALIVE_PER_ORIGIN = 4  # idle keep-alive connections kept per probed origin


class PerOriginTransport(httpx.AsyncBaseTransport):
    """One keep-alive pool per origin, created on first use."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True) -> None:
        self._verify = verify
        self._pools: dict[tuple[bytes, bytes, int | None], httpx.AsyncHTTPTransport] = {}

    def _pool(self, url: httpx.URL) -> httpx.AsyncHTTPTransport:
        origin = (url.raw_scheme, url.raw_host, url.port)
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = httpx.AsyncHTTPTransport(
                verify=self._verify,
                limits=httpx.Limits(max_connections=None,
                                    max_keepalive_connections=KEEPALIVE_PER_ORIGIN))
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def probe_client(*, timeout: float, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=PerOriginTransport(verify=verify), timeout=timeout)
