"""Who may use which route: the route x role table, deny by default, denials audited."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from monitor.runtime import create_runtime
from monitor.storage.store import Notice
from monitor.web.app import create_app
from monitor.web.security.gate import routes_without_role
from monitor.web.security.roles import ROUTE_ROLES
from tests.web.support import CHEAP_HASHER, SAME_ORIGIN, audit_rows, auth, make_settings, token

SPEC = ("apiVersion: v1\nkind: Service\nmetadata: {name: books}\n"
        "spec: {versions: [{name: v1, url: 'http://127.0.0.1:9'}]}\n")
ROLES = ("anonymous", "viewer", "operator", "admin")
ACTION = 303  # an accepted action redirects back to the overview with its outcome

# route template -> (method, concrete path, form, expected status per role in ROLES order)
EXPECTED = {
    "/healthz": ("GET", "/healthz", None, (200, 200, 200, 200)),
    "/readyz": ("GET", "/readyz", None, (503, 503, 503, 503)),  # runtime not started
    "/static": ("GET", "/static/app.css", None, (200, 200, 200, 200)),
    "/metrics": ("GET", "/metrics", None, (401, 200, 200, 200)),
    "/": ("GET", "/", None, (401, 200, 200, 200)),
    "/partials/chart": ("GET", "/partials/chart", None, (401, 200, 200, 200)),
    "/partials/rollout": ("GET", "/partials/rollout", None, (401, 200, 200, 200)),
    "/audit": ("GET", "/audit", None, (401, 200, 200, 200)),
    "/health-log": ("GET", "/health-log", None, (401, 200, 200, 200)),
    "/notices": ("GET", "/notices", None, (401, 200, 200, 200)),
    "/incidents": ("GET", "/incidents", None, (401, 200, 200, 200)),
    "/charts": ("GET", "/charts?window=7d", None, (401, 200, 200, 200)),
    "/incidents/{incident_id}": ("GET", "/incidents/1", None, (401, 404, 404, 404)),
    "/users": ("GET", "/users", None, (401, 403, 403, 200)),
    "/spec": ("GET", "/spec", None, (401, 200, 200, 200)),
    "/api/status": ("GET", "/api/status", None, (401, 200, 200, 200)),
    "/api/services": ("GET", "/api/services", None, (401, 200, 200, 200)),
    "/api/audit": ("GET", "/api/audit", None, (401, 200, 200, 200)),
    "/api/probes": ("GET", "/api/probes", None, (401, 200, 200, 200)),
    "/api/notices": ("GET", "/api/notices", None, (401, 200, 200, 200)),
    "/api/audit/verify": ("GET", "/api/audit/verify", None, (401, 403, 403, 200)),
    "/api/users": ("GET", "/api/users", None, (401, 403, 403, 200)),
    "/api/spec": ("GET", "/api/spec", None, (401, 200, 200, 200)),
    "/api/events": ("GET", "/api/events", None, (401, 200, 200, 200)),
    "/api/apply": ("POST", "/api/apply", {"spec": SPEC, "dry_run": "1"}, (401, 403, 403, 200)),
    "/actions/chaos/{version}/{fault}": ("POST", "/actions/chaos/v2/latency",
                                         {"ms": "100", "jitter_ms": "0"},
                                         (401, 403, ACTION, ACTION)),
    "/actions/failover": ("POST", "/actions/failover",
                          {"target": "v2", "reason": "drill", "force": "on"},
                          (401, 403, ACTION, ACTION)),
    "/actions/failback": ("POST", "/actions/failback", {}, (401, 403, ACTION, ACTION)),
    "/actions/pause": ("POST", "/actions/pause", {}, (401, 403, ACTION, ACTION)),
    "/actions/resume": ("POST", "/actions/resume", {}, (401, 403, ACTION, ACTION)),
    "/actions/rollout/{op}": ("POST", "/actions/rollout/start",
                              {"target": "v2", "strategy": "canary"},
                              (401, 403, ACTION, ACTION)),
    "/logout": ("POST", "/logout", {}, (401, 401, 401, 401)),  # logout itself answers 401
    "/account/password": ("GET", "/account/password", None, (401, 200, 200, 200)),
}
CASES = [(route, role, expected[3][ROLES.index(role)])
         for route, expected in EXPECTED.items() for role in ROLES]


def test_it_declares_a_role_for_every_route(app):
    assert routes_without_role(app) == []
    assert {getattr(r, "path", None) for r in app.routes} == set(ROUTE_ROLES)


def test_it_expects_something_of_every_declared_route():
    assert set(EXPECTED) == set(ROUTE_ROLES)


def test_it_reports_a_route_added_without_a_role(app):
    @app.get("/forgotten")
    async def forgotten() -> dict:
        return {"secret": True}

    assert routes_without_role(app) == ["/forgotten"]


@pytest.mark.parametrize("route, role, status", CASES)
def test_it_answers_each_role_as_the_table_says(client, runtime, route, role, status):
    method, path, form, _ = EXPECTED[route]
    credentials = None if role == "anonymous" else auth(role)
    if method == "GET":
        response = client.get(path, auth=credentials)
    else:
        body = {"csrf_token": token(client, role), **form}
        response = client.post(path, data=body, auth=credentials, headers=SAME_ORIGIN,
                               follow_redirects=False)
    assert response.status_code == status, response.text[:300]
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic ")


def test_it_refuses_a_route_that_has_no_role_even_to_an_admin(app, client, runtime):
    @app.get("/forgotten")
    async def forgotten() -> dict:
        return {"secret": True}

    response = client.get("/forgotten", auth=auth("admin"))
    assert response.status_code == 403
    assert "secret" not in response.text
    [row] = audit_rows(runtime, "access.denied")
    assert (row.actor, row.target, row.outcome) == ("admin", "/forgotten", "denied")


def test_it_audits_a_denial_with_who_what_and_why(client, runtime):
    response = client.post("/actions/failover", data={"csrf_token": token(client, "viewer"),
                                                      "target": "v2", "reason": "x"},
                           auth=auth("viewer"), headers=SAME_ORIGIN)
    assert response.status_code == 403
    [row] = audit_rows(runtime, "access.denied")
    assert (row.actor, row.role, row.target, row.outcome) == (
        "viewer", "viewer", "/actions/failover", "denied")
    assert "requires operator" in row.reason
    assert row.request_id == response.headers["x-request-id"]
    assert runtime.status()["active"] == "v1"


@pytest.mark.parametrize("path", ["/actions/failover", "/actions/pause", "/actions/failback",
                                  "/actions/resume", "/actions/chaos/v1/crash", "/logout"])
def test_it_answers_get_on_an_action_with_405_and_changes_nothing(client, runtime, path):
    before = runtime.status()
    response = client.get(path + "?target=v2&reason=x&force=on", auth=auth("operator"))
    assert response.status_code == 405
    after = runtime.status()
    assert (after["active"], after["epoch"], after["paused"]) == (
        before["active"], before["epoch"], before["paused"])
    assert not [r for r in audit_rows(runtime) if r.action.startswith(("failover.", "chaos."))]


def test_it_hides_unknown_paths_from_anonymous_callers(client):
    assert client.get("/no-such-page").status_code == 401
    assert client.get("/no-such-page", auth=auth("viewer")).status_code == 404


def test_it_lets_prometheus_scrape_with_the_scrape_token_only(tmp_path, clock):
    runtime = create_runtime(make_settings(tmp_path, scrape_token="s" * 40), clock=clock)
    client = TestClient(create_app(runtime, hasher=CHEAP_HASHER))
    good = client.get("/metrics", headers={"Authorization": "Bearer " + "s" * 40})
    wrong = client.get("/metrics", headers={"Authorization": "Bearer " + "t" * 40})
    elsewhere = client.get("/api/status", headers={"Authorization": "Bearer " + "s" * 40})
    assert good.status_code == 200 and "monitor_" in good.text
    assert wrong.status_code == 401
    assert elsewhere.status_code == 401
    assert [r.reason for r in audit_rows(runtime, "login.failed")] == ["wrong scrape token"]
    with runtime.store.read() as session:
        assert list(session.exec(select(Notice))) == []
    runtime.store.dispose()
