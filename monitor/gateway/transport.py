"""The gateway's backend client: HTTP/1.1 keep-alive pools of asyncio Protocols, no httpx models.

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
from collections.abc import AsyncIterator, Mapping

import httpx

from monitor.gateway.connection import Connection, Lost
from monitor.gateway.wire import Framing, Origin, says_close

Timeouts = Mapping[str, float | None]

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class _Pool:
    """The connections to one origin: ``limit`` at most in use or idle."""

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.idle: list[Connection] = []


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
    def __init__(self, *, max_connections: int = 128, keepalive_expiry: float = 4.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_connections = max_connections  # per origin
        self.keepalive_expiry = keepalive_expiry
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._ssl: ssl.SSLContext | None = ssl_context  # the default context when None
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
                await _exchange(conn, method, data, timeout)
            except Lost as lost:
                if not (lost.empty and conn.reused):
                    raise
                conn.close()  # closed by the backend while idle: the request never arrived
                if method not in IDEMPOTENT:
                    raise
                conn = await self._connect(origin, timeout.get("connect"))
                await _exchange(conn, method, data, timeout)
            return await self._answer(pool, conn, timeout, small, close)
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
                                 close=says_close([(n.lower(), v) for n, v in request.headers.raw]))
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

    def _idle(self, pool: _Pool) -> Connection | None:
        now = time.monotonic()
        while pool.idle:
            conn = pool.idle.pop()
            if conn.usable(now, self.keepalive_expiry):
                conn.reused = True
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> Connection:
        tls = None
        if origin.scheme == "https":
            tls = self._ssl = self._ssl or ssl.create_default_context()
        where = f"{origin.host}:{origin.port}"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    Connection, origin.host, origin.port, ssl=tls,
                    server_hostname=origin.host if tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {where} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"connect to {where}: {exc}") from exc
        return conn

    async def _answer(self, pool: _Pool, conn: Connection, timeout: Timeouts, small: int,
                      close: bool) -> Answer:
        keep = conn.version == b"HTTP/1.1" and conn.framing is not Framing.CLOSE \
            and not close and not says_close(conn.headers)
        head = conn.status, conn.headers, conn.version
        whole = conn.framing is Framing.NONE or \
            (conn.framing is Framing.LENGTH and conn.length <= small)
        if whole and not conn.done:
            try:
                await conn.wait(lambda: conn.done, timeout.get("read"))
            except TimeoutError:
                raise httpx.ReadTimeout("backend too slow sending the body") from None
        if whole:
            content = conn.take_body()
            self._release(pool, conn, keep)
            return Answer(*head, content)
        body_timeout = timeout.get("body", timeout.get("read"))
        return Answer(*head, None, _Body(self, pool, conn, keep, body_timeout))

    def _release(self, pool: _Pool, conn: Connection, reusable: bool) -> None:
        if reusable and not self._closed and conn.alive():
            conn.idle_since = time.monotonic()
            pool.idle.append(conn)
        else:
            conn.close()
        pool.slots.release()


class _Body:
    """A response body read from the connection; gives the connection back when done."""

    def __init__(self, transport: UpstreamTransport, pool: _Pool, conn: Connection,
                 keep: bool, timeout: float | None) -> None:
        self.transport, self.pool, self.conn = transport, pool, conn
        self.keep, self.timeout = keep, timeout
        self.complete = False
        self.released = False

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self.conn
        try:
            while True:
                if conn.chunks:
                    yield conn.take_body()
                elif conn.done:
                    self.complete = True
                    return
                else:
                    try:
                        await conn.wait(lambda: bool(conn.chunks) or conn.done, self.timeout)
                    except TimeoutError:
                        raise httpx.ReadTimeout("backend too slow sending the body") from None
        finally:
            if self.complete:
                await self.aclose()

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


async def _exchange(conn: Connection, method: str, data: bytes, timeout: Timeouts) -> None:
    """Send one request and wait for the head of its final answer (1xx are skipped)."""
    conn.begin(method)
    conn.send(data)
    try:
        if conn.write_paused:
            try:
                await conn.wait(lambda: not conn.write_paused, timeout.get("write"))
            except TimeoutError:
                raise httpx.WriteTimeout("backend too slow taking the request") from None
        await conn.wait(lambda: conn.head_done, timeout.get("read"))
    except TimeoutError:
        raise httpx.ReadTimeout("backend too slow to answer") from None
