"""Shared helpers of the web tests: users, fake clock, form posts, audit reads."""

from __future__ import annotations

import re

from argon2 import PasswordHasher

from monitor.config import Settings
from monitor.storage.store import AuditRow
from monitor.web.security import csrf
from tests import support
from tests.support import FakeClock as FakeClock  # the web tests' clock is the shared one

UNREACHABLE = "v1=http://127.0.0.1:9,v2=http://127.0.0.1:7,v3=http://127.0.0.1:5"
ORIGIN = "http://testserver"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": ORIGIN}
PASSWORDS = {
    "viewer": "Viewer-pass-1234",
    "operator": "Operator-pass-5678",
    "admin": "Admin-pass-9012!",
}
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def make_settings(tmp_path, **overrides) -> Settings:
    overrides.setdefault("allowed_hosts", "testserver")
    return Settings(_env_file=None, data_dir=tmp_path, services=UNREACHABLE, **overrides)


def auth(role: str) -> tuple[str, str]:
    return (role, PASSWORDS[role])


def token(app, user: str) -> str:
    """A CSRF token as the dashboard at `app` (an app or a TestClient) issues it to `user`."""
    state = getattr(app, "app", app).state.web
    return csrf.issue(state.runtime.keys.csrf, user, now=state.now(),
                      nonce=state.nonces.get(user))


def token_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no csrf_token field"
    return match.group(1)


def post_form(client, runtime, path: str, role: str, data: dict | None = None,
              headers: dict | None = None):
    """A POST as the dashboard's own form would send it (valid token, same origin)."""
    body = {"csrf_token": token(client, role), **(data or {})}
    return client.post(path, data=body, auth=auth(role), follow_redirects=False,
                       headers=SAME_ORIGIN if headers is None else headers)


def audit_rows(runtime, action: str | None = None) -> list[AuditRow]:
    return support.audit_rows(runtime.store, action)


def flush_failures(app) -> None:
    """Write the failed-login rows the dashboard is still aggregating (as its shutdown does)."""
    import asyncio

    from monitor.web.security.gate import write_failures

    state = getattr(app, "app", app).state.web
    asyncio.run(write_failures(state, state.failures.drain()))
