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
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from monitor.gateway.route import Route, encode

log = logging.getLogger(__name__)

FILE_NAME = "route.json"


def route_file(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


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


class RoutePublisher:
    """Keeps ``route.json`` equal to ``current()``; call ``publish`` often (it is cheap when
    nothing changed: one stat)."""

    def __init__(self, data_dir: Path, key: bytes, current: Callable[[], Route]) -> None:
        self.path = route_file(data_dir)
        self.key = key
        self.current = current
        self.published: Route | None = None
        self._inode: tuple[int, int] | None = None
        self.failures = 0

    def due(self, route: Route) -> bool:
        if self.published is None or not route.same_path(self.published):
            return True
        try:
            st = self.path.stat()
        except OSError:
            return True
        return (st.st_ino, st.st_mtime_ns) != self._inode

    async def publish(self) -> None:
        route = self.current()
        if not self.due(route):
            return
        try:
            await asyncio.to_thread(self._write, route)
        except OSError as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning("cannot write the route file %s: %s", self.path, exc)
            return
        if self.failures:
            log.info("route file written again after %d failures", self.failures)
        self.failures = 0
        self.published = route

    def _write(self, route: Route) -> None:
        write_atomically(self.path, encode(route, self.key))
        st = self.path.stat()
        self._inode = (st.st_ino, st.st_mtime_ns)


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
