"""Parsers of setting values written as text: comma lists, `NAME=URL` maps, port triples.
Each returns the typed value or raises ValueError with a message for the operator."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit


def items(value: Any) -> tuple[str, ...]:
    """A comma-separated string (or a sequence given in code) as stripped, non-empty items."""
    parts = value.split(",") if isinstance(value, str) else list(value or ())
    return tuple(p.strip() for p in map(str, parts) if p.strip())


def parse_ports(value: str) -> tuple[int, int, int]:
    try:
        ports = [int(p) for p in value.split(",")]
    except ValueError:
        raise ValueError(f"expected three comma-separated port numbers, got {value!r}") from None
    if len(ports) != 3 or not all(1 <= p <= 65535 for p in ports):
        raise ValueError(f"expected three ports between 1 and 65535, got {value!r}")
    return ports[0], ports[1], ports[2]


def parse_services(value: str) -> dict[str, str]:
    """`v1=URL,v2=URL,v3=URL` in priority order; empty means spawn local services."""
    if not value.strip():
        return {}
    urls: dict[str, str] = {}
    for part in value.split(","):
        name, sep, url = part.strip().partition("=")
        parts = urlsplit(url.strip())
        if not sep or not name.strip() or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected NAME=http(s)://host:port, got {part.strip()!r}")
        urls[name.strip()] = url.strip().rstrip("/")
    if len(urls) < 2:
        raise ValueError("at least two versions are needed to fail over")
    return urls


def is_loopback(host: str) -> bool:
    """Only `localhost` or a literal loopback address: `127.attacker.example` is a DNS name
    anyone can point anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_ages(raw_hours: float, minute_days: float, hour_days: float) -> None:
    """Each history tier (raw probes, minute rollups, hourly rollups) must outlive the last."""
    if not raw_hours < minute_days * 24 < hour_days * 24:
        raise ValueError(
            f"MONITOR_RETENTION_HOURS ({raw_hours:g} h) < MONITOR_ROLLUP_MINUTE_DAYS "
            f"({minute_days:g} d) < MONITOR_ROLLUP_HOUR_DAYS ({hour_days:g} d) is required: "
            "each history tier outlives the last")
