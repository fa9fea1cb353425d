"""A small HTTP/1.1 server for the gateway's one job, with the limits a public edge needs.

It parses requests with httptools (llhttp, the parser of Node.js) and runs one ASGI app per
request, sequentially per connection. Limits (each answered the way nginx does):

- request read deadline: the head and body of a request must arrive within ``read_timeout``
  of its first byte, else 408 and close (slowloris);
- head size: request line and headers above ``max_header`` bytes, or more than
  ``max_fields`` header fields, get 431 and close;
- body size: a declared or received body above ``max_body`` gets 413 and close;
- connections per client IP above ``per_ip`` are closed at once (the attacker's, not the
  others'), and at most ``max_connections`` in all;
- idle keep-alive: a connection without a request for ``keepalive`` seconds is closed.

A refused request gets its answer, then a lingering close (as nginx does): the gateway stops
writing and discards what the client still sends for up to ``LINGER_S`` seconds, so the
client reads the 431/413 instead of a connection reset.

The body is buffered whole (it is small and bounded) before the app runs, so the app's
retries can replay it. Responses with a Content-Length are written as they are, others
chunked. ``Server`` and ``Date`` are not added: the backend's Date passes through.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote_to_bytes

import httptools

log = logging.getLogger(__name__)

LINGER_S = 2.0
LINGER_BYTES = 8 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    read_timeout: float = 10.0
    max_header: int = 16 * 1024
    max_fields: int = 100
    max_body: int = 1_000_000
    per_ip: int = 256
    max_connections: int = 10_000
    keepalive: float = 5.0


_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


def error_response(status: int, error: str, detail: str) -> bytes:
    body = json.dumps({"error": error, "detail": detail}).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, _REASONS.get(status, b""), len(body))) + body


class _Refused(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


class GatewayServer:
    """Serves ``app`` on listening sockets; see the module docstring."""

    def __init__(self, app: ASGIApp, limits: Limits = Limits()) -> None:
        self.app = app
        self.limits = limits
        self.per_ip: collections.Counter[str] = collections.Counter()
        self.connections: set[_Connection] = set()
        self.servers: list[asyncio.Server] = []
        self.closing = False

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=4096)
        self.servers.append(server)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting, close idle connections, let requests in flight finish (up to
        ``grace`` seconds), then close the rest."""
        self.closing = True
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.close_if_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        for server in self.servers:
            await server.wait_closed()


