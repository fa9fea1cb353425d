"""A lean HTTP/1.1 keep-alive transport for httpx, for the gateway's backend traffic.

httpx's default transport (httpcore over anyio) costs about a millisecond of CPU per request,
several times what a book service spends answering it, which would make the gateway the
bottleneck. This transport speaks plain HTTP/1.1 on asyncio streams and keeps a small pool of
connections per origin; it plugs into ``httpx.AsyncClient(transport=...)``, so the gateway and
its tests keep using the httpx API (tests swap in ``httpx.MockTransport``).

It raises the same httpx exceptions as the default transport, which is what the retry rules
read: ConnectError / ConnectTimeout / PoolTimeout before a request leaves, then WriteError,
ReadTimeout, ReadError or RemoteProtocolError. A request that finds its reused keep-alive
connection closed by the backend (no byte of answer) is sent again once on a new connection
when its method is idempotent, as Go's and urllib3's clients do; it never reached the backend.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import httptools
import httpx

T = TypeVar("T")

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
MAX_HEAD = 64 * 1024  # response status line and headers
READ_CHUNK = 64 * 1024


class _Stale(Exception):
    """A reused connection closed before any byte of the answer arrived."""


class _Conn:
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


class UpstreamTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int = 128, keepalive_expiry: float = 4.0) -> None:
        self.max_connections = max_connections  # per origin
        self.keepalive_expiry = keepalive_expiry
        self._pools: dict[tuple[bytes, bytes, int], _Pool] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}")
        key = (url.raw_scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80))
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self.max_connections)
        timeout = request.extensions.get("timeout", {})
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
            data = _serialize(request, await request.aread())
            conn = self._idle(pool) or await self._connect(key, timeout.get("connect"))
            try:
                head = await _exchange(conn, data, timeout)
            except _Stale:
                conn.close()
                if request.method.encode() not in IDEMPOTENT:
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending a response.") from None
                conn = await self._connect(key, timeout.get("connect"))
                head = await _exchange(conn, data, timeout)
            return self._response(request, pool, conn, head, timeout.get("read"))
        except BaseException:
            if conn is not None:
                conn.close()
            pool.slots.release()
            raise

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

    async def _connect(self, key: tuple[bytes, bytes, int], timeout: float | None) -> _Conn:
        scheme, host, port = key
        tls = None
        if scheme == b"https":
            tls = self._ssl = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host.decode("ascii"), port, ssl=tls, limit=MAX_HEAD,
                    server_hostname=host.decode("ascii") if tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {host.decode()}:{port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"connect to {host.decode()}:{port}: {exc}") from exc
        return _Conn(reader, writer)

    def _response(self, request: httpx.Request, pool: _Pool, conn: _Conn,
                  head: tuple[int, list[tuple[bytes, bytes]], bytes], read_timeout: float | None
                  ) -> httpx.Response:
        status, headers, version = head
        framing, length = _framing(request.method, status, headers)
        keep = version == b"HTTP/1.1" and framing != "close" and not _says_close(headers) \
            and not _says_close(request.headers.raw)
        stream = _Body(self, pool, conn, framing, length, keep, read_timeout)
        return httpx.Response(status, headers=headers, stream=stream,
                              extensions={"http_version": version})

    def _release(self, pool: _Pool, conn: _Conn, reusable: bool) -> None:
        if reusable and not self._closed and not conn.writer.is_closing():
            conn.idle_since = time.monotonic()
            pool.idle.append(conn)
        else:
            conn.close()
        pool.slots.release()


class _Body(httpx.AsyncByteStream):
    """A response body read from the connection; gives the connection back when done."""

    def __init__(self, transport: UpstreamTransport, pool: _Pool, conn: _Conn, framing: str,
                 length: int, keep: bool, timeout: float | None) -> None:
        self.transport, self.pool, self.conn = transport, pool, conn
        self.framing, self.length, self.keep, self.timeout = framing, length, keep, timeout
        self.complete = framing == "none"
        self.released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.complete:
            return
        reader = self.conn.reader
        try:
            if self.framing == "length":
                remaining = self.length
                while remaining:
                    chunk = await self._read(reader.read(min(remaining, READ_CHUNK)))
                    if not chunk:
                        raise httpx.RemoteProtocolError("backend closed the connection "
                                                        "before the body was complete")
                    remaining -= len(chunk)
                    yield chunk
            elif self.framing == "chunked":
                async for chunk in self._chunks(reader):
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

    async def _chunks(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        while True:
            line = await self._read(reader.readuntil(b"\r\n"))
            digits = line.split(b";", 1)[0].strip()
            if not 0 < len(digits) <= 16 or digits.strip(_HEX):
                raise ValueError(f"bad chunk size {digits[:20]!r}")
            size = int(digits, 16)
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
            async with asyncio.timeout(self.timeout):
                return await awaitable
        except TimeoutError:
            raise httpx.ReadTimeout("backend too slow sending the body") from None

    async def aclose(self) -> None:
        if not self.released:
            self.released = True
            self.transport._release(self.pool, self.conn, self.complete and self.keep)


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


async def _exchange(conn: _Conn, data: bytes, timeout: dict[str, float | None]
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
            async with asyncio.timeout(timeout.get("read")):
                raw = await conn.reader.readuntil(b"\r\n\r\n")
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
        status, headers, version = _parse_head(raw)
        if not 100 <= status < 200:
            return status, headers, version
        if status == 101:
            raise httpx.RemoteProtocolError("protocol upgrades are not supported")


_HEX = b"0123456789abcdefABCDEF"


class _Head:
    """httptools callbacks collecting a response head."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


def _parse_head(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and version of a response head, parsed by llhttp (strict about
    tokens, control characters and line endings)."""
    head = _Head()
    parser = httptools.HttpResponseParser(head)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        pass  # a 101: refused by the caller
    except httptools.HttpParserError as exc:
        raise httpx.RemoteProtocolError(f"malformed response head: {exc}") from None
    if not head.complete:
        raise httpx.RemoteProtocolError("malformed response head")
    version = b"HTTP/" + parser.get_http_version().encode("ascii")
    return parser.get_status_code(), head.headers, version


def _framing(method: str, status: int, headers: list[tuple[bytes, bytes]]) -> tuple[str, int]:
    """How the body is delimited (RFC 9112 section 6.3): none, length, chunked or close."""
    if method == "HEAD" or status in (204, 304):
        return "none", 0
    codings = [v for n, v in headers if n.lower() == b"transfer-encoding"]
    if codings:
        last = b",".join(codings).split(b",")[-1].strip().lower()
        return ("chunked", 0) if last == b"chunked" else ("close", 0)
    lengths = {v.strip() for n, v in headers if n.lower() == b"content-length"}
    if not lengths:
        return "close", 0
    if len(lengths) > 1 or not next(iter(lengths)).isdigit():
        raise httpx.RemoteProtocolError("invalid Content-Length")
    length = int(next(iter(lengths)))
    return ("length", length) if length else ("none", 0)


def _says_close(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(n.lower() == b"connection" and b"close" in v.lower() for n, v in headers)
