"""Chaos routes under /chaos, behind a bearer token.

With no token configured every call is refused (403). Bodies are validated with bounds; a
rejected call (401, 403, 422) changes nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from services.bookservice.faults import (
    CorruptFault,
    CpuFault,
    ErrorFault,
    FlapFault,
    HangFault,
    LatencyFault,
)
from services.bookservice.service import Service

log = logging.getLogger(__name__)

CRASH_DELAY_S = 0.1


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _whole(value: object) -> object:
    """1600.0 is an integer to JSON Schema (and JSON): accept it, still refuse 1600.5."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole)]


class CpuIn(_Body):
    seconds: float = Field(ge=1, le=60)
    workers: WholeNumber = Field(1, ge=1, le=2)


class LatencyIn(_Body):
    ms: WholeNumber = Field(ge=0, le=10_000)
    jitter_ms: WholeNumber = Field(0, ge=0, le=5_000)


class ErrorsIn(_Body):
    probability: float = Field(ge=0, le=1)


class CorruptIn(_Body):
    silent: bool = False


class FlapIn(_Body):
    period_s: float = Field(ge=1, le=300)


def is_chaos_path(path: str) -> bool:
    return path == "/chaos" or path.startswith("/chaos/")


def token_check(expected: str | None):
    """Dependency: 403 when chaos is disabled, 401 unless ``Authorization: Bearer <token>``."""
    expected_bytes = expected.encode() if expected else None

    async def check(authorization: Annotated[str | None, Header()] = None) -> None:
        if expected_bytes is None:
            raise HTTPException(status_code=403, detail="chaos disabled")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected_bytes
        ):
            raise HTTPException(
                status_code=401,
                detail="missing or invalid chaos token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def chaos_router(service: Service) -> APIRouter:
    router = APIRouter(
        prefix="/chaos", tags=["chaos"], dependencies=[Depends(token_check(service.chaos_token))]
    )
    faults = service.faults

    def active() -> dict:
        return {"version": service.version, "faults": faults.describe(service.now())}

    def injected(kind: str, params: dict) -> dict:
        log.warning("chaos: %s injected on %s %s", kind, service.version, params)
        return active()

    @router.get("")
    async def show() -> dict:
        return active()

    @router.post("/cpu")
    async def cpu(body: CpuIn) -> dict:
        faults.cpu = CpuFault(seconds=body.seconds, workers=body.workers, since=service.now())
        service.burner.start(body.seconds, body.workers)
        return injected("cpu", body.model_dump())

    @router.post("/latency")
    async def latency(body: LatencyIn) -> dict:
        faults.latency = LatencyFault(ms=body.ms, jitter_ms=body.jitter_ms, since=service.now())
        return injected("latency", body.model_dump())

    @router.post("/errors")
    async def errors(body: ErrorsIn) -> dict:
        faults.errors = ErrorFault(probability=body.probability, since=service.now())
        return injected("errors", body.model_dump())

    @router.post("/corrupt")
    async def corrupt(body: CorruptIn) -> dict:
        service.catalog.corrupt()
        faults.corrupt = CorruptFault(silent=body.silent, since=service.now())
        return injected("corrupt", body.model_dump())

    @router.post("/hang")
    async def hang() -> dict:
        faults.hang = HangFault(since=service.now())
        return injected("hang", {})

    @router.post("/flap")
    async def flap(body: FlapIn) -> dict:
        faults.flap = FlapFault(period_s=body.period_s, since=service.now())
        return injected("flap", body.model_dump())

    @router.post("/crash", status_code=202)
    async def crash() -> dict:
        log.warning(
            "chaos: crash requested on %s, exiting in %.1fs", service.version, CRASH_DELAY_S
        )
        asyncio.get_running_loop().call_later(CRASH_DELAY_S, service.exit_process, 1)
        return {"version": service.version, "status": "crashing", "exit_in_s": CRASH_DELAY_S}

    @router.post("/reset")
    async def reset() -> dict:
        service.reset()
        log.warning("chaos: reset on %s", service.version)
        return active()

    return router
