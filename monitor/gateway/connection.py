"""One keep-alive HTTP/1.1 connection to a backend, as an asyncio Protocol.

Bytes from the backend go straight from the event loop into an httptools (llhttp) response
parser; its callbacks collect the head and the body, and one waiter future wakes the request
waiting on this connection. No StreamReader, no per-read timer: a request on this connection
waits for "head complete", then for "body complete" (or for each part of a streamed body).

Failures are recorded as the httpx errors the retry rules read: a malformed head is a
RemoteProtocolError, a malformed body a ReadError, a close before the answer is complete a
RemoteProtocolError; :class:`Lost` before any byte of the answer on a reused connection lets
the pool send an idempotent request again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httptools
import httpx

from monitor.gateway.wire import Framing, framing

MAX_HEAD = 64 * 1024  # response status line and headers
HIGH_WATER = 256 * 1024  # buffered body bytes before reading from the backend pauses


class Lost(httpx.RemoteProtocolError):
    """The backend closed the connection; ``empty`` when no byte of the answer had come."""

    def __init__(self, message: str, *, empty: bool) -> None:
        super().__init__(message)
        self.empty = empty


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.reused = False
        self.closed = False
        self.write_paused = False
        self.reading_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.begin("GET")

    def begin(self, method: str) -> None:
        """Ready for the answer to a ``method`` request (a fresh parser for each answer)."""
        self.method = method
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.version = b"HTTP/1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.framing, self.length = Framing.NONE, 0
        self.head_done = False
        self.done = False
        self.received = 0
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.error: httpx.HTTPError | None = None

    def alive(self) -> bool:
        return not self.closed and self.error is None and self.transport is not None \
            and not self.transport.is_closing()

    def usable(self, now: float, expiry: float) -> bool:
        return now - self.idle_since < expiry and self.alive()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def wait(self, ready: Callable[[], bool], timeout: float | None) -> None:
        """Until ``ready()``; raises the connection's error, or TimeoutError."""
        while not ready():
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            if timeout is None:
                await self.waiter
            else:
                async with asyncio.timeout(timeout):
                    await self.waiter

    def take_body(self) -> bytes:
        """The body parts received so far (reading resumes if it was paused)."""
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.reading_paused and self.alive():
            assert self.transport is not None
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    # asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self.done or self.error is not None:  # bytes nobody asked for: unusable now
            self.error = self.error or httpx.RemoteProtocolError("unexpected data from backend")
            self.close()
            return
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, httpx.HTTPError) else self._broken(exc))
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            self._fail(self._broken(exc))
        if not self.head_done and self.received > MAX_HEAD and self.error is None:
            self._fail(httpx.RemoteProtocolError("response head too large"))
        if self.buffered > HIGH_WATER and not self.reading_paused and self.alive():
            assert self.transport is not None
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.done and self.error is None:
            if self.head_done and self.framing is Framing.CLOSE:
                self.done = True  # a body delimited by the close
            elif not self.head_done:
                self.error = Lost("Server disconnected without sending a response."
                                  if not self.received else
                                  "backend closed the connection inside the response head",
                                  empty=not self.received)
            else:
                self.error = httpx.RemoteProtocolError(
                    "backend closed the connection before the body was complete")
        self._wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    # httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.headers = []  # after a 1xx, the final answer's own

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))  # lower once: every later look-up is exact

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise httpx.RemoteProtocolError("protocol upgrades are not supported")
            return  # informational: the final answer follows
        self.status = status
        self.version = b"HTTP/" + self.parser.get_http_version().encode("ascii")
        self.framing, self.length = framing(self.method, status, self.headers)
        self.head_done = True
        if self.framing is Framing.NONE:
            self.done = True

    def on_body(self, body: bytes) -> None:
        if not self.done:
            self.chunks.append(body)
            self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.done = True

    # --------------------------------------------------------------------------------------
    def _broken(self, exc: Exception) -> httpx.HTTPError:
        if self.head_done:
            return httpx.ReadError(f"malformed response body: {exc}")
        return httpx.RemoteProtocolError(f"malformed response head: {exc}")

    def _fail(self, error: httpx.HTTPError) -> None:
        if self.error is None:
            self.error = error
        self.close()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
