"""The gateway's backend client: HTTP/1.1 keep-alive pools on asyncio streams, no httpx models.

httpx's default transport (httpcore over anyio) costs about a millisecond of CPU per request,
and even over a lean transport httpx's URL, Headers, Request and Response models cost the
gateway about as much as the backend spends answering. The gateway therefore calls
:meth:`UpstreamTransport.send` with a request already serialized to bytes
(:func:`monitor.gateway.wire.serialize`) and gets an :class:`Answer`: status, raw headers,
and the body, read at once when it is small (the connection goes back to its pool before the
answer is returned) or streamed. Each origin has its own pool of at most ``max_connections``.

The same pools also serve httpx (``handle_async_request``), for tests and tools that speak
httpx. Failures are the httpx exceptions the retry rules read: ConnectError / ConnectTimeout /
PoolTimeout before a request leaves, then WriteError, ReadTimeout, ReadError or
RemoteProtocolError. A request that finds its reused keep-alive connection closed by the
backend (no byte of answer) is sent again once on a new connection when its method is
idempotent, as Go's and urllib3's clients do; it never reached the backend.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import TypeVar

import httpx

from monitor.gateway.wire import Framing, Origin, chunk_size, framing, parse_head, says_close

T = TypeVar("T")
Timeouts = Mapping[str, float | None]

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
MAX_HEAD = 64 * 1024  # response status line and headers
READ_CHUNK = 64 * 1024


class _Stale(Exception):
    """A reused connection closed before any byte of the answer arrived."""


class _Conn:
    __slots__ = ("reader", "writer", "idle_since", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.reused = False

    def usable(self, now: float, expiry: float) -> bool:
        return (now - self.idle_since < expiry and not self.writer.is_closing()
                and not self.reader.at_eof())

    def close(self) -> None:
        self.writer.close()


class _Pool:
    """The connections to one origin: ``limit`` at most in use or idle."""

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.idle: list[_Conn] = []


async def _within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """``awaitable`` bounded by ``seconds`` (no timer at all when None)."""
    if seconds is None:
        return await awaitable
    async with asyncio.timeout(seconds):
        return await awaitable


class Answer:
    """A backend's response. ``content`` holds the whole body when it was read at once (the
    connection is already back in its pool); otherwise the body is streamed by
    :meth:`aiter_raw`, and :meth:`aclose` gives the connection back (or closes it when the
    body was not read to its end)."""

    __slots__ = ("status_code", "headers", "http_version", "content", "_body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], version: bytes,
                 content: bytes | None, body: _Body | None = None) -> None:
        self.status_code = status
        self.headers = headers
        self.http_version = version
        self.content = content
        self._body = body

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        if self._body is None:
            if self.content:
                yield self.content
            return
        async for chunk in self._body.chunks():
            yield chunk

    @property
    def settled(self) -> bool:
        """True when nothing is left to read or give back."""
        return self._body is None or self._body.released

    async def aclose(self) -> None:
        if self._body is not None:
            await self._body.aclose()


class UpstreamTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int = 128, keepalive_expiry: float = 4.0) -> None:
        self.max_connections = max_connections  # per origin
        self.keepalive_expiry = keepalive_expiry
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def send(self, origin: Origin, method: str, data: bytes, timeout: Timeouts, *,
                   small: int = 0, close: bool = False) -> Answer:
        """Send ``data`` (one serialized request) to ``origin``; the answer once its head has
        arrived, with its body read too when it is at most ``small`` bytes. ``timeout``:
        seconds for "pool", "connect", "write", "read" (the head and a small body; None for
        no timer of its own) and "body" (between chunks of a streamed body)."""
        pool = self._pools.get(origin.key)
        if pool is None:
            pool = self._pools[origin.key] = _Pool(self.max_connections)
        try:
            if pool.slots.locked():  # a timer only when there is something to wait for
                async with asyncio.timeout(timeout.get("pool")):
                    await pool.slots.acquire()
            else:
                await pool.slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection to the backend") from None
        conn = None
        try:
            conn = self._idle(pool) or await self._connect(origin, timeout.get("connect"))
            try:
                head = await _exchange(conn, data, timeout)
            except _Stale:
                conn.close()
                if method not in IDEMPOTENT:
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending a response.") from None
                conn = await self._connect(origin, timeout.get("connect"))
                head = await _exchange(conn, data, timeout)
            return await self._answer(pool, conn, method, head, timeout, small, close)
        except BaseException:
            if conn is not None:
                conn.close()
            pool.slots.release()
            raise

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The same pools for httpx callers."""
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        origin = Origin(url.scheme, url.host, port, url.netloc, b"")
        answer = await self.send(origin, request.method,
                                 _serialize(request, await request.aread()),
                                 request.extensions.get("timeout", {}),
                                 close=says_close(request.headers.raw))
        return httpx.Response(answer.status_code, headers=answer.headers,
                              stream=_HttpxStream(answer),
                              extensions={"http_version": answer.http_version})

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            for conn in pool.idle:
                conn.close()
            pool.idle.clear()

    def _idle(self, pool: _Pool) -> _Conn | None:
        now = time.monotonic()
        while pool.idle:
            conn = pool.idle.pop()
            if conn.usable(now, self.keepalive_expiry):
                conn.reused = True
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> _Conn:
        tls = None
        if origin.scheme == "https":
            tls = self._ssl = self._ssl or ssl.create_default_context()
        where = f"{origin.host}:{origin.port}"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=tls, limit=MAX_HEAD,
                    server_hostname=origin.host if tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {where} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"connect to {where}: {exc}") from exc
        return _Conn(reader, writer)

    async def _answer(self, pool: _Pool, conn: _Conn, method: str,
                      head: tuple[int, list[tuple[bytes, bytes]], bytes], timeout: Timeouts,
                      small: int, close: bool) -> Answer:
        status, headers, version = head
        kind, length = framing(method, status, headers)
        keep = version == b"HTTP/1.1" and kind is not Framing.CLOSE and not close \
            and not says_close(headers)
        if kind is Framing.NONE:
            self._release(pool, conn, keep)
            return Answer(status, headers, version, b"")
        if kind is Framing.LENGTH and length <= small:
            try:
                content = await _within(conn.reader.readexactly(length), timeout.get("read"))
            except asyncio.IncompleteReadError:
                raise httpx.RemoteProtocolError("backend closed the connection before the "
                                                "body was complete") from None
            except OSError as exc:
                raise httpx.ReadError(f"reading the response body: {exc!r}") from exc
            except TimeoutError:
                raise httpx.ReadTimeout("backend too slow sending the body") from None
            self._release(pool, conn, keep)
            return Answer(status, headers, version, content)
        body_timeout = timeout.get("body", timeout.get("read"))
        return Answer(status, headers, version, None,
                      _Body(self, pool, conn, kind, length, keep, body_timeout))

    def _release(self, pool: _Pool, conn: _Conn, reusable: bool) -> None:
        if reusable and not self._closed and not conn.writer.is_closing():
            conn.idle_since = time.monotonic()
            conn.reused = False
            pool.idle.append(conn)
        else:
            conn.close()
        pool.slots.release()


