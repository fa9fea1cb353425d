"""The desired state inside the running monitor: the spec in force and its replica controller.

At start, `MONITOR_SPEC` (a YAML file) is applied like `apply -f` (audited as the monitor,
stored as a revision only when it differs from the newest one); then the newest revision is the
desired state. When it gives the book service local versions, a :class:`Controller` runs their
replicas and this monitor spawns no fixed-port services for them. Every `sync` re-reads the
newest revision, so `apply` through the CLI or the API reaches the running monitor: replica
counts, commands, env, probes and autoscaling change at once. A revision that only puts
another of the same versions first starts a rollout to it (`on_new_leader`); one that adds,
removes or reorders versions otherwise (or turns one local or external) reshapes the failover
policy through `on_versions` (audited as `spec.reconcile`); a revision that removes the active
version waits, audited as `deferred`, until the operator has failed over.

Only the leader runs replicas (`lead`, `release`): a follower spawns nothing, and a monitor
that no longer leads stops its replicas once another monitor leads. Replicas outlive a crash
of the monitor through their pid files and are adopted by the next leader on this data dir.

Versions keep one URL each for the probes and for chaos (the first ready replica), through
:class:`LiveUrls`; the gateway gets every ready replica (`endpoints`). A version is UP only
while at least `minReady` of its replicas are ready (`short_of_ready`, the watchdog's gate).
A monitor started without a spec runs its versions as fixed-port services; the first revision
applied to it is followed like any other, with a handover: the spec's replicas start while the
fixed-port services keep serving, and once every local version has a ready replica the probes
and the gateway move to the replicas and the fixed-port services are stopped (`retire_fixed`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from monitor.actor import SYSTEM
from monitor.config import ConfigError, Settings
from monitor.desired import apply as applying
from monitor.desired.controller import Controller
from monitor.desired.defaults import spec_from_settings
from monitor.desired.processes import stop_leftovers
from monitor.desired.spec import ServiceSpec, SpecError
from monitor.failover.model import Failure
from monitor.failover.probe import ProbeResult
from monitor.recorder import Recorder
from monitor.storage.store import Store

log = logging.getLogger(__name__)
NO_REPLICA = "http://127.0.0.1:1"  # refused at once: a managed version with no replica yet
READY_WAIT_S = 30.0
HANDOVER_GRACE_S = 2.0  # the gateway follows a new route within 0.2 s; generous under load
# the new version order -> None when applied, else why it must wait
OnVersions = Callable[[dict[str, str]], Awaitable[str | None]]


class LiveUrls(Mapping[str, str]):
    """Version -> base URL, in priority order; a managed version's URL is its first ready
    replica, else its first replica, else one that refuses at once."""

    def __init__(self, fixed: Mapping[str, str], desired: DesiredService) -> None:
        self._fixed = dict(fixed)
        self._desired = desired

    def set_fixed(self, fixed: Mapping[str, str]) -> None:
        self._fixed = dict(fixed)

    def __getitem__(self, version: str) -> str:
        if version not in self._fixed:
            raise KeyError(version)
        controller = self._desired.controller
        if controller is None or not self._desired.manages(version):
            return self._fixed[version]
        ready = controller.endpoints(version)
        if ready:
            return ready[0]
        replicas = controller.replicas(version)
        return f"http://127.0.0.1:{replicas[0]['port']}" if replicas else NO_REPLICA

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
        self.others: list[ServiceSpec] = []
        # the runtime's (monitor.fleet): a revision's further services, to start or stop
        self.on_services: Callable[[list[ServiceSpec]], Awaitable[None]] | None = None
        self._others_revision: int | None = None
        # the watchdog's: every ready replica of a version exited (certain evidence)
        self.report_exit: Callable[[str, str], Awaitable[object]] | None = None
        self.on_versions: OnVersions | None = None  # the runtime's: reshape the policy
        self.warming = False  # leading, replicas not yet ready: probes would be unfair
        self.retire_fixed: Callable[[], Awaitable[None]] | None = None  # the runtime's
        self._handover = False  # replicas starting beside the fixed-port services
        self._retire_at: float | None = None
        self.pid_dir: Path = settings.data_dir / "run" / "replicas"
        # the rollout driver's: a new revision puts another version first (a rollout)
        self.on_new_leader: Callable[[str, ServiceSpec, int | None], None] | None = None
        self._client, self._recorder, self._env = client, recorder, env
        self._tasks: set[asyncio.Task[None]] = set()
        self._revision: int | None = None
        self._managed: frozenset[str] = frozenset()
        self._deferred: tuple[int | None, str] | None = None

    def load(self) -> None:
        """Apply MONITOR_SPEC and read the spec in force (before anything is spawned)."""
        if self.settings.spec is not None:
            self._apply_file(self.settings.spec)
        self._revision, services, _ = applying.current(self.store)
        self.spec = services[0] if services else None
        self.others = services[1:]  # further services of the spec (monitor.fleet)
        self._others_revision = self._revision
        self._managed = self._local(self.spec)

    @staticmethod
    def _local(spec: ServiceSpec | None) -> frozenset[str]:
        return frozenset(v.name for v in spec.spec.versions if v.local) if spec else frozenset()

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

    def gate(self, result: ProbeResult) -> ProbeResult:
        """The watchdog's view of a probe: a version short of minReady ready replicas fails
        (`replicas`) even when the replica probed answered well."""
        if result.ok and (short := self.short_of_ready(result.version)):
            return replace(result, ok=False, failure=Failure.REPLICAS, detail=short)
        return result

    def short_of_ready(self, version: str) -> str | None:
        """Why `version` cannot be UP now (fewer than minReady ready replicas), or None."""
        if self.controller is None or self.spec is None or not self.manages(version):
            return None
        ready, need = len(self.controller.endpoints(version)), self.spec.spec.min_ready
        if ready >= need:
            return None
        return f"{ready} of {len(self.controller.replicas(version))} replicas ready " \
               f"(minReady {need})"

    # Leading ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Run the replicas of the spec in force: adopt those left running, start the rest."""
        if self.spec is None or not self._local(self.spec) or self.controller is not None:
            return
        self.controller = Controller(self.spec, client=self._client, record=self._record,
                                     env=self._env, log_dir=self.settings.data_dir / "logs",
                                     restart_delay=self.settings.restart_delay,
                                     on_exit=self._exited, pid_dir=self.pid_dir)
        adopted = await self.controller.adopt(self.clock())
        if adopted:
            await self._record("replicas.adopt", self.spec.name, {"replicas": adopted},
                               "left running by an earlier monitor")
        await self.controller.sync(self.clock())

    async def lead(self, timeout: float = READY_WAIT_S) -> None:
        """Elected: start or adopt the replicas and wait (bounded) for them to be ready; the
        leader does not probe meanwhile (`warming`)."""
        self.warming = True
        try:
            await self.sync()
            await self.wait_ready(timeout)
        finally:
            self.warming = False

    async def release(self, *, leftovers: bool = False,
                      why: str = "this monitor no longer leads") -> None:
        """Not (or no longer) leading: stop the replicas this monitor runs, and with
        `leftovers` those an earlier monitor on this data dir left running."""
        if self.controller is not None:
            controller, self.controller = self.controller, None
            await controller.stop()
            await self._record("replicas.release", self.spec.name if self.spec else "",
                               {}, why)
        elif leftovers and (stopped := await asyncio.to_thread(stop_leftovers, self.pid_dir)):
            log.warning("following: stopped replicas left running %s", stopped)

    async def wait_ready(self, timeout: float) -> None:
        """Sync until every managed version has a ready replica (bounded), so the first
        probes are fair and a slow start is not mistaken for a failure."""
        deadline = time.monotonic() + timeout
        while self.controller is not None and time.monotonic() < deadline and not all(
                self.controller.endpoints(v) for v in self._managed
                if self.controller.wanted(v) > 0):
            await asyncio.sleep(0.2)
            await self.sync()

    async def _record(self, action: str, target: str, params: dict[str, Any],
                      reason: str, outcome: str = "ok") -> None:
        await self._recorder.arecord(SYSTEM, action, target=target, params=params,
                                     reason=reason, outcome=outcome)

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

    # Following revisions ----------------------------------------------------------------------
    async def sync(self) -> None:
        """Follow the newest revision, then reconcile the replicas once (leader only)."""
        revision, services, _ = await asyncio.to_thread(applying.current, self.store)
        if revision != self._others_revision and self.on_services is not None:
            self._others_revision, self.others = revision, services[1:]
            await self.on_services(self.others)
        if self.spec is None:
            if not services:
                return
            self.spec, self._handover = spec_from_settings(self.settings), True
        if revision != self._revision and services:
            await self._follow(revision, services[0])
        if self._handover and self._revision is None:
            return  # the first revision waits (deferred): nothing to hand over yet
        if self.controller is None:
            await self.start()
        else:
            await self.controller.sync(self.clock())
        if self._handover:
            await self._hand_over()

    async def _hand_over(self) -> None:
        """From fixed-port services to replicas, once every local version has a ready one;
        the fixed-port services stop HANDOVER_GRACE_S later, when the gateway has the route
        to the replicas."""
        local = self._local(self.spec)
        controller = self.controller
        if self._retire_at is None:
            if local and (controller is None or not all(controller.endpoints(v)
                                                        for v in local)):
                return
            self._managed, self._retire_at = local, time.monotonic() + HANDOVER_GRACE_S
            return
        if time.monotonic() < self._retire_at:
            return
        self._handover, self._retire_at = False, None
        if self.retire_fixed is not None:
            await self.retire_fixed()
        await self._record("spec.reconcile", self.spec.name if self.spec else "",
                           {"revision": self._revision, "replicated": sorted(local)},
                           "the spec's replicas took over from the fixed-port services")

    async def _follow(self, revision: int | None, spec: ServiceSpec) -> None:
        """Take a new revision. Only another version first (same versions): a rollout to it
        (`on_new_leader`); any other change of the versions reshapes the failover policy."""
        assert self.spec is not None
        shape = [(v.name, v.url) for v in spec.spec.versions]  # url None: local
        before = [(v.name, v.url) for v in self.spec.spec.versions]
        new_leader = (self.on_new_leader is not None and sorted(shape) == sorted(before)
                      and shape[0] != before[0])
        if shape != before and not new_leader:
            if self.on_versions is None:
                return
            serving = self.settings.service_urls() if self._handover else {}
            why = await self.on_versions({v.name: v.url or serving.get(v.name, NO_REPLICA)
                                          for v in spec.spec.versions})
            if why is not None:
                if self._deferred != (revision, why):
                    self._deferred = (revision, why)
                    await self._record("spec.reconcile", spec.name, {"revision": revision},
                                       why, outcome="deferred")
                return
            await self._record("spec.reconcile", spec.name, {
                "revision": revision, "versions": [name for name, _ in shape]},
                "the versions changed")
        self._revision, self.spec, self._deferred = revision, spec, None
        if not self._handover or self._retire_at is not None:
            self._managed = self._local(spec)
        if self.controller is not None:
            self.controller.set_spec(spec)
        if new_leader and self.on_new_leader is not None:
            self.on_new_leader(shape[0][0], spec, revision)

    # What others read ---------------------------------------------------------------------
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
        await self.release(why="the monitor stops")
