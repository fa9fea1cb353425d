"""JSON API mirroring the pages, plus /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor.services import UnknownService
from monitor.storage.users import list_users
from monitor.web import queries
from monitor.web.deps import Web, web
from monitor.web.openapi import ERROR

router = APIRouter()


def dataplane_status(runtime: object) -> dict[str, Any] | None:
    """HAProxy's reachability when it carries the traffic (set by monitor.serve), else None."""
    status = getattr(runtime, "dataplane_status", None)
    return status() if callable(status) else None


UNKNOWN_SERVICE: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such service (the reason names the known ones)", **ERROR}}


def service_query() -> Any:
    return Query("", max_length=64, description="a service name; empty: the default service")


def known_service(state: Web, service: str) -> str | None:
    """`service` when the monitor has it (None for empty: the default one), else 404."""
    if service and service not in state.runtime.services:
        raise HTTPException(404, str(UnknownService(
            f"unknown service {service[:40]!r}; one of {', '.join(state.runtime.services)}")))
    return service or None


def status_of(state: Web, service: str) -> dict[str, Any]:
    """Blocking: one service's status (404 unknown); the runtime's own without a name."""
    name = known_service(state, service)
    return state.runtime.status(name) if name else state.runtime.status()


def _status_json(state: Web, service: str, dataplane: dict[str, Any] | None) -> bytes:
    status = {**status_of(state, service), "dataplane": dataplane}
    return json.dumps(status, default=jsonable_encoder, ensure_ascii=False,
                      separators=(",", ":")).encode()


@router.get("/api/status", response_model=dict[str, Any], responses=UNKNOWN_SERVICE)
async def api_status(service: str = service_query(), state: Web = Depends(web)) -> Response:
    # built and encoded off the event loop, with the standard encoder: at 1,000 versions
    # FastAPI's encoder alone held the loop (and the probes) about 70 ms a request (issue 16)
    known_service(state, service)  # 404 here, not inside the worker thread
    body = await asyncio.to_thread(_status_json, state, service,
                                   dataplane_status(state.runtime))
    return Response(body, media_type="application/json")


@router.get("/api/services")
async def api_services(state: Web = Depends(web)) -> dict[str, Any]:
    """Every service: its active version, epoch, pause, open incident kind and the state of
    each version (the engines' memory: no query)."""
    units = list(state.runtime.services.values())
    now = state.now()
    return {"default": units[0].name, "services": [unit.summary(now) for unit in units]}


@router.get("/api/audit")
async def api_audit(actor: str = "", action: str = "", since: str = queries.time_query(),
                    until: str = queries.time_query(),
                    before: int | None = Query(None, ge=1, le=queries.MAX_SEQ),
                    limit: int = Query(50, ge=1, le=500),
                    state: Web = Depends(web)) -> dict[str, Any]:
    where = queries.audit_filter(actor, action, since, until)
    rows, has_next = await asyncio.to_thread(queries.audit_page, state.runtime.store, where,
                                             before=before, size=limit)
    return {"rows": [queries.audit_json(r) for r in rows], "has_next": has_next,
            "next_before": rows[-1].seq if rows and has_next else None}


@router.get("/api/probes", responses=UNKNOWN_SERVICE)
async def api_probes(version: str = "", since: float = Query(0.0, ge=0, le=queries.MAX_TIME),
                     before: str = queries.before_query(),
                     limit: int = Query(100, ge=1, le=1000),
                     service: str = service_query(),
                     state: Web = Depends(web)) -> dict[str, Any]:
    """Newest first, keyset-paged: pass `next_before` as `before` for the next (older) page;
    `service=`: only that service's probes (404 for an unknown one)."""
    rows, has_next = await asyncio.to_thread(queries.probes_page, state.runtime.store,
                                             version=version or None, since=since,
                                             before=before, size=limit,
                                             service=known_service(state, service))
    return {"rows": [r.model_dump() for r in rows], "has_next": has_next,
            "next_before": queries.next_before(rows, has_next)}


@router.get("/api/notices")
async def api_notices(limit: int = Query(50, ge=1, le=500),
                      offset: int = Query(0, ge=0, le=queries.MAX_OFFSET),
                      state: Web = Depends(web)) -> dict[str, Any]:
    rows, has_next = await asyncio.to_thread(queries.notices_page, state.runtime.store,
                                             offset=offset, size=limit)
    return {"rows": [queries.notice_json(r) for r in rows], "has_next": has_next}


@router.get("/api/audit/verify")
async def api_audit_verify(state: Web = Depends(web)) -> dict[str, Any]:
    """The on-demand full verification; its result also refreshes the audit page's."""
    checked = await state.verification.refresh()
    return {**checked.value.as_dict(), "verified_at": checked.at}


@router.get("/api/users")
async def api_users(state: Web = Depends(web)) -> dict[str, Any]:
    rows = await asyncio.to_thread(list_users, state.runtime.store)
    return {"rows": [{"name": u.name, "role": u.role, "disabled": u.disabled,
                      "created_at": u.created_at} for u in rows]}


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: Web = Depends(web)) -> JSONResponse:
    """Readiness: the scheduler runs and the database takes writes (checked at most every
    READY_CACHE_S of app.py, one check shared by concurrent requests: this route is public).
    "degraded": ready, but decisions are still queued (journaled) for the database."""
    started = bool(state.runtime.started)
    writable = bool((await state.ready.get()).value)
    dataplane = dataplane_status(state.runtime)
    reachable = dataplane is None or dataplane["reachable"] is not False
    ready = started and writable and reachable
    queued = int(getattr(state.runtime.metrics, "queued_writes", 0))
    status = "degraded" if ready and queued else "ready" if ready else "not ready"
    body: dict[str, Any] = {"ready": ready, "status": status, "started": started,
                            "writable": writable, "queued_writes": queued}
    if dataplane is not None:
        body["dataplane"] = {"kind": dataplane["kind"], "reachable": dataplane["reachable"]}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(state: Web = Depends(web)) -> Response:
    body = await asyncio.to_thread(generate_latest, state.runtime.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
