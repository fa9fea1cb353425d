"""HTTP/1.1 messages on the gateway's upstream side, as pure functions over bytes.

The gateway's backend client (:mod:`monitor.gateway.transport`) speaks HTTP/1.1 itself, so
a request costs a few byte joins instead of httpx's URL, Headers, Request and Response
models. Here: where a base URL points (:class:`Origin`), a request serialized to bytes, and
how a response body is framed (RFC 9112 §6.3); responses are parsed by httptools (llhttp) in
:mod:`monitor.gateway.connection`.

Errors are the httpx exceptions the retry rules read (RemoteProtocolError for an invalid
Content-Length), so a lean request and one sent through httpx fail alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import httpx


class Framing(StrEnum):
    """How a response body is delimited."""

    NONE = "none"  # no body (HEAD, 204, 304, Content-Length: 0)
    LENGTH = "length"
    CHUNKED = "chunked"
    CLOSE = "close"  # until the backend closes the connection


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a version's base URL points: the pool key, the Host header, a path prefix."""

    scheme: str
    host: str
    port: int
    authority: bytes  # the Host header: host[:port] as in the URL
    prefix: bytes  # the URL's path without its trailing slash ("" or "/api")

    @property
    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        """The origin of an http(s) base URL; ValueError naming what is wrong."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {parts.scheme!r} in {base_url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {base_url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return cls(parts.scheme, host, port, netloc.encode("idna"),
                   parts.path.rstrip("/").encode("latin-1"))


def serialize(method: str, target: bytes, authority: bytes,
              headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """One request on the wire: Host first, the headers as given (without Host, Content-Length
    or Transfer-Encoding: the body is whole and sent with its length), then the body."""
    lines = [b"%s %s HTTP/1.1" % (method.encode("ascii"), target), b"host: " + authority]
    lines += [n + b": " + v for n, v in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def framing(method: str, status: int, headers: list[tuple[bytes, bytes]]
            ) -> tuple[Framing, int]:
    """How the body is delimited (RFC 9112 section 6.3), and its length when known;
    ``headers`` with lower-case names, as the connection collects them."""
    if method == "HEAD" or status in (204, 304):
        return Framing.NONE, 0
    codings = [v for n, v in headers if n == b"transfer-encoding"]
    if codings:
        last = b",".join(codings).split(b",")[-1].strip().lower()
        return (Framing.CHUNKED, 0) if last == b"chunked" else (Framing.CLOSE, 0)
    lengths = {v.strip() for n, v in headers if n == b"content-length"}
    if not lengths:
        return Framing.CLOSE, 0
    if len(lengths) > 1 or not next(iter(lengths)).isdigit():
        raise httpx.RemoteProtocolError("invalid Content-Length")
    length = int(next(iter(lengths)))
    return (Framing.LENGTH, length) if length else (Framing.NONE, 0)


def says_close(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether ``headers`` (lower-case names) ask to close the connection after this message."""
    return any(n == b"connection" and b"close" in v.lower() for n, v in headers)
