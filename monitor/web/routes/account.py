"""Self-service password change for every user (ASVS 6.2.2/6.2.3).

POST only with the CSRF token and the current password; the current password is checked
through the same throttle as a login (a stolen session cannot guess it faster). A change is
audited (`user.passwd`, by the user), a refusal too; afterwards the user's cached logins and
CSRF tokens are void, so the browser asks for the new password.
"""

from __future__ import annotations

import asyncio
import math
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from monitor.storage.users import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    UserError,
    password_problem,
    set_password,
)
from monitor.web.deps import Web, actor_for, client_ip, principal, render, web
from monitor.web.routes.actions import checked_form
from monitor.web.security.auth import Credentials, Principal

router = APIRouter()
PATH = "/account/password"
REAUTH_BUCKET = "\0reauth"  # no user name contains NUL
WebDep = Annotated[Web, Depends(web)]
Who = Annotated[Principal, Depends(principal)]
Form = Annotated[dict[str, str], Depends(checked_form)]


def _page(request: Request, *, status: int = 200, problem: str = "",
          changed: bool = False) -> Response:
    return render(request, "account.html", {
        "problem": problem, "changed": changed, "min_length": MIN_PASSWORD_LENGTH,
        "max_length": MAX_PASSWORD_LENGTH}, status_code=status)


@router.get(PATH, response_class=HTMLResponse)
async def password_form(request: Request) -> Response:
    return _page(request)


@router.post(PATH, response_class=HTMLResponse)
async def change_password(request: Request, form: Form, state: WebDep, who: Who) -> Response:
    current = form.get("current_password", "")
    new = form.get("new_password", "")
    problem = _form_problem(who.name, new, form.get("confirm_password", ""))
    if problem:
        return await _refused(request, state, who, 422, problem, "invalid")
    wrong = await _current_problem(request, state, who, current)
    if wrong is not None:
        return wrong
    try:
        await asyncio.to_thread(set_password, state.runtime.store, who.name, new,
                                now=state.now(), audit_key=state.runtime.keys.audit,
                                actor=actor_for(request, who), hasher=state.auth.hasher)
    except UserError as exc:
        return await _refused(request, state, who, 422, str(exc), "invalid")
    state.auth.forget(who.name)
    state.nonces.rotate(who.name)
    return _page(request, changed=True)


def _form_problem(name: str, new: str, confirm: str) -> str | None:
    if new != confirm:
        return "new_password: the two new passwords differ"
    problem = password_problem(new, name)
    return f"new_password: {problem}" if problem else None


async def _current_problem(request: Request, state: Web, who: Principal,
                           current: str) -> Response | None:
    """None when `current` is the user's password; else the refusal (throttled like a login,
    in a bucket of its own: the user's every authenticated request would clear the login's)."""
    ip, bucket = client_ip(request), f"{who.name}{REAUTH_BUCKET}"
    attempt = state.lockout.reserve(bucket, ip, now=state.now())
    if attempt is None:
        return await _too_many(request, state, who, bucket, ip)
    credentials = Credentials(who.name, current)
    try:
        found = await asyncio.to_thread(state.auth.lookup, credentials)
        verdict = await asyncio.to_thread(state.auth.verify, credentials, found)
    except BaseException:
        state.lockout.release(attempt)
        raise
    locks = state.lockout.settle(attempt, ok=verdict.ok, now=state.now())
    if verdict.ok:
        return None
    if locks:
        return await _too_many(request, state, who, bucket, ip)
    return await _refused(request, state, who, 403, "current_password: wrong password",
                          "denied")


async def _too_many(request: Request, state: Web, who: Principal, bucket: str,
                    ip: str) -> Response:
    wait = max(1, math.ceil(state.lockout.retry_after(bucket, ip, now=state.now())))
    return await _refused(request, state, who, 429,
                          f"current_password: too many wrong tries, wait {wait} s", "denied",
                          {"Retry-After": str(wait)})


async def _refused(request: Request, state: Web, who: Principal, status: int, reason: str,
                   outcome: str, headers: dict[str, str] | None = None) -> Response:
    await state.runtime.arecord(actor_for(request, who), "user.passwd", target=who.name,
                                outcome=outcome, reason=reason,
                                params={"method": request.method, "self_service": True})
    response = _page(request, status=status, problem=reason)
    response.headers.update(headers or {})
    return response
