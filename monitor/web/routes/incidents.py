"""Incident pages: `/incidents` (newest first) and `/incidents/{id}` (the timeline of one).

Read-only (viewer). The incidents are folded from the audit log by
`monitor.storage.incidents.IncidentIndex`, one per app, built on first use; the reads run in a
worker thread so the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, Response

from monitor.storage.incidents import IncidentIndex
from monitor.storage.timeline import read_timeline
from monitor.web.deps import Web, render, web
from monitor.web.openapi import ERROR

router = APIRouter()
LIST_SIZE = 100
MAX_ID = 2**62
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such incident", **ERROR}}


def incident_index(request: Request, state: Web) -> IncidentIndex:
    index: IncidentIndex | None = getattr(request.app.state, "incidents", None)
    if index is None:
        index = IncidentIndex(state.runtime.store, first_active=state.versions[0])
        request.app.state.incidents = index
    return index


@router.get("/incidents", response_class=HTMLResponse)
async def incident_list(request: Request, state: Web = Depends(web)) -> Response:
    index = incident_index(request, state)
    rows = await asyncio.to_thread(index.newest, LIST_SIZE)
    return render(request, "incidents.html", {"rows": rows, "now": state.now(),
                                              "limit": LIST_SIZE})


@router.get("/incidents/{incident_id}", response_class=HTMLResponse, responses=NOT_FOUND)
async def incident_page(request: Request, incident_id: int = Path(ge=1, le=MAX_ID),
                        state: Web = Depends(web)) -> Response:
    index = incident_index(request, state)
    incident = await asyncio.to_thread(index.get, incident_id)
    if incident is None:
        raise HTTPException(404, f"no incident {incident_id}")
    now = state.now()
    timeline = await asyncio.to_thread(
        read_timeline, state.runtime.store, incident, now=now,
        retention_s=state.runtime.settings.retention_hours * 3600)
    return render(request, "incident.html", {"incident": incident, "timeline": timeline,
                                             "now": now})
