"""`GET /api/events`: the live dashboard's Server-Sent Events stream (see monitor.web.events).

Authenticated and role-checked by the access gate like every route (viewer); a user past the
per-user bound of open streams gets 429.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import StreamingResponse

from monitor.web.deps import principal
from monitor.web.events import AuditStream, TooManyStreams
from monitor.web.security.auth import Principal

router = APIRouter()


@router.get("/api/events")
async def api_events(request: Request, who: Principal = Depends(principal),
                     last_event_id: str | None = Header(None, max_length=20)
                     ) -> StreamingResponse:
    stream: AuditStream = request.app.state.events
    try:
        stream.open(who.name)
    except TooManyStreams as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": "5"}) from None
    last = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
    return StreamingResponse(stream.events(who.name, last), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})
