"""Several services on the dashboard: /api/status?service=, /api/services, actions with a
`service` field, pages filtered by service."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from monitor.config import Settings
from monitor.runtime import create_runtime
from monitor.storage.users import add_user
from monitor.web.app import create_app
from tests.web.support import CHEAP_HASHER, PASSWORDS, audit_rows, auth, make_settings, post_form

FILMS = "films:a=http://127.0.0.1:11,b=http://127.0.0.1:13"


@pytest.fixture
def runtime(tmp_path, clock):
    runtime = create_runtime(make_settings(tmp_path, extra_services=FILMS), clock=clock)
    for role, password in PASSWORDS.items():
        add_user(runtime.store, role, role, password, now=clock(), audit_key=runtime.keys.audit,
                 hasher=CHEAP_HASHER)
    yield runtime
    runtime.fleet.close()
    runtime.store.dispose()


@pytest.fixture
def client(runtime):
    return TestClient(create_app(runtime, hasher=CHEAP_HASHER), raise_server_exceptions=False)


@pytest.mark.parametrize("query, service, active, versions", [
    ("", "books", "v1", ["v1", "v2", "v3"]),
    ("?service=books", "books", "v1", ["v1", "v2", "v3"]),
    ("?service=films", "films", "a", ["a", "b"]),
])
def test_it_gives_the_status_of_the_service_asked_for(client, query, service, active, versions):
    body = client.get(f"/api/status{query}", auth=auth("viewer")).json()
    assert (body["service"], body["active"]) == (service, active)
    assert [v["name"] for v in body["versions"]] == versions


@pytest.mark.parametrize("path", ["/api/status", "/api/probes", "/", "/health-log", "/notices",
                                  "/partials/chart", "/charts"])
def test_it_answers_404_naming_the_known_services_for_an_unknown_one(client, path):
    response = client.get(f"{path}?service=nope", auth=auth("viewer"),
                          headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert "unknown service 'nope'; one of books, films" in response.text


def test_it_lists_every_service_with_its_active_version_and_states(client):
    body = client.get("/api/services", auth=auth("viewer")).json()
    assert body["default"] == "books"
    assert [(s["name"], s["active"], s["epoch"], s["incident"]) for s in body["services"]] == [
        ("books", "v1", 0, None), ("films", "a", 0, None)]
    assert [v["name"] for v in body["services"][1]["versions"]] == ["a", "b"]


def test_it_fails_over_the_service_the_form_names_and_no_other(client, runtime):
    response = post_form(client, runtime, "/actions/failover", "operator",
                         {"service": "films", "target": "b", "reason": "drill", "force": "on"})
    assert response.status_code == 303
    assert "service=films" in response.headers["location"]
    assert runtime.fleet.unit("films").watchdog.state.active == "b"
    assert runtime.watchdog.state.active == "v1"
    (row,) = audit_rows(runtime, "failover.manual")
    assert (row.target, row.actor, json.loads(row.params)["service"]) == ("b", "operator",
                                                                          "films")


@pytest.mark.parametrize("path, data", [
    ("/actions/failover", {"service": "nope", "target": "a", "reason": "x", "force": "on"}),
    ("/actions/failover", {"service": "films", "target": "v2", "reason": "x", "force": "on"}),
    ("/actions/pause", {"service": "nope"}),
    ("/actions/chaos/a/latency", {"service": "nope"}),
    ("/actions/chaos/v1/latency", {"service": "films"}),
])
def test_it_refuses_an_unknown_service_or_a_version_of_another_service(client, runtime, path,
                                                                       data):
    response = post_form(client, runtime, path, "operator", data)
    assert response.status_code == 422
    assert "service: unknown service" in response.text or "unknown version" in response.text
    assert runtime.watchdog.state.epoch == 0
    assert runtime.fleet.unit("films").watchdog.state.epoch == 0
    assert not runtime.fleet.unit("films").watchdog.state.paused
    assert [r.outcome for r in audit_rows(runtime) if r.outcome == "invalid"] == ["invalid"]


def test_it_pauses_only_the_service_named(client, runtime):
    assert post_form(client, runtime, "/actions/pause", "operator",
                     {"service": "films", "reason": "maintenance"}).status_code == 303
    assert runtime.fleet.unit("films").watchdog.state.paused
    assert not runtime.watchdog.state.paused


def test_it_refuses_a_service_action_to_a_viewer(client, runtime):
    response = post_form(client, runtime, "/actions/pause", "viewer", {"service": "films"})
    assert response.status_code == 403
    assert not runtime.fleet.unit("films").watchdog.state.paused


def test_it_shows_the_services_and_the_chosen_one_with_its_forms(client):
    page = client.get("/?service=films", auth=auth("operator")).text
    assert 'data-service="books"' in page and 'data-service="films"' in page
    assert '<section id="overview" data-refresh="3000" data-service="films"' in page
    assert page.count('<input type="hidden" name="service" value="films">') >= 4
    assert 'action="/actions/chaos/a/crash"' in page
    assert 'action="/actions/chaos/v1/crash"' not in page


def test_it_groups_notices_by_service_and_filters_them(client, runtime, clock):
    from monitor.notices.outbox import enqueue

    with runtime.store.write() as session:
        for service, subject in (("books", "books: Failover v1 -> v2"),
                                 ("films", "films: All versions down")):
            enqueue(session, kind="failover", subject=subject, payload={}, now=clock(),
                    service=service)
    page = client.get("/notices", auth=auth("viewer")).text
    books = page.split('<table class="log" data-service="books">')[1].split("</table>")[0]
    films = page.split('<table class="log" data-service="films">')[1].split("</table>")[0]
    assert "Failover v1 -&gt; v2" in books and "All versions down" not in books
    assert "All versions down" in films
    only = client.get("/notices?service=films", auth=auth("viewer")).text
    assert '<table class="log" data-service="books">' not in only
    assert "All versions down" in only


def test_it_renders_one_page_of_a_services_versions(tmp_path, clock):
    many = ",".join(f"s{i}=http://127.0.0.1:{1000 + i}" for i in range(120))
    settings = Settings(_env_file=None, data_dir=tmp_path, services=many,
                        allowed_hosts="testserver")
    runtime = create_runtime(settings, clock=clock)
    add_user(runtime.store, "viewer", "viewer", PASSWORDS["viewer"], now=clock(),
             audit_key=runtime.keys.audit, hasher=CHEAP_HASHER)
    client = TestClient(create_app(runtime, hasher=CHEAP_HASHER))
    try:
        first = client.get("/", auth=auth("viewer")).text
        third = client.get("/?versions_page=3", auth=auth("viewer")).text
    finally:
        runtime.store.dispose()
    assert first.count('<tr data-version="') == 50 and 'data-version="s49"' in first
    assert 'data-version="s50"' not in first and "versions_page=2" in first
    assert third.count('<tr data-version="') == 20 and 'data-version="s119"' in third
    assert "versions_page=2" in third and "versions_page=4" not in third


def test_it_charts_the_service_asked_for_from_its_own_rows(client, runtime, clock):
    from monitor.storage.store import ProbeRow

    with runtime.store.write() as session:
        session.add(ProbeRow(version="a", service="films", at=clock() - 60, ok=False))
        session.add(ProbeRow(version="v1", at=clock() - 60, ok=True, latency_ms=3.0))
    films = client.get("/charts?window=15m&service=films", auth=auth("viewer")).text
    books = client.get("/charts?window=15m", auth=auth("viewer")).text
    assert 'data-version="a"' in films and 'data-version="v1"' not in films
    assert 'data-version="v1"' in books and 'data-version="a"' not in books
    assert "service=films" in films.split('aria-label="Window"')[1].split("</nav>")[0]
