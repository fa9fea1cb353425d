"""The gateway's end of the route feed: follow the monitor's route file, fail static.

At start the follower loads its own persisted copy (``gateway-route.json``) and the feed
file, and holds the newer of the two. Then it polls the feed file (one stat per period) and
applies a new route only when it is newer (:func:`monitor.gateway.route.newer`): a route of
an older epoch is refused and logged, and so is one with a bad MAC. Every applied route is
persisted before it is used, so a restarted gateway serves the same route even when the
monitor is gone. Without any route the gateway answers 503 (no version is known to be up).

One follower follows one service: the default one ``route.json`` (copy
``gateway-route.json``), any other ``routes/NAME.json`` (copy ``gateway-routes/NAME.json``),
and refuses a document that names another service than its own (a renamed file). A removal
applied (:class:`monitor.gateway.route.Removal`) drops the route; it is persisted like a route
so a restarted gateway does not bring the service back from its copy.
"""

from __future__ import annotations

import logging
from pathlib import Path

from monitor.gateway.evidence import Sender
from monitor.gateway.feed import route_file, service_file, write_atomically
from monitor.gateway.route import Entry, Removal, Route, RouteError, decode_entry, encode, newer

log = logging.getLogger(__name__)

PERSISTED = "gateway-route.json"
PERSISTED_DIR = "gateway-routes"
POLL_S = 0.1


class RouteFollower:
    """The gateway's router: ``route_candidates`` from the held route, failures sent back as
    passive evidence through ``sender``."""

    def __init__(self, data_dir: Path, key: bytes, *, sender: Sender | None = None,
                 persist: bool = True, service: str = "") -> None:
        self.service = service
        self.feed = service_file(data_dir, service) if service else route_file(data_dir)
        self.copy = data_dir / PERSISTED_DIR / f"{service}.json" if service else \
            data_dir / PERSISTED
        self.key = key
        self.sender = sender
        self.persist = persist
        self.route: Route | None = None
        self.removed: Removal | None = None
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
            self.sender.report(version, failure, self.service)

    @property
    def held(self) -> Entry | None:
        return self.route if self.route is not None else self.removed

    # Following ----------------------------------------------------------------------------
    def load(self) -> None:
        """Hold the newer of the persisted copy and the feed file (either may be missing)."""
        held: Entry | None = None
        for path in (self.copy, self.feed):
            entry = self._read(path)
            if entry is not None and newer(entry, held):
                held = entry
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
        entry = self._read(self.feed)
        if entry is None:
            return False
        held = self.held
        if not newer(entry, held):
            if held is not None and entry.epoch < held.epoch:
                self._refuse(f"route epoch {entry.epoch} is older than the held "
                             f"epoch {held.epoch}")
            return False
        self.apply(entry)
        return True

    def apply(self, entry: Entry) -> None:
        if self.persist:
            try:
                self.copy.parent.mkdir(mode=0o700, exist_ok=True)
                write_atomically(self.copy, encode(entry, self.key))
            except OSError as exc:
                log.warning("cannot persist the route to %s: %s", self.copy, exc)
        if isinstance(entry, Removal):
            if self.route is not None:
                log.info("service %s removed (epoch %d)", self.service, entry.epoch)
            self.route, self.removed = None, entry
            return
        changed = self.route is None or not entry.same_path(self.route)
        self.route, self.removed = entry, None
        if changed:
            log.info("route %sepoch %d applied: %s",
                     f"of {self.service} " if self.service else "", entry.epoch,
                     " > ".join(v for v, _ in entry.candidates()))

    def _read(self, path: Path) -> Entry | None:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        try:
            entry = decode_entry(raw, self.key)
        except RouteError as exc:
            self._refuse(f"{path.name}: {exc}")
            return None
        if entry.service != self.service:
            self._refuse(f"{path.name}: the route of service {entry.service or 'books'} "
                         f"in the place of {self.service or 'books'} (renamed file)")
            return None
        return entry

    def _refuse(self, reason: str) -> None:
        self.refused.append(reason)
        del self.refused[:-20]
        log.warning("route refused: %s", reason)

