"""The dashboard application: `create_app(runtime)`.

Layers, outermost first: SecurityHeaders (headers + request id on every response, 413 and
500 included) -> FastAPI's body limit and error middleware -> AccessGate (authentication,
roles, lockout) -> exception handlers -> routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from monitor.paths import STATIC_DIR
from monitor.storage.users import Hasher, default_hasher
from monitor.web import queries
from monitor.web.cached import Cached
from monitor.web.deps import Web, make_templates, render
from monitor.web.events import AuditStream
from monitor.web.forms import FormError
from monitor.web.ports import MonitorPort
from monitor.web.requestlog import RequestLog
from monitor.web.routes import (
    account,
    actions,
    api,
    charts,
    events,
    incidents,
    pages,
    rollout,
    spec,
)
from monitor.web.security.auth import Authenticator
from monitor.web.security.gate import AccessGate, write_failures
from monitor.web.security.headers import SecurityHeaders
from monitor.web.security.hosts import HostAllowList
from monitor.web.security.throttle import Lockout

MAX_BODY_BYTES = 64 * 1024  # the largest form is a few hundred bytes
READY_CACHE_S = 2.0  # /readyz is public: at most one write-lock check per 2 s, however many ask
VERIFY_CACHE_S = queries.VERIFY_CACHE_S
FAILURE_FLUSH_S = 5.0
log = logging.getLogger("monitor.web")


class DashboardApp(FastAPI):
    """FastAPI with SecurityHeaders wrapped around its whole stack, so responses made by its
    own outer layers (the 413 of the body limit, the 500 of ServerErrorMiddleware) carry the
    headers too; `add_middleware` would place it inside those."""

    hsts = False
    host_names: tuple[str, ...] = ("*",)

    def build_middleware_stack(self) -> ASGIApp:
        inner = HostAllowList(super().build_middleware_stack(), names=self.host_names)
        return SecurityHeaders(RequestLog(inner), hsts=self.hsts)


def create_app(runtime: MonitorPort, *, hasher: Hasher | None = None,
               lockout: Lockout | None = None, manage_runtime: bool = False) -> FastAPI:
    """Build the dashboard for `runtime` (nothing starts until the server runs it).

    `hasher` replaces the Argon2 PasswordHasher (tests); `manage_runtime=True` makes the app's
    lifespan start and stop the runtime (when the app is served on its own).
    """
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_runtime:
            await runtime.start()
        flusher = asyncio.create_task(_flush_failures(state))
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await write_failures(state, state.failures.drain())  # nothing counted is lost
            await app.state.events.stop()
            if manage_runtime:
                await runtime.stop()

    app = DashboardApp(title="Secure Failover Monitor", docs_url=None, redoc_url=None,
                       openapi_url=None, lifespan=lifespan, max_body_size=MAX_BODY_BYTES)
    app.hsts = bool(runtime.settings.tls_certfile)
    app.host_names = tuple(runtime.settings.host_names())
    verifier = queries.verifier_for(runtime)
    state = Web(
        runtime=runtime,
        templates=make_templates(),
        auth=Authenticator(runtime.store, runtime.keys.auth_cache,
                           hasher=hasher or default_hasher(), clock=runtime.clock),
        lockout=lockout or Lockout(),
        ready=Cached(lambda: runtime.store.writable(), max_age=READY_CACHE_S,
                     clock=runtime.clock),
        verification=Cached(verifier.run, max_age=VERIFY_CACHE_S, clock=runtime.clock,
                            forced=lambda: verifier.run(full=True)),
    )
    app.state.web = state
    app.state.events = AuditStream(runtime.store)
    for module in (pages, api, actions, account, spec, events, rollout):
        add_routes(app, module.router)
    for module in (incidents, charts):  # the on-call pages: incidents, charts
        add_routes(app, module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(FormError, _form_error)
    app.add_middleware(AccessGate, web=state, router=app.router)
    return app


async def _flush_failures(state: Web) -> None:
    """Write the aggregated failed-login rows of ended windows, even when no new failure
    comes to trigger it."""
    while True:
        await asyncio.sleep(FAILURE_FLUSH_S)
        try:
            await write_failures(state, state.failures.due(state.now()))
        except Exception:  # noqa: BLE001 - a locked database: the rows wait for the next turn
            log.warning("could not write aggregated login failures yet", exc_info=True)


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Register a module's routes directly on the app rather than with include_router, so
    `app.routes` stays flat: the access gate and the route-table test see every route."""
    for route in router.routes:
        assert isinstance(route, APIRoute)
        app.add_api_route(route.path, route.endpoint, methods=sorted(route.methods or ()),
                          name=route.name, response_class=route.response_class,
                          responses=route.responses)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or \
        "application/json" in request.headers.get("accept", "")


def _error(request: Request, status: int, message: str,
           headers: Mapping[str, str] | None = None) -> Response:
    if _wants_json(request) or not hasattr(request.state, "principal"):
        return JSONResponse({"detail": message}, status, headers=headers)
    response = render(request, "error.html", {"status": status, "message": message},
                      status_code=status)
    response.headers.update(headers or {})
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return _error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
                         for e in exc.errors())
    return _error(request, 422, f"Invalid input: {problems}")


async def _form_error(request: Request, exc: Exception) -> Response:
    return _error(request, 422, f"Invalid input: {exc}")
