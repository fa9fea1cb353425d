"""Passive evidence from the gateway to the monitor: one signed datagram per failed attempt,
and once a second the gateway's request outcomes (the monitor's `monitor_gateway_requests`).

The channel is a Unix datagram socket in the abstract namespace (Linux), named after the
data directory, so every gateway following a monitor finds it without a setting and without
a socket file to clean up. Each datagram is ``JSON \\n MAC`` with HMAC-SHA256 under the
route-feed key and the sender's clock; the monitor drops a datagram whose MAC is wrong or
whose time is more than ``MAX_SKEW`` seconds away. Datagrams never block the gateway: while
the monitor is down ``report`` drops them (evidence only makes probes come sooner; the
monitor's own probes decide).

Services: the default service's datagrams are ``{"v", "f", "t"}`` and ``{"c", "t"}`` as in a
single-service release. Another service's carry ``"s"`` (its name) and other keys for the
version and the counts (``"sv"``, ``"sc"``), so a monitor of an older release drops them
instead of charging that service's failures to a default version of the same name.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

MAX_SKEW = 30.0
MAX_DATAGRAM = 1024


def address(data_dir: Path) -> bytes:
    """The abstract socket name of the monitor that owns ``data_dir``."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]
    return b"\0failover-monitor-evidence-" + digest.encode()


Counts = list[tuple[str, str, int]]  # (version, outcome, requests)
P99_US = "p99_us"  # not an outcome: (version, P99_US, the version's recent p99 in microseconds)


def _sign(doc: dict[str, object], key: bytes) -> bytes:
    body = json.dumps(doc, separators=(",", ":")).encode()
    return body + b"\n" + hmac.new(key, body, hashlib.sha256).hexdigest().encode()


def pack(version: str, failure: str, now: float, key: bytes, service: str = "") -> bytes:
    if service:
        return _sign({"s": service, "sv": version, "f": failure, "t": now}, key)
    return _sign({"v": version, "f": failure, "t": now}, key)


def pack_counts(counts: Counts, now: float, key: bytes, service: str = "") -> bytes:
    if service:
        return _sign({"s": service, "sc": [list(c) for c in counts], "t": now}, key)
    return _sign({"c": [list(c) for c in counts], "t": now}, key)


def unpack_counts(raw: bytes, key: bytes, now: float) -> Counts | None:
    """The default service's outcome counts of a datagram, or None when it holds none to
    be believed."""
    doc = _verified(raw, key, now)
    return _counts(doc.get("c")) if doc else None


Evidence = tuple[str, tuple[str, str] | None, Counts | None]  # service, report, counts


def unpack_evidence(raw: bytes, key: bytes, now: float) -> Evidence | None:
    """Any believed datagram as :data:`Evidence`, or None."""
    doc = _verified(raw, key, now)
    return read(doc) if doc is not None else None


def read(doc: dict[str, object]) -> Evidence | None:
    """(service, (version, failure) or None, counts or None) of a verified datagram, the
    default service's with service ``""``; None when it holds nothing to be believed."""
    service = doc.get("s", "")
    if not isinstance(service, str):
        return None
    version, failure = doc.get("sv" if service else "v"), doc.get("f")
    if isinstance(version, str) and isinstance(failure, str):
        return service, (version, failure), None
    counts = _counts(doc.get("sc" if service else "c"))
    return (service, None, counts) if counts is not None else None


def _counts(counts: object) -> Counts | None:
    if not isinstance(counts, list) or not all(
            isinstance(c, list) and len(c) == 3 and isinstance(c[0], str)
            and isinstance(c[1], str) and isinstance(c[2], int) and 0 < c[2] < 10**9
            for c in counts):
        return None
    return [(c[0], c[1], c[2]) for c in counts]


def _verified(raw: bytes, key: bytes, now: float) -> dict[str, object] | None:
    body, _, mac = raw.partition(b"\n")
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).hexdigest().encode()):
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("t"), int | float) or \
            abs(now - doc["t"]) > MAX_SKEW:
        return None
    return doc


def unpack(raw: bytes, key: bytes, now: float) -> tuple[str, str] | None:
    """(version, failure) from a datagram, or None when it is not to be believed."""
    doc = _verified(raw, key, now)
    version, failure = (doc.get("v"), doc.get("f")) if doc else (None, None)
    if not isinstance(version, str) or not isinstance(failure, str):
        return None
    return version, failure


class Sender:
    """The gateway's end: ``report`` never blocks and never raises."""

    def __init__(self, data_dir: Path, key: bytes, clock: Callable[[], float]) -> None:
        self.target = address(data_dir)
        self.key = key
        self.clock = clock
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sent = 0

    def report(self, version: str, failure: str, service: str = "") -> None:
        self._send(pack(version, failure, self.clock(), self.key, service))

    def report_counts(self, counts: Counts, service: str = "") -> None:
        for start in range(0, len(counts), 16):  # small datagrams, whatever the versions
            self._send(pack_counts(counts[start:start + 16], self.clock(), self.key, service))

    def _send(self, datagram: bytes) -> None:
        try:
            self.sock.sendto(datagram, self.target)
            self.sent += 1
        except OSError:  # the monitor is down or busy: evidence is optional
            pass

    def close(self) -> None:
        self.sock.close()


ServiceReport = Callable[[str, str, str], None]  # (service, version, failure)


class Receiver:
    """The monitor's end: calls ``on_report(version, failure)`` for each believed datagram of
    the default service, ``on_service_report(service, version, failure)`` and
    ``on_service_counts(service, counts)`` for the others' (dropped without them)."""

    def __init__(self, data_dir: Path, key: bytes, clock: Callable[[], float],
                 on_report: Callable[[str, str], None],
                 on_counts: Callable[[Counts], None] | None = None, *,
                 on_service_report: ServiceReport | None = None,
                 on_service_counts: Callable[[str, Counts], None] | None = None) -> None:
        self.name = address(data_dir)
        self.key = key
        self.clock = clock
        self.on_report = on_report
        self.on_counts = on_counts
        self.on_service_report = on_service_report
        self.on_service_counts = on_service_counts
        self.sock: socket.socket | None = None
        self.received = 0

    def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self.name)
        except OSError as exc:
            sock.close()
            log.warning("gateway evidence channel unavailable: %s", exc)
            return
        sock.setblocking(False)
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self.sock is not None
        for _ in range(64):
            try:
                raw = self.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                self._handle(raw)
            except Exception:
                log.exception("gateway evidence handler failed")

    def _handle(self, raw: bytes) -> None:
        seen = unpack_evidence(raw, self.key, self.clock())
        if seen is None:
            return
        self.received += 1
        service, report, counts = seen
        if report is not None:
            if not service:
                self.on_report(*report)
            elif self.on_service_report is not None:
                self.on_service_report(service, *report)
        elif counts is not None:
            if not service:
                if self.on_counts is not None:
                    self.on_counts(counts)
            elif self.on_service_counts is not None:
                self.on_service_counts(service, counts)

    def stop(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
