"""One JSON log line per dashboard request, with its request id; never headers or bodies."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("monitor.web")


class RequestLog:
    """Logs method, path, status, user, client and duration after each HTTP request.

    Only the path is logged (no query string, no header, no body), so credentials sent by a
    client can never reach the log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def remember_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, remember_status)
        finally:
            state = scope.get("state", {})
            who = state.get("principal")
            log.info("%s %s %s", scope["method"], scope["path"], status["code"], extra={
                "event": "request", "request_id": state.get("request_id", ""),
                "status": status["code"], "user": getattr(who, "name", None),
                "client": (scope.get("client") or ("", 0))[0],
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
