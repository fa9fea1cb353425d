"""Client for the book services' chaos endpoints (bearer token shared with the services)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx


class Fault(StrEnum):
    """The services' chaos faults (DESIGN §4); `reset` clears them all."""

    CPU = "cpu"
    LATENCY = "latency"
    ERRORS = "errors"
    CORRUPT = "corrupt"
    HANG = "hang"
    CRASH = "crash"
    FLAP = "flap"
    RESET = "reset"
    KILL = "kill"  # SIGKILL replica processes: done by the monitor, not by the service


KILL = Fault.KILL
FAULTS = tuple(Fault)


@dataclass(frozen=True)
class ChaosOutcome:
    ok: bool
    status: int | None
    message: str
    body: dict[str, Any] | None = None


async def inject(client: httpx.AsyncClient, base_url: str, token: str, fault: str,
                 params: dict[str, Any], *, timeout: float = 5.0) -> ChaosOutcome:
    """POST one fault to a service; refusals and errors come back as data, never raised."""
    if fault not in FAULTS or fault == KILL:
        return ChaosOutcome(False, None, f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
    try:
        response = await client.post(f"{base_url}/chaos/{fault}", json=params,
                                     headers={"Authorization": f"Bearer {token}"},
                                     timeout=timeout)
    except httpx.HTTPError as exc:
        if fault == Fault.CRASH and isinstance(exc, httpx.RemoteProtocolError):
            return ChaosOutcome(True, None, "crash injected (connection closed)")
        return ChaosOutcome(False, None, f"service unreachable: {type(exc).__name__}")
    try:
        decoded = response.json()
    except ValueError:
        decoded = None
    body = decoded if isinstance(decoded, dict) else None
    if response.is_success:
        return ChaosOutcome(True, response.status_code, f"{fault} injected", body)
    return ChaosOutcome(False, response.status_code, f"refused: {_reason(body, response)}", body)


def _reason(body: dict[str, Any] | None, response: httpx.Response) -> str:
    detail = body.get("detail") if body else None
    if isinstance(detail, list):  # FastAPI validation errors
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    return str(detail or f"HTTP {response.status_code}")
