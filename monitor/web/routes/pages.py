"""HTML pages: overview (with its chart and rollout partials), audit log, health log, notices,
users. Read-only (GET)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from monitor.services import ServiceUnit
from monitor.storage.rollout_reads import latest_rollout_rows
from monitor.storage.users import list_users
from monitor.web import queries
from monitor.web.cached import Cached, cached_in
from monitor.web.deps import Web, render, web
from monitor.web.forms import FAULTS
from monitor.web.plots import MAX_AGE_S, ChartWindow
from monitor.web.rollout_view import timeline
from monitor.web.routes.api import (
    UNKNOWN_SERVICE,
    dataplane_status,
    known_service,
    service_query,
    status_of,
)
from monitor.web.views import Pager, chart

router = APIRouter()
PAGE_SIZE = 50
CHART_MINUTES = 15
CHART_MAX_AGE_S = MAX_AGE_S[ChartWindow.MINUTES_15]  # as fresh as the 15-minute chart page


def _compute_chart(state: Web, service: str, page: int) -> dict[str, Any]:
    """Blocking: the series and the geometry of one page of a service's versions, in a worker
    thread (never on the event loop)."""
    unit = state.runtime.services.get(service)
    if unit is None:  # removed by a spec revision meanwhile
        return chart({}, now=state.now(), minutes=CHART_MINUTES)
    shown = set(unit.policy.versions[(page - 1) * PAGE_SIZE:page * PAGE_SIZE])
    series = unit.reads.latency_series(CHART_MINUTES)
    return chart({v: points for v, points in series.items() if v in shown}, now=state.now(),
                 minutes=CHART_MINUTES)


def _unit(state: Web, service: str) -> ServiceUnit:
    """The service a page shows (404 for an unknown name; the default one when empty)."""
    units = state.runtime.services
    return units[service] if known_service(state, service) else next(iter(units.values()))


def service_rows(units: list[ServiceUnit], page: int) -> tuple[list[dict[str, Any]], Pager]:
    """One page of the services list, from the engines' memory only (no query per service)."""
    rows = [{"name": u.name, "active": u.watchdog.state.active, "epoch": u.watchdog.state.epoch,
             "paused": u.watchdog.state.paused, "incident": u.watchdog.state.incident}
            for u in units[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]]
    return rows, Pager(page, PAGE_SIZE, len(units) > page * PAGE_SIZE)


