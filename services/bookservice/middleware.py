"""ASGI middleware: apply chaos faults to non-chaos requests; stamp the version header."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.bookservice.chaos import is_chaos_path
from services.bookservice.service import Service


class FaultMiddleware:
    """Hang, delay or answer early according to the service's active faults."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_chaos_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        service = self.service
        health = scope["path"] == "/health"
        plan = service.faults.plan(service.now(), service.rand, health=health)
        while plan.hang:  # accepted, never answered, until a reset wakes it
            await service.wait_for_release()
            plan = service.faults.plan(service.now(), service.rand, health=health)
        if plan.delay_s > 0:
            await service.sleep(plan.delay_s)
        if plan.status is not None:
            await JSONResponse({"detail": plan.reason}, status_code=plan.status)(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)


class VersionHeaderMiddleware:
    """Every response carries ``X-Service-Version``."""

    def __init__(self, app: ASGIApp, version: str) -> None:
        self.app = app
        self.header = (b"x-service-version", version.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_version)
