"""Which headers a reverse proxy passes on (RFC 9110 section 7.6.1), as pure functions."""

from __future__ import annotations

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
})
# Recomputed or replaced by the gateway (Host by httpx from the backend URL, Content-Length from
# the buffered body; Expect because the body is sent at once).
_REQUEST_DROP = HOP_BY_HOP | {b"host", b"content-length", b"expect", b"x-forwarded-for",
                              b"forwarded", b"x-real-ip"}
# The backend's Date passes (run the gateway's server with date_header=False); its Server does
# not, so clients do not learn the backend software; X-Served-By is the gateway's to set.
_RESPONSE_DROP = HOP_BY_HOP | {b"server", b"x-served-by"}


def forward_headers(raw: list[tuple[bytes, bytes]], client_ip: str | None,
                    scheme: str) -> list[tuple[bytes, bytes]]:
    """Request headers for the backend: hop-by-hop ones dropped (with any named in Connection),
    ``X-Forwarded-For`` set to the client address, ``X-Forwarded-Proto/Host`` set. The gateway
    is the edge: whatever forwarding headers a client sends are its own claims and dropped."""
    named = _connection_named(raw)
    out: list[tuple[bytes, bytes]] = []
    host = b""
    for name, value in raw:
        low = name.lower()
        if low == b"host":
            host = value
        if low in _REQUEST_DROP or low in named or low.startswith(b"x-forwarded-"):
            continue
        out.append((low, value))
    if client_ip:
        out.append((b"x-forwarded-for", client_ip.encode("latin-1")))
    out.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    if host:
        out.append((b"x-forwarded-host", host))
    return out


def response_headers(raw: list[tuple[bytes, bytes]], version: str,
                     status: int = 200) -> list[tuple[bytes, bytes]]:
    """Response headers for the client: hop-by-hop ones dropped, ``X-Served-By`` added.

    Content-Length goes when it does not frame what the client gets: after a chunked answer
    (the gateway re-frames the decoded body) and on 1xx/204/304, which have no body."""
    lowered = [(name.lower(), value) for name, value in raw]  # one lower() per header
    drop: frozenset[bytes] | set[bytes] = _RESPONSE_DROP
    if any(name == b"connection" for name, _ in lowered):
        drop = set(_RESPONSE_DROP) | _connection_named(lowered)
    if status in (204, 304) or status < 200 or any(
            name == b"transfer-encoding" for name, _ in lowered):
        drop = set(drop) | {b"content-length"}
    out = [(name, value) for name, value in lowered if name not in drop]
    out.append((b"x-served-by", version.encode("latin-1")))
    return out


def _connection_named(raw: list[tuple[bytes, bytes]]) -> set[bytes]:
    return {token.strip().lower() for name, value in raw if name.lower() == b"connection"
            for token in value.split(b",") if token.strip()}
