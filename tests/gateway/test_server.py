"""The gateway's HTTP server: its limits, answered over real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from monitor.gateway.server import GatewayServer, Limits, listen


async def echo(scope, receive, send) -> None:
    """Answers with the method, path and body it got; chunked when the path says so."""
    message = await receive()
    body = f"{scope['method']} {scope['path']} {message['body'].decode()}".encode()
    headers = [(b"content-type", b"text/plain")]
    if scope["path"] != "/chunked":
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def start(limits: Limits) -> tuple[GatewayServer, int]:
    server = GatewayServer(echo, limits)
    sock = listen("127.0.0.1", 0)
    await server.start(sock)
    return server, sock.getsockname()[1]


@pytest.fixture
async def served(request) -> AsyncIterator[tuple[GatewayServer, int]]:
    limits = getattr(request, "param", Limits(read_timeout=0.5, keepalive=0.5, per_ip=3,
                                               max_header=4096, max_body=1000))
    server, port = await start(limits)
    yield server, port
    await server.shutdown(0.5)


async def exchange(port: int, data: bytes, *, source: str = "127.0.0.1",
                   timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                   local_addr=(source, 0))
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


GET = b"GET /books HTTP/1.1\r\nHost: t\r\n\r\n"


async def test_it_answers_keep_alive_and_pipelined_requests_in_order(served):
    _, port = served
    answer = await exchange(port, GET + b"POST /books/search HTTP/1.1\r\nHost: t\r\n"
                            b"Content-Length: 5\r\nConnection: close\r\n\r\nwhale")
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert answer.index(b"GET /books ") < answer.index(b"POST /books/search whale")


async def test_it_frames_a_response_without_length_as_chunked(served):
    _, port = served
    answer = await exchange(port, b"GET /chunked HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert b"transfer-encoding: chunked" in answer and answer.endswith(b"\r\n0\r\n\r\n")


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /books HTTP/1.1\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n", b"431"),
    (b"GET /books HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", b"431"),
    (b"GET /books HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
     b"431"),
    (b"POST /books/search HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", b"413"),
    (b"POST /books/search HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n" + b"a" * 1001
     + b"\r\n0\r\n\r\n", b"413"),
    (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
    (b"GET /books HTTP/1.1\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n", b"200"),
])
async def test_it_refuses_what_exceeds_its_limits_or_upgrades_and_closes(served, request_bytes,
                                                                        status):
    _, port = served
    answer = await exchange(port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    assert b"connection: close" in answer


async def test_it_answers_408_to_a_head_that_never_ends(served):
    _, port = served
    answer = await exchange(port, b"GET /books HTTP/1.1\r\nX-Slow: ")
    assert answer.startswith(b"HTTP/1.1 408")


async def test_it_closes_an_idle_keep_alive_connection(served):
    _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET)
    first = await reader.readuntil(b"GET /books ")
    rest = await asyncio.wait_for(reader.read(), 5.0)  # EOF once idle for keepalive
    writer.close()
    assert first.startswith(b"HTTP/1.1 200") and reader.at_eof() and b"HTTP" not in rest


async def test_it_caps_connections_per_client_ip_without_refusing_others(served):
    server, port = served
    held = [await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
            for _ in range(3)]
    try:
        for _ in range(100):
            if server.per_ip.get("127.0.0.2") == 3:
                break
            await asyncio.sleep(0.01)
        refused = await exchange(port, GET, source="127.0.0.2")
        served_answer = await exchange(port, GET.replace(b"\r\n\r\n",
                                                         b"\r\nConnection: close\r\n\r\n"))
    finally:
        for _, writer in held:
            writer.close()
    assert refused == b""
    assert served_answer.startswith(b"HTTP/1.1 200")


async def test_it_finishes_a_request_in_flight_when_shut_down():
    started = asyncio.Event()

    async def slow(scope, receive, send) -> None:
        await receive()
        started.set()
        await asyncio.sleep(0.2)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    server = GatewayServer(slow, Limits())
    sock = listen("127.0.0.1", 0)
    await server.start(sock)
    answer = asyncio.create_task(exchange(sock.getsockname()[1], GET))
    await asyncio.wait_for(started.wait(), 5)
    await server.shutdown(5.0)
    text = await answer
    assert text.startswith(b"HTTP/1.1 200") and b"connection: close" in text
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", sock.getsockname()[1]), timeout=1).close()
