"""The I/O shell around the reconciler: one service's local replica processes.

Each replica is a process of its version's command on a free loopback port, under a
Supervisor of its own (back-off, give-up, dies with the monitor). Every `sync(now)`:

1. observes: process alive, liveness and readiness probes (HTTP GET of the spec's paths), CPU
   of each replica (psutil, between two syncs);
2. autoscales the versions of a spec with `autoscale` (HPA rules, `monitor.desired.autoscale`);
3. asks the pure reconciler for actions and carries them out, each audited through `record`.

A replica's process exit takes it out of load balancing at once (the supervisor reports the
exit before restarting it); `on_exit(version)` tells the caller, which can fail over without
waiting for probes. External (url) versions are not managed here.

With a `pid_dir`, replicas run in their own sessions with pid files and outlive a crash of
the monitor; `adopt` takes over the ones a previous monitor left (`monitor.desired.processes`).
A clean `stop` stops every replica. A change of a version's command or env replaces its
replicas one at a time (the reconciler's rolling rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import psutil

from monitor.desired.autoscale import Recommendations, recommend
from monitor.desired.processes import (
    Leftover,
    address_argv,
    command_argv,
    command_of,
    cpu_since,
    free_port,
    leftovers,
    template,
)
from monitor.desired.reconciler import (
    Action,
    ActionKind,
    Replica,
    Thresholds,
    reconcile,
    replica_state,
)
from monitor.desired.spec import ServiceSpec, Version
from monitor.ops.supervisor import ChildSpec, Supervisor

# action, target, params, reason -> one audit row
Record = Callable[[str, str, dict[str, Any], str], Coroutine[Any, Any, None]]


@dataclass
class _Handle:
    """What the controller knows of one replica beyond what the reconciler sees."""

    seen: Replica
    port: int
    supervisor: Supervisor
    cpu: psutil.Process | None = None
    cpu_percent: float | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class _Scaling:
    wanted: int
    history: Recommendations = field(default_factory=Recommendations)


class Controller:
    def __init__(self, service: ServiceSpec, *, client: httpx.AsyncClient, record: Record,
                 env: dict[str, str], log_dir: Path, restart_delay: float,
                 on_exit: Callable[[str], None] | None = None,
                 port_picker: Callable[[], int] = free_port,
                 pid_dir: Path | None = None) -> None:
        self.service = service
        self._client, self._record, self._env = client, record, env
        self._log_dir, self._restart_delay = log_dir, restart_delay
        self._on_exit = on_exit or (lambda version: None)
        self._port_picker, self._pid_dir = port_picker, pid_dir
        self._replicas: dict[str, _Handle] = {}
        self._scaling: dict[str, _Scaling] = {}
        # replica counts a rollout sets instead of the spec's or the autoscaler's
        self.overrides: dict[str, int] = {}
        self._serial = 0
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()  # audit writes of process exits

    # What others read -----------------------------------------------------------------------
    def endpoints(self, version: str) -> list[str]:
        """URLs of the replicas of `version` in load balancing, oldest first."""
        return [h.url for h in self._of(version) if h.seen.in_rotation and h.seen.alive]

    def replicas(self, version: str) -> list[dict[str, Any]]:
        """The `/api/status` view of a version's replicas."""
        return [{"id": h.seen.id, "port": h.port, "ready": h.seen.in_rotation and h.seen.alive,
                 "state": replica_state(h.seen), "pid": h.supervisor.status()[h.seen.id]["pid"],
                 "restarts": h.restarts, "cpu_percent": h.cpu_percent}
                for h in self._of(version)]

    def wanted(self, version: str) -> int:
        scaling = self._scaling.get(version)
        return self.overrides.get(version, scaling.wanted if scaling else 0)

    # Control --------------------------------------------------------------------------------
    def set_spec(self, service: ServiceSpec) -> None:
        """A new spec for this service; the next sync moves toward it."""
        self.service = service
        for name in list(self._scaling):
            if service.version(name) is None:
                del self._scaling[name]

    async def sync(self, now: float) -> list[Action]:
        """One observe -> autoscale -> reconcile -> act pass; returns what it did."""
        async with self._lock:
            await self._observe()
            await self._autoscale(now)
            wanted = {v.name: self._wanted_of(v) for v in self.service.spec.versions if v.local}
            templates = {v.name: self._template(v) for v in self.service.spec.versions
                         if v.local}
            actions = reconcile(wanted, [h.seen for h in self._replicas.values()],
                                self._thresholds(), now, templates)
            for action in actions:
                await self._carry_out(action, now)
            return actions

    async def adopt(self, now: float) -> list[str]:
        """Take over the replicas a previous monitor left running; returns their ids."""
        if self._pid_dir is None:
            return []
        adopted = []
        async with self._lock:
            for found in leftovers(self._pid_dir):
                if found.id not in self._replicas:
                    await self._run(found, now)
                    adopted.append(found.id)
                self._serial = max(self._serial, found.serial)
        return adopted

    async def kill(self, version: str, count: int) -> list[str]:
        """Chaos: SIGKILL `count` running replicas of `version` (newest first)."""
        victims = [h for h in reversed(self._of(version)) if h.seen.alive][:count]
        killed = []
        for handle in victims:
            pid = handle.supervisor.status()[handle.seen.id]["pid"]
            if isinstance(pid, int):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.append(handle.seen.id)
        return killed

    async def stop(self) -> None:
        async with self._lock:
            await asyncio.gather(*(h.supervisor.stop() for h in self._replicas.values()))
            self._replicas.clear()

    # Internals ------------------------------------------------------------------------------
    def _of(self, version: str) -> list[_Handle]:
        return [h for h in self._replicas.values() if h.seen.version == version]

    def _wanted_of(self, version: Version) -> int:
        scaling = self._scaling.setdefault(
            version.name, _Scaling(self.service.spec.replicas_of(version)))
        if self.service.spec.autoscale is None:
            scaling.wanted = self.service.spec.replicas_of(version)
        return self.overrides.get(version.name, scaling.wanted)

    def _template(self, version: Version) -> str:
        assert version.command is not None
        return template(command_argv(version.command), self._env_of(version))

    def _env_of(self, version: Version | None) -> dict[str, str]:
        return {**self.service.spec.env, **(version.env if version else {})}

    def _thresholds(self) -> Thresholds:
        spec = self.service.spec
        return Thresholds(readiness_failures=spec.readiness_probe.failure_threshold,
                          liveness_failures=spec.liveness_probe.failure_threshold,
                          startup_timeout=spec.liveness_probe.initial_delay_seconds)

    async def _observe(self) -> None:
        handles = list(self._replicas.values())
        await asyncio.gather(*(self._observe_one(h) for h in handles))

    async def _observe_one(self, handle: _Handle) -> None:
        status = handle.supervisor.status()[handle.seen.id]
        alive = bool(status["running"])
        restarts, pid = status["restarts"], status["pid"]
        handle.restarts = restarts if isinstance(restarts, int) else 0
        seen = replace(handle.seen, alive=alive)
        if alive:
            spec = self.service.spec
            live = await self._get(handle.url + spec.liveness_probe.http_get.path,
                                   spec.liveness_probe.timeout_seconds)
            ready = await self._get(handle.url + spec.readiness_probe.http_get.path,
                                    spec.readiness_probe.timeout_seconds)
            seen = replace(
                seen, liveness_failures=0 if live else seen.liveness_failures + 1,
                has_lived=seen.has_lived or live,
                readiness_failures=0 if ready else seen.readiness_failures + 1,
                readiness_successes=seen.readiness_successes + 1 if ready else 0)
            # like the HPA's CPU initialization period: CPU counts from readiness on, so
            # a replica's start-up (imports) never reads as load
            handle.cpu, handle.cpu_percent = cpu_since(
                handle.cpu if handle.seen.in_rotation else None,
                pid if isinstance(pid, int) else None)
        else:
            handle.cpu, handle.cpu_percent = None, None
            seen = replace(seen, readiness_successes=0)
        handle.seen = seen

    async def _get(self, url: str, timeout: float) -> bool:
        try:
            answer = await self._client.get(url, timeout=timeout)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    async def _autoscale(self, now: float) -> None:
        policy = self.service.spec.autoscale
        if policy is None:
            return
        for version in self.service.spec.versions:
            if not version.local:
                continue
            scaling = self._scaling.setdefault(
                version.name, _Scaling(max(policy.min, min(
                    policy.max, self.service.spec.replicas_of(version)))))
            ready = [h.cpu_percent for h in self._of(version.name)
                     if h.seen.in_rotation and h.cpu_percent is not None]
            cpu = sum(ready) / len(ready) if ready else None
            before = scaling.wanted
            scaling.history, scaling.wanted = recommend(
                scaling.history, current=before, cpu_percent=cpu, policy=policy, now=now)
            if scaling.wanted != before:
                await self._record("replicas.scale", version.name,
                                   {"from": before, "to": scaling.wanted,
                                    "cpu_percent": round(cpu or 0.0, 1),
                                    "target_cpu": policy.target_cpu},
                                   f"average CPU {cpu or 0.0:.0f}% against a target of "
                                   f"{policy.target_cpu:g}%")

    async def _carry_out(self, action: Action, now: float) -> None:
        handle = self._replicas.get(action.replica or "")
        if action.kind == ActionKind.START:
            handle = await self._start(action.version, now)
        elif handle is None:
            return
        elif action.kind == ActionKind.STOP:
            handle.seen = replace(handle.seen, stopping=True, in_rotation=False)
            await handle.supervisor.stop()
            del self._replicas[handle.seen.id]
        elif action.kind == ActionKind.RESTART:
            await handle.supervisor.stop()
            handle.seen = replace(handle.seen, started_at=now, liveness_failures=0,
                                  has_lived=False,
                                  readiness_failures=0, readiness_successes=0,
                                  in_rotation=False)
            await handle.supervisor.start()
        else:
            handle.seen = replace(handle.seen, in_rotation=action.kind == ActionKind.READY)
        if handle is not None:
            await self._record(f"replica.{action.kind}", action.version,
                               {"replica": handle.seen.id, "port": handle.port}, action.reason)

    async def _start(self, version_name: str, now: float) -> _Handle | None:
        version = self.service.version(version_name)
        if version is None or version.command is None:
            return None
        self._serial += 1
        port = self._port_picker()
        return await self._run(Leftover(f"{version_name}-{self._serial}", version_name, port,
                                        address_argv(command_argv(version.command), port),
                                        self._serial), now)

    async def _run(self, replica: Leftover, now: float) -> _Handle:
        """Supervise one replica process: a new one, or one left running (same argv)."""
        version = self.service.version(replica.version)
        env = self._env_of(version)
        supervisor = Supervisor([ChildSpec(replica.id, replica.argv, {**env, **self._env})],
                                on_event=self._child_event(replica.version),
                                backoff_base=self._restart_delay, log_dir=self._log_dir,
                                pid_dir=self._pid_dir)
        seen = Replica(replica.id, replica.version, now,
                       template=template(command_of(replica.argv), env))
        handle = _Handle(seen, replica.port, supervisor)
        self._replicas[replica.id] = handle
        await supervisor.start()
        return handle

    def _child_event(self, version: str) -> Callable[[str, str, str], None]:
        def on_event(name: str, kind: str, reason: str) -> None:
            handle = self._replicas.get(name)
            if handle is None:
                return
            handle.seen = replace(handle.seen, alive=False, in_rotation=False,
                                  readiness_successes=0, has_lived=False,
                                  started_at=time.time())
            task = asyncio.get_running_loop().create_task(self._record(
                f"replica.{kind}", version, {"replica": name, "port": handle.port}, reason))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            self._on_exit(version)
        return on_event
