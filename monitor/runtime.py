"""Composition and lifecycle: everything the running monitor is made of, built in one place and
started and stopped together. The work itself lives in the parts: operator actions in
`failover.operations`, read models in `failover.status`, audit rows in `recorder`.

`create_runtime(settings)` builds the pieces without starting anything (tests use it that way);
`await runtime.start()` spawns the local services, resumes the persisted state and starts the
scheduler; `await runtime.stop()` undoes it in reverse, leaving a checkpoint and a shutdown row.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import sys
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from monitor.actor import SYSTEM, Actor
from monitor.config import Settings
from monitor.desired.reshape import reshape, retire_fixed_services
from monitor.desired.rollout_driver import TICK_S, RolloutDriver
from monitor.desired.service import DesiredService, LiveUrls
from monitor.failover.operations import ActionResult, Operations
from monitor.failover.probe_client import probe_client
from monitor.failover.scheduler import Scheduler
from monitor.failover.status import LatencySeries, StatusReader
from monitor.failover.watchdog import Watchdog
from monitor.fleet import Fleet
from monitor.notices import delivery
from monitor.ops.checkpointer import Checkpointer
from monitor.ops.leadership import LeaderDuties, QueuedActions
from monitor.ops.metrics import Metrics
from monitor.ops.supervisor import ChildSpec, Supervisor
from monitor.recorder import Notice, Recorder
from monitor.services import Actions, Routes, ServiceUnit, default_name, policy_from, wait_live
from monitor.storage import retention
from monitor.storage.commands import CommandKind
from monitor.storage.journal import Journal
from monitor.storage.keys import Keys, load_keys
from monitor.storage.lease import Leadership, idle_in_transaction_ms, leadership_for
from monitor.storage.probe_fold import fold_probes
from monitor.storage.store import Store

log = logging.getLogger("monitor.runtime")
PROBE_FLUSH_S = 1.0  # probe rows that decided nothing are written together, this often
DESIRED_SYNC_S = 1.0  # replica probes, autoscaling and new spec revisions, once a second


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process, for https service URLs: loading the CA bundle
    costs about 0.1 s, too much to repeat for every runtime a test builds."""
    return httpx.create_ssl_context()


