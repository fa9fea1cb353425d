"""Attacks against the real gateway process (spawned by the real monitor)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.e2e.monitor_proc import all_versions_up, free_ports, start_monitor
from tests.e2e.procs import start_service, stop_process

TOKEN = "e2e-attacks-token-0123456789abcdef-xyz"
HALF_OPEN = 1000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    ports = free_ports(3)
    procs = {v: start_service(v, p, TOKEN) for v, p in zip(("v1", "v2", "v3"), ports,
                                                          strict=True)}
    urls = {v: f"http://127.0.0.1:{p}" for v, p in zip(procs, ports, strict=True)}
    monitor = start_monitor(tmp_path_factory.mktemp("attacks"), services=urls,
                            MONITOR_CHAOS_TOKEN=TOKEN)
    try:
        monitor.wait_for(all_versions_up, timeout=20)
        yield monitor.gateway
    finally:
        monitor.stop()
        for proc in procs.values():
            stop_process(proc)


def test_it_answers_a_legitimate_client_within_a_second_under_1000_half_open_connections(
        gateway):
    port = int(gateway.rsplit(":", 1)[1])
    attackers: list[socket.socket] = []
    try:
        for _ in range(HALF_OPEN):  # from another address, as an attacker would be
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.settimeout(2.0)
            try:
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /books HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            except OSError:
                pass  # refused or reset: the per-address cap at work
            attackers.append(sock)
        started = time.monotonic()
        answer = httpx.get(f"{gateway}/books", params={"q": "whale"}, timeout=5.0)
        took = time.monotonic() - started
    finally:
        for sock in attackers:
            sock.close()
    assert answer.status_code == 200
    assert took <= 1.0


def test_it_answers_431_to_a_1_mib_header(gateway):
    answer = httpx.get(f"{gateway}/books", headers={"X-Big": "a" * (1024 * 1024)}, timeout=10)
    assert answer.status_code == 431
    assert answer.json()["error"] == "request header too large"


@pytest.mark.parametrize("method, path", [
    ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/health"), ("POST", "/chaos/crash"),
    ("GET", "/chaos"),
])
def test_it_answers_404_outside_the_book_api(gateway, method, path):
    answer = httpx.request(method, f"{gateway}{path}", timeout=5)
    assert answer.status_code == 404
    assert "x-served-by" not in answer.headers  # no version was asked
