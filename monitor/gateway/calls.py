"""One attempt of a gateway request on one backend, over the lean client or over httpx.

The gateway builds a :class:`Call` per attempt (method, the backend's base URL, the client's
target, the forwarded headers, the buffered body) and :func:`send` turns it into a
:class:`Reply`. On the gateway's own :class:`~monitor.gateway.transport.UpstreamTransport`
that is a byte join and a pooled write: no httpx model is built. Any other httpx transport
(tests pass ``httpx.MockTransport``) gets an ``httpx.Request`` and its response is adapted,
so both paths read the same and raise the same httpx errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import httpx

from monitor.gateway.retry import Failure
from monitor.gateway.transport import UpstreamTransport
from monitor.gateway.wire import Origin, serialize


@dataclass(slots=True)
class Call:
    method: str
    base_url: str
    target: bytes  # origin-form: path and query as the client sent them
    headers: list[tuple[bytes, bytes]]  # already filtered (no Host, no Content-Length)
    body: bytes


class Reply(Protocol):
    """A backend's answer: ``content`` is the whole body when it was read at once."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...

    @property
    def content(self) -> bytes | None: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


# One attempt's result: the reply (None when the attempt failed without one), its body when
# it was read at once, and the failure it means (None for an answer to pass on).
Outcome = tuple[Reply | None, bytes | None, Failure | None]


class HttpxReply:
    """An httpx.Response read as a :class:`Reply`."""

    __slots__ = ("response", "content")

    def __init__(self, response: httpx.Response, content: bytes | None) -> None:
        self.response = response
        self.content = content

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return self.response.headers.raw

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        if self.content is not None:
            if self.content:
                yield self.content
            return
        async for chunk in self.response.aiter_raw():
            yield chunk

    async def aclose(self) -> None:
        await self.response.aclose()


class Sender:
    """Sends calls through ``transport`` with ``timeout`` seconds for each phase (pool,
    connect, write, read between body chunks); the head of the answer is bounded by the
    caller's attempt timeout. Bodies up to ``small`` bytes are read at once."""

    def __init__(self, timeout: float, small: int) -> None:
        self.small = small
        self._lean = {"pool": timeout, "connect": timeout, "write": timeout, "read": None,
                      "body": timeout}
        self._httpx = httpx.Timeout(timeout).as_dict()
        self._origins: dict[str, Origin] = {}

    def origin(self, base_url: str) -> Origin:
        origin = self._origins.get(base_url)
        if origin is None:
            try:
                origin = Origin.parse(base_url)
            except ValueError as exc:
                raise httpx.ConnectError(f"bad backend URL: {exc}") from None
            if len(self._origins) > 1024:  # routes change rarely; never grow without bound
                self._origins.clear()
            self._origins[base_url] = origin
        return origin

    async def send(self, transport: httpx.AsyncBaseTransport, call: Call | httpx.Request
                   ) -> Reply:
        if isinstance(transport, UpstreamTransport) and isinstance(call, Call):
            origin = self.origin(call.base_url)
            data = serialize(call.method, origin.prefix + call.target, origin.authority,
                             call.headers, call.body)
            return await transport.send(origin, call.method, data, self._lean, small=self.small)
        request = call if isinstance(call, httpx.Request) else self._request(call)
        response = await transport.handle_async_request(request)
        content = None
        try:
            length = response.headers.get("content-length", "")
            if request.method == "HEAD" or (length.isdigit() and int(length) <= self.small):
                content = b"".join([chunk async for chunk in response.aiter_raw()])
        except BaseException:
            await response.aclose()
            raise
        return HttpxReply(response, content)

    def _request(self, call: Call) -> httpx.Request:
        self.origin(call.base_url)  # the same validation as the lean path
        url = httpx.URL(call.base_url.rstrip("/") + call.target.decode("latin-1"))
        return httpx.Request(call.method, url, headers=call.headers, content=call.body,
                             extensions={"timeout": self._httpx})
