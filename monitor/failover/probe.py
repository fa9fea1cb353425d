"""Readiness probe of one version: `/health` plus a canary query whose content is checked.

A probe never raises: every failure is data (a ProbeResult with a failure class), so the
watchdog can fold it into the engine like any other observation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from monitor.failover.canary import Canary, book_digest
from monitor.failover.model import Failure, Observation


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
    """Probe one version within `timeout` seconds overall; `now` stamps the result."""
    started = perf()
    seen: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            await _check_health(client, base_url, seen)
            await _check_canary(client, base_url, canary)
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


async def _check_health(client: httpx.AsyncClient, base_url: str,
                        seen: dict[str, Any]) -> None:
    """Check readiness; the faults the body reports go into `seen`, even on failure."""
    response = await client.get(f"{base_url}/health")
    body = _json(response)
    faults = body.get("faults") if isinstance(body, dict) else None
    if isinstance(faults, dict):
        seen["faults"] = faults
    if response.status_code >= 500:
        raise _Failed(Failure.HTTP_5XX, f"/health answered {response.status_code}",
                      response.status_code)
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "ok":
        raise _Failed(Failure.BAD_BODY,
                      f"/health answered {response.status_code} without status ok",
                      response.status_code)


async def _check_canary(client: httpx.AsyncClient, base_url: str, canary: Canary) -> None:
    response = await client.get(f"{base_url}/books", params={"q": canary.query, "limit": 1})
    if response.status_code >= 500:
        raise _Failed(Failure.HTTP_5XX, f"canary query answered {response.status_code}",
                      response.status_code)
    body = _json(response)
    items = body.get("items") if isinstance(body, dict) else None
    if response.status_code != 200 or not isinstance(items, list):
        raise _Failed(Failure.BAD_BODY,
                      f"canary query answered {response.status_code} without items",
                      response.status_code)
    if not items or not isinstance(items[0], dict) or items[0].get("id") != canary.book_id:
        raise _Failed(Failure.CORRUPT, f"canary query did not return book {canary.book_id}", 200)
    if book_digest(items[0]) != canary.digest:
        raise _Failed(Failure.CORRUPT,
                      f"book {canary.book_id} content differs from the canary digest", 200)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise _Failed(Failure.BAD_BODY, f"{response.request.url.path} answered non-JSON",
                      response.status_code) from None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