async def _chart(request: Request, state: Web, unit: ServiceUnit,
                 page: int = 1) -> dict[str, Any]:
    """The chart of a page of a service's versions, computed at most once per
    CHART_MAX_AGE_S for every viewer; one cache per (service, page), pages past the last
    share the last page's (so the caches are bounded by the configuration)."""
    page = min(page, max(1, -(-len(unit.policy.versions) // PAGE_SIZE)))
    cache = cached_in(request.app.state, "overview_charts", (unit.name, page), lambda: Cached(
        partial(_compute_chart, state, unit.name, page), max_age=CHART_MAX_AGE_S,
        clock=state.runtime.clock))
    return (await cache.get()).value


async def _rollout(state: Web, status: dict[str, Any]) -> dict[str, Any] | None:
    rows = await asyncio.to_thread(latest_rollout_rows, state.runtime.store)
    return timeline(status.get("rollout"), rows)


@router.get("/", response_class=HTMLResponse, responses=UNKNOWN_SERVICE)
async def overview(request: Request, service: str = service_query(),
                   services_page: int = Query(1, ge=1, le=10_000),
                   versions_page: int = Query(1, ge=1, le=10_000),
                   state: Web = Depends(web)) -> Response:
    """One service's overview (`?service=`, the default one without it): a page of its
    versions (rows, chart, chaos forms) and, with several services, a page of the list."""
    unit = _unit(state, service)
    units = list(state.runtime.services.values())
    status = await asyncio.to_thread(status_of, state, service)
    services, pager = service_rows(units, services_page)
    start = (versions_page - 1) * PAGE_SIZE
    shown = status["versions"][start:start + PAGE_SIZE]
    return render(request, "overview.html", {
        "status": {**status, "versions": shown}, "faults": FAULTS,
        "chart": await _chart(request, state, unit, versions_page),
        "primary": unit.policy.versions[0],
        "versions": [v["name"] for v in shown], "dataplane": dataplane_status(state.runtime),
        "versions_pager": Pager(versions_page, PAGE_SIZE,
                                len(status["versions"]) > start + PAGE_SIZE),
        "rollout": await _rollout(state, status) if unit.name == units[0].name else None,
        "service": service, "services": services if len(units) > 1 else [],
        "services_pager": pager,
    })


@router.get("/partials/chart", response_class=HTMLResponse, responses=UNKNOWN_SERVICE)
async def chart_partial(request: Request, service: str = service_query(),
                        versions_page: int = Query(1, ge=1, le=10_000),
                        state: Web = Depends(web)) -> Response:
    """The latency chart alone, for app.js to swap in without a full reload."""
    return render(request, "partials/chart.html",
                  {"chart": await _chart(request, state, _unit(state, service), versions_page)})


@router.get("/partials/rollout", response_class=HTMLResponse)
async def rollout_partial(request: Request, state: Web = Depends(web)) -> Response:
    """The rollout timeline alone, for app.js to swap in when an event arrives."""
    status = await asyncio.to_thread(state.runtime.status)
    return render(request, "partials/rollout.html", {"rollout": await _rollout(state, status)})


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(request: Request, actor: str = "", action: str = "",
                     since: str = queries.time_query(), until: str = queries.time_query(),
                     before: int | None = Query(None, ge=1, le=queries.MAX_SEQ),
                     state: Web = Depends(web)) -> Response:
    where = queries.audit_filter(actor, action, since, until)
    rows, has_next = await asyncio.to_thread(queries.audit_page, state.runtime.store, where,
                                             before=before, size=PAGE_SIZE)
    verified = await state.verification.get()  # at most VERIFY_CACHE_S old
    return render(request, "audit.html", {
        "rows": rows, "has_next": has_next, "next_before": rows[-1].seq if rows else None,
        "filters": {"actor": actor, "action": action, "since": since, "until": until},
        "query": where.as_query(), "first_page": before is None,
        "report": verified.value, "verified_at": verified.at,
    })


@router.get("/health-log", response_class=HTMLResponse, responses=UNKNOWN_SERVICE)
async def health_log(request: Request, version: str = "", before: str = queries.before_query(),
                     service: str = service_query(), state: Web = Depends(web)) -> Response:
    """Newest first, keyset-paged: the "Older" link carries the last row's id as `before`;
    `service=`: one service's probes (all services' without it)."""
    versions = list(_unit(state, service).urls) if service else state.versions
    chosen = version if version in versions else ""
    rows, has_next = await asyncio.to_thread(queries.probes_page, state.runtime.store,
                                             version=chosen or None, since=0.0, before=before,
                                             size=PAGE_SIZE, service=service or None)
    return render(request, "health_log.html", {
        "rows": rows, "versions": versions, "version": chosen, "before": before,
        "next_before": queries.next_before(rows, has_next),
        "service": service, "services": list(state.runtime.services)})


@router.get("/notices", response_class=HTMLResponse, responses=UNKNOWN_SERVICE)
async def notices(request: Request, page: int = Query(1, ge=1, le=10_000),
                  service: str = service_query(), state: Web = Depends(web)) -> Response:
    """Notices newest first, grouped by service on the page (`?service=` shows one)."""
    offset = (page - 1) * PAGE_SIZE
    rows, has_next = await asyncio.to_thread(queries.notices_page, state.runtime.store,
                                             offset=offset, size=PAGE_SIZE,
                                             service=known_service(state, service))
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(row.service, []).append(row)
    return render(request, "notices.html", {
        "groups": groups, "pager": Pager(page, PAGE_SIZE, has_next),
        "service": service, "services": list(state.runtime.services),
        "smtp": bool(state.runtime.settings.smtp_host)})


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request, state: Web = Depends(web)) -> Response:
    rows = await asyncio.to_thread(list_users, state.runtime.store)
    return render(request, "users.html", {"rows": rows})
