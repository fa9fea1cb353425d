"""Rollout controls: POST forms `/actions/rollout/{start,promote,pause,resume,abort}`.

Operator and up (the route table), CSRF-checked like every action, audited by the rollout
driver (refusals included); on a follower they are queued for the leader as a command row.
`start` takes `target` and `strategy` (`canary` | `bluegreen`, empty = the spec's); every form
takes an optional `reason`. A browser is sent back to the overview with the outcome; a client
asking for JSON (`Accept: application/json`) gets `{"ok", "message", "rollout"}`, 409 when
the rollout refused the action. Invalid input is a 422 naming the field, audited as invalid.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from monitor.desired.rollout import Strategy
from monitor.desired.rollout_plan import Op
from monitor.failover.operations import ActionResult
from monitor.web.deps import Web, actor_for, flash_url, web
from monitor.web.forms import FormError, parse_reason
from monitor.web.routes.actions import checked_form

router = APIRouter()
VERSION = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def parse_rollout(op: str, form: dict[str, str]) -> dict[str, str]:
    """The parameters of one rollout form; FormError names the bad field."""
    params = {"reason": parse_reason(form)}
    if op != Op.START:
        return params
    target = str(form.get("target", ""))
    if not VERSION.match(target):
        raise FormError("target: a version name is required (lowercase letters, digits, -)")
    strategy = str(form.get("strategy", "")).strip().lower()
    if strategy and strategy not in set(Strategy):
        raise FormError(f"strategy: one of {', '.join(Strategy)} (or empty for the spec's)")
    return {**params, "target": target, "strategy": strategy}


@router.post("/actions/rollout/{op}")
async def rollout(op: str, request: Request, form: dict[str, str] = Depends(checked_form),
                  state: Web = Depends(web)) -> Response:
    if op not in set(Op):
        raise HTTPException(404, f"no rollout action {op[:20]!r}; one of {', '.join(Op)}")
    try:
        params = parse_rollout(op, form)
    except FormError as exc:
        await state.runtime.arecord(actor_for(request), f"rollout.{op}",
                                    target=str(form.get("target", ""))[:40], outcome="invalid",
                                    reason=str(exc), params={"path": request.url.path})
        raise HTTPException(422, str(exc)) from None
    result: ActionResult = await state.runtime.rollout_action(actor_for(request), op, params)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"ok": result.ok, "message": result.message,
                             "rollout": state.runtime.status().get("rollout")},
                            status_code=200 if result.ok else 409)
    return RedirectResponse(flash_url(state, "/", result.ok, result.message), status_code=303)
