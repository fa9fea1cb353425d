"""A real gateway process routing two services, each with its own real book-service processes
and its own signed route file written by the real publisher: /books reaches the default
service, /films/books the film service, and a route change of one moves only its traffic."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.processes import (
    ROOT,
    free_ports,
    monitor_env,
    start_service,
    stop_process,
    wait_until,
    wait_until_ready,
)
from monitor.config import Settings
from monitor.gateway.feed import RoutePublisher, route_from
from monitor.gateway.route import PURPOSE
from monitor.storage.keys import load_keys
from tests.e2e.conftest import TOKEN
from tests.e2e.load import Load

pytestmark = pytest.mark.e2e


class Monitor:
    """What a monitor with two services publishes: books (v1 > v2) and films (f1 > f2)."""

    def __init__(self, data_dir: Path, books: dict[str, str], films: dict[str, str]) -> None:
        self.books = route_from(0, list(books.items()), books, time.time())
        self.films = route_from(0, list(films.items()), films, time.time())
        key = load_keys(Settings(data_dir=data_dir)).derive(PURPOSE)
        self.offered = {"films": True}
        self.publisher = RoutePublisher(data_dir, key, lambda: self.books, services=lambda: {
            name: self.films for name, on in self.offered.items() if on})

    def switch_films(self, epoch: int, order: list[str]) -> None:
        urls = self.films.urls
        self.films = route_from(epoch, [(v, urls[v]) for v in order], urls, time.time())
        self.publish()

    def publish(self) -> None:
        asyncio.run(self.publisher.publish())


@pytest.fixture
def book_services() -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """Four real book services: the books' v1 and v2, the films' f1 (services.v3) and f2
    (services.v1 again, another process)."""
    ports = free_ports(4)
    modules = {"v1": "v1", "v2": "v2", "f1": "v3", "f2": "v1"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for module, port in zip(modules.values(), ports, strict=True):
            procs.append(start_service(module, port, TOKEN))
        urls = {name: f"http://127.0.0.1:{port}" for name, port in zip(modules, ports,
                                                                       strict=True)}
        yield ({k: urls[k] for k in ("v1", "v2")}, {k: urls[k] for k in ("f1", "f2")})
    finally:
        for proc in procs:
            stop_process(proc)


def start_gateway(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    dashboard, port = free_ports(2)
    env = {**monitor_env(data_dir, dashboard, port), "PYTHONPATH": str(ROOT)}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "gateway"], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    proc.log_file = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, f"{url}/films/books?q=whale", timeout=30)
    except BaseException:
        stop_process(proc)
        raise
    return proc, url


def answer(url: str, path: str) -> tuple[int, str]:
    got = httpx.get(f"{url}{path}", params={"q": "whale"}, timeout=5)
    return got.status_code, got.headers.get("x-served-by", "")


def served(load: Load, after: float) -> set[str]:
    return {by for at, _, by in list(load.answers) if at > after}


def test_it_routes_two_services_and_moves_only_the_one_whose_route_changed(
        tmp_path, book_services):
    books, films = book_services
    monitor = Monitor(tmp_path, books, films)
    monitor.publish()
    gateway, url = start_gateway(tmp_path)
    try:
        with Load(url, workers=2) as book_load, \
                Load(url, workers=2, path="/films/books") as film_load:
            book_load.wait_for_answers(40, after=0, timeout=30)
            film_load.wait_for_answers(40, after=0, timeout=30)
            assert served(book_load, 0) == {"v1"}
            assert served(film_load, 0) == {"f1"}
            monitor.switch_films(1, ["f2", "f1"])
            moved = wait_until(lambda: "f2" in served(film_load, 0) and time.monotonic(),
                               timeout=15, what="the films' traffic on f2")
            settled = moved + 0.5  # requests sent before the switch may still answer from f1
            book_load.wait_for_answers(40, after=settled, timeout=30)
            film_load.wait_for_answers(40, after=settled, timeout=30)
        assert served(film_load, settled) == {"f2"}
        assert served(book_load, 0) == {"v1"}  # the books never moved
        assert book_load.errors == [] and film_load.errors == []
        assert (tmp_path / "gateway-routes" / "films.json").exists()  # persisted on its own
        (tmp_path / "routes" / "films.json").unlink()  # the feed file lost: fail static
        assert [answer(url, "/films/books") for _ in range(20)] == [(200, "f2")] * 20
        monitor.offered["films"] = False  # the monitor removes the service: a signed removal
        monitor.publish()
        wait_until(lambda: answer(url, "/films/books")[0] == 404, timeout=10,
                   what="the removed service answered 404")
        assert answer(url, "/books") == (200, "v1")
    finally:
        stop_process(gateway)
