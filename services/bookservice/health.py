"""Readiness and liveness: GET /health and GET /health/live."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.bookservice.service import Service


def health_report(service: Service) -> tuple[int, dict[str, Any]]:
    """Status code and body of /health.

    Ready (200, "ok") unless the live catalog no longer matches the checksum taken at load or
    a flap is in its down phase (503, "fail", with ``reasons``). A *silent* corruption lies on
    purpose: it reports the expected checksum as verified, which only a canary check catches.
    """
    now = service.now()
    catalog = service.catalog
    corrupt = service.faults.corrupt
    if corrupt is not None and corrupt.silent:
        reported, verified = catalog.expected_checksum, True
    else:
        reported = catalog.current_checksum()
        verified = reported == catalog.expected_checksum
    reasons = []
    if not verified:
        reasons.append("catalog checksum mismatch")
    if service.faults.flap_down(now):
        reasons.append("flap: down phase")
    body: dict[str, Any] = {
        "status": "fail" if reasons else "ok",
        "version": service.version,
        "catalog_checksum": reported,
        "checksum_verified": verified,
        "uptime_s": round(now - service.started_at, 3),
        "cpu_percent": service.process.cpu_percent(interval=None),
        "rss_bytes": service.process.memory_info().rss,
        "faults": service.faults.describe(now),
    }
    if reasons:
        body["reasons"] = reasons
    return (503 if reasons else 200), body


def health_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> JSONResponse:
        status, body = health_report(service)
        return JSONResponse(body, status_code=status)

    @router.get("/health/live")
    async def live() -> dict:
        return {"status": "ok"}

    return router
