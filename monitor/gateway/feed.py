"""The monitor's end of the route feed: an atomically replaced, signed route file.

Why a file and not a push stream: the monitor and its gateways share one host and one data
directory (the gateway runs with the monitor's settings), the file is already the persisted
route a restarted gateway needs, and a rename is atomic, so a reader sees the old route or
the new one, never half of one. A gateway notices a new file within its poll period (0.1 s)
and needs no connection to the monitor to keep serving: while the monitor is down, or the
file cannot be written, the gateway serves the last route it holds (fail static).

Writing: ``route.json.tmp-<pid>`` is written, fsynced and renamed over ``route.json``, then
the directory is fsynced. The publisher writes when the route changes, when the last write
failed, and when the file was replaced or removed behind its back.

Services: the default service's route is ``route.json`` (as in a single-service release);
each other service NAME has ``routes/NAME.json``, same encoding and key, its name inside the
signed body. Removing a service writes a signed removal into its file (see
:class:`monitor.gateway.route.Removal`); deleting the file would not do, as a gateway keeps a
service whose file disappears (fail static).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from monitor.gateway.route import (
    Entry,
    Removal,
    Route,
    RouteError,
    decode_entry,
    encode,
    valid_service,
)

log = logging.getLogger(__name__)

FILE_NAME = "route.json"
SERVICES_DIR = "routes"


def route_file(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def service_file(data_dir: Path, service: str) -> Path:
    """The route file of a service other than the default (``service`` is a valid name)."""
    return data_dir / SERVICES_DIR / f"{service}.json"


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class _FeedFile:
    """One route file and what this process last wrote to it."""

    def __init__(self, path: Path, published: Entry | None = None) -> None:
        self.path = path
        self.published = published
        self.inode: tuple[int, int] | None = None
        self.failures = 0

    def due(self, entry: Entry) -> bool:
        held = self.published
        if held is None or not _same(entry, held):
            return True
        try:
            st = self.path.stat()
        except OSError:
            return True
        return (st.st_ino, st.st_mtime_ns) != self.inode

    def write(self, entry: Entry, key: bytes) -> None:
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        write_atomically(self.path, encode(entry, key))
        st = self.path.stat()
        self.inode = (st.st_ino, st.st_mtime_ns)


def _same(entry: Entry, held: Entry) -> bool:
    if isinstance(entry, Route) and isinstance(held, Route):
        return entry.same_path(held)
    return entry == held


class RoutePublisher:
    """Keeps ``route.json`` equal to ``current()`` and ``routes/NAME.json`` equal to each
    route of ``services()`` (the other services, by name); a service no longer offered gets a
    signed removal in its file (kept, so a gateway started later does not serve it from its
    copy). Call ``publish`` often: it is cheap when nothing changed (one stat per file)."""

    def __init__(self, data_dir: Path, key: bytes, current: Callable[[], Route],
                 services: Callable[[], Mapping[str, Route]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.data_dir = data_dir
        self.key = key
        self.current = current
        self.services = services
        self.clock = clock
        self.file = _FeedFile(route_file(data_dir))
        self.files: dict[str, _FeedFile] | None = None  # read from disk at the first publish

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def published(self) -> Entry | None:
        return self.file.published

    @property
    def failures(self) -> int:
        return self.file.failures

    async def publish(self) -> None:
        await self._publish(self.file, self.current())
        if self.services is None:
            return
        offered = {name: replace(route, service=name)
                   for name, route in self.services().items() if valid_service(name)}
        if self.files is None:
            self.files = await asyncio.to_thread(self._on_disk)
        for name, route in offered.items():
            feed = self.files.get(name)
            if feed is None:
                feed = self.files[name] = _FeedFile(service_file(self.data_dir, name))
            await self._publish(feed, route)
        for name, feed in self.files.items():
            if name not in offered and not isinstance(feed.published, Removal):
                epoch = feed.published.epoch if feed.published is not None else 0
                await self._publish(feed, Removal(name, epoch, self.clock()))

    async def _publish(self, feed: _FeedFile, entry: Entry) -> None:
        if not feed.due(entry):
            return
        try:
            await asyncio.to_thread(feed.write, entry, self.key)
        except OSError as exc:
            feed.failures += 1
            if feed.failures == 1 or feed.failures % 100 == 0:
                log.warning("cannot write the route file %s: %s", feed.path, exc)
            return
        if feed.failures:
            log.info("route file %s written again after %d failures", feed.path,
                     feed.failures)
        feed.failures = 0
        feed.published = entry

    def _on_disk(self) -> dict[str, _FeedFile]:
        """The service files a previous monitor left, with what they hold (None when
        unreadable: replaced by a removal unless the service is offered)."""
        try:
            paths = sorted((self.data_dir / SERVICES_DIR).glob("*.json"))
        except OSError:
            return {}
        found: dict[str, _FeedFile] = {}
        for path in paths:
            if not valid_service(path.stem):
                continue
            try:
                entry: Entry | None = decode_entry(path.read_bytes(), self.key)
            except (OSError, RouteError):
                entry = None
            found[path.stem] = _FeedFile(path, entry)
        return found


def route_from(epoch: int, candidates: list[tuple[str, str]], urls: Mapping[str, str],
               now: float, replicas: Mapping[str, list[str]] | None = None,
               weights: Mapping[str, int] | None = None) -> Route:
    """The route for a monitor whose router says ``candidates`` (active first), with the
    ready replicas of the versions that have several and a rollout's ``weights``."""
    active = candidates[0][0] if candidates else next(iter(urls))
    fallbacks = tuple(dict.fromkeys(v for v, _ in candidates if v != active))
    spread = {v: tuple(u) for v, u in (replicas or {}).items() if u and v in urls}
    shares = {v: w for v, w in (weights or {}).items() if w > 0 and v in urls and v != active}
    return Route(epoch=epoch, active=active, fallbacks=fallbacks, urls=dict(urls),
                 issued=now, replicas=spread, weights=shares)
