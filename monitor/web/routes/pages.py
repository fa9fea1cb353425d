"""HTML pages: overview (with its chart and rollout partials), audit log, health log, notices,
users. Read-only (GET)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from monitor.storage.rollout_reads import latest_rollout_rows
from monitor.storage.users import list_users
from monitor.web import queries
from monitor.web.cached import Cached
from monitor.web.deps import Web, render, web
from monitor.web.forms import FAULTS
from monitor.web.plots import MAX_AGE_S, ChartWindow
from monitor.web.rollout_view import timeline
from monitor.web.routes.api import dataplane_status
from monitor.web.views import Pager, chart

router = APIRouter()
PAGE_SIZE = 50
CHART_MINUTES = 15
CHART_MAX_AGE_S = MAX_AGE_S[ChartWindow.MINUTES_15]  # as fresh as the 15-minute chart page


def _compute_chart(state: Web) -> dict[str, Any]:
    """Blocking: the series and the geometry, in a worker thread (never on the event loop)."""
    series = state.runtime.latency_series(CHART_MINUTES)
    return chart(series, now=state.now(), minutes=CHART_MINUTES)


async def _chart(request: Request, state: Web) -> dict[str, Any]:
    """The overview's chart, computed at most once per CHART_MAX_AGE_S for every viewer."""
    cache: Cached[dict[str, Any]] | None = getattr(request.app.state, "overview_chart", None)
    if cache is None:
        cache = request.app.state.overview_chart = Cached(
            partial(_compute_chart, state), max_age=CHART_MAX_AGE_S, clock=state.runtime.clock)
    return (await cache.get()).value


async def _rollout(state: Web, status: dict[str, Any]) -> dict[str, Any] | None:
    rows = await asyncio.to_thread(latest_rollout_rows, state.runtime.store)
    return timeline(status.get("rollout"), rows)


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, state: Web = Depends(web)) -> Response:
    status = await asyncio.to_thread(state.runtime.status)
    return render(request, "overview.html", {
        "status": status, "chart": await _chart(request, state), "faults": FAULTS,
        "versions": state.versions, "dataplane": dataplane_status(state.runtime),
        "rollout": await _rollout(state, status),
    })


@router.get("/partials/chart", response_class=HTMLResponse)
async def chart_partial(request: Request, state: Web = Depends(web)) -> Response:
    """The latency chart alone, for app.js to swap in without a full reload."""
    return render(request, "partials/chart.html", {"chart": await _chart(request, state)})


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


@router.get("/health-log", response_class=HTMLResponse)
async def health_log(request: Request, version: str = "", before: str = queries.before_query(),
                     state: Web = Depends(web)) -> Response:
    """Newest first, keyset-paged: the "Older" link carries the last row's id as `before`."""
    versions = state.versions
    chosen = version if version in versions else ""
    rows, has_next = await asyncio.to_thread(queries.probes_page, state.runtime.store,
                                             version=chosen or None, since=0.0, before=before,
                                             size=PAGE_SIZE)
    return render(request, "health_log.html", {
        "rows": rows, "versions": versions, "version": chosen, "before": before,
        "next_before": queries.next_before(rows, has_next)})


@router.get("/notices", response_class=HTMLResponse)
async def notices(request: Request, page: int = Query(1, ge=1, le=10_000),
                  state: Web = Depends(web)) -> Response:
    offset = (page - 1) * PAGE_SIZE
    rows, has_next = await asyncio.to_thread(queries.notices_page, state.runtime.store,
                                             offset=offset, size=PAGE_SIZE)
    return render(request, "notices.html", {
        "rows": rows, "pager": Pager(page, PAGE_SIZE, has_next),
        "smtp": bool(state.runtime.settings.smtp_host)})


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request, state: Web = Depends(web)) -> Response:
    rows = await asyncio.to_thread(list_users, state.runtime.store)
    return render(request, "users.html", {"rows": rows})
