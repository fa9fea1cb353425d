"""Security headers on every response: pages, API, static files, redirects and every error."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from monitor.runtime import create_runtime
from monitor.web.app import create_app
from monitor.web.security.headers import CSP
from monitor.web.security.roles import ROUTE_ROLES
from monitor.web.security.throttle import Lockout
from tests.web.support import CHEAP_HASHER, SAME_ORIGIN, auth, make_settings, post_form

EXPECTED = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}
GET_PATHS = [p if p != "/static" else "/static/app.js"
             for p in ROUTE_ROLES if "{" not in p
             and not p.startswith(("/actions", "/logout", "/api/apply"))]


def assert_secure(response) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, f"{name} on {response.status_code}"
    assert "server" not in response.headers
    assert "strict-transport-security" not in response.headers
    assert len(response.headers["x-request-id"]) == 16


def test_it_uses_a_strict_policy_without_inline_script():
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert "frame-ancestors 'none'" in CSP


@pytest.mark.parametrize("path", GET_PATHS)
def test_it_sets_the_headers_on_every_get_route(client, path):
    response = client.get(path, auth=auth("admin"))
    assert response.status_code in (200, 503)
    assert_secure(response)


def _crash(runtime):
    def broken() -> dict:
        raise RuntimeError("boom")

    runtime.status = broken


ERRORS = {
    "401 without credentials": (401, lambda c, r: c.get("/")),
    "401 wrong password": (401, lambda c, r: c.get("/", auth=("viewer", "nope-nope-nope"))),
    "403 role": (403, lambda c, r: c.get("/users", auth=auth("viewer"))),
    "403 csrf": (403, lambda c, r: c.post("/actions/pause", auth=auth("operator"),
                                          data={}, headers=SAME_ORIGIN)),
    "404": (404, lambda c, r: c.get("/nope", auth=auth("viewer"))),
    "404 static": (404, lambda c, r: c.get("/static/nope.js")),
    "405": (405, lambda c, r: c.get("/actions/pause", auth=auth("operator"))),
    "422 query": (422, lambda c, r: c.get("/api/probes?limit=x", auth=auth("viewer"))),
    "422 form": (422, lambda c, r: post_form(c, r, "/actions/failover", "operator",
                                             {"target": "v9", "reason": "x"})),
    "413 body": (413, lambda c, r: post_form(c, r, "/actions/pause", "operator",
                                             {"reason": "x" * 100_000})),
    "500": (500, lambda c, r: (_crash(r), c.get("/api/status", auth=auth("viewer")))[1]),
    "303 redirect": (303, lambda c, r: post_form(c, r, "/actions/pause", "operator")),
    "401 logout": (401, lambda c, r: post_form(c, r, "/logout", "viewer")),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_it_sets_the_headers_on_errors_and_redirects(client, runtime, case):
    status, call = ERRORS[case]
    response = call(client, runtime)
    assert response.status_code == status
    assert_secure(response)


def test_it_sets_the_headers_on_429(runtime):
    client = TestClient(create_app(runtime, hasher=CHEAP_HASHER,
                                   lockout=Lockout(pair_limit=1)))
    response = client.get("/", auth=("viewer", "wrong-password-1"))
    assert response.status_code == 429
    assert_secure(response)


def test_it_adds_hsts_only_when_tls_is_on(tmp_path, clock):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    runtime = create_runtime(make_settings(tmp_path, tls_certfile=cert, tls_keyfile=key),
                             clock=clock)
    response = TestClient(create_app(runtime, hasher=CHEAP_HASHER)).get("/healthz")
    assert response.headers["strict-transport-security"].startswith("max-age=")
    runtime.store.dispose()


def test_it_hands_each_request_its_own_id(client):
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5
