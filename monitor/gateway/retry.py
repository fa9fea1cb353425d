"""The gateway's retry rules (RFC 9110 section 9.2.2), as pure functions.

A failed attempt is described by a :class:`Failure`: its class (what the router is told as
passive evidence) and whether the backend may have received the request. The rules:

- a request that never reached a backend (connection refused, connect timeout, no pooled
  connection free) is retried on the next candidate whatever its method: nothing happened yet;
- a request that may have reached a backend (a 500/502/503/504 answer, a read timeout, the
  connection dropped after sending) is retried only when its method is idempotent, because
  repeating a POST could apply it twice;
- a backend is never tried twice in one request, and retries back off with full jitter.

500 is retried (for idempotent methods) next to 502/503/504, as nginx's
``proxy_next_upstream http_500`` and Envoy's ``retry_on: 5xx`` allow: a version answering 500
to a GET is broken for that request, and another version may serve it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import httpx

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})

# Failure classes, the words the router and the probes use.
REFUSED = "refused"  # never reached the backend
TIMEOUT = "timeout"  # no answer in time
HTTP_5XX = "http_5xx"  # the backend answered 500/502/503/504
RESET = "reset"  # the connection broke after the request was (maybe) sent
BUSY = "busy"  # the gateway's own pool had no free connection: local load, not the backend


@dataclass(frozen=True)
class Failure:
    """One failed attempt: ``kind`` is refused, timeout, http_5xx or reset; ``reached`` says
    whether the backend may have seen the request (then only idempotent methods are retried)."""

    kind: str
    reached: bool
    detail: str = ""


def failure_of_status(status: int) -> Failure | None:
    """The failure a response status means, or None when the response is to be passed on."""
    if status in RETRYABLE_STATUSES:
        return Failure(HTTP_5XX, reached=True, detail=f"HTTP {status}")
    return None


def failure_of_error(exc: BaseException) -> Failure:
    """Classify a transport error. Only errors raised before the request left the gateway
    (connect refused or timed out, pool exhausted) count as not reached; any other error may
    have happened after the backend received the request."""
    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, httpx.PoolTimeout):
        return Failure(BUSY, reached=False, detail=detail)
    if isinstance(exc, httpx.ConnectTimeout):
        return Failure(TIMEOUT, reached=False, detail=detail)
    if isinstance(exc, httpx.ConnectError):
        return Failure(REFUSED, reached=False, detail=detail)
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return Failure(TIMEOUT, reached=True, detail=detail)
    return Failure(RESET, reached=True, detail=detail)


def may_retry(method: str, failure: Failure) -> bool:
    """Whether a request with ``method`` may be sent again after ``failure``."""
    return not failure.reached or method.upper() in IDEMPOTENT_METHODS


def plan(candidates: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The backends one request may try, in order: each base URL at most once (a version with
    several replicas is tried replica by replica before the next version)."""
    seen_urls: set[str] = set()
    out: list[tuple[str, str]] = []
    for version, url in candidates:
        key = url.rstrip("/")
        if key in seen_urls:
            continue
        seen_urls.add(key)
        out.append((version, url))
    return out


def backoff(retry: int, draw: float, *, base: float = 0.01, cap: float = 0.1) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first retry): "full jitter",
    a uniform draw in [0, min(cap, base * 2**retry)]; ``draw`` is a number in [0, 1)."""
    return float(max(0.0, min(1.0, draw)) * min(cap, base * 2.0 ** max(0, retry)))
