"""Host allow-list (DNS rebinding defence): a request whose Host header names another host is
answered 400 before any route or authentication runs.

A rebinding page on `attacker.example` that resolves to 127.0.0.1 reaches our socket with
`Host: attacker.example`; refusing unknown names keeps it from reading the dashboard with the
victim's cached credentials. `*.example.org` allows every subdomain of example.org.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def host_name(header: str) -> str:
    """The name part of a Host header: `[::1]:8000` -> `[::1]`, `a.b:80` -> `a.b`."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[:end + 1] if end > 0 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed(header: str | None, names: Iterable[str]) -> bool:
    if not header:
        return False
    name = host_name(header)
    for pattern in names:
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class HostAllowList:
    def __init__(self, app: ASGIApp, *, names: Iterable[str]) -> None:
        self.app = app
        self.names = [n.lower() for n in names]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = Headers(scope=scope).get("host")
            if not allowed(header, self.names):
                shown = (header or "")[:80]
                response = PlainTextResponse(
                    f"Bad request: host {shown!r} is not served here (MONITOR_ALLOWED_HOSTS)",
                    status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
