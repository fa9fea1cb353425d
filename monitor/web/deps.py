"""What every route needs: the runtime, templates, authenticator, lockout; Actor and rendering.

One `Web` object per app, on `app.state.web`; routes get it with `Depends(web)`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from monitor.actor import Actor
from monitor.paths import templates_dir
from monitor.web.cached import Cached
from monitor.web.ports import MonitorPort
from monitor.web.security import csrf
from monitor.web.security.auth import ANONYMOUS, Authenticator, Principal
from monitor.web.security.failures import FailureLog
from monitor.web.security.roles import can
from monitor.web.security.throttle import Lockout


@dataclass
class Web:
    runtime: MonitorPort  # monitor.runtime.Runtime in production
    templates: Jinja2Templates
    auth: Authenticator
    lockout: Lockout
    ready: Cached[bool]  # the /readyz write-lock check
    verification: Cached[Any]  # the audit chain's audit.Report
    nonces: csrf.LoginNonces = field(default_factory=csrf.LoginNonces)
    failures: FailureLog = field(default_factory=FailureLog)

    @property
    def versions(self) -> list[str]:
        urls = getattr(self.runtime, "urls", None)  # the running monitor's, spec revisions too
        return list(urls if urls is not None else self.runtime.settings.service_urls())

    def now(self) -> float:
        return self.runtime.clock()


def make_templates() -> Jinja2Templates:
    env = Environment(loader=FileSystemLoader(templates_dir()), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = format_time
    env.filters["ms"] = format_ms
    env.filters["seconds"] = format_seconds
    env.filters["faults"] = format_faults
    return Jinja2Templates(env=env)


def web(request: Request) -> Web:
    return cast(Web, request.app.state.web)


def principal(request: Request) -> Principal:
    return getattr(request.state, "principal", ANONYMOUS)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def actor_for(request: Request, who: Principal | None = None) -> Actor:
    who = who or principal(request)
    return Actor(name=who.name, role=who.role, source_ip=client_ip(request),
                 user_agent=request.headers.get("user-agent", "")[:300],
                 request_id=getattr(request.state, "request_id", ""))


def render(request: Request, name: str, context: dict[str, Any],
           status_code: int = 200) -> HTMLResponse:
    state: Web = request.app.state.web
    who = principal(request)
    base = {
        "user": who,
        "can_operate": can(who.role, "operator"),
        "is_admin": can(who.role, "admin"),
        "csrf_token": csrf.issue(state.runtime.keys.csrf, who.name, now=state.now(),
                                 nonce=state.nonces.get(who.name)),
        "flash": read_flash(state, request),
        "path": request.url.path,
    }
    return state.templates.TemplateResponse(request, name, {**base, **context},
                                            status_code=status_code)


# Flash messages travel in the redirect's query string, signed so nobody can craft a link that
# makes the dashboard display a message it never produced.
def _flash_mac(state: Web, ok: str, message: str) -> str:
    key = state.runtime.keys.derive("flash")
    return hmac.new(key, f"{ok}\0{message}".encode(), hashlib.sha256).hexdigest()[:32]


def flash_url(state: Web, path: str, ok: bool, message: str, **keep: str) -> str:
    """`path` with the signed message; `keep`: query parameters the page keeps (service)."""
    flag = "1" if ok else "0"
    message = message[:500]
    query = urlencode({**{k: v for k, v in keep.items() if v}, "msg": message, "ok": flag,
                       "sig": _flash_mac(state, flag, message)})
    return f"{path}?{query}"


def read_flash(state: Web, request: Request) -> dict[str, Any] | None:
    message = request.query_params.get("msg")
    flag = request.query_params.get("ok", "")
    sig = request.query_params.get("sig", "")
    if not message or not csrf.same_bytes(sig, _flash_mac(state, flag, message).encode()):
        return None
    return {"ok": flag == "1", "message": message}


# Template filters ----------------------------------------------------------------------------
def format_time(value: float | str | None) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        return value.replace("T", " ").removesuffix("Z")[:19] + " UTC"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def format_seconds(value: float | None) -> str:
    if not value:
        return "0 s"
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def format_faults(faults: dict[str, Any] | None) -> str:
    """`{"latency": {"ms": 500}}` -> `latency(ms=500)`; JS formats the same way."""
    if not faults:
        return "none"
    parts = []
    for name, params in sorted(faults.items()):
        if isinstance(params, dict) and params:
            inner = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
            parts.append(f"{name}({inner})")
        elif params in (True, None, {}):
            parts.append(name)
        else:
            parts.append(f"{name}({params})")
    return ", ".join(parts)
