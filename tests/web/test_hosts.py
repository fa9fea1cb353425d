"""Host allow-list: a DNS-rebinding page reaches our socket with its own Host header."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from monitor.web.app import create_app
from monitor.web.security.hosts import allowed, host_name
from tests.web.support import CHEAP_HASHER, audit_rows, auth


@pytest.mark.parametrize("header, name", [
    ("127.0.0.1:8000", "127.0.0.1"),
    ("LocalHost", "localhost"),
    ("[::1]:8000", "[::1]"),
    ("[::1]", "[::1]"),
    ("monitor.example.org:443", "monitor.example.org"),
])
def test_it_takes_the_name_out_of_a_host_header(header, name):
    assert host_name(header) == name


@pytest.mark.parametrize("header, names, ok", [
    ("127.0.0.1:8000", ["127.0.0.1", "localhost"], True),
    ("attacker.example", ["127.0.0.1", "localhost"], False),
    ("localhost.attacker.example", ["localhost"], False),
    ("a.monitor.example.org", ["*.monitor.example.org"], True),
    ("monitor.example.org.evil", ["*.monitor.example.org"], False),
    (None, ["localhost"], False),
    ("", ["localhost"], False),
])
def test_it_allows_only_listed_hosts(header, names, ok):
    assert allowed(header, names) is ok


def test_it_refuses_a_rebound_host_before_authentication(client, runtime):
    response = client.get("/api/status", auth=auth("admin"),
                          headers={"Host": "attacker.example"})
    assert response.status_code == 400
    assert "attacker.example" in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/api/status", auth=auth("admin")).status_code == 200
    assert not audit_rows(runtime, "login.failed")


def test_it_serves_the_bound_loopback_names_by_default(runtime):
    runtime.settings = runtime.settings.model_copy(update={"allowed_hosts": ""})
    app = create_app(runtime, hasher=CHEAP_HASHER)
    for host in ("127.0.0.1:8000", "localhost:8000"):
        client = TestClient(app, base_url=f"http://{host}")
        assert client.get("/healthz").status_code == 200
    assert TestClient(app).get("/healthz").status_code == 400  # Host: testserver
