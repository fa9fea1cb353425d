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

Probes themselves skip httpx: a :class:`ProbeClient` carries the gateway's lean keep-alive
transport (monitor.gateway.transport: asyncio Protocols, httptools, no httpx models), and
:func:`lean_getter` sends a probe's two GETs over it, which costs a fraction of httpx's CPU per
request. Its per-origin pools are bounded far above the one probe in flight per version, and
a request cancelled while it waits for a slot leaves nothing behind (an asyncio semaphore).
Everything else the monitor sends (chaos, replicas, canary pinning) goes through httpx.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType

import httpx

from monitor.gateway.transport import UpstreamTransport
from monitor.gateway.wire import Origin, serialize

KEEPALIVE_PER_ORIGIN = 4  # idle keep-alive connections kept per probed origin
LEAN_PER_ORIGIN = 16  # connections per origin of the lean transport (one probe per version)
LEAN_KEEPALIVE_S = 4.0  # an idle probe connection is reused for this long (servers close at 5)
MAX_BODY = 1024 * 1024  # the largest probe answer read; a larger one is a bad body
NO_TIMERS = {"pool": None, "connect": None, "write": None, "read": None, "body": None}
ACCEPT = [(b"accept", b"application/json"), (b"user-agent", b"failover-monitor-probe")]
MAX_GETTERS = 10_000  # base URLs (and request targets) remembered
Get = Callable[[str], Awaitable[tuple[int, bytes]]]  # target ("/health") -> (status, body)


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


class ProbeClient(httpx.AsyncClient):
    """An httpx client whose probes go over `lean` (see lean_getter)."""

    def __init__(self, *, timeout: float, verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(transport=PerOriginTransport(verify=verify), timeout=timeout)
        context = verify if isinstance(verify, ssl.SSLContext) else \
            httpx.create_ssl_context(verify=verify)
        self.lean = UpstreamTransport(max_connections=LEAN_PER_ORIGIN,
                                      keepalive_expiry=LEAN_KEEPALIVE_S, ssl_context=context)
        self._getters: dict[str, Get] = {}

    def getter(self, base_url: str) -> Get:
        """GET under `base_url` over the lean transport (made once per base URL)."""
        get = self._getters.get(base_url)
        if get is None:
            if len(self._getters) >= MAX_GETTERS:  # URLs change with revisions: stay bounded
                self._getters.clear()
            get = self._getters[base_url] = _lean_get(self.lean, Origin.parse(base_url))
        return get

    async def aclose(self) -> None:
        await self.lean.aclose()
        await super().aclose()

    async def __aexit__(self, exc_type: type[BaseException] | None = None,
                        exc_value: BaseException | None = None,
                        traceback: TracebackType | None = None) -> None:
        await self.lean.aclose()
        await super().__aexit__(exc_type, exc_value, traceback)


def probe_client(*, timeout: float, verify: ssl.SSLContext | bool = True) -> ProbeClient:
    return ProbeClient(timeout=timeout, verify=verify)


def lean_getter(client: httpx.AsyncClient, base_url: str) -> Get | None:
    """GET over the client's lean transport, or None when it has none. The caller bounds the
    whole exchange in time; failures are httpx's exceptions, as with httpx."""
    return client.getter(base_url) if isinstance(client, ProbeClient) else None


def _lean_get(lean: UpstreamTransport, origin: Origin) -> Get:
    requests: dict[str, bytes] = {}  # target -> the request's bytes (two targets per version)

    async def get(target: str) -> tuple[int, bytes]:
        data = requests.get(target)
        if data is None:
            data = serialize("GET", origin.prefix + target.encode(), origin.authority, ACCEPT,
                             b"")
            if len(requests) < MAX_GETTERS:
                requests[target] = data
        answer = await lean.send(origin, "GET", data, NO_TIMERS, small=MAX_BODY)
        if answer.content is not None:
            return answer.status_code, answer.content
        parts, size = [], 0
        try:
            async for chunk in answer.aiter_raw():
                size += len(chunk)
                if size > MAX_BODY:
                    raise ValueError(f"answer larger than {MAX_BODY} bytes")
                parts.append(chunk)
        finally:
            await answer.aclose()
        return answer.status_code, b"".join(parts)
    return get
