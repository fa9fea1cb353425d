"""Chaos faults: the token check, bounds, and the observable effect of every fault."""

import asyncio
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from services.bookservice.canary import CANARY_QUERY, book_digest, expected_canary_digest
from tests.services.conftest import AUTH, TOKEN


@pytest.fixture
def app(build):
    return build("v2")


@pytest.fixture
def client(app):
    with TestClient(app) as client:
        yield client


def inject(client, fault, body=None):
    response = client.post(f"/chaos/{fault}", json=body, headers=AUTH)
    assert response.status_code in (200, 202), response.text
    return response


def active(client):
    return client.get("/chaos", headers=AUTH).json()["faults"]


def canary_digest(client):
    items = client.get("/books", params={"q": CANARY_QUERY, "limit": 1}).json()["items"]
    return book_digest(items[0])


@pytest.mark.parametrize(
    "configured, authorization, status",
    [
        (None, None, 403),
        (None, f"Bearer {TOKEN}", 403),
        ("", f"Bearer {TOKEN}", 403),
        (TOKEN, None, 401),
        (TOKEN, "Bearer", 401),
        (TOKEN, "Bearer wrong-token", 401),
        (TOKEN, f"Bearer {TOKEN}x", 401),
        (TOKEN, f"Basic {TOKEN}", 401),
        (TOKEN, f"Bearer {TOKEN}", 200),
        (TOKEN, f"bearer {TOKEN}", 200),
    ],
)
def test_it_guards_chaos_with_the_bearer_token(build, configured, authorization, status):
    headers = {} if authorization is None else {"Authorization": authorization}
    with TestClient(build(token=configured)) as client:
        show = client.get("/chaos", headers=headers)
        change = client.post("/chaos/errors", json={"probability": 1}, headers=headers)
        assert show.status_code == change.status_code == status
        if status == 401:
            assert show.headers["WWW-Authenticate"] == "Bearer"
        if status == 403:
            assert show.json() == {"detail": "chaos disabled"}
        assert (client.get("/books").status_code == 500) is (status == 200)


