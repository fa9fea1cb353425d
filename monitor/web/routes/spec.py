"""Desired state over HTTP: `GET /api/spec` (viewer), `POST /api/apply` (admin) and the
`/spec` page (viewer): the applied YAML, its revision, who applied it and when, the replicas
of each version (state, port, CPU, restarts) and the latest scale events.

`POST /api/apply` is a form like every action (CSRF token, Fetch metadata / Origin checked):
`spec` holds the YAML text, `dry_run=1` asks for the diff only. A bad spec is answered 422
with the field and the reason, audited as `spec.apply` with outcome `invalid`, and changes
nothing.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import col, select

from monitor.desired import apply as applying
from monitor.desired.defaults import spec_from_settings
from monitor.desired.spec import SpecError, dump
from monitor.storage import specs
from monitor.storage.audit import utc_iso
from monitor.storage.store import AuditRow, Store
from monitor.web.deps import Web, actor_for, render, web
from monitor.web.routes.actions import checked_form

router = APIRouter()
SCALE_EVENTS = 20
DESIRED_ACTIONS = ("replicas.scale", "spec.apply", "spec.reconcile", "replicas.adopt")


def _applied(store: Store) -> tuple[specs.SpecRevision | None, list[AuditRow]]:
    """The newest revision and the latest scale and spec events, newest first."""
    with store.read() as session:
        events = session.exec(select(AuditRow).where(col(AuditRow.action).in_(DESIRED_ACTIONS))
                              .order_by(col(AuditRow.seq).desc()).limit(SCALE_EVENTS)).all()
        return specs.newest(session), list(events)


@router.get("/spec", response_class=HTMLResponse)
async def spec_page(request: Request, state: Web = Depends(web)) -> Response:
    runtime = state.runtime
    revision, events = await asyncio.to_thread(_applied, runtime.store)
    status = await asyncio.to_thread(runtime.status)
    return render(request, "spec.html", {
        "revision": revision, "events": events, "versions": status["versions"],
        "yaml": revision.text if revision else dump([spec_from_settings(runtime.settings)])})


@router.get("/api/spec")
async def api_spec(state: Web = Depends(web)) -> dict[str, Any]:
    store = state.runtime.store
    revision, services, text = await asyncio.to_thread(applying.current, store)
    if revision is None:
        services = [spec_from_settings(state.runtime.settings)]
    return {"revision": revision, "yaml": text or None,
            "services": [s.document() for s in services]}


@router.post("/api/apply")
async def api_apply(request: Request, form: dict[str, str] = Depends(checked_form),
                    state: Web = Depends(web)) -> dict[str, Any]:
    who = actor_for(request)
    runtime = state.runtime
    dry_run = form.get("dry_run", "") in ("1", "true", "on")
    now = state.now()
    try:
        result = await asyncio.to_thread(partial(
            applying.apply, runtime.store, runtime.keys.audit, form.get("spec", ""), who=who,
            now=now, dry_run=dry_run))
    except SpecError as exc:
        if not dry_run:
            await asyncio.to_thread(partial(applying.audit_refused, runtime.store,
                                            runtime.keys.audit, exc, who=who, now=now))
        raise HTTPException(422, str(exc)) from None
    return {"revision": result.revision, "dry_run": result.dry_run, "changes": result.changes,
            "services": [s.name for s in result.services], "at": utc_iso(now)}
