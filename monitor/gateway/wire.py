"""HTTP/1.1 messages on the gateway's upstream side, as pure functions over bytes.

The gateway's backend client (:mod:`monitor.gateway.transport`) speaks HTTP/1.1 itself, so
a request costs a few byte joins instead of httpx's URL, Headers, Request and Response
models. Here: where a base URL points (:class:`Origin`), a request serialized to bytes,
a response head parsed by httptools (llhttp), and how its body is framed (RFC 9112 §6.3).

Errors are the httpx exceptions the retry rules read (RemoteProtocolError for a malformed
head), so a lean request and one sent through httpx fail alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import httptools
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


class _Head:
    """httptools callbacks collecting a response head."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


def parse_head(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and version of a response head, parsed by llhttp (strict about tokens,
    control characters and line endings)."""
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


def framing(method: str, status: int, headers: list[tuple[bytes, bytes]]
            ) -> tuple[Framing, int]:
    """How the body is delimited (RFC 9112 section 6.3), and its length when known."""
    if method == "HEAD" or status in (204, 304):
        return Framing.NONE, 0
    codings = [v for n, v in headers if n.lower() == b"transfer-encoding"]
    if codings:
        last = b",".join(codings).split(b",")[-1].strip().lower()
        return (Framing.CHUNKED, 0) if last == b"chunked" else (Framing.CLOSE, 0)
    lengths = {v.strip() for n, v in headers if n.lower() == b"content-length"}
    if not lengths:
        return Framing.CLOSE, 0
    if len(lengths) > 1 or not next(iter(lengths)).isdigit():
        raise httpx.RemoteProtocolError("invalid Content-Length")
    length = int(next(iter(lengths)))
    return (Framing.LENGTH, length) if length else (Framing.NONE, 0)


def says_close(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(n.lower() == b"connection" and b"close" in v.lower() for n, v in headers)


HEX = b"0123456789abcdefABCDEF"


def chunk_size(line: bytes) -> int:
    """The size in a chunk-size line (extensions ignored); ValueError when it is not hex."""
    digits = line.split(b";", 1)[0].strip()
    if not 0 < len(digits) <= 16 or digits.strip(HEX):
        raise ValueError(f"bad chunk size {digits[:20]!r}")
    return int(digits, 16)
