"""The desired state inside the running monitor: the spec in force and its replica controller.

At start, `MONITOR_SPEC` (a YAML file) is applied like `apply -f` (audited as the monitor,
stored as a revision only when it differs from the newest one); then the newest revision is the
desired state. When it gives the book service local versions, a :class:`Controller` runs their
replicas and this monitor spawns no fixed-port services for them. Every `sync` re-reads the
newest revision, so `apply` through the CLI or the API reaches the running monitor: replica
counts, probes and autoscaling change at once. The set of versions and whether a version is
local are fixed at start (they shape the failover policy): a revision that changes them takes
effect at the next start, and `sync` says so once in the log. A revision that only puts
another version first starts a rollout to it (`on_new_leader`).

Versions keep one URL each for the probes and for chaos (the first ready replica), through
:class:`LiveUrls`; the gateway gets every ready replica (`endpoints`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from monitor.actor import SYSTEM
from monitor.config import ConfigError, Settings
from monitor.desired import apply as applying
from monitor.desired.controller import Controller
from monitor.desired.spec import ServiceSpec, SpecError
from monitor.recorder import Recorder
from monitor.storage.store import Store

log = logging.getLogger(__name__)
NO_REPLICA = "http://127.0.0.1:1"  # refused at once: a managed version with no replica yet


class LiveUrls(Mapping[str, str]):
    """Version -> base URL, in priority order; a managed version's URL is its first ready
    replica. With fewer than `minReady` ready replicas it is a replica that is not ready (or
    none), so the version's probes fail and it goes DOWN by the usual rules."""

    def __init__(self, fixed: Mapping[str, str], desired: DesiredService) -> None:
        self._fixed = dict(fixed)
        self._desired = desired

    def __getitem__(self, version: str) -> str:
        if version not in self._fixed:
            raise KeyError(version)
        controller = self._desired.controller
        if controller is None or not self._desired.manages(version):
            return self._fixed[version]
        ready = controller.endpoints(version)
        spec = self._desired.spec
        if ready and (spec is None or len(ready) >= spec.spec.min_ready):
            return ready[0]
        unready = [r for r in controller.replicas(version) if not r["ready"]]
        return f"http://127.0.0.1:{unready[0]['port']}" if unready else NO_REPLICA

    def __iter__(self) -> Iterator[str]:
        return iter(self._fixed)

    def __len__(self) -> int:
        return len(self._fixed)


class DesiredService:
    def __init__(self, settings: Settings, *, store: Store, audit_key: bytes,
                 client: httpx.AsyncClient, recorder: Recorder, env: dict[str, str],
                 clock: Callable[[], float]) -> None:
        self.settings, self.store, self.audit_key = settings, store, audit_key
        self.clock = clock
        self.controller: Controller | None = None
        self.spec: ServiceSpec | None = None
        # the watchdog's: every ready replica of a version exited (certain evidence)
        self.report_exit: Callable[[str, str], Awaitable[object]] | None = None
        # the rollout driver's: a new revision puts another version first (a rollout)
        self.on_new_leader: Callable[[str, ServiceSpec, int | None], None] | None = None
        self._client, self._recorder, self._env = client, recorder, env
        self._tasks: set[asyncio.Task[None]] = set()
        self._revision: int | None = None
        self._managed: frozenset[str] = frozenset()
        self._warned: int | None = None

    def load(self) -> None:
        """Apply MONITOR_SPEC and read the spec in force (before anything is spawned)."""
        if self.settings.spec is not None:
            self._apply_file(self.settings.spec)
        self._revision, services, _ = applying.current(self.store)
        self.spec = services[0] if services else None
        if self.spec is not None:
            self._managed = frozenset(v.name for v in self.spec.spec.versions if v.local)

    def _apply_file(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
            applying.apply(self.store, self.audit_key, text, who=SYSTEM, now=self.clock())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"MONITOR_SPEC: cannot read {path}: {exc}") from None
        except SpecError as exc:
            raise ConfigError(f"MONITOR_SPEC: {exc}") from None

    def versions(self, fallback: Mapping[str, str]) -> dict[str, str]:
        """Version -> configured URL, in the spec's priority order (the settings' without a
        spec); a managed version's URL here is a placeholder, LiveUrls gives the real one."""
        if self.spec is None:
            return dict(fallback)
        return {v.name: v.url or NO_REPLICA for v in self.spec.spec.versions}

    def manages(self, version: str) -> bool:
        return version in self._managed

    async def start(self) -> None:
        if self.spec is None or not self._managed:
            return
        self.controller = Controller(self.spec, client=self._client, record=self._record,
                                     env=self._env, log_dir=self.settings.data_dir / "logs",
                                     restart_delay=self.settings.restart_delay,
                                     on_exit=self._exited)
        await self.controller.sync(self.clock())

    async def wait_ready(self, timeout: float) -> None:
        """Sync until every managed version has a ready replica (bounded), so the first
        probes are fair and a slow start is not mistaken for a failure."""
        if self.controller is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(
                self.controller.endpoints(v) for v in self._managed
                if self.controller.wanted(v) > 0):
            await asyncio.sleep(0.2)
            await self.controller.sync(self.clock())

    async def _record(self, action: str, target: str, params: dict[str, Any],
                      reason: str) -> None:
        await self._recorder.arecord(SYSTEM, action, target=target, params=params,
                                     reason=reason)

    def _exited(self, version: str) -> None:
        """A replica's process exited: with no ready replica of the version left, that is
        certain evidence for the watchdog (no probes to wait for)."""
        if self.report_exit is None or self.controller is None \
                or self.controller.endpoints(version):
            return
        task = asyncio.get_running_loop().create_task(self._report(version))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, version: str) -> None:
        if self.report_exit is not None:
            await self.report_exit(version, "every ready replica's process exited")

    async def sync(self) -> None:
        """Follow the newest revision; run the replicas (with local versions)."""
        if self.spec is None:
            return
        revision, services, _ = applying.current(self.store)
        if revision != self._revision and services:
            self._follow(revision, services[0])
        if self.controller is not None:
            await self.controller.sync(self.clock())

    def _follow(self, revision: int | None, spec: ServiceSpec) -> None:
        assert self.spec is not None
        same_shape = sorted((v.name, v.local) for v in spec.spec.versions) == \
            sorted((v.name, v.local) for v in self.spec.spec.versions)
        if not same_shape:
            if self._warned != revision:
                log.warning("spec revision %s changes the versions; it takes effect at the "
                            "next start", revision)
                self._warned = revision
            return
        leader, before = spec.spec.versions[0].name, self.spec.spec.versions[0].name
        self._revision, self.spec = revision, spec
        if self.controller is not None:
            self.controller.set_spec(spec)
        if leader != before and self.on_new_leader is not None:
            self.on_new_leader(leader, spec, revision)

    async def kill(self, version: str, count: int) -> list[str]:
        if self.controller is None or not self.manages(version):
            return []
        return await self.controller.kill(version, count)

    def endpoints(self) -> dict[str, list[str]]:
        if self.controller is None:
            return {}
        return {v: self.controller.endpoints(v) for v in self._managed}

    def replicas(self, version: str) -> list[dict[str, object]] | None:
        if self.controller is None or not self.manages(version):
            return None
        return self.controller.replicas(version)

    async def stop(self) -> None:
        if self.controller is not None:
            await self.controller.stop()
