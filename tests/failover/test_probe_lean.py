"""Probes over the lean keep-alive transport (ProbeClient.lean) against real local servers:
the same outcomes as through httpx, a connection reused across probes, bursts survived."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from monitor.failover.canary import Canary, book_digest
from monitor.failover.probe import probe
from monitor.failover.probe_client import MAX_BODY, probe_client

BOOK = {"id": "b1", "title": "Moby Dick", "year": 1851}
CANARY = Canary(query="Moby Dick", book_id="b1", digest=book_digest(BOOK))
HEALTHY = json.dumps({"status": "ok", "faults": {"latency_ms": 0}}).encode()
BOOKS = json.dumps({"items": [BOOK], "total": 1}).encode()


def _reply(body: bytes, status: int = 200) -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status, len(body), body)


def _chunked(body: bytes) -> bytes:
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]) if p)
    return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"


class Target:
    """A real HTTP/1.1 server on 127.0.0.1: answers /health and /books from `answers`,
    records each request line and counts connections."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.heads: list[bytes] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0]
                self.requests.append(line)
                self.heads.append(head.lower())
                path = line.split(b" ")[1].split(b"?")[0].decode()
                answer = self.answers.get(path.removeprefix("/api"), _reply(b"{}", 404))
                if answer == b"hang":
                    await asyncio.sleep(30)
                writer.write(answer)
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def target(answers: dict[str, bytes]) -> AsyncIterator[tuple[Target, str]]:
    t = Target(answers)
    server = await asyncio.start_server(t.serve, "127.0.0.1", 0)
    async with server:
        yield t, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("health, books, failure", [
    (_reply(HEALTHY), _reply(BOOKS), None),
    (_chunked(HEALTHY), _chunked(BOOKS), None),
    (_reply(b'{"status": "fail"}', 503), _reply(BOOKS), "http_5xx"),
    (_reply(b"<html>hi</html>"), _reply(BOOKS), "bad_body"),
    (_reply(HEALTHY), _reply(b"boom", 500), "http_5xx"),
    (_reply(HEALTHY), _reply(json.dumps({"items": [{**BOOK, "year": 1852}]}).encode()),
     "corrupt"),
    (_reply(HEALTHY), _chunked(b" " * (MAX_BODY + 10)), "bad_body"),
    (_reply(HEALTHY), b"hang", "timeout"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n", _reply(BOOKS), "refused"),
])
async def test_it_classifies_every_outcome_over_the_lean_transport(health, books, failure):
    async with target({"/health": health, "/books": books}) as (_, url), \
            probe_client(timeout=0.5) as client:
        result = await probe(client, "v1", url, now=5.0, timeout=0.5, canary=CANARY)
    assert result.failure == failure
    assert result.ok is (failure is None)


async def test_it_sends_the_canary_query_under_the_base_urls_path_and_reports_faults():
    async with target({"/health": _reply(HEALTHY), "/books": _reply(BOOKS)}) as (t, url), \
            probe_client(timeout=1.0) as client:
        result = await probe(client, "v1", f"{url}/api", now=5.0, timeout=1.0, canary=CANARY)
    assert result.ok and result.faults == {"latency_ms": 0}
    assert t.requests == [b"GET /api/health HTTP/1.1",
                          b"GET /api/books?q=Moby%20Dick&limit=1 HTTP/1.1"]


async def test_it_keeps_one_connection_per_target_across_probes():
    async with target({"/health": _reply(HEALTHY), "/books": _reply(BOOKS)}) as (t, url), \
            probe_client(timeout=1.0) as client:
        for _ in range(5):
            assert (await probe(client, "v1", url, now=5.0, timeout=1.0, canary=CANARY)).ok
    assert len(t.requests) == 10 and t.connections == 1
    assert all(b"user-agent: failover-monitor-probe" in head for head in t.heads)  # not httpx


async def test_it_reports_a_closed_port_as_refused():
    async with target({}) as (_, url):
        pass  # closed: nothing listens on that port any more
    async with probe_client(timeout=1.0) as client:
        result = await probe(client, "v1", url, now=5.0, timeout=1.0, canary=CANARY)
    assert result.failure == "refused"


async def test_it_still_probes_after_a_burst_of_cancelled_probes_larger_than_any_pool():
    async with target({"/health": _reply(HEALTHY), "/books": _reply(BOOKS)}) as (_, url), \
            probe_client(timeout=1.0) as client:
        for _ in range(3):
            burst = [asyncio.create_task(probe(client, "v1", url, now=5.0, timeout=1.0,
                                               canary=CANARY)) for _ in range(300)]
            await asyncio.sleep(0)
            for task in burst:
                task.cancel()
            await asyncio.gather(*burst, return_exceptions=True)
            result = await probe(client, "v1", url, now=5.0, timeout=1.0, canary=CANARY)
            assert result.ok, result.detail
