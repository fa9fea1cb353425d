"""The gateway's end of the route feed: follow the monitor's route file, fail static.

At start the follower loads its own persisted copy (``gateway-route.json``) and the feed
file, and holds the newer of the two. Then it polls the feed file (one stat per period) and
applies a new route only when it is newer (:func:`monitor.gateway.route.newer`): a route of
an older epoch is refused and logged, and so is one with a bad MAC. Every applied route is
persisted before it is used, so a restarted gateway serves the same route even when the
monitor is gone. Without any route the gateway answers 503 (no version is known to be up).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from monitor.gateway.evidence import Sender
from monitor.gateway.feed import route_file, write_atomically
from monitor.gateway.route import Route, RouteError, decode, encode, newer

log = logging.getLogger(__name__)

PERSISTED = "gateway-route.json"
POLL_S = 0.1


class RouteFollower:
    """The gateway's router: ``route_candidates`` from the held route, failures sent back as
    passive evidence through ``sender``."""

    def __init__(self, data_dir: Path, key: bytes, *, sender: Sender | None = None,
                 persist: bool = True) -> None:
        self.feed = route_file(data_dir)
        self.copy = data_dir / PERSISTED
        self.key = key
        self.sender = sender
        self.persist = persist
        self.route: Route | None = None
        self._turn = 0
        self._seen: tuple[int, int, int] | None = None
        self.refused: list[str] = []

    # Router protocol ----------------------------------------------------------------------
    def route_candidates(self) -> list[tuple[str, str]]:
        if self.route is None:
            return []
        self._turn += 1  # round-robin over a version's replicas
        return self.route.candidates(self._turn)

    def report_gateway_failure(self, version: str, failure: str) -> None:
        if self.sender is not None:
            self.sender.report(version, failure)

    def report_counts(self, counts: list[tuple[str, str, int]]) -> None:
        if self.sender is not None and counts:
            self.sender.report_counts(counts)

    # Following ----------------------------------------------------------------------------
    def load(self) -> None:
        """Hold the newer of the persisted copy and the feed file (either may be missing)."""
        held = None
        for path in (self.copy, self.feed):
            route = self._read(path)
            if route is not None and newer(route, held):
                held = route
        if held is not None:
            self.apply(held)

    def poll(self) -> bool:
        """Read the feed file if it changed; True when a new route was applied."""
        try:
            st = self.feed.stat()
        except OSError:
            return False
        mark = (st.st_ino, st.st_mtime_ns, st.st_size)
        if mark == self._seen:
            return False
        self._seen = mark
        route = self._read(self.feed)
        if route is None:
            return False
        if not newer(route, self.route):
            if self.route is not None and route.epoch < self.route.epoch:
                self._refuse(f"route epoch {route.epoch} is older than the held "
                             f"epoch {self.route.epoch}")
            return False
        self.apply(route)
        return True

    def apply(self, route: Route) -> None:
        if self.persist:
            try:
                write_atomically(self.copy, encode(route, self.key))
            except OSError as exc:
                log.warning("cannot persist the route to %s: %s", self.copy, exc)
        changed = self.route is None or not route.same_path(self.route)
        self.route = route
        if changed:
            log.info("route epoch %d applied: %s", route.epoch,
                     " > ".join(v for v, _ in route.candidates()))

    async def run(self, period: float = POLL_S) -> None:
        while True:
            try:
                self.poll()
            except Exception:  # never let the follower die: the gateway would freeze its route
                log.exception("route poll failed")
            await asyncio.sleep(period)

    def _read(self, path: Path) -> Route | None:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        try:
            return decode(raw, self.key)
        except RouteError as exc:
            self._refuse(f"{path.name}: {exc}")
            return None

    def _refuse(self, reason: str) -> None:
        self.refused.append(reason)
        del self.refused[:-20]
        log.warning("route refused: %s", reason)


def make_follower(data_dir: Path, key: bytes, clock: Callable[[], float]) -> RouteFollower:
    return RouteFollower(data_dir, key, sender=Sender(data_dir, key, clock))
