"""Everything the running monitor is made of, built in one place and started/stopped together.

`create_runtime(settings)` builds the pieces without starting anything (tests use it that way);
`await runtime.start()` spawns the local services, resumes the persisted state and starts the
scheduler; `await runtime.stop()` undoes it in reverse, leaving a checkpoint and a shutdown row.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
from sqlalchemy import case, func
from sqlmodel import select

from monitor.config import Settings
from monitor.failover import engine
from monitor.failover.chaos import inject
from monitor.failover.probe import load_canary
from monitor.failover.scheduler import Scheduler
from monitor.failover.watchdog import Watchdog
from monitor.notices import delivery
from monitor.ops.leadership import LeaderDuties
from monitor.ops.metrics import Metrics
from monitor.ops.supervisor import ChildSpec, Supervisor
from monitor.storage import audit
from monitor.storage.commands import CommandKind
from monitor.storage.keys import Keys, load_keys
from monitor.storage.lease import Leadership, holder_id, leadership_for
from monitor.storage.store import Incident, ProbeRow, Store

UPTIME_CACHE_S = 5.0
log = logging.getLogger("monitor.runtime")


@dataclass(frozen=True)
class Actor:
    """Who does something, for audit rows."""

    name: str
    role: str
    source_ip: str = ""
    user_agent: str = ""
    request_id: str = ""


SYSTEM = Actor("monitor", "system")


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str
    data: dict = field(default_factory=dict)


def policy_from(settings: Settings) -> engine.Policy:
    return engine.Policy(
        versions=tuple(settings.service_urls()), fall=settings.fall, rise=settings.rise,
        cooldown=settings.cooldown, startup_grace=settings.startup_grace,
        auto_failback_after=settings.auto_failback_after, interval=settings.interval,
        fast_interval=settings.fast_interval, down_interval=settings.down_interval)


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
        self.urls = settings.service_urls()
        self.policy = policy_from(settings)
        self.checkpoint_path: Path = settings.data_dir / "audit.checkpoints"
        self.metrics = Metrics()
        self.client = http_client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            timeout=settings.timeout)
        self.notifier = delivery.Notifier(settings, store, clock=clock,
                                          may_send=lambda: self.leadership.is_leader)
        self.watchdog = Watchdog(
            policy=self.policy, urls=self.urls, store=store, audit_key=keys.audit,
            client=self.client, clock=clock, canary=load_canary(), timeout=settings.timeout,
            slow_ms=settings.slow_ms, enqueue=delivery.enqueue, metrics=self.metrics)
        self.scheduler = Scheduler(cycle=self.duties.probe, versions=self.policy.versions,
                                   first_delay=min(settings.interval, 1.0))
        self.watchdog.on_hurry = self.scheduler.hurry
        self.supervisor: Supervisor | None = None
        self.started = False
        self._uptime: tuple[float, dict[str, float]] = (0.0, {})
        self._checkpointed_seq = 0
        self.watchdog.load()

    # Lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.settings.local_services:
            self.supervisor = Supervisor(self._child_specs(), on_event=self._on_child_event,
                                         log_dir=self.settings.data_dir / "logs",
                                         backoff_base=self.settings.restart_delay)
            await self.supervisor.start()
            await self._wait_live(timeout=15.0)
        await self.arecord(SYSTEM, "monitor.start",
                           params={"active": self.watchdog.state.active,
                                   "epoch": self.watchdog.state.epoch,
                                   "services": self.urls})
        await self.checkpoint()
        self.scheduler.start()
        gate = self.duties.gate  # only the leader acts (always the case with SQLite)
        self.scheduler.every(0.25, gate(self.watchdog.tick), "tick")
        self.scheduler.every(1.0, gate(self.notifier.deliver_due), "notices")
        self.scheduler.every(30.0, gate(self.notifier.remind), "reminders")
        self.scheduler.every(10.0, self._refresh_gauges, "gauges")
        self.scheduler.every(60.0, gate(self.checkpoint), "checkpoint")
        self.scheduler.every(600.0, gate(self._retention), "retention")
        if self.leadership.shared:
            self.scheduler.every(0.25, gate(self.duties.apply_commands), "commands")
            self.scheduler.every(1.0, self.duties.follow, "follow")
            self.leadership.start()
        self.started = True

    async def stop(self) -> None:
        """Stop scheduling, let in-flight writes finish, record the stop and a checkpoint,
        then stop the children; the children are stopped even when recording fails."""
        self.started = False
        self.scheduler.shutdown()
        try:
            await self.watchdog.idle()
            if queued := await self.watchdog.flush():
                log.error("stopping with %d decisions the database refused", queued)
            await self.arecord(SYSTEM, "monitor.stop",
                               params={"active": self.watchdog.state.active})
            await self.checkpoint()
        finally:
            await self.leadership.stop()  # releases the lease at once: a follower takes over
            if self.supervisor:
                await self.supervisor.stop()
            await self.client.aclose()
            self.watchdog.close()
            self.store.dispose()

    async def _wait_live(self, *, timeout: float) -> None:
        """Give freshly spawned services a moment to listen, so the first probes are fair."""
        pending = set(self.urls)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for version in list(pending):
                try:
                    await self.client.get(f"{self.urls[version]}/health/live", timeout=0.5)
                    pending.discard(version)
                except httpx.HTTPError:
                    pass
            await asyncio.sleep(0.1)

    def _child_specs(self) -> list[ChildSpec]:
        env = {"SERVICE_CHAOS_TOKEN": self.keys.chaos_token}
        return [ChildSpec(name=v, env=env, argv=[
            sys.executable, "-m", f"services.{v}", "--host", "127.0.0.1",
            "--port", url.rsplit(":", 1)[1]]) for v, url in self.urls.items()]

    def _on_child_event(self, name: str, kind: str, reason: str) -> None:
        if kind == "restart":
            self.metrics.supervisor_restart(name)
        asyncio.get_running_loop().create_task(
            self.arecord(SYSTEM, f"supervisor.{kind}", target=name, reason=reason))

    async def checkpoint(self) -> None:
        def write() -> None:
            entry = audit.write_checkpoint(self.store, self.keys.audit, self.checkpoint_path,
                                           now=self.clock()) if self._head_moved() else None
            if entry:
                self._checkpointed_seq = entry["seq"]

        def fenced_write() -> None:
            with self.store.write(fenced=True):  # holds the lease row: no takeover meanwhile
                write()
        if self.leadership.is_leader:
            await asyncio.to_thread(fenced_write if self.leadership.shared else write)

    def _head_moved(self) -> bool:
        with self.store.read() as session:
            head = session.exec(select(func.max(audit.AuditRow.seq))).one() or 0
        return head != self._checkpointed_seq

    async def _retention(self) -> None:
        await asyncio.to_thread(partial(self.store.roll_up, now=self.clock(),
                                        retention_s=self.settings.retention_hours * 3600))

    async def _refresh_gauges(self) -> None:
        self.metrics.set_notices(await asyncio.to_thread(delivery.counts, self.store))

    # Audit and notices --------------------------------------------------------------------
    def record(self, actor: Actor, action: str, *, target: str = "", params: dict | None = None,
               outcome: str = "ok", reason: str = "", evidence: list | None = None,
               notice: tuple[str, str, dict] | None = None, fenced: bool = False) -> None:
        """One audit row (and optionally one notice) in its own write transaction."""
        now = self.clock()
        with self.store.write(fenced=fenced) as session:
            audit.append(session, self.keys.audit, now=now, action=action, actor=actor.name,
                         role=actor.role, source_ip=actor.source_ip,
                         user_agent=actor.user_agent, request_id=actor.request_id,
                         target=target, params=params, outcome=outcome, reason=reason,
                         evidence=evidence)
            if notice:
                kind, subject, payload = notice
                delivery.enqueue(session, kind=kind, subject=subject, payload=payload, now=now)

    async def arecord(self, actor: Actor, action: str, **kwargs) -> None:
        await asyncio.to_thread(partial(self.record, actor, action, **kwargs))

    # Operator actions ---------------------------------------------------------------------
    async def failover(self, actor: Actor, target: str, *, reason: str,
                       force: bool = False) -> ActionResult:
        if queued := await self.duties.queue(CommandKind.FAILOVER, actor, {
                "target": target, "reason": reason, "force": force}):
            return queued
        ok, message = await self.watchdog.act(
            lambda state, now: engine.manual_failover(state, target, self.policy, now,
                                                      reason=reason, force=force,
                                                      actor=actor.name),
            actor=actor, action="failover.manual",
            target=target, params={"force": force}, reason=reason)
        return ActionResult(ok, message if not ok else f"switched to {target}")

    async def failback(self, actor: Actor, *, reason: str) -> ActionResult:
        if queued := await self.duties.queue(CommandKind.FAILBACK, actor, {"reason": reason}):
            return queued
        ok, message = await self.watchdog.act(
            lambda state, now: engine.failback(state, self.policy, now, reason=reason,
                                               actor=actor.name),
            actor=actor, action="failover.failback", target=self.policy.versions[0],
            reason=reason)
        return ActionResult(ok, message if not ok else f"failed back to {self.policy.versions[0]}")

    async def pause(self, actor: Actor, *, reason: str) -> ActionResult:
        if queued := await self.duties.queue(CommandKind.PAUSE, actor, {"reason": reason}):
            return queued
        ok, message = await self.watchdog.act(
            lambda state, now: engine.pause(state, now, reason=reason, actor=actor.name),
            actor=actor, action="failover.pause", reason=reason)
        return ActionResult(ok, message if not ok else "automatic failover paused")

    async def resume(self, actor: Actor, *, reason: str) -> ActionResult:
        if queued := await self.duties.queue(CommandKind.RESUME, actor, {"reason": reason}):
            return queued
        ok, message = await self.watchdog.act(
            lambda state, now: engine.resume(state, now, reason=reason, actor=actor.name),
            actor=actor, action="failover.resume", reason=reason)
        return ActionResult(ok, message if not ok else "automatic failover resumed")

    async def chaos(self, actor: Actor, version: str, fault: str, params: dict) -> ActionResult:
        if queued := await self.duties.queue(CommandKind.CHAOS, actor, {
                "version": version, "fault": fault, "params": params}):
            return queued
        if version not in self.urls:
            outcome_ok, message, status = False, f"unknown version {version!r}", None
        else:
            outcome = await inject(self.client, self.urls[version], self.keys.chaos_token,
                                   fault, params)
            outcome_ok, message, status = outcome.ok, outcome.message, outcome.status
            if outcome.ok:
                self._remember_faults(version, fault, params, outcome.body)
        await self.arecord(actor, f"chaos.{fault}", target=version,
                           params={**params, "status": status},
                           outcome="ok" if outcome_ok else "refused", reason=message, fenced=True)
        return ActionResult(outcome_ok, f"{version}: {message}")

    def _remember_faults(self, version: str, fault: str, params: dict, body: dict | None):
        """Show what was injected at once, even while the version cannot report it itself."""
        reported = body.get("faults") if isinstance(body, dict) else None
        if isinstance(reported, dict):
            self.watchdog.faults[version] = reported
        elif fault == "reset":
            self.watchdog.faults[version] = {}
        else:
            self.watchdog.faults[version] = {**self.watchdog.faults.get(version, {}),
                                             fault: params}

    # Views --------------------------------------------------------------------------------
    def status(self) -> dict:
        now = self.clock()
        view = engine.status_view(self.watchdog.state, self.policy, now)
        uptime = self._uptime_24h(now)
        processes = self.supervisor.status() if self.supervisor else {}
        for item in view["versions"]:
            process = item["process"] = processes.get(item["name"])  # None when external
            if process and process["given_up"]:
                item["reason"] = "; ".join(filter(None, [
                    item["reason"], f"process left down after {process['restarts']} restarts "
                                    f"({process['last_exit']})"]))
            last = self.watchdog.last.get(item["name"])
            item["url"] = self.urls[item["name"]]
            item["faults"] = self.watchdog.faults.get(item["name"], {})
            item["last_probe_at"] = audit.utc_iso(last.at) if last else None
            item["uptime_24h"] = uptime.get(item["name"])
        view["incident"] = self._open_incident()
        view["leader"] = self.leadership.view()
        view["started_at"] = audit.utc_iso(self.watchdog.state.started_at)
        view["now"] = audit.utc_iso(now)
        return view

    def _open_incident(self) -> dict | None:
        with self.store.read() as session:
            row = session.exec(select(Incident).where(Incident.closed_at.is_(None))).first()
        if row is None:
            return None
        return {"id": row.id, "kind": row.kind, "summary": row.summary,
                "opened_at": audit.utc_iso(row.opened_at)}

    def _uptime_24h(self, now: float) -> dict[str, float]:
        cached_at, values = self._uptime
        if now - cached_at < UPTIME_CACHE_S:
            return values
        with self.store.read() as session:
            rows = session.exec(
                select(ProbeRow.version, func.count(), func.sum(case((ProbeRow.ok, 1), else_=0)))
                .where(ProbeRow.at >= now - 86400).group_by(ProbeRow.version)).all()
        values = {v: round(100.0 * (ok or 0) / n, 2) for v, n, ok in rows if n}
        self._uptime = (now, values)
        return values

    def latency_series(self, minutes: int = 15) -> dict[str, list[tuple[float, float | None]]]:
        since = self.clock() - minutes * 60
        with self.store.read() as session:
            rows = session.exec(select(ProbeRow.version, ProbeRow.at, ProbeRow.ok,
                                       ProbeRow.latency_ms)
                                .where(ProbeRow.at >= since).order_by(ProbeRow.at)).all()
        series: dict[str, list[tuple[float, float | None]]] = {v: [] for v in self.urls}
        for version, at, ok, latency in rows:
            series.setdefault(version, []).append((at, latency if ok else None))
        return series

    # Gateway ------------------------------------------------------------------------------
    def route_candidates(self) -> list[tuple[str, str]]:
        state = self.watchdog.state
        now = self.clock()
        # on every gateway request: only the shown state, not the whole dashboard view
        order = [state.active] + [
            v for v in self.policy.versions
            if v != state.active
            and engine.shown_state(state.health_of(v), self.policy, now) == engine.UP]
        return [(v, self.urls[v]) for v in order]

    def report_gateway_failure(self, version: str, failure: str) -> None:
        self.watchdog.report_passive(version, failure)


def create_runtime(settings: Settings, *, clock: Callable[[], float] = time.time,
                   http_client: httpx.AsyncClient | None = None) -> Runtime:
    """Build (but do not start) the monitor: keys, database, engine state, scheduler."""
    keys = load_keys(settings)
    store = Store(settings.db_url())
    store.create_all()
    leadership = leadership_for(
        store, shared=settings.shared_database, holder=holder_id(settings.port),
        ttl=settings.lease_ttl, renew=settings.lease_renew_s(), audit_key=keys.audit)
    return Runtime(settings, keys=keys, store=store, clock=clock, http_client=http_client,
                   leadership=leadership)
