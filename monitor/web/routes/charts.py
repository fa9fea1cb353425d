"""`GET /charts?window=15m|24h|7d`: latency and uptime of every version over a window, as
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
from monitor.web.cached import Cached
from monitor.web.deps import Web, render, web
from monitor.web.plots import MAX_AGE_S, SPANS, ChartWindow, charts

router = APIRouter()


def compute(state: Web, window: ChartWindow) -> dict[str, Any]:
    """Blocking: the aggregate queries and the geometry of one window, as of now."""
    now = state.now()
    span = SPANS[window]
    found = history(state.runtime.store, since=now - span.seconds - span.bucket_s,
                    until=now + span.bucket_s, bucket_s=span.bucket_s)
    return charts(found, state.versions, window, now)


def chart_cache(request: Request, state: Web, window: ChartWindow) -> Cached[dict[str, Any]]:
    caches: dict[ChartWindow, Cached[dict[str, Any]]] | None = getattr(
        request.app.state, "charts", None)
    if caches is None:
        caches = request.app.state.charts = {
            w: Cached(partial(compute, state, w), max_age=MAX_AGE_S[w],
                      clock=state.runtime.clock) for w in ChartWindow}
    return caches[window]


@router.get("/charts", response_class=HTMLResponse)
async def charts_page(request: Request, window: ChartWindow = Query(ChartWindow.HOURS_24),
                      state: Web = Depends(web)) -> Response:
    computed = await chart_cache(request, state, window).get()
    return render(request, "charts.html", {"charts": computed.value, "computed_at": computed.at,
                                           "windows": list(ChartWindow), "spans": SPANS})
