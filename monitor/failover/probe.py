"""Readiness probe of one version: `/health` plus a canary query whose content is checked.

A probe never raises: every failure is data (a ProbeResult with a failure class), so the
watchdog can fold it into the engine like any other observation.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from monitor.failover.canary import Canary, book_digest
from monitor.failover.model import Failure, Observation
from monitor.failover.probe_client import Get, lean_getter


@dataclass(frozen=True)
class ProbeResult:
    version: str
    ok: bool
    at: float
    latency_ms: float | None
    status: int | None = None
    failure: Failure | None = None
    detail: str = ""
    # what /health said is injected; None when it could not be read
    faults: dict[str, Any] | None = None

    def observation(self) -> Observation:
        return Observation(version=self.version, ok=self.ok, at=self.at,
                           latency_ms=self.latency_ms, failure=self.failure, status=self.status,
                           detail=self.detail)


class _Failed(Exception):
    def __init__(self, failure: Failure, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.failure, self.detail, self.status = failure, detail, status


async def probe(client: httpx.AsyncClient, version: str, base_url: str, *, now: float,
                timeout: float, canary: Canary, slow_ms: float = 0.0,
                perf: Callable[[], float] = time.perf_counter) -> ProbeResult:
    """Probe one version within `timeout` seconds overall; `now` stamps the result. A client
    with a lean transport (probe_client.ProbeClient) sends both requests over it, without
    httpx's models; any other httpx client is used as it is."""
    started = perf()
    seen: dict[str, Any] = {}
    try:
        get = lean_getter(client, base_url) or _httpx_getter(client, base_url)
        async with asyncio.timeout(timeout):
            await _check_health(get, seen)
            await _check_canary(get, canary)
    except _Failed as failed:
        return ProbeResult(version, False, now, _ms(perf() - started), failed.status,
                           failed.failure, failed.detail, seen.get("faults"))
    except (TimeoutError, httpx.TimeoutException):
        return ProbeResult(version, False, now, _ms(perf() - started), None, Failure.TIMEOUT,
                           f"no answer within {timeout:g}s", seen.get("faults"))
    except httpx.HTTPError as exc:
        return ProbeResult(version, False, now, None, None, Failure.REFUSED,
                           f"{type(exc).__name__}: {exc}"[:300], seen.get("faults"))
    except Exception as exc:  # noqa: BLE001 - any answer we cannot digest is a bad body
        return ProbeResult(version, False, now, _ms(perf() - started), None, Failure.BAD_BODY,
                           f"unreadable answer: {type(exc).__name__}"[:300], seen.get("faults"))
    faults = seen.get("faults")
    latency = _ms(perf() - started)
    if slow_ms and latency > slow_ms:
        return ProbeResult(version, False, now, latency, 200, Failure.SLOW,
                           f"{latency:.0f} ms is above {slow_ms:g} ms", faults)
    return ProbeResult(version, True, now, latency, 200, None, "", faults)


def _httpx_getter(client: httpx.AsyncClient, base_url: str) -> Get:
    async def get(target: str) -> tuple[int, bytes]:
        response = await client.get(f"{base_url}{target}")
        return response.status_code, response.content
    return get


async def _check_health(get: Get, seen: dict[str, Any]) -> None:
    """Check readiness; the faults the body reports go into `seen`, even on failure."""
    status, content = await get("/health")
    body = _json(status, content, "/health")
    faults = body.get("faults") if isinstance(body, dict) else None
    if isinstance(faults, dict):
        seen["faults"] = faults
    if status >= 500:
        raise _Failed(Failure.HTTP_5XX, f"/health answered {status}", status)
    if status != 200 or not isinstance(body, dict) or body.get("status") != "ok":
        raise _Failed(Failure.BAD_BODY, f"/health answered {status} without status ok", status)


async def _check_canary(get: Get, canary: Canary) -> None:
    status, content = await get(canary_target(canary))
    if status >= 500:
        raise _Failed(Failure.HTTP_5XX, f"canary query answered {status}", status)
    body = _json(status, content, "/books")
    items = body.get("items") if isinstance(body, dict) else None
    if status != 200 or not isinstance(items, list):
        raise _Failed(Failure.BAD_BODY, f"canary query answered {status} without items",
                      status)
    if not items or not isinstance(items[0], dict) or items[0].get("id") != canary.book_id:
        raise _Failed(Failure.CORRUPT, f"canary query did not return book {canary.book_id}", 200)
    if book_digest(items[0]) != canary.digest:
        raise _Failed(Failure.CORRUPT,
                      f"book {canary.book_id} content differs from the canary digest", 200)


def canary_target(canary: Canary) -> str:
    """The canary query's path and query string (spaces as %20, as httpx sends them)."""
    return "/books?" + urlencode({"q": canary.query, "limit": 1}, quote_via=quote)


def _json(status: int, content: bytes, path: str) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        raise _Failed(Failure.BAD_BODY, f"{path} answered non-JSON", status) from None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
