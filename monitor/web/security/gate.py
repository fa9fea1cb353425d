"""The access gate: every HTTP request passes here before any route (pure ASGI middleware).

It finds the route the router would pick, looks its role up in `roles.ROUTE_ROLES` (a route
without an entry is refused: deny by default), authenticates HTTP Basic (or the scrape token on
/metrics), applies the throttle, and audits failed logins, lockouts and denials. The principal
goes to `request.state.principal` for the routes. A failed login names its account only when it
is a user; any other name appears as `unknown:<digest>` (see auth.unknown_account).

The throttle is checked before anything is decoded or written: a locked address gets 429
without a password check or an audit row. Failed logins are aggregated per source address
(security.failures): the first of a window is one row, the rest one row with their count, so
an anonymous flood cannot grow the audit log or hold the database's write lock.
"""

from __future__ import annotations

import asyncio
import math

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from monitor.actor import Actor
from monitor.storage.audit import utc_iso
from monitor.web.deps import Web, actor_for, client_ip, render
from monitor.web.security import csrf
from monitor.web.security.auth import (
    ANONYMOUS,
    CHALLENGE,
    BadCredentials,
    Credentials,
    Principal,
    bearer_token,
    parse_basic,
)
from monitor.web.security.failures import Failures
from monitor.web.security.roles import PUBLIC, ROUTE_ROLES, SCRAPE, UNMATCHED, allows
from monitor.web.security.throttle import SCRAPE_ACCOUNT, Locked

SCRAPER = Principal("scraper", "viewer")
UNKNOWN_ROUTE = "<route without a path>"  # never in the table, so refused


def route_path(router: Router, scope: Scope) -> str | None:
    """The path template of the route that will handle `scope` (405 cases included)."""
    partial = None
    for route in router.routes:
        match, _ = route.matches(scope)
        path = getattr(route, "path", None) or UNKNOWN_ROUTE
        if match is Match.FULL:
            return path
        if match is Match.PARTIAL and partial is None:
            partial = path
    return partial


def required_role(router: Router, scope: Scope) -> str | None:
    """The role a request needs; None (refuse) for a route that has no entry in the table."""
    path = route_path(router, scope)
    return UNMATCHED if path is None else ROUTE_ROLES.get(path)


def routes_without_role(app: Starlette) -> list[str]:
    """Paths of the app's routes that have no entry in ROUTE_ROLES (they would be refused)."""
    return [getattr(route, "path", UNKNOWN_ROUTE) for route in app.routes
            if getattr(route, "path", None) not in ROUTE_ROLES]


async def write_failures(web: Web, batches: list[Failures]) -> None:
    """One audit row per ended window of failed logins from one address (with its count)."""
    for index, batch in enumerate(batches):
        actor = Actor(name=batch.actor, role="", source_ip=batch.source_ip,
                      user_agent=batch.user_agent)
        try:
            await web.runtime.arecord(actor, "login.failed", target="", outcome="denied",
                                      reason=batch.reason(), params=batch.params())
        except BaseException:
            web.failures.requeue(batches[index:])
            raise


