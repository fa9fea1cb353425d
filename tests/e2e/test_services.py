"""End to end: two services in one real monitor, each failed over on its own (real service
processes on loopback, the real monitor, real crashes)."""

import json
import sqlite3
from typing import Any

import httpx

from bench.processes import (
    all_versions_up,
    audit_table,
    inject_fault,
    running_services,
    start_monitor,
    wait_until,
)
from tests.e2e.conftest import TOKEN
from tests.e2e.test_failover import BOUND


def status_of(monitor, service: str) -> dict[str, Any]:
    with monitor.client() as client:
        response = client.get("/api/status", params={"service": service})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def wait_status(monitor, service: str, predicate, *, timeout: float) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = status_of(monitor, service)
        return status if predicate(status) else None
    return wait_until(check, timeout, every=0.1, what=f"{service} status")


def rows(data_dir, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data_dir / "monitor.db") as db:
        return db.execute(query).fetchall()


def switches(data_dir) -> list[tuple[str, str]]:
    """(service, target) of every automatic failover, in order."""
    return [(json.loads(params)["service"], target) for params, target in
            audit_table(data_dir, "params, target", action="failover.automatic")]


def served_by(url: str) -> str | None:
    """The version the gateway says served a GET of `url`, or None when it did not answer 200."""
    try:
        answer = httpx.get(url, params={"q": "whale"}, timeout=5.0)
    except httpx.HTTPError:
        return None
    return answer.headers.get("x-served-by") if answer.status_code == 200 else None


def wait_served(url: str, version: str) -> str:
    return wait_until(lambda: served_by(url) == version and version, 15, every=0.1,
                      what=f"{url} served by {version}")


def test_it_fails_one_service_over_and_leaves_the_other_alone(tmp_path, services):
    with running_services(TOKEN, versions=("v1", "v2")) as films:
        extra = f"films:a={films['v1']},b={films['v2']}"
        monitor = start_monitor(tmp_path, services=services, MONITOR_CHAOS_TOKEN=TOKEN,
                                MONITOR_EXTRA_SERVICES=extra)
        try:
            monitor.wait_for(all_versions_up, timeout=30)
            wait_status(monitor, "films", all_versions_up, timeout=30)
            with monitor.client() as client:
                listed = client.get("/api/services").json()
            assert [s["name"] for s in listed["services"]] == ["books", "films"]
            # the spawned gateway routes each service on its own route
            wait_served(f"{monitor.gateway}/films/books", "a")
            wait_served(f"{monitor.gateway}/books", "v1")

            # A crash of films' active version fails films over, books stays as it was.
            inject_fault(films["v1"], TOKEN, "crash")
            moved = wait_status(monitor, "films", lambda s: s["active"] == "b",
                                timeout=BOUND + 10)
            assert moved["epoch"] == 1
            books = status_of(monitor, "books")
            assert (books["active"], books["epoch"]) == ("v1", 0)
            assert switches(tmp_path) == [("films", "b")]
            wait_served(f"{monitor.gateway}/films/books", "b")
            assert served_by(f"{monitor.gateway}/books") == "v1"

            # films all down: its incident opens; a crash of books still fails books over.
            inject_fault(films["v2"], TOKEN, "crash")
            wait_status(monitor, "films", lambda s: s["incident"] is not None,
                        timeout=BOUND + 10)
            inject_fault(services["v1"], TOKEN, "crash")
            books = monitor.wait_for(lambda s: s["active"] == "v2", timeout=BOUND + 10)
            assert books["epoch"] == 1 and books["incident"] is None
            assert status_of(monitor, "films")["active"] == "b"
            assert switches(tmp_path) == [("films", "b"), ("books", "v2")]

            state = dict(rows(tmp_path, "SELECT service, epoch FROM monitor_state"))
            assert state == {"books": 1, "films": 1}
            incidents = rows(tmp_path, "SELECT service FROM incident WHERE closed_at IS NULL")
            assert incidents == [("films",)]
            notices = rows(tmp_path, "SELECT service, kind, subject FROM notice ORDER BY id")
            assert ("films", "failover") in [(s, k) for s, k, _ in notices]
            assert ("films", "all_down") in [(s, k) for s, k, _ in notices]
            assert ("books", "failover") in [(s, k) for s, k, _ in notices]
            assert all(subject.startswith(f"{service}: ") for service, _, subject in notices)
            probes = dict(rows(tmp_path, "SELECT service, count(*) FROM probe GROUP BY service"))
            assert probes["books"] > 0 and probes["films"] > 0
            assert monitor.cli("audit", "verify").returncode == 0
        finally:
            assert monitor.stop() == 0
