"""The probe client survives bursts of cancelled requests (encode/httpcore#1093).

A pool that makes requests wait for a connection leaks a slot for good whenever a request is
cancelled while it waits; once the slots are gone, every probe of a healthy service times out
and the monitor declares a false outage. The probe client's pool never makes a request wait.
"""

import asyncio
import contextlib

import httpx

from monitor.failover.probe_client import probe_client

BURST = 300  # concurrent requests, far more than any fixed pool size


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while True:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await reader.read(4096)
                if not chunk:
                    return
                head += chunk
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()


async def _cancelled_burst(client: httpx.AsyncClient, url: str) -> None:
    """Start BURST requests and cancel them all while the first ones are still connecting."""
    requests = [asyncio.create_task(client.get(url)) for _ in range(BURST)]
    await asyncio.sleep(0)
    for request in requests:
        request.cancel()
    await asyncio.gather(*requests, return_exceptions=True)


async def test_it_still_answers_after_a_burst_of_cancelled_requests():
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/health"
    async with server, probe_client(timeout=1.0) as client:
        for _ in range(3):
            await _cancelled_burst(client, url)
            response = await client.get(url)  # a poisoned pool raises PoolTimeout here
            assert response.status_code == 200


async def test_it_keeps_one_small_pool_per_origin():
    servers = [await asyncio.start_server(_answer, "127.0.0.1", 0) for _ in range(3)]
    urls = [f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}/health" for s in servers]
    async with probe_client(timeout=1.0) as client:
        for url in urls * 3:
            assert (await client.get(url)).status_code == 200
        pools = client._transport._pools  # the edge under test: one pool per origin
        assert len(pools) == 3
        assert all(len(pool._pool.connections) == 1 for pool in pools.values())  # reused
    for server in servers:
        server.close()