class Runtime:
    def __init__(self, settings: Settings, *, keys: Keys, store: Store, clock: Callable[[], float],
                 http_client: httpx.AsyncClient | None,
                 leadership: Leadership | None = None) -> None:
        self.settings, self.keys, self.store, self.clock = settings, keys, store, clock
        self.leadership = leadership or Leadership.single()
        store.fence = self.leadership.fence
        self.duties = LeaderDuties(self)
        self.leadership.on_elected = self.duties.on_elected
        self.leadership.on_lost = self.duties.on_lost
        self.metrics = Metrics()
        self.client = http_client or probe_client(timeout=settings.timeout,
                                                  verify=tls_context())
        self.recorder = Recorder(store, keys.audit, clock)
        self.desired = DesiredService(
            settings, store=store, audit_key=keys.audit, client=self.client,
            recorder=self.recorder, env={"SERVICE_CHAOS_TOKEN": keys.chaos_token}, clock=clock)
        self.desired.load()  # MONITOR_SPEC and the spec in force decide the versions
        fixed = self.desired.versions(settings.service_urls())
        self.urls = LiveUrls(fixed, self.desired)
        spec = self.desired.spec
        self.policy = policy_from(settings, tuple(fixed), spec.spec.failover if spec else None)
        self.service = default_name(self)
        self.checkpoint_path: Path = settings.data_dir / "audit.checkpoints"
        self.notifier = delivery.Notifier(settings, store, clock=clock,
                                          may_send=lambda: self.leadership.is_leader)
        self.watchdog = Watchdog(
            policy=self.policy, urls=self.urls, store=store, audit_key=keys.audit,
            client=self.client, clock=clock, canary=settings.canary(), timeout=settings.timeout,
            slow_ms=settings.slow_ms, enqueue=delivery.enqueue, metrics=self.metrics,
            journal=Journal(settings.data_dir / "decisions.journal"), service=self.service)
        self.desired.report_exit = self.watchdog.report_exit  # a process exit is certain
        self.desired.on_versions = partial(reshape, self)  # a revision changes the versions
        self.desired.retire_fixed = partial(retire_fixed_services, self)  # first spec applied
        self.watchdog.replica_gate = self.desired.gate  # minReady
        self.scheduler = Scheduler(cycle=self.duties.probe, versions=self.policy.versions,
                                   first_delay=settings.interval,  # first probes spread over it
                                   in_flight=settings.probe_concurrency,
                                   on_lag=self.metrics.schedule_lag.observe)
        self.watchdog.on_hurry = self.scheduler.hurry
        self.rollout = RolloutDriver(store=store, audit_key=keys.audit, watchdog=self.watchdog,
                                     desired=self.desired, clock=clock)
        self.operations = Operations(watchdog=self.watchdog, policy=self.policy, urls=self.urls,
                                     client=self.client, chaos_token=keys.chaos_token,
                                     recorder=self.recorder, killer=self.desired.kill)
        self._own = QueuedActions(self.duties, self.operations, None)
        self.reads = StatusReader(watchdog=self.watchdog, policy=self.policy, urls=self.urls,
                                  store=store, clock=clock, processes=self._processes)
        self.supervisor: Supervisor | None = None
        self.started = False
        # set by the data plane when HAProxy carries the traffic: its reachability, for /readyz
        self.dataplane_status: Callable[[], dict[str, Any]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each is done
        self.checkpoints = Checkpointer(store=store, key=keys.audit, path=self.checkpoint_path,
                                        url=settings.audit_checkpoint_url, clock=clock,
                                        fenced=self.duties.fenced)
        self.checkpoint = self.checkpoints.checkpoint
        store.after_security_commit = self.checkpoints.now  # a checkpoint per security row
        self.watchdog.load()
        self.fleet = Fleet(self)  # the other services, each deciding alone (monitor.fleet)
        self.desired.on_services = self.fleet.reconcile  # a revision adds or drops services

    # Lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.leadership.shared:  # with a lease, replicas follow the election
            await self.desired.lead()
        if self.settings.local_services and self.desired.spec is None:
            self.supervisor = Supervisor(self._child_specs(), on_event=self._on_child_event,
                                         log_dir=self.settings.data_dir / "logs",
                                         pid_dir=self.settings.data_dir / "run",
                                         backoff_base=self.settings.restart_delay)
            await self.supervisor.start()
            await wait_live(self.client, self.urls, timeout=15.0)
        await self.arecord(SYSTEM, "monitor.start",
                           params={"active": self.watchdog.state.active,
                                   "epoch": self.watchdog.state.epoch,
                                   "services": dict(self.urls)})
        await self.checkpoint()
        self.scheduler.start()
        gate = self.duties.gate  # only the leader acts (always the case with SQLite)
        self.scheduler.every(0.25, gate(self.watchdog.tick), "tick")
        self.scheduler.every(PROBE_FLUSH_S, gate(self.watchdog.flush_probes), "probe-rows")
        self.scheduler.every(1.0, gate(self.notifier.deliver_due), "notices")
        self.scheduler.every(30.0, gate(self.notifier.remind), "reminders")
        self.scheduler.every(10.0, self._refresh_gauges, "gauges")
        self.scheduler.every(60.0, gate(self.checkpoint), "checkpoint")
        self.scheduler.every(600.0, gate(self._retention), "retention")
        self.scheduler.every(60.0, gate(self._fold_probes), "rollup")  # keeps the raw tail short
        self.scheduler.every(0.25, gate(self.duties.apply_commands), "commands")  # CLI, followers
        self.scheduler.every(TICK_S, gate(self.rollout.tick), "rollout")
        self.fleet.start(gate, PROBE_FLUSH_S)
        if self.leadership.shared:
            self.scheduler.every(1.0, self.duties.follow, "follow")
            self.scheduler.every(1.0, self.fleet.follow, "follow-services")
            self.leadership.start()
        # new revisions (a new leader: a rollout; other changes: replicas, versions)
        self.scheduler.every(DESIRED_SYNC_S, gate(self.desired.sync), "desired")
        self.started = True

    async def stop(self) -> None:
        """Stop scheduling, let in-flight writes finish, record the stop and a checkpoint,
        then stop the children; the children are stopped even when recording fails."""
        self.started = False
        self.scheduler.shutdown()
        try:
            await self.fleet.stop()
            await self.watchdog.idle()
            if queued := await self.watchdog.flush():
                log.error("stopping with %d decisions the database refused", queued)
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.arecord(SYSTEM, "monitor.stop",
                               params={"active": self.watchdog.state.active})
            await self.checkpoint()
        finally:
            await self.leadership.stop()  # releases the lease at once: a follower takes over
            await self.desired.stop()
            if self.supervisor:
                await self.supervisor.stop()
            await self.client.aclose()
            self.watchdog.close()
            self.fleet.close()
            self.store.dispose()

    def _child_specs(self) -> list[ChildSpec]:
        env = {"SERVICE_CHAOS_TOKEN": self.keys.chaos_token}
        return [ChildSpec(name=v, env=env, argv=[
            sys.executable, "-m", f"services.{v}", "--host", "127.0.0.1",
            "--port", url.rsplit(":", 1)[1]]) for v, url in self.urls.items()]

    def _processes(self) -> dict[str, dict[str, Any]]:
        return self.supervisor.status() if self.supervisor else {}

    def _on_child_event(self, name: str, kind: str, reason: str) -> None:
        if kind == "restart":
            self.metrics.supervisor_restart(name)
        self._spawn(self.arecord(SYSTEM, f"supervisor.{kind}", target=name, reason=reason))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, keeping a reference so it is not collected mid-way."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retention(self) -> None:
        await asyncio.to_thread(partial(retention.run, self.store, now=self.clock(),
                                        ages=retention.Ages.of(self.settings)))

    async def _fold_probes(self) -> None:
        await asyncio.to_thread(fold_probes, self.store)

    async def _refresh_gauges(self) -> None:
        self.metrics.set_notices(await asyncio.to_thread(delivery.counts, self.store))

    # The parts, as the web layer (monitor.web.ports.MonitorPort) and the gateway see them ---
    async def arecord(self, actor: Actor, action: str, *, target: str = "",
                      params: dict[str, Any] | None = None, outcome: str = "ok",
                      reason: str = "", evidence: list[Any] | None = None,
                      notice: Notice | None = None) -> None:
        await self.recorder.arecord(actor, action, target=target, params=params,
                                    outcome=outcome, reason=reason, evidence=evidence,
                                    notice=notice)

    # the default service's actions: queued for the leader from a follower (QueuedActions)
    async def failover(self, actor: Actor, target: str, *, reason: str,
                       force: bool = False) -> ActionResult:
        return await self._own.failover(actor, target, reason=reason, force=force)

    async def failback(self, actor: Actor, *, reason: str) -> ActionResult:
        return await self._own.failback(actor, reason=reason)

    async def pause(self, actor: Actor, *, reason: str) -> ActionResult:
        return await self._own.pause(actor, reason=reason)

    async def resume(self, actor: Actor, *, reason: str) -> ActionResult:
        return await self._own.resume(actor, reason=reason)

    async def chaos(self, actor: Actor, version: str, fault: str,
                    params: dict[str, Any]) -> ActionResult:
        return await self._own.chaos(actor, version, fault, params)

    async def rollout_action(self, actor: Actor, op: str, params: dict[str, Any]) -> ActionResult:
        queued = await self.duties.queue(CommandKind.ROLLOUT, actor, {**params, "op": op})
        return queued or await self.rollout.act(actor, op, params)

    @property
    def services(self) -> dict[str, ServiceUnit]:
        return self.fleet.units()

    def actions(self, service: str | None = None) -> Actions:
        """Who acts for `service` (UnknownService if none): this runtime for the default
        service, else that service's Operations, queued for the leader from a follower."""
        if service in (None, self.service):
            return self
        return QueuedActions(self.duties, self.fleet.unit(service).operations, str(service))

    def service_routes(self) -> Routes:
        return self.fleet.routes()

    def status(self, service: str | None = None) -> dict[str, Any]:
        if service not in (None, self.service):
            return {**self.fleet.unit(service).status(), "leader": self.leadership.view(),
                    "rollout": None}
        view = {"service": self.service, **self.reads.status()}
        view["leader"], view["rollout"] = self.leadership.view(), self.rollout.view()
        for item in view["versions"]:
            item["replicas"] = self.desired.replicas(item["name"])
        return view

    def latency_series(self, minutes: int = 15) -> LatencySeries:
        return self.reads.latency_series(minutes)

    def route_candidates(self) -> list[tuple[str, str]]:
        return self.reads.route_candidates()

    def report_gateway_failure(self, version: str, failure: str,
                               service: str | None = None) -> None:
        """A gateway failure: probe that version soon (never a failover on its own)."""
        if service not in (None, self.service):
            return self.fleet.report_failure(service, version, failure)
        self.watchdog.report_passive(version, failure)
        self.rollout.observe_failure(version)


def create_runtime(settings: Settings, *, clock: Callable[[], float] = time.time,
                   http_client: httpx.AsyncClient | None = None) -> Runtime:
    """Build (but do not start) the monitor: keys, database, engine state, scheduler."""
    keys = load_keys(settings)
    store = Store(settings.db_url(), idle_in_transaction_ms=idle_in_transaction_ms(settings))
    store.create_all()
    return Runtime(settings, keys=keys, store=store, clock=clock, http_client=http_client,
                   leadership=leadership_for(store, settings, keys.audit))
