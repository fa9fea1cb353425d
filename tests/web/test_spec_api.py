"""Desired state over HTTP: read it as a viewer, apply it as an admin, every apply audited."""

from monitor.actor import SYSTEM
from tests.web.support import audit_rows, auth, post_form

SPEC = """apiVersion: v1
kind: Service
metadata: {name: books}
spec:
  versions:
    - {name: v1, command: [python, -m, services.v1], replicas: 3}
    - {name: v2, url: "http://127.0.0.1:9"}
"""


def test_it_shows_the_settings_as_the_spec_before_any_apply(client):
    answer = client.get("/api/spec", auth=auth("viewer")).json()
    assert answer["revision"] is None
    (books,) = answer["services"]
    assert books["metadata"]["name"] == "books"
    assert [v["name"] for v in books["spec"]["versions"]] == ["v1", "v2", "v3"]


def test_it_applies_a_spec_and_audits_it_with_its_diff(client, runtime):
    answer = post_form(client, runtime, "/api/apply", "admin", {"spec": SPEC})
    assert answer.status_code == 200, answer.text
    assert answer.json()["revision"] == 1
    again = post_form(client, runtime, "/api/apply", "admin",
                      {"spec": SPEC.replace("replicas: 3", "replicas: 2")})
    assert again.json()["changes"] == ["~ books spec.versions[0].replicas: 3 -> 2"]
    shown = client.get("/api/spec", auth=auth("viewer")).json()
    assert shown["revision"] == 2
    assert shown["services"][0]["spec"]["versions"][0]["replicas"] == 2
    rows = audit_rows(runtime, "spec.apply")
    assert [(r.actor, r.outcome) for r in rows] == [("admin", "ok"), ("admin", "ok")]
    assert "replicas: 3 -> 2" in rows[-1].params


def test_it_changes_nothing_on_a_dry_run(client, runtime):
    answer = post_form(client, runtime, "/api/apply", "admin", {"spec": SPEC, "dry_run": "1"})
    assert answer.json() | {"at": None} == {"revision": None, "dry_run": True,
                                            "changes": ["+ books"], "services": ["books"],
                                            "at": None}
    assert client.get("/api/spec", auth=auth("viewer")).json()["revision"] is None
    assert audit_rows(runtime, "spec.apply") == []


def test_it_refuses_a_bad_spec_with_the_field_and_changes_nothing(client, runtime):
    answer = post_form(client, runtime, "/api/apply", "admin",
                       {"spec": SPEC.replace("replicas: 3", "replicas: -3")})
    assert answer.status_code == 422
    assert "spec.versions[0].replicas" in answer.json()["detail"]
    assert client.get("/api/spec", auth=auth("viewer")).json()["revision"] is None
    (row,) = audit_rows(runtime, "spec.apply")
    assert row.outcome == "invalid" and "replicas" in row.reason


def test_it_refuses_an_apply_without_the_csrf_token(client, runtime):
    answer = client.post("/api/apply", data={"spec": SPEC}, auth=auth("admin"),
                         headers={"Sec-Fetch-Site": "same-origin"})
    assert answer.status_code == 403
    assert client.get("/api/spec", auth=auth("viewer")).json()["revision"] is None


def test_it_shows_each_replica_on_the_overview(client, runtime, monkeypatch):
    replicas = [{"id": "v1-1", "port": 8123, "ready": True, "pid": 42, "restarts": 2,
                 "cpu_percent": 37.4},
                {"id": "v1-2", "port": 8124, "ready": False, "pid": None, "restarts": 0,
                 "cpu_percent": None}]
    monkeypatch.setattr(runtime.desired, "replicas",
                        lambda version: replicas if version == "v1" else None)
    status = client.get("/api/status", auth=auth("viewer")).json()
    assert status["versions"][0]["replicas"] == replicas
    assert status["versions"][1]["replicas"] is None
    page = client.get("/", auth=auth("viewer")).text
    assert ":8123 ready 37% CPU 2 restarts; :8124 not ready" in page


def test_it_shows_the_applied_spec_its_replicas_and_scale_events_on_the_spec_page(
        client, runtime, monkeypatch):
    before = client.get("/spec", auth=auth("viewer"))
    assert before.status_code == 200
    assert "No spec applied" in before.text and "services.v1" not in before.text
    evil = SPEC.replace("replicas: 3}", "replicas: 3, env: {NOTE: '<script>x</script>'}}")
    assert post_form(client, runtime, "/api/apply", "admin", {"spec": evil}).status_code == 200
    runtime.recorder.record(SYSTEM, "replicas.scale", target="v1",
                            params={"from": 1, "to": 3, "cpu_percent": 91.0},
                            reason="average CPU 91% against a target of 40%")
    monkeypatch.setattr(runtime.desired, "replicas", lambda version: [
        {"id": "v1-7", "port": 8123, "ready": True, "state": "ready", "pid": 42, "restarts": 2,
         "cpu_percent": 37.4}] if version == "v1" else None)
    page = client.get("/spec", auth=auth("viewer")).text
    assert 'data-field="revision">1<' in page and 'data-field="applied-by">admin<' in page
    assert "services.v1" in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<script>x</script>" not in page  # the YAML is escaped
    row = page[page.index('data-replica="v1-7"'):]
    cells = [c.split(">", 1)[1].split("<", 1)[0] for c in row.split("<td")[1:7]]
    assert cells == ["v1-7", '', "8123", "42", "37 %", "2"]
    assert 'data-col="state">ready<' in row
    assert "average CPU 91% against a target of 40%" in page
    assert 'data-action="spec.apply"' in page and 'data-action="replicas.scale"' in page
    assert 'href="/spec"' in client.get("/", auth=auth("viewer")).text
