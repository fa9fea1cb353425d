"""Real book service processes on loopback: hang, silent corruption, crash."""

import secrets

import httpx
import pytest

from services.bookservice.canary import (
    CANARY_BOOK_ID,
    CANARY_QUERY,
    book_digest,
    expected_canary_digest,
)
from tests.e2e.procs import free_port, start_service, stop_process

TOKEN = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def v2_url():
    port = free_port()
    proc = start_service("v2", port, TOKEN)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture
def client(v2_url):
    with httpx.Client(base_url=v2_url, timeout=5.0) as client:
        yield client
        client.post("/chaos/reset", headers=AUTH)


def canary(client):
    response = client.get("/books", params={"q": CANARY_QUERY, "limit": 1})
    assert response.status_code == 200
    return response.json()["items"][0]


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_it_runs_every_version_as_a_module(version):
    port = free_port()
    proc = start_service(version, port, TOKEN)
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/books", params={"q": "pride and prejudice"})
        assert response.headers["X-Service-Version"] == version
        assert response.json()["items"][0]["title"] == "Pride and Prejudice"
    finally:
        assert stop_process(proc) is not None


def test_it_hangs_until_the_client_times_out(client):
    assert client.post("/chaos/hang", headers=AUTH).status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        client.get("/health", timeout=0.5)
    assert "hang" in client.get("/chaos", headers=AUTH).json()["faults"]
    assert client.post("/chaos/reset", headers=AUTH).status_code == 200
    assert client.get("/health").status_code == 200


def test_it_serves_a_wrong_canary_while_health_says_ok(client):
    assert book_digest(canary(client)) == expected_canary_digest()
    assert client.post("/chaos/corrupt", json={"silent": True}, headers=AUTH).status_code == 200

    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["checksum_verified"] is True
    book = canary(client)
    assert book["id"] == CANARY_BOOK_ID
    assert book_digest(book) != expected_canary_digest()

    client.post("/chaos/reset", headers=AUTH)
    assert book_digest(canary(client)) == expected_canary_digest()


def test_it_crashes_and_refuses_connections():
    port = free_port()
    proc = start_service("v2", port, TOKEN)
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{url}/chaos/crash", headers=AUTH).status_code == 202
        assert proc.wait(timeout=10) == 1
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=2.0)
    finally:
        stop_process(proc)
