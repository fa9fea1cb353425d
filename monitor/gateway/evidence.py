"""Passive evidence from the gateway to the monitor: one signed datagram per failed attempt,
and once a second the gateway's request outcomes (the monitor's `monitor_gateway_requests`).

The channel is a Unix datagram socket in the abstract namespace (Linux), named after the
data directory, so every gateway following a monitor finds it without a setting and without
a socket file to clean up. Each datagram is ``JSON \\n MAC`` with HMAC-SHA256 under the
route-feed key and the sender's clock; the monitor drops a datagram whose MAC is wrong or
whose time is more than ``MAX_SKEW`` seconds away. Datagrams never block the gateway: while
the monitor is down ``report`` drops them (evidence only makes probes come sooner; the
monitor's own probes decide).
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


def pack(version: str, failure: str, now: float, key: bytes) -> bytes:
    return _sign({"v": version, "f": failure, "t": now}, key)


def pack_counts(counts: Counts, now: float, key: bytes) -> bytes:
    return _sign({"c": [list(c) for c in counts], "t": now}, key)


def unpack_counts(raw: bytes, key: bytes, now: float) -> Counts | None:
    """The outcome counts of a datagram, or None when it holds none to be believed."""
    doc = _verified(raw, key, now)
    counts = doc.get("c") if doc else None
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

    def report(self, version: str, failure: str) -> None:
        self._send(pack(version, failure, self.clock(), self.key))

    def report_counts(self, counts: Counts) -> None:
        for start in range(0, len(counts), 16):  # small datagrams, whatever the versions
            self._send(pack_counts(counts[start:start + 16], self.clock(), self.key))

    def _send(self, datagram: bytes) -> None:
        try:
            self.sock.sendto(datagram, self.target)
            self.sent += 1
        except OSError:  # the monitor is down or busy: evidence is optional
            pass

    def close(self) -> None:
        self.sock.close()


class Receiver:
    """The monitor's end: calls ``on_report(version, failure)`` for each believed datagram."""

    def __init__(self, data_dir: Path, key: bytes, clock: Callable[[], float],
                 on_report: Callable[[str, str], None],
                 on_counts: Callable[[Counts], None] | None = None) -> None:
        self.name = address(data_dir)
        self.key = key
        self.clock = clock
        self.on_report = on_report
        self.on_counts = on_counts
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
            seen = unpack(raw, self.key, self.clock())
            counts = unpack_counts(raw, self.key, self.clock()) if seen is None else None
            if seen is None and counts is None:
                continue
            self.received += 1
            try:
                if seen is not None:
                    self.on_report(*seen)
                elif counts is not None and self.on_counts is not None:
                    self.on_counts(counts)
            except Exception:
                log.exception("gateway evidence handler failed")

    def stop(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
