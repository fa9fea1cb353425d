"""`GET /charts?window=15m|24h|7d[&service=NAME]`: latency and uptime of every version of a
service (the default one without `service`) over a window, as
server-side SVG, read from the probe rollups and the raw probes (monitor.storage.rollup_reads).

Each window's chart is computed in a worker thread and kept for `plots.MAX_AGE_S[window]`
(single-flight through `Cached`), so a page never runs its aggregate queries on the event loop
and a crowd of viewers costs one computation per window and period.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from monitor.storage.rollup_reads import history
from monitor.web.cached import Cached, cached_in
from monitor.web.deps import Web, render, web
from monitor.web.plots import MAX_AGE_S, SPANS, ChartWindow, charts
from monitor.web.routes.api import UNKNOWN_SERVICE, known_service, service_query

router = APIRouter()


def compute(state: Web, window: ChartWindow, service: str | None) -> dict[str, Any]:
    """Blocking: the aggregate queries and the geometry of one window of one service (the
    default one for None), as of now."""
    now = state.now()
    span = SPANS[window]
    units = state.runtime.services
    unit = units[service] if service else next(iter(units.values()))
    found = history(state.runtime.store, since=now - span.seconds - span.bucket_s,
                    until=now + span.bucket_s, bucket_s=span.bucket_s, service=unit.name)
    # the default service's versions as the running monitor has them (spec revisions too)
    return charts(found, list(unit.policy.versions) if service else state.versions, window, now)


def chart_cache(request: Request, state: Web, window: ChartWindow,
                service: str | None = None) -> Cached[dict[str, Any]]:
    """One cache per known service and window (the keys are bounded by the configuration)."""
    return cached_in(request.app.state, "charts", (service, window), lambda: Cached(
        partial(compute, state, window, service), max_age=MAX_AGE_S[window],
        clock=state.runtime.clock))


@router.get("/charts", response_class=HTMLResponse, responses=UNKNOWN_SERVICE)
async def charts_page(request: Request, window: ChartWindow = Query(ChartWindow.HOURS_24),
                      service: str = service_query(), state: Web = Depends(web)) -> Response:
    name = known_service(state, service)
    computed = await chart_cache(request, state, window, name).get()
    return render(request, "charts.html", {"charts": computed.value, "computed_at": computed.at,
                                           "windows": list(ChartWindow), "spans": SPANS,
                                           "service": name or ""})