class _Connection(asyncio.Protocol):
    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.client: tuple[str, int] | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.timer: asyncio.TimerHandle | None = None
        self.pending: collections.deque[tuple[Scope, bytes]] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.lost = asyncio.Event()
        self.lingering = -1  # bytes discarded after a refusal; -1 while not lingering
        self.last_request = False
        self._reset()

    def _reset(self) -> None:
        self.reading = False  # between the first byte of a request and its end
        self.head_bytes = 0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.in_head = True

    # asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = self.transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.ip = self.client[0] if self.client else ""
        server = self.server
        if server.closing or server.per_ip[self.ip] >= self.limits.per_ip or \
                len(server.connections) >= self.limits.max_connections:
            self.transport.abort()
            return
        server.per_ip[self.ip] += 1
        server.connections.add(self)
        self._arm(self.limits.keepalive)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.server.connections:
            self.server.connections.discard(self)
            self.server.per_ip[self.ip] -= 1
            if self.server.per_ip[self.ip] <= 0:
                del self.server.per_ip[self.ip]
        self._disarm()
        self.lost.set()
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        if self.lingering >= 0:
            self.lingering += len(data)
            if self.lingering > LINGER_BYTES and self.transport is not None:
                self.transport.abort()
            return
        if not self.reading:
            self.reading = True
            self._arm(self.limits.read_timeout)
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
            if self.in_head and self.head_bytes > self.limits.max_header:
                raise _Refused(431, "request header too large",
                               f"the limit is {self.limits.max_header} bytes")
        except _Refused as refused:
            self._refuse(refused.status, refused.error, refused.detail)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause.status, cause.error, cause.detail)
            else:
                self._refuse(400, "bad request", "malformed request")
        except httptools.HttpParserUpgrade:
            # Served as a plain request (Upgrade is hop-by-hop and not passed on); the
            # parser stops here, so the connection closes after that answer.
            self.last_request = True
        except httptools.HttpParserError:
            self._refuse(400, "bad request", "malformed request")

    # httptools callbacks ------------------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))
        if len(self.headers) > self.limits.max_fields:
            raise _Refused(431, "too many header fields",
                           f"the limit is {self.limits.max_fields}")

    def on_headers_complete(self) -> None:
        self.in_head = False
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.limits.max_header:
            raise _Refused(431, "request header too large",
                           f"the limit is {self.limits.max_header} bytes")
        for name, value in self.headers:
            if name == b"content-length" and value.strip().isdigit() and \
                    int(value) > self.limits.max_body:
                raise _Refused(413, "request body too large",
                               f"the limit is {self.limits.max_body} bytes")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.limits.max_body:
            raise _Refused(413, "request body too large",
                           f"the limit is {self.limits.max_body} bytes")
        self.body.append(body)

    def on_message_complete(self) -> None:
        parsed = httptools.parse_url(self.url)
        method = self.parser.get_method().decode("ascii", "replace")
        raw_path = parsed.path or b"/"
        scope: Scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.parser.get_http_version(), "method": method,
            "scheme": "http", "path": _unquote(raw_path), "raw_path": raw_path,
            "query_string": parsed.query or b"", "root_path": "", "headers": self.headers,
            "client": self.client, "server": None,
            "keep_alive": self.parser.should_keep_alive(),
        }
        self.pending.append((scope, b"".join(self.body)))
        self._reset()
        self._disarm()
        assert self.transport is not None
        self.transport.pause_reading()  # one request at a time; pipelined ones wait here
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._serve())

    # Serving ------------------------------------------------------------------------------
    async def _serve(self) -> None:
        transport = self.transport
        assert transport is not None
        try:
            while self.pending and not transport.is_closing():
                scope, body = self.pending.popleft()
                keep = await self._run(scope, body) and not self.server.closing \
                    and not (self.last_request and not self.pending)
                if not keep:
                    transport.close()
                    return
            if not transport.is_closing():
                self._arm(self.limits.keepalive)
                transport.resume_reading()
        finally:
            self.task = None

    async def _run(self, scope: Scope, body: bytes) -> bool:
        """Run the app for one request; whether the connection may be kept."""
        transport = self.transport
        assert transport is not None
        keep = bool(scope.pop("keep_alive")) and not self.last_request
        state = {"started": False, "chunked": False, "done": False, "head": False}
        sent_body = False
        head = b""

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await self.lost.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal keep, head
            if self.lost.is_set():
                raise OSError("client went away")
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                has_length = any(n.lower() == b"content-length" for n, _ in headers)
                status = int(message["status"])
                bodyless = scope["method"] == "HEAD" or status in (204, 304) or status < 200
                state["chunked"] = not has_length and not bodyless
                state["head"] = bodyless
                if not keep or self.server.closing:
                    keep = False
                    headers.append((b"connection", b"close"))
                if state["chunked"]:
                    headers.append((b"transfer-encoding", b"chunked"))
                lines = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b""))]
                lines += [n + b": " + v for n, v in headers]
                head = b"\r\n".join(lines) + b"\r\n\r\n"  # sent with the first body part
                state["started"] = True
            elif message["type"] == "http.response.body":
                chunk = bytes(message.get("body", b""))
                more = bool(message.get("more_body", False))
                if state["head"]:
                    chunk = b""
                elif state["chunked"]:
                    chunk = (b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunk else b"") + \
                        (b"" if more else b"0\r\n\r\n")
                if head:  # one write (one segment, one wake-up of the client) for a small answer
                    chunk, head = head + chunk, b""
                if chunk:
                    transport.write(chunk)
                if not more:
                    state["done"] = True
                if not self.writable.is_set():
                    await self.writable.wait()

        try:
            await self.server.app(scope, receive, send)
        except Exception:
            if not state["started"]:
                log.exception("gateway app failed before answering")
                transport.write(error_response(502, "bad gateway", "the gateway failed"))
            transport.abort() if state["started"] else transport.close()
            return False
        if not state["done"]:
            transport.abort()  # a truncated answer must not look complete
            return False
        return keep

    # Limits -------------------------------------------------------------------------------
    def _refuse(self, status: int, error: str, detail: str) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self.lingering >= 0:
            return
        if self.task is not None:  # never interleave with a response being written
            transport.close()
            return
        transport.write(error_response(status, error, detail))
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.lingering = 0
        self._arm(LINGER_S)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        if self.lingering >= 0 and self.transport is not None:
            self.transport.close()
        elif self.reading:
            self._refuse(408, "request not received in time",
                         f"the limit is {self.limits.read_timeout:g} s")
        elif self.transport is not None and self.task is None:
            self.transport.close()  # idle keep-alive

    def close_if_idle(self) -> None:
        if self.task is None and not self.reading and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _unquote(raw: bytes) -> str:
    return unquote_to_bytes(raw).decode("latin-1")


def listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket (TCP_NODELAY-ready, SO_REUSEPORT when workers share the port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock
