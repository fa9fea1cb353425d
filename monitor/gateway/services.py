"""The gateway's services: one route follower per service, and the table requests are routed by.

The default service follows ``route.json`` and is reached at ``/books`` as in a single-service
gateway. Any other service NAME follows ``routes/NAME.json`` and is reached at the path prefix
``/NAME/`` (stripped before forwarding: ``/films/books?q=x`` is the film service's
``/books?q=x``). A service is known from its feed file or from the gateway's persisted copy
(``gateway-routes/NAME.json``), so a restarted gateway serves it even while the monitor and its
feed are gone; each service is followed, persisted and refused on its own (epochs per service).

The table (``table``: name as bytes -> follower) holds the services that have a route; a
request's first path segment is looked up in it, one dict lookup. A service whose file
disappears stays in the table with its last route (fail static); a signed removal takes it
out, and its requests are then answered 404 like an unknown service's.

Polling costs one stat of the ``routes`` directory and one stat per service file per period;
the directory is listed again when its modification time changes (a file added, renamed over
or removed) and once every ``RELIST`` polls (a change within the clock tick of the previous
listing leaves the time unchanged).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from monitor.gateway.evidence import Sender
from monitor.gateway.feed import SERVICES_DIR
from monitor.gateway.follow import PERSISTED_DIR, POLL_S, RouteFollower
from monitor.gateway.route import valid_service

log = logging.getLogger(__name__)

MAX_SERVICES = 1000  # services beyond this many are ignored (and logged)
RELIST = 10


class ServiceRoutes:
    """The default follower (``default``, the gateway's router) and the other services'."""

    def __init__(self, data_dir: Path, key: bytes, *, sender: Sender | None = None,
                 persist: bool = True) -> None:
        self.data_dir = data_dir
        self.key = key
        self.sender = sender
        self.persist = persist
        self.default = RouteFollower(data_dir, key, sender=sender, persist=persist)
        self.followers: dict[str, RouteFollower] = {}
        self.table: dict[bytes, RouteFollower] = {}
        self._dir_mark: tuple[int, int] | None = None
        self._polls = 0
        self._ignored: set[str] = set()

    def load(self) -> None:
        """Hold each service's newer of its persisted copy and its feed file."""
        self.default.load()
        for name in self._names(self.data_dir / PERSISTED_DIR) | self._names(self._feeds):
            self._follower(name).load()
        self._dir_mark = self._mark()
        self._refresh()

    def poll(self) -> bool:
        """Read every changed feed file; True when a route (or a removal) was applied."""
        changed = self.default.poll()
        mark = self._mark()
        self._polls += 1
        if mark != self._dir_mark or self._polls % RELIST == 0:
            self._dir_mark = mark
            for name in sorted(self._names(self._feeds) - self.followers.keys() - self._ignored):
                self._follower(name)
        for follower in self.followers.values():
            changed = follower.poll() or changed
        if changed:
            self._refresh()
        return changed

    async def run(self, period: float = POLL_S) -> None:
        while True:
            try:
                self.poll()
            except Exception:  # never let the follower die: the gateway would freeze its routes
                log.exception("route poll failed")
            await asyncio.sleep(period)

    def report_counts(self, counts: list[tuple[str, str, int]], service: str = "") -> None:
        if self.sender is not None and counts:
            self.sender.report_counts(counts, service)

    @property
    def _feeds(self) -> Path:
        return self.data_dir / SERVICES_DIR

    def _follower(self, name: str) -> RouteFollower:
        follower = self.followers.get(name)
        if follower is None and len(self.followers) >= MAX_SERVICES:
            self._ignored.add(name)
            log.warning("service %s not followed: the limit is %d services", name, MAX_SERVICES)
            return RouteFollower(self.data_dir, self.key, persist=False, service=name)
        if follower is None:
            follower = RouteFollower(self.data_dir, self.key, sender=self.sender,
                                     persist=self.persist, service=name)
            self.followers[name] = follower
        return follower

    def _refresh(self) -> None:
        """Rebuild the table in place (the gateway holds a reference to it)."""
        live = {name.encode(): f for name, f in self.followers.items() if f.route is not None}
        for name in self.table.keys() - live.keys():
            del self.table[name]
        self.table.update(live)

    def _mark(self) -> tuple[int, int] | None:
        try:
            st = self._feeds.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _names(self, folder: Path) -> set[str]:
        try:
            files = sorted(p.name for p in folder.iterdir())
        except OSError:
            return set()
        return {f[:-5] for f in files if f.endswith(".json") and valid_service(f[:-5])}


def make_routes(data_dir: Path, key: bytes, clock: Callable[[], float]) -> ServiceRoutes:
    return ServiceRoutes(data_dir, key, sender=Sender(data_dir, key, clock))
