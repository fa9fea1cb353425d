"""Parsers of setting values written as text: comma lists, `NAME=URL` maps, port triples.
Each returns the typed value or raises ValueError with a message for the operator."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator
from pydantic_settings import NoDecode


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


SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # a DNS label, as spec metadata.name


def parse_fleet(value: str) -> dict[str, dict[str, str]]:
    """`films:v1=URL,v2=URL;music:a=URL,b=URL`: services beside the default one, each with
    its versions in priority order (as MONITOR_SERVICES). Empty means none."""
    services: dict[str, dict[str, str]] = {}
    for part in filter(None, (p.strip() for p in value.split(";"))):
        name, sep, versions = part.partition(":")
        name = name.strip()
        if not sep or not SERVICE_NAME.match(name):
            raise ValueError(f"expected NAME:v1=URL,v2=URL with NAME a lower-case DNS label "
                             f"(a-z, 0-9, -; at most 31), got {part[:80]!r}")
        if name in services:
            raise ValueError(f"service {name!r} is given twice")
        try:
            services[name] = parse_services(versions)
        except ValueError as exc:
            raise ValueError(f"service {name!r}: {exc}") from None
    return services


def fleet_value(value: Any) -> dict[str, dict[str, str]]:
    """MONITOR_EXTRA_SERVICES as text (parse_fleet), or a mapping given in code."""
    return dict(value) if isinstance(value, Mapping) else parse_fleet(str(value))


# The type of Settings.extra_services: service -> version -> URL, parsed from text.
Fleet = Annotated[dict[str, dict[str, str]], NoDecode, BeforeValidator(fleet_value)]


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