class AccessGate:
    def __init__(self, app: ASGIApp, *, web: Web, router: Router) -> None:
        self.app = app
        self.web = web
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        request = Request(scope)
        required = required_role(self.router, scope)
        if required == PUBLIC:
            scope["state"]["principal"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        who = await self._authenticate(request, scrape=required == SCRAPE)
        if isinstance(who, Response):
            await who(scope, receive, send)
            return
        scope["state"]["principal"] = who
        if not allows(who.role, required or ""):
            reason = ("route has no role entry (deny by default)" if required is None
                      else f"requires {required}, {who.name} is {who.role}")
            await self._audit(request, who, "access.denied", reason)
            await self._error(request, 403, f"Forbidden: {reason}")(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _authenticate(self, request: Request, *, scrape: bool) -> Principal | Response:
        header = request.headers.get("authorization")
        token = bearer_token(header)
        if scrape and token is not None:
            return await self._scrape_token(request, token)
        if not header:
            return self._challenge(request, "Authentication required")
        # Throttle before decoding: a locked address costs no parsing, no check, no audit row.
        wait = self.web.lockout.retry_after("", client_ip(request), now=self.web.now())
        if wait > 0:
            return self._locked(request, wait)
        try:
            credentials = parse_basic(header)
        except BadCredentials as exc:
            return await self._failed(request, "", str(exc))
        if credentials is None:
            return self._challenge(request, "Authentication required")
        return await self._check(request, credentials)

    async def _check(self, request: Request, credentials: Credentials) -> Principal | Response:
        """Throttle first; a password check only once reserved, so that concurrent wrong
        attempts never run more checks than the throttle's limits allow."""
        lockout, ip = self.web.lockout, client_ip(request)
        found = await asyncio.to_thread(self.web.auth.lookup, credentials)
        # A remembered success needs no check, so only a lock (not checks in flight) stops it.
        wait = lockout.retry_after(found.account, ip, now=self.web.now(),
                                   busy=found.cached is None)
        if wait > 0:
            return self._locked(request, wait)
        if found.cached and found.cached.principal:
            lockout.success(found.account, ip, now=self.web.now())
            return found.cached.principal
        attempt = lockout.reserve(found.account, ip, now=self.web.now())
        if attempt is None:
            return self._locked(request, lockout.retry_after(found.account, ip,
                                                             now=self.web.now()))
        try:
            verdict = await asyncio.to_thread(self.web.auth.verify, credentials, found)
        except BaseException:
            lockout.release(attempt)
            raise
        locks = lockout.settle(attempt, ok=verdict.ok, now=self.web.now())
        if verdict.principal is not None:
            return verdict.principal
        return await self._failed(request, found.account, verdict.reason, locks)

    async def _scrape_token(self, request: Request, token: str) -> Principal | Response:
        ip = client_ip(request)
        wait = self.web.lockout.retry_after(SCRAPE_ACCOUNT, ip, now=self.web.now())
        if wait > 0:
            return self._locked(request, wait)
        configured = self.web.runtime.settings.scrape_token
        expected = configured.get_secret_value() if configured else ""
        if expected and csrf.same_bytes(token, expected.encode()):
            return SCRAPER
        return await self._failed(request, SCRAPE_ACCOUNT, "wrong scrape token")

    async def _failed(self, request: Request, account: str, reason: str,
                      locks: list[Locked] | None = None) -> Response:
        """Count and audit a failed login (aggregated per address and window), and any lock
        it caused, with its notice in the same transaction. `account` is a user name or
        unknown:<digest>, never an unknown name. `locks` None: not counted yet (no password
        check was reserved)."""
        ip = client_ip(request)
        now = self.web.now()
        if locks is None:
            locks = self.web.lockout.failure(account, ip, now=now)
        shown = "scrape-token" if account == SCRAPE_ACCOUNT else account or "-"
        attempted = Principal(shown, "")
        agent = request.headers.get("user-agent", "")[:300]
        if self.web.failures.record(ip, shown, reason, now=now, user_agent=agent):
            await self._audit(request, attempted, "login.failed", reason, params={"count": 1})
        await write_failures(self.web, self.web.failures.due(now))
        for lock in locks:
            detail = f"{lock.describe()} locked for {lock.seconds:.0f} s"
            notice = ("lockout", f"Security: login lockout of {lock.describe()}",
                      {"scope": str(lock.scope), "key": lock.key, "until": utc_iso(lock.until),
                       "source_ip": ip,
                       "reason": f"{reason}; locked after repeated failed logins"})
            await self._audit(request, attempted, "login.lockout", detail,
                              params={"scope": str(lock.scope), "until": lock.until},
                              notice=notice)
        if locks:
            return self._locked(request, max(lock.until for lock in locks) - now)
        return self._challenge(request, "Authentication failed")

    async def _audit(self, request: Request, who: Principal, action: str, reason: str,
                     params: dict[str, object] | None = None,
                     notice: tuple[str, str, dict[str, object]] | None = None) -> None:
        await self.web.runtime.arecord(
            actor_for(request, who), action, target=request.url.path, outcome="denied",
            reason=reason, params={"method": request.method, **(params or {})}, notice=notice)

    def _challenge(self, request: Request, message: str) -> Response:
        return self._error(request, 401, message, {"WWW-Authenticate": CHALLENGE})

    def _locked(self, request: Request, wait: float) -> Response:
        seconds = max(1, math.ceil(wait))
        return self._error(request, 429, f"Too many failed logins: try again in {seconds} s",
                           {"Retry-After": str(seconds)})

    def _error(self, request: Request, status: int, message: str,
               headers: dict[str, str] | None = None) -> Response:
        path = request.url.path
        if path.startswith("/api/") or path == "/metrics":
            return JSONResponse({"detail": message}, status, headers=headers)
        if status == 403:
            response = render(request, "error.html", {"status": status, "message": message},
                              status_code=status)
            response.headers.update(headers or {})
            return response
        return PlainTextResponse(message, status, headers=headers)