def test_it_checks_the_token_before_the_body(client):
    response = client.post("/chaos/latency", json={"ms": -5}, headers={"Authorization": "Bearer x"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "fault, body, field",
    [
        ("cpu", {"seconds": 0}, "seconds"),
        ("cpu", {"seconds": 61}, "seconds"),
        ("cpu", {"seconds": 5, "workers": 3}, "workers"),
        ("cpu", {}, "seconds"),
        ("latency", {"ms": -1}, "ms"),
        ("latency", {"ms": 10_001}, "ms"),
        ("latency", {"ms": 10, "jitter_ms": 5_001}, "jitter_ms"),
        ("latency", {"ms": "100"}, "ms"),
        ("latency", {"ms": 10, "bogus": 1}, "bogus"),
        ("errors", {"probability": 1.5}, "probability"),
        ("errors", {"probability": -0.1}, "probability"),
        ("corrupt", {"silent": "yes"}, "silent"),
        ("flap", {"period_s": 0.5}, "period_s"),
        ("flap", {"period_s": 301}, "period_s"),
    ],
)
def test_it_rejects_out_of_range_faults_and_changes_nothing(app, client, fault, body, field):
    response = client.post(f"/chaos/{fault}", json=body, headers=AUTH)
    assert response.status_code == 422
    assert any(field in problem["loc"] for problem in response.json()["detail"])
    assert active(client) == {}
    assert client.get("/health").json()["status"] == "ok"
    assert not app.state.service.burner.running


def test_it_rejects_a_malformed_body(client):
    response = client.post(
        "/chaos/errors", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert active(client) == {}


def test_it_adds_latency_to_every_non_chaos_request(client, sleeps, dice):
    dice.value = 0.5
    inject(client, "latency", {"ms": 200, "jitter_ms": 100})
    client.get("/books")
    client.get("/health")
    assert sleeps.calls == [pytest.approx(0.25), pytest.approx(0.25)]
    active(client)
    assert len(sleeps.calls) == 2  # chaos routes are never delayed
    assert active(client)["latency"]["ms"] == 200


@pytest.mark.parametrize(
    "probability, dice_value, status",
    [(1.0, 0.999, 500), (0.0, 0.0, 200), (0.25, 0.2, 500), (0.25, 0.3, 200)],
)
def test_it_answers_errors_with_the_given_probability(
    client, dice, probability, dice_value, status
):
    dice.value = dice_value
    inject(client, "errors", {"probability": probability})
    for path in ("/books", "/books/pride-and-prejudice", "/health"):
        assert client.get(path).status_code == status
    assert client.get("/chaos", headers=AUTH).status_code == 200


def test_it_fails_health_on_loud_corruption(client):
    inject(client, "corrupt", {"silent": False})
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail" and body["checksum_verified"] is False
    assert body["reasons"] == ["catalog checksum mismatch"]
    assert canary_digest(client) != expected_canary_digest()


def test_it_lies_on_health_under_silent_corruption(client):
    healthy = client.get("/health").json()
    inject(client, "corrupt", {"silent": True})
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["checksum_verified"] is True
    assert response.json()["catalog_checksum"] == healthy["catalog_checksum"]
    assert canary_digest(client) != expected_canary_digest()


def test_it_flaps_down_and_up_on_the_period(client, clock):
    inject(client, "flap", {"period_s": 10})
    phases = []
    for _ in range(4):
        phases.append(
            (
                client.get("/health").status_code,
                client.get("/books").status_code,
                active(client)["flap"]["phase"],
            )
        )
        clock.advance(10)
    assert phases == [(503, 503, "down"), (200, 200, "up"), (503, 503, "down"), (200, 200, "up")]


def test_it_says_why_health_fails_while_flapping(client):
    inject(client, "flap", {"period_s": 30})
    body = client.get("/health").json()
    assert body["status"] == "fail" and body["reasons"] == ["flap: down phase"]


async def test_it_hangs_requests_until_reset(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        assert (await client.post("/chaos/hang", headers=AUTH)).status_code == 200
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("/health"), timeout=0.2)
        parked = asyncio.create_task(client.get("/books"))
        done, _ = await asyncio.wait({parked}, timeout=0.2)
        assert not done
        assert "hang" in (await client.get("/chaos", headers=AUTH)).json()["faults"]
        assert (await client.post("/chaos/reset", headers=AUTH)).status_code == 200
        response = await asyncio.wait_for(parked, timeout=5)
        assert response.status_code == 200
        assert (await client.get("/health")).status_code == 200


def test_it_burns_real_cpu_for_a_bounded_time(app, client, clock):
    burner = app.state.service.burner
    wall, cpu = time.perf_counter(), time.process_time()
    time.sleep(0.2)
    idle_rate = (time.process_time() - cpu) / (time.perf_counter() - wall)

    wall, cpu = time.perf_counter(), time.process_time()
    inject(client, "cpu", {"seconds": 1, "workers": 1})
    assert active(client)["cpu"]["expires_in_s"] == 1
    burner.join(timeout=30)
    busy_rate = (time.process_time() - cpu) / (time.perf_counter() - wall)

    assert not burner.running
    assert busy_rate > 2 * idle_rate
    clock.advance(1)
    assert "cpu" not in active(client)


def test_it_crashes_the_process_after_answering(app, exits):
    exited = threading.Event()

    def exit_process(code):
        exits.append(code)
        exited.set()

    app.state.service.exit_process = exit_process
    with TestClient(app) as client:
        response = client.post("/chaos/crash", headers=AUTH)
        assert response.status_code == 202
        assert exited.wait(timeout=5)
    assert exits == [1]


def test_it_resets_every_fault_and_restores_the_catalog(app, client, dice):
    dice.value = 0.0
    inject(client, "latency", {"ms": 10})
    inject(client, "errors", {"probability": 1})
    inject(client, "corrupt", {"silent": True})
    inject(client, "flap", {"period_s": 60})
    inject(client, "cpu", {"seconds": 30})
    assert set(active(client)) == {"latency", "errors", "corrupt", "flap", "cpu"}

    reset = client.post("/chaos/reset", headers=AUTH)
    assert reset.status_code == 200 and reset.json()["faults"] == {}
    app.state.service.burner.join(timeout=5)
    assert not app.state.service.burner.running
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["faults"] == {}
    assert canary_digest(client) == expected_canary_digest()
