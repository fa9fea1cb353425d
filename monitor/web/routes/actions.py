"""State-changing actions: POST forms only, CSRF-checked, validated, then handed to the runtime
(which audits the outcome). The browser is sent back to the overview with the outcome shown.
Invalid input is refused with 422 before anything changes, and audited with outcome "invalid"."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse, RedirectResponse

from monitor.failover.operations import ActionResult
from monitor.services import Actions, UnknownService
from monitor.web.deps import Web, actor_for, flash_url, principal, web
from monitor.web.forms import (
    FAULTS,
    FormError,
    parse_chaos,
    parse_failover,
    parse_reason,
    parse_version,
)
from monitor.web.security import csrf
from monitor.web.security.auth import CHALLENGE, Principal
from monitor.web.security.csrf import origin_of

router = APIRouter()
MAX_FORM_FIELDS = 20


def allowed_origins(request: Request, state: Web) -> set[str]:
    origins = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    public = origin_of(state.runtime.settings.public_url or "")
    if public:
        origins.add(public)
    return origins


async def checked_form(request: Request, state: Web = Depends(web),
                       who: Principal = Depends(principal)) -> dict[str, str]:
    """The submitted form, once the request has proven it comes from our own page.

    A rejection is audited and answered 403 before anything is parsed further or changed.
    """
    form = await request.form(max_fields=MAX_FORM_FIELDS, max_files=0)
    token = form.get("csrf_token")
    problem = csrf.origin_problem(request.headers, allowed_origins(request, state)) \
        or csrf.token_problem(state.runtime.keys.csrf, who.name,
                              token if isinstance(token, str) else None, now=state.now(),
                              nonce=state.nonces.get(who.name))
    if problem:
        await state.runtime.arecord(actor_for(request, who), "csrf.rejected",
                                    target=request.url.path, outcome="denied", reason=problem,
                                    params={"method": request.method})
        raise HTTPException(403, f"Forbidden: {problem}")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _done(state: Web, result: ActionResult, form: dict[str, str]) -> RedirectResponse:
    service = form.get("service", "")
    message = f"{service}: {result.message}" if service else result.message
    return RedirectResponse(flash_url(state, "/", result.ok, message, service=service),
                            status_code=303)


def service_of(state: Web, form: dict[str, str]) -> tuple[Actions, list[str]]:
    """Who acts for the service the form names (`service`; empty: the default service) and
    that service's versions; FormError for an unknown service."""
    name = form.get("service", "")
    try:
        actions = state.runtime.actions(name or None)
    except UnknownService as exc:
        raise FormError(f"service: {exc}") from None
    return actions, list(state.runtime.services[name].urls) if name else state.versions


async def _invalid(request: Request, state: Web, exc: FormError, action: str,
                   target: str = "") -> HTTPException:
    """Audit a refused form (nothing changed) and build its 422."""
    await state.runtime.arecord(actor_for(request), action, target=target[:40],
                                outcome="invalid", reason=str(exc),
                                params={"method": request.method, "path": request.url.path})
    return HTTPException(422, str(exc))


@router.post("/actions/chaos/{version}/{fault}")
async def chaos(version: str, fault: str, request: Request,
                form: dict[str, str] = Depends(checked_form),
                state: Web = Depends(web)) -> RedirectResponse:
    try:
        actions, versions = service_of(state, form)
        parse_version(version, versions)
        params = parse_chaos(fault, form)
    except FormError as exc:
        action = f"chaos.{fault}" if fault in FAULTS else "chaos.unknown"
        raise await _invalid(request, state, exc, action, version) from None
    result = await actions.chaos(actor_for(request), version, fault, params)
    return _done(state, result, form)


@router.post("/actions/failover")
async def failover(request: Request, form: dict[str, str] = Depends(checked_form),
                   state: Web = Depends(web)) -> RedirectResponse:
    try:
        actions, versions = service_of(state, form)
        target, reason, force = parse_failover(form, versions)
    except FormError as exc:
        target = str(form.get("target", ""))
        raise await _invalid(request, state, exc, "failover.manual", target) from None
    result = await actions.failover(actor_for(request), target, reason=reason, force=force)
    return _done(state, result, form)


@router.post("/actions/failback")
async def failback(request: Request, form: dict[str, str] = Depends(checked_form),
                   state: Web = Depends(web)) -> RedirectResponse:
    actions, reason = await _reason(request, state, form, "failover.failback")
    return _done(state, await actions.failback(actor_for(request), reason=reason), form)


@router.post("/actions/pause")
async def pause(request: Request, form: dict[str, str] = Depends(checked_form),
                state: Web = Depends(web)) -> RedirectResponse:
    actions, reason = await _reason(request, state, form, "failover.pause")
    return _done(state, await actions.pause(actor_for(request), reason=reason), form)


@router.post("/actions/resume")
async def resume(request: Request, form: dict[str, str] = Depends(checked_form),
                 state: Web = Depends(web)) -> RedirectResponse:
    actions, reason = await _reason(request, state, form, "failover.resume")
    return _done(state, await actions.resume(actor_for(request), reason=reason), form)


@router.post("/logout")
async def logout(request: Request, form: dict[str, str] = Depends(checked_form),
                 state: Web = Depends(web),
                 who: Principal = Depends(principal)) -> PlainTextResponse:
    """401 plus Clear-Site-Data makes the browser forget the Basic credentials."""
    state.auth.forget(who.name)
    state.nonces.rotate(who.name)
    await state.runtime.arecord(actor_for(request, who), "logout", target="/logout")
    return PlainTextResponse("Logged out. Close this window or sign in again.", status_code=401,
                             headers={"Clear-Site-Data": '"credentials", "cache"',
                                      "WWW-Authenticate": CHALLENGE})


async def _reason(request: Request, state: Web, form: dict[str, str],
                  action: str) -> tuple[Actions, str]:
    """Who acts for the form's service, and the form's reason (422 for either wrong)."""
    try:
        return service_of(state, form)[0], parse_reason(form)
    except FormError as exc:
        raise await _invalid(request, state, exc, action) from None