class _Body:
    """A response body read from the connection; gives the connection back when done."""

    def __init__(self, transport: UpstreamTransport, pool: _Pool, conn: _Conn, kind: Framing,
                 length: int, keep: bool, timeout: float | None) -> None:
        self.transport, self.pool, self.conn = transport, pool, conn
        self.kind, self.length, self.keep, self.timeout = kind, length, keep, timeout
        self.complete = False
        self.released = False

    async def chunks(self) -> AsyncIterator[bytes]:
        reader = self.conn.reader
        try:
            if self.kind is Framing.LENGTH:
                remaining = self.length
                while remaining:
                    chunk = await self._read(reader.read(min(remaining, READ_CHUNK)))
                    if not chunk:
                        raise httpx.RemoteProtocolError("backend closed the connection "
                                                        "before the body was complete")
                    remaining -= len(chunk)
                    yield chunk
            elif self.kind is Framing.CHUNKED:
                async for chunk in self._chunked(reader):
                    yield chunk
            else:
                while chunk := await self._read(reader.read(READ_CHUNK)):
                    yield chunk
            self.complete = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            raise httpx.ReadError(f"reading the response body: {exc!r}") from exc
        finally:
            if self.complete:
                await self.aclose()

    async def _chunked(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        while True:
            size = chunk_size(await self._read(reader.readuntil(b"\r\n")))
            if size == 0:
                while await self._read(reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailer fields, dropped
                return
            while size:
                chunk = await self._read(reader.readexactly(min(size, READ_CHUNK)))
                size -= len(chunk)
                yield chunk
            if await self._read(reader.readexactly(2)) != b"\r\n":
                raise httpx.RemoteProtocolError("malformed chunked body")

    async def _read(self, awaitable: Awaitable[T]) -> T:
        try:
            return await _within(awaitable, self.timeout)
        except TimeoutError:
            raise httpx.ReadTimeout("backend too slow sending the body") from None

    async def aclose(self) -> None:
        if not self.released:
            self.released = True
            self.transport._release(self.pool, self.conn, self.complete and self.keep)


class _HttpxStream(httpx.AsyncByteStream):
    """An :class:`Answer`'s body as httpx reads a response stream."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.answer.aiter_raw():
            yield chunk

    async def aclose(self) -> None:
        await self.answer.aclose()


def _serialize(request: httpx.Request, body: bytes) -> bytes:
    headers = request.headers.raw
    if any(name.lower() == b"transfer-encoding" for name, _ in headers):
        # The body was read whole: send it with a length instead of chunked.
        headers = [(n, v) for n, v in headers
                   if n.lower() not in (b"transfer-encoding", b"content-length")]
        headers.append((b"Content-Length", str(len(body)).encode()))
    lines = [b"%s %s HTTP/1.1" % (request.method.encode(), request.url.raw_path)]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _exchange(conn: _Conn, data: bytes, timeout: Timeouts
                    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Send one request and read the head of its final response (1xx are skipped)."""
    try:
        conn.writer.write(data)
        if conn.writer.transport.get_write_buffer_size():  # else the kernel took it all
            async with asyncio.timeout(timeout.get("write")):
                await conn.writer.drain()
    except TimeoutError:
        raise httpx.WriteTimeout("backend too slow taking the request") from None
    except OSError as exc:
        if conn.reused:
            raise _Stale from exc
        raise httpx.WriteError(f"sending the request: {exc!r}") from exc
    first = True
    while True:
        try:
            raw = await _within(conn.reader.readuntil(b"\r\n\r\n"), timeout.get("read"))
        except TimeoutError:
            raise httpx.ReadTimeout("backend too slow to answer") from None
        except asyncio.IncompleteReadError as exc:
            if first and not exc.partial and conn.reused:
                raise _Stale from exc
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response." if not exc.partial
                else "backend closed the connection inside the response head") from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError("response head too large") from exc
        except OSError as exc:
            if first and conn.reused:
                raise _Stale from exc
            raise httpx.ReadError(f"reading the response: {exc!r}") from exc
        first = False
        status, headers, version = parse_head(raw)
        if not 100 <= status < 200:
            return status, headers, version
        if status == 101:
            raise httpx.RemoteProtocolError("protocol upgrades are not supported")
