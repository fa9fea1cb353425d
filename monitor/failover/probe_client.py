"""The HTTP client the monitor probes with.

httpcore 1.0.9 leaks a pool slot for good when a request is cancelled while it waits for a
connection of a full pool (encode/httpcore#1093, open): after enough probe timeouts under a
burst, every later probe times out against healthy services and the monitor declares a false
outage. So this pool never makes a request wait: it has no connection limit. The number of
probes in flight is bounded instead by the scheduler (`MONITOR_PROBE_CONCURRENCY`), before a
probe's timeout starts, so waiting for a slot is schedule lag and never a failed probe.
"""

from __future__ import annotations

import ssl

import httpx

KEEPALIVE = 100  # idle keep-alive connections kept across probe cycles


def probe_client(*, timeout: float, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=KEEPALIVE),
        timeout=timeout, verify=verify)
