"""The gateway's HTTP/1.1 transport against a scripted backend on a real loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import httpx
import pytest

from monitor.gateway.transport import UpstreamTransport

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CLOSE = None  # close the connection instead of answering
HANG = "hang"  # never answer


class Backend:
    """A loopback server that answers each request with ``script(conn_no, req_no, request)``:
    raw bytes to send, CLOSE, HANG, or (bytes, CLOSE) to send and then close. Records requests
    as (conn_no, head + body)."""

    def __init__(self, script: Callable[[int, int, bytes], bytes | str | None]):
        self.script = script
        self.requests: list[tuple[int, bytes]] = []
        self.connections = 0

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn_no = self.connections
        self.connections += 1
        try:
            for req_no in range(100):
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append((conn_no, request))
                answer = self.script(conn_no, req_no, request)
                if answer is CLOSE:
                    break
                if answer == HANG:
                    await asyncio.sleep(30)
                if isinstance(answer, tuple):  # (bytes, CLOSE): answer, then close
                    writer.write(answer[0])
                    await writer.drain()
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def client(**options) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=UpstreamTransport(**options), timeout=2.0)


async def test_it_reuses_a_keep_alive_connection():
    backend = Backend(lambda c, r, req: OK)
    async with backend as url, client() as http:
        bodies = [(await http.get(f"{url}/books?q={i}")).content for i in range(3)]
    assert bodies == [b"hello"] * 3
    assert backend.connections == 1
    assert backend.requests[2][1].startswith(b"GET /books?q=2 HTTP/1.1\r\n")


@pytest.mark.parametrize("answer, body, reused", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n", b"hello world", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"", True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
])
async def test_it_reads_each_kind_of_body_framing(answer, body, reused):
    backend = Backend(lambda c, r, req: answer)
    async with backend as url, client() as http:
        first = await http.get(f"{url}/a")
        second = await http.get(f"{url}/b")
    assert (first.content, second.content) == (body, body)
    assert backend.connections == (1 if reused else 2)


async def test_it_reads_a_body_delimited_by_close_and_does_not_reuse_that_connection():
    backend = Backend(lambda c, r, req: (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", CLOSE))
    async with backend as url, client() as http:
        first = await http.get(f"{url}/a")
        second = await http.get(f"{url}/b")
    assert (first.content, second.content) == (b"until the end", b"until the end")
    assert backend.connections == 2


async def test_it_sends_no_body_for_head_and_reads_none():
    backend = Backend(lambda c, r, req: b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n")
    async with backend as url, client() as http:
        first = await http.head(f"{url}/a")
        second = await http.head(f"{url}/b")
    assert (first.status_code, first.content, second.status_code) == (200, b"", 200)
    assert backend.connections == 1


async def test_it_sends_the_body_with_its_length():
    backend = Backend(lambda c, r, req: OK)

    async def parts():
        yield b'{"description": '
        yield b'"whale"}'

    async with backend as url, client() as http:
        await http.post(f"{url}/books/search", content=b'{"a": 1}')
        await http.post(f"{url}/books/search", content=parts())
    first, second = (request for _, request in backend.requests)
    assert first.endswith(b"Content-Length: 8\r\n\r\n" + b'{"a": 1}')
    assert b"transfer-encoding" not in second.lower()
    assert second.endswith(b"Content-Length: 24\r\n\r\n" + b'{"description": "whale"}')


async def test_it_resends_an_idempotent_request_when_a_reused_connection_was_closed():
    # The backend drops its kept-alive connection just as the second request arrives.
    backend = Backend(lambda c, r, req: CLOSE if (c, r) == (0, 1) else OK)
    async with backend as url, client() as http:
        await http.get(f"{url}/a")
        response = await http.get(f"{url}/b")
    assert response.content == b"hello"
    assert [c for c, _ in backend.requests] == [0, 0, 1]


async def test_it_does_not_resend_a_post_when_a_reused_connection_was_closed():
    backend = Backend(lambda c, r, req: CLOSE if (c, r) == (0, 1) else OK)
    async with backend as url, client() as http:
        await http.get(f"{url}/a")
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(f"{url}/b", content=b"x")
    assert len(backend.requests) == 2


@pytest.mark.parametrize("script, error", [
    (lambda c, r, req: CLOSE, httpx.RemoteProtocolError),
    (lambda c, r, req: HANG, httpx.ReadTimeout),
    (lambda c, r, req: (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", CLOSE),
     httpx.RemoteProtocolError),
    (lambda c, r, req: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", httpx.ReadTimeout),
    (lambda c, r, req: b"garbage\r\n\r\n", httpx.RemoteProtocolError),
    (lambda c, r, req: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
     httpx.RemoteProtocolError),
    (lambda c, r, req: b"HTTP/1.1 200 OK\r\nBad header\r\n\r\n", httpx.RemoteProtocolError),
    (lambda c, r, req: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     httpx.ReadError),
    (lambda c, r, req: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello"
     b"\r\n0\r\n\r\n", httpx.ReadError),
    (lambda c, r, req: b"HTTP/1.1 200 OK\r\nX-A: b\nSet-Cookie: evil=1\r\nContent-Length: 0"
     b"\r\n\r\n", httpx.RemoteProtocolError),
    (lambda c, r, req: b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
     httpx.RemoteProtocolError),
])
async def test_it_raises_the_httpx_error_a_broken_backend_means(script, error):
    backend = Backend(script)
    async with backend as url:
        async with httpx.AsyncClient(transport=UpstreamTransport(), timeout=0.2) as http:
            with pytest.raises(error):
                await http.get(f"{url}/a")


async def test_it_raises_connect_error_when_refused():
    backend = Backend(lambda c, r, req: OK)
    async with backend as url:
        pass  # the port is closed again
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{url}/a")


async def test_it_waits_for_a_free_connection_then_times_out():
    backend = Backend(lambda c, r, req: OK)
    async with backend as url:
        async with httpx.AsyncClient(transport=UpstreamTransport(max_connections=1),
                                     timeout=httpx.Timeout(2.0, pool=0.05)) as http:
            async with http.stream("GET", f"{url}/held"):
                with pytest.raises(httpx.PoolTimeout):
                    await http.get(f"{url}/waits")
            response = await http.get(f"{url}/after")  # the slot was given back
    assert response.status_code == 200


async def test_it_gives_the_connection_slot_back_after_a_broken_answer():
    bad = b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n"
    backend = Backend(lambda c, r, req: bad if c == 0 else OK)
    async with backend as url:
        async with httpx.AsyncClient(transport=UpstreamTransport(max_connections=1),
                                     timeout=httpx.Timeout(2.0, pool=0.2)) as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(f"{url}/broken")
            response = await http.get(f"{url}/next")
    assert response.content == b"hello"
    assert backend.connections == 2  # the broken connection was not reused


async def test_it_gives_the_connection_slot_back_when_the_reader_is_cancelled():
    stalled = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"
    backend = Backend(lambda c, r, req: stalled if c == 0 else OK)
    async with backend as url:
        async with httpx.AsyncClient(transport=UpstreamTransport(max_connections=1),
                                     timeout=httpx.Timeout(2.0, pool=0.5)) as http:
            async def read_all():
                async with http.stream("GET", f"{url}/stalls") as response:
                    await response.aread()

            task = asyncio.create_task(read_all())
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            response = await http.get(f"{url}/next")
    assert response.content == b"hello"
