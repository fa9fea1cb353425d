"""End to end: the gateway in front of real v1/v2/v3 processes while v1 crashes under load.

The router here is a fake with the simplest rule (always v1, v2, v3 in priority order), so the
gateway's own retries are what keep clients served; the full system with the real monitor is
tested elsewhere.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
import uvicorn

from monitor.gateway.app import create_gateway
from tests.e2e.procs import free_port, start_service, stop_process

TOKEN = "e2e-gateway-chaos-token-5f1d2a9c7b"
MAX_REQUESTS = 600
TIME_LIMIT_S = 30.0
CRASH_AFTER = 60  # responses served by v1 before it is crashed
AFTER_CRASH = 100  # requests started once v1 is gone, then the client stops
WORKERS = 4


class PriorityRouter:
    """Candidates always in priority order; passive failure reports are only recorded."""

    def __init__(self, urls: dict[str, str]):
        self.urls = urls
        self.reports: list[tuple[str, str]] = []

    def route_candidates(self) -> list[tuple[str, str]]:
        return list(self.urls.items())

    def report_gateway_failure(self, version: str, failure: str) -> None:
        self.reports.append((version, failure))


@pytest.fixture
def services():
    ports = {v: free_port() for v in ("v1", "v2", "v3")}
    procs = {}
    try:
        for version, port in ports.items():
            procs[version] = start_service(version, port, TOKEN)
        yield procs, {v: f"http://127.0.0.1:{p}" for v, p in ports.items()}
    finally:
        for proc in procs.values():
            stop_process(proc)


@pytest.fixture
def gateway(services):
    """The gateway app served by uvicorn in a thread, with the fake router."""
    _, urls = services
    router = PriorityRouter(urls)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_gateway(router), host="127.0.0.1", port=port, log_level="warning",
        access_log=False, lifespan="on", server_header=False, date_header=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    assert server.started, "gateway did not start"
    yield f"http://127.0.0.1:{port}", router
    server.should_exit = True
    thread.join(timeout=10)


async def test_it_keeps_every_get_answered_while_v1_crashes(services, gateway):
    procs, urls = services
    gateway_url, router = gateway
    seen: list[tuple[float, int, str | None, str | None]] = []  # started, status, by, service
    crashed_at: list[float] = []
    stop_at = time.monotonic() + TIME_LIMIT_S

    async def crash_v1() -> None:
        async with httpx.AsyncClient(timeout=5.0) as direct:
            response = await direct.post(f"{urls['v1']}/chaos/crash", json={},
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 202
        await asyncio.to_thread(procs["v1"].wait, 10)
        crashed_at.append(time.monotonic())

    def done() -> bool:
        if len(seen) >= MAX_REQUESTS or time.monotonic() >= stop_at:
            return True
        return bool(crashed_at) and sum(s[0] > crashed_at[0] for s in seen) >= AFTER_CRASH

    async def worker(client: httpx.AsyncClient) -> None:
        while not done():
            started = time.monotonic()
            response = await client.get("/books", params={"q": "whale", "limit": 3})
            seen.append((started, response.status_code, response.headers.get("x-served-by"),
                         response.headers.get("x-service-version")))
            if sum(1 for s in seen if s[2] == "v1") == CRASH_AFTER and not crasher:
                crasher.append(asyncio.create_task(crash_v1()))

    crasher: list[asyncio.Task] = []
    async with httpx.AsyncClient(base_url=gateway_url, timeout=15.0) as client:
        await asyncio.gather(*(worker(client) for _ in range(WORKERS)))
    assert crasher, "v1 never served enough requests to be crashed"
    await crasher[0]

    assert [s for s in seen if s[1] != 200] == []
    assert all(by == service for _, _, by, service in seen)  # X-Served-By tells the truth
    after = [by for started, _, by, _ in seen if started > crashed_at[0]]
    assert sum(1 for s in seen if s[2] == "v1") >= CRASH_AFTER
    # v2 serves; a GET hedged past v2's recent p95 (a loaded machine) may be answered by v3
    assert len(after) >= AFTER_CRASH and "v1" not in after
    assert after.count("v2") > 0.8 * len(after)
    assert ("v1", "refused") in router.reports
    assert {v for v, _ in router.reports} == {"v1"}
